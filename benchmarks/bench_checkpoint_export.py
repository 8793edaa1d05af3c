"""What exporting a hub checkpoint on add costs: seconds and megabytes per model.

Full-size image classifiers at 224x224 with random weights (nothing is downloaded):

- transformers, with the library's default configurations (ViT-B/16, ResNet-50,
  ConvNeXt-Tiny, Swin-Tiny: the architectures of google/vit-base-patch16-224,
  microsoft/resnet-50, facebook/convnext-tiny-224 and
  microsoft/swin-tiny-patch4-window7-224), written with ``save_pretrained``;
- timm (ResNet-50, EfficientNet-B0, ViT-B/16: the architectures of timm/resnet50.a1_in1k,
  timm/efficientnet_b0.ra_in1k and timm/vit_base_patch16_224.augreg2_in21k_ft_in1k),
  written with ``save_for_hf`` as timm's ``push_to_hub`` writes them (config.json with
  the pretrained_cfg, model.safetensors);

each into a temporary folder, then exported as ``zooindex add FOLDER`` does
(:func:`zooindex.checkpoints.fetch_folder`): the first time (build the model, load the
safetensors, ``torch.onnx.export``), and again (the export found in the cache: only the
weights' sha256 is computed).

    python benchmarks/bench_checkpoint_export.py [--models vit,timm-resnet50] [--record]

Prints a table; ``--record`` also writes the "checkpoint-export" section of
benchmarks/RESULTS.md, with the load average and the process's CPU time, since the
wall times depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

# name -> (library, transformers config class or timm architecture, label)
MODELS = {"vit": ("transformers", "ViTConfig", "ViT-B/16"),
          "resnet": ("transformers", "ResNetConfig", "ResNet-50"),
          "convnext": ("transformers", "ConvNextConfig", "ConvNeXt-Tiny"),
          "swin": ("transformers", "SwinConfig", "Swin-Tiny"),
          "timm-resnet50": ("timm", "resnet50", "ResNet-50"),
          "timm-efficientnet_b0": ("timm", "efficientnet_b0", "EfficientNet-B0"),
          "timm-vit": ("timm", "vit_base_patch16_224", "ViT-B/16")}


def save_transformers(name: str, folder: Path) -> None:
    import torch
    import transformers

    config = getattr(transformers, MODELS[name][1])(num_labels=1000)
    config.architectures = []
    torch.manual_seed(0)
    model = transformers.AutoModelForImageClassification.from_config(config).eval()
    model.save_pretrained(folder)


def save_timm(name: str, folder: Path) -> None:
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(MODELS[name][1], pretrained=False).eval()
    save_for_hf(model, folder, safe_serialization=True)


def one_model(name: str, work: Path) -> dict:
    from zooindex import checkpoints

    folder = work / name
    (save_timm if MODELS[name][0] == "timm" else save_transformers)(name, folder)
    cache = work / "cache"
    start = time.perf_counter()
    [first] = checkpoints.fetch_folder(folder, cache_dir=cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    checkpoints.fetch_folder(folder, cache_dir=cache)
    warm = time.perf_counter() - start
    export = first.source["export"]
    return {"library": MODELS[name][0], "model": MODELS[name][2], "class": export["class"],
            "shape": "x".join(map(str, export["sample_shape"][1:])),
            "weights_mb": (folder / "model.safetensors").stat().st_size / 1e6,
            "onnx_mb": first.path.stat().st_size / 1e6, "export_s": cold, "again_s": warm}


def render(rows: list[dict]) -> str:
    lines = ["| library | model | class | input | safetensors | ONNX | first add: export "
             "| second add |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['library']} | {r['model']} | {r['class']} | {r['shape']} | "
                     f"{r['weights_mb']:.0f} MB | {r['onnx_mb']:.0f} MB | "
                     f"{r['export_s']:.1f} s | {r['again_s']:.2f} s |")
    return "\n".join(lines)


def versions(names) -> str:
    import torch

    parts = [f"torch {torch.__version__}"]
    for library in sorted({MODELS[n][0] for n in names}):
        module = __import__(library)
        parts.append(f"{library} {module.__version__}")
    return ", ".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    try:
        import torch  # noqa: F401

        for library in {MODELS[n][0] for n in names}:
            __import__(library)
    except (ImportError, RuntimeError) as exc:
        print(f"needs torch, transformers and timm ({exc}): pip install 'zooindex[timm]'")
        return
    rows = []
    load_before, wall = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append(one_model(name, Path(tmp)))
            print(render(rows[-1:]).splitlines()[-1], flush=True)
    wall = time.perf_counter() - wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    load_after = os.getloadavg()[0]
    table = render(rows)
    print(table)
    print(f"{cpu:.0f} s of CPU over {wall:.0f} s of wall time; load average "
          f"{load_before:.1f} before, {load_after:.1f} after")
    if args.record:
        body = (f"Random-weight image classifiers, 1,000 classes, written by transformers' "
                "`save_pretrained` or timm's `save_for_hf` and exported as `zooindex add "
                f"FOLDER` does ({versions(names)}, TorchScript exporter, opset 17); "
                "`python benchmarks/bench_checkpoint_export.py --record`. The second add finds "
                f"the export in the cache and only hashes the weights.\n\n{table}\n\n"
                f"One run: the process used {cpu:.0f} s of CPU (building the models "
                f"included) over {wall:.0f} s of wall time, on {os.cpu_count()} cores with a "
                f"load average of {load_before:.1f} before and {load_after:.1f} after, so "
                "the wall times are an upper bound for this machine. An export's disk cost "
                "is about the weights' size again.\n")
        write_section("checkpoint-export", "Exporting hub checkpoints on add", body)


if __name__ == "__main__":
    main()
