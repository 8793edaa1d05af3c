"""What exporting a hub checkpoint on add costs: seconds and megabytes per model.

Full-size transformers image classifiers at 224x224 with their library's default
configurations (ViT-B/16, ResNet-50, ConvNeXt-Tiny, Swin-Tiny: the architectures of
google/vit-base-patch16-224, microsoft/resnet-50, facebook/convnext-tiny-224 and
microsoft/swin-tiny-patch4-window7-224) and random weights, written with
``save_pretrained`` into a temporary folder (nothing is downloaded), then exported as
``zooindex add FOLDER`` does (:func:`zooindex.checkpoints.fetch_folder`): the first time
(build the model, load the safetensors, ``torch.onnx.export``), and again (the export
found in the cache: only the weights' sha256 is computed).

    python benchmarks/bench_checkpoint_export.py [--models vit,resnet] [--record]

Prints a table; ``--record`` also writes the "checkpoint-export" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

MODELS = {"vit": ("ViTConfig", "ViT-B/16"), "resnet": ("ResNetConfig", "ResNet-50"),
          "convnext": ("ConvNextConfig", "ConvNeXt-Tiny"), "swin": ("SwinConfig", "Swin-Tiny")}


def one_model(kind: str, work: Path) -> dict:
    import torch
    import transformers

    from zooindex import checkpoints

    config = getattr(transformers, MODELS[kind][0])(num_labels=1000)
    config.architectures = []
    torch.manual_seed(0)
    model = transformers.AutoModelForImageClassification.from_config(config).eval()
    folder = work / kind
    model.save_pretrained(folder)
    del model
    cache = work / "cache"
    start = time.perf_counter()
    [first] = checkpoints.fetch_folder(folder, cache_dir=cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    checkpoints.fetch_folder(folder, cache_dir=cache)
    warm = time.perf_counter() - start
    return {"model": MODELS[kind][1], "class": first.source["export"]["class"],
            "weights_mb": (folder / "model.safetensors").stat().st_size / 1e6,
            "onnx_mb": first.path.stat().st_size / 1e6, "export_s": cold, "again_s": warm}


def render(rows: list[dict]) -> str:
    lines = ["| model | class | safetensors | ONNX | first add: export | second add |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['class']} | {r['weights_mb']:.0f} MB | "
                     f"{r['onnx_mb']:.0f} MB | {r['export_s']:.1f} s | {r['again_s']:.2f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch
        import transformers
    except ImportError:
        print("needs torch and transformers: pip install 'zooindex[export]'")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            rows.append(one_model(kind, Path(tmp)))
            print(render(rows[-1:]).splitlines()[-1], flush=True)
    table = render(rows)
    print(table)
    if args.record:
        body = (f"Random-weight transformers classifiers at 224x224, 1,000 classes, written by "
                f"`save_pretrained` and exported as `zooindex add FOLDER` does (torch "
                f"{torch.__version__}, transformers {transformers.__version__}, "
                "TorchScript exporter, opset 17); `python benchmarks/bench_checkpoint_export.py "
                "--record`. The second add finds the export in the cache and only hashes the "
                f"weights.\n\n{table}\n")
        write_section("checkpoint-export", "Exporting hub checkpoints on add", body)


if __name__ == "__main__":
    main()
