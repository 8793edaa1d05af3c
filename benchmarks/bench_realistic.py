"""Real architectures at 224x224: where a cold search spends its time, and its memory.

A zoo of standard ImageNet architectures with random weights (torchvision: ResNet-50,
MobileNetV3-Large, EfficientNet-B0, DenseNet-121, ConvNeXt-Tiny, RegNetY-400MF; and a
ViT: timm's DeiT-Tiny when timm is there, else torchvision's ViT-B/16), exported with
the TorchScript-based exporter (opset 17, dynamic batch) and added with the ImageNet
preset. The target: the first 2,000 CIFAR-10 test images (32x32 RGB, the JPEG copy in
../shared/data), resized to 224x224 on the way in, as a user would rank ImageNet models
for a small-image data set.

Measured in one process, as in bench_search.py: onnxruntime alone on the same models
and batches (the mean of a run just before and one just after the search), the cold
search, and the share of everything else (loading, graph edits, the input pipeline,
PCA, scoring, the index). A second measurement runs a search of two models over all
10,000 CIFAR-10 test images in a fresh process and reports its peak resident memory.

Needs torch and torchvision (and timm for DeiT) in the interpreter that runs it; without
them it says so and writes nothing:

    python benchmarks/bench_realistic.py [--images 2000] [--device cpu|cuda]

Writes the "realistic" section of benchmarks/RESULTS.md (the "realistic-cuda" section
with --device cuda).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

TORCHVISION = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "densenet121",
               "convnext_tiny", "regnet_y_400mf"]
CIFAR = HERE.parent.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"


def missing() -> str | None:
    """Why this benchmark cannot run here, or None."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision failing beside a torch build
        return f"torch and torchvision are needed to export the architectures ({exc})"
    if not CIFAR.exists():
        return f"the CIFAR-10 test images are expected at {CIFAR}"
    return None


def export_zoo(folder: Path) -> list[str]:
    """Export the architectures (random weights, seed 0) once; their names."""
    import torch
    import torchvision

    folder.mkdir(parents=True, exist_ok=True)
    nets = {name: lambda name=name: getattr(torchvision.models, name)(weights=None)
            for name in TORCHVISION}
    try:
        import timm

        nets["deit_tiny"] = lambda: timm.create_model("deit_tiny_patch16_224",
                                                      pretrained=False)
    except ImportError:
        nets["vit_b_16"] = lambda: torchvision.models.vit_b_16(weights=None)
    for name, build in nets.items():
        path = folder / f"{name}.onnx"
        if path.exists():
            continue
        torch.manual_seed(0)
        net = build().eval()
        partial = folder / f".{name}.onnx"
        torch.onnx.export(net, (torch.randn(1, 3, 224, 224),), str(partial), dynamo=False,
                          opset_version=17, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
        partial.rename(path)
    return list(nets)


def make_target(path: Path, n: int) -> None:
    """The first ``n`` CIFAR-10 test images (stratified), as an .npz of uint8 RGB."""
    import numpy as np

    from zooindex.target import load_target

    tgt = load_target(str(CIFAR), split="test", limit=n if n < 10000 else None)
    classes = np.asarray(tgt.classes)
    np.savez(path, x=np.ascontiguousarray(tgt.x), y=classes[tgt.y])


def inference_alone(index: Path, target: Path, device: str) -> float:
    """Seconds onnxruntime takes for the same models and batches, nothing else running."""
    from zooindex.index import Index
    from zooindex.runner import run_model
    from zooindex.target import load_target

    tgt = load_target(target)
    total = 0.0
    with Index(index) as idx:
        for record in idx.catalogue.models():
            run = run_model(record, tgt.x, [record.default_layer], device=device,
                            input_range=tgt.input_range)
            total += run.inference_seconds
    return total


def timed_search(work: Path, names: list[str], target: Path, device: str) -> dict:
    import zooindex

    index = work / "realistic.db"
    for extra in ("", "-wal", "-shm"):
        Path(f"{index}{extra}").unlink(missing_ok=True)
    import shutil

    shutil.rmtree(f"{index}-activations", ignore_errors=True)
    zooindex.add([work / "zoo" / f"{n}.onnx" for n in names], index=index, preset="imagenet")
    import onnxruntime  # noqa: F401  (imported once, outside every timing)

    before = inference_alone(index, target, device)
    t = time.perf_counter()
    cold = zooindex.search(target, index=index, device=device)
    cold_s = time.perf_counter() - t
    after = inference_alone(index, target, device)
    alone = (before + after) / 2
    t = time.perf_counter()
    warm = zooindex.search(target, index=index, device=device)
    warm_s = time.perf_counter() - t
    assert [r.model for r in warm.ranked] == [r.model for r in cold.ranked]
    per_model = {r.model: {"seconds": r.seconds, "inference": r.inference_seconds,
                           "scoring": sum(r.timings.values()),
                           "layer": r.layer, "width": r.width, "score": r.score}
                 for r in cold.ranked}
    return {"cold_s": cold_s, "alone_s": alone, "alone_runs": [before, after],
            "warm_s": warm_s, "share_else": 1 - alone / cold_s,
            "provider": cold.stats["providers"], "models": per_model,
            "skipped": {r.model: r.reason for r in cold.skipped}, "notes": cold.notes,
            "scorer": cold.scorers[0], "members": cold.members.get(cold.scorers[0], ())}


def memory_run(work: Path, names: list[str], device: str) -> dict:
    """A fresh-process search over all 10,000 test images; its peak resident memory."""
    from support.hostile import run_cli

    target = work / "cifar-10000.npz"
    if not target.exists():
        make_target(target, 10000)
    index = work / "memory.db"
    for extra in ("", "-wal", "-shm"):
        Path(f"{index}{extra}").unlink(missing_ok=True)
    import shutil

    shutil.rmtree(f"{index}-activations", ignore_errors=True)
    add = run_cli(["add", "--index", index, "--preset", "imagenet",
                   *[work / "zoo" / f"{n}.onnx" for n in names]], timeout=600)
    assert add.returncode == 0, add.stderr
    run = run_cli(["search", "--index", index, target, "--device", device, "--json"],
                  timeout=7200)
    assert run.returncode == 0, run.stderr
    ranked = json.loads(run.stdout)["results"]
    return {"models": names, "n": 10000, "peak_mb": run.max_rss_mb, "seconds": run.seconds,
            "ranked": len(ranked)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "zooindex-bench"),
                    help="where the exported models and targets are kept between runs")
    ap.add_argument("--memory-models", default="resnet50,efficientnet_b0",
                    help="models of the 10,000-image memory run ('' to skip it)")
    args = ap.parse_args()
    reason = missing()
    if reason:
        print(f"skipped: {reason}")
        return
    from _results import write_section

    work = Path(args.work)
    names = export_zoo(work / "zoo")
    target = work / f"cifar-{args.images}.npz"
    if not target.exists():
        make_target(target, args.images)
    main_run = timed_search(work, names, target, args.device)
    memory = memory_run(work, args.memory_models.split(","), args.device) \
        if args.memory_models else None
    rows = [f"| {m} | {v['layer']} | {v['width']} | {v['inference']:.1f} s | "
            f"{v['scoring']:.2f} s | {v['seconds']:.1f} s |"
            for m, v in main_run["models"].items()]
    scorer = main_run["scorer"] + (f" ({', '.join(main_run['members'])})"
                                   if main_run["members"] else "")
    share = main_run["share_else"]
    body = (f"{len(names)} architectures with random weights at 224x224 "
            f"({', '.join(names)}), added with `--preset imagenet`; target: {args.images} "
            f"CIFAR-10 test images (32x32 RGB, JPEG copy) resized on the way in; ranked by "
            f"the default scorer, {scorer}. "
            f"`python benchmarks/bench_realistic.py --device {args.device}`.\n\n"
            "| measure | value |\n|---|---|\n"
            f"| cold search ({', '.join(main_run['provider'])}) | {main_run['cold_s']:.1f} s |\n"
            f"| onnxruntime alone, same models and batches (mean of a run before and one "
            f"after: {main_run['alone_runs'][0]:.1f} s, {main_run['alone_runs'][1]:.1f} s) "
            f"| {main_run['alone_s']:.1f} s |\n"
            f"| everything else (load, graph edit, input pipeline, PCA, scores, index) | "
            f"{main_run['cold_s'] - main_run['alone_s']:.1f} s = **{share:.1%}** |\n"
            f"| warm repeat | {main_run['warm_s'] * 1000:.0f} ms |\n\n"
            "Per model (default layer found by structure; seconds of inference inside the "
            "search, of scoring, and of all of the model's stages):\n\n"
            "| model | default layer | width | inference | scoring | all stages |\n"
            "|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    if main_run["skipped"]:
        body += "\nSkipped: " + "; ".join(f"{m}: {r}" for m, r in main_run["skipped"].items())
    if memory:
        body += (f"\nPeak resident memory of a search of {', '.join(memory['models'])} over "
                 f"all {memory['n']:,} CIFAR-10 test images (a fresh process, `zooindex "
                 f"search`): **{memory['peak_mb']:.0f} MB** in {memory['seconds']:.0f} s "
                 "(the target stays at 32x32; batches are resized as they stream).\n")
    section = "realistic" if args.device == "cpu" else "realistic-cuda"
    write_section(section, f"Real architectures at 224x224 ({args.device})", body)
    print(body)


if __name__ == "__main__":
    main()
