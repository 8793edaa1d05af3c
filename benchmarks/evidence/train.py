"""The evidence base's own models: other architectures, training data, lengths, and controls.

Each run trains one network of :mod:`.nets` on one data set's ten classes, in plain torch:
Adam, learning rate 0.001, batches of 128 drawn in a seeded order, ``STEPS`` steps, one
thread. Two checkpoints of the same run are exported: ``-early`` after ``EARLY`` steps
(undertrained) and the final one. Random-weight controls are the networks as initialised
(step 0), and the paper's CNN with random weights. Every model is exported by
``models.export.to_onnx`` (softmax output, (N, 1, 28, 28) input in [0, 1], zooindex
metadata), so zooindex finds the layer entering the classifier as for any model.

Resumable: a run whose files are all in ``out`` with a manifest entry is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .sources import Data

ARCHS = ("resnet", "mobilenet", "vit", "mlp")
SOURCES = ("mnist", "fashion-mnist", "cifar10-grey")
STEPS = {"mnist": 800, "fashion-mnist": 800, "cifar10-grey": 800, "digits": 300}
EARLY = 25
BATCH, LR, SEED = 128, 1e-3, 0
STEM = {"mnist": "mnist", "fashion-mnist": "fashion", "cifar10-grey": "cifar10",
        "digits": "digits"}
# (architecture, source data set) of every training run
RUNS = [(a, s) for s in SOURCES for a in ARCHS] + [("resnet", "digits"), ("mlp", "digits")]
RANDOM = [*ARCHS, "paper-cnn"]


def run_names(arch: str, source: str) -> list[str]:
    return [f"{arch}-{STEM[source]}-early", f"{arch}-{STEM[source]}"]


def planned() -> list[str]:
    """Every model this module makes, in order."""
    return [n for a, s in RUNS for n in run_names(a, s)] + [f"{a}-random" for a in RANDOM]


def _manifest(out: Path) -> dict:
    path = out / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_manifest(out: Path, manifest: dict) -> None:
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")


def _as_input(images: np.ndarray):
    import torch

    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def _accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(_as_input(x[i:i + 500])).argmax(1).numpy()
                               for i in range(0, len(x), 500)])
    return float(np.mean(pred == y))


def _export(net, out: Path, name: str, info: dict) -> dict:
    from models.export import save_atomic, to_onnx

    meta = {"zooindex.layout": "NCHW", "zooindex.scale": "1",
            "zooindex.source_dataset": info["dataset"], "zooindex.source_classes": "0-9",
            "zooindex.source_accuracy": f"{info['source_accuracy']:.4f}",
            "zooindex.architecture": info["architecture"],
            "zooindex.recipe_seed": str(SEED), "zooindex.recipe_steps": str(info["steps"])}
    doc = (f"evidence-base model '{name}': {info['architecture']} trained "
           f"{info['steps']} steps on {info['dataset']}; input (N,1,28,28) in [0,1]")
    path = out / f"{name}.onnx"
    save_atomic(to_onnx(net, meta, doc), path)
    info = dict(info, file=path.name,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return info


def _test_sample(data: Data, dataset: str, n: int = 2000):
    x, y = data.split(dataset, "test")
    pick = np.random.default_rng(SEED).permutation(len(y))[:n]
    return x[pick], y[pick]


def train_run(arch: str, source: str, data: Data, out: Path, log=print) -> dict:
    """Train one run; export its early and final checkpoints; their manifest entries."""
    import torch
    import torch.nn.functional as F

    from .nets import build, parameter_count

    x, y = data.split(source, "train")
    x_test, y_test = _test_sample(data, source)
    net = build(arch, 10, SEED)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    rng = np.random.default_rng(SEED)
    labels = torch.from_numpy(y.astype(np.int64))
    early, final = run_names(arch, source)
    entries = {}
    start = time.perf_counter()
    order = rng.permutation(len(y))
    pos = 0
    for step in range(1, STEPS[source] + 1):
        if pos + BATCH > len(order):
            order, pos = rng.permutation(len(y)), 0
        batch = order[pos:pos + BATCH]
        pos += BATCH
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(_as_input(x[batch])), labels[batch])
        loss.backward()
        opt.step()
        if step in (EARLY, STEPS[source]):
            name = early if step == EARLY else final
            acc = _accuracy(net, x_test, y_test)
            entries[name] = _export(net, out, name, {
                "architecture": arch, "dataset": source, "steps": step,
                "kind": "early" if step == EARLY else "final",
                "source_accuracy": acc, "parameters": parameter_count(net),
                "train_seconds": round(time.perf_counter() - start, 1),
                "batch_size": BATCH, "lr": LR, "seed": SEED})
            log(f"  {name}: step {step}, loss {loss.item():.3f}, source accuracy {acc:.4f}, "
                f"{time.perf_counter() - start:.0f} s")
    return entries


def random_model(arch: str, data: Data, out: Path) -> dict:
    """A network as initialised (seeded), exported: a control with no training at all."""
    import torch

    from .nets import build, parameter_count

    if arch == "paper-cnn":
        from models.nets import Widths, build_net

        torch.manual_seed(SEED)
        net = build_net(Widths(), 10)
    else:
        net = build(arch, 10, SEED)
    x_test, y_test = _test_sample(data, "mnist")
    info = {"architecture": arch, "dataset": "none", "steps": 0, "kind": "random",
            "source_accuracy": _accuracy(net, x_test, y_test),
            "parameters": parameter_count(net), "seed": SEED}
    return {f"{arch}-random": _export(net, out, f"{arch}-random", info)}


def build_all(data: Data, out: Path, log=print) -> dict:
    """Every run and control not yet in ``out``; returns the manifest."""
    import torch

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(out)

    def done(names):
        return all(n in manifest and (out / f"{n}.onnx").exists() for n in names)

    for arch in RANDOM:
        if not done([f"{arch}-random"]):
            manifest.update(random_model(arch, data, out))
            _save_manifest(out, manifest)
    for arch, source in RUNS:
        if done(run_names(arch, source)):
            continue
        log(f"training {arch} on {source} ({STEPS[source]} steps)")
        manifest.update(train_run(arch, source, data, out, log=log))
        _save_manifest(out, manifest)
    return manifest


if __name__ == "__main__":  # python -m evidence.train WORK DATA (from benchmarks/)
    work, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    build_all(Data(data_dir, work / "cache"), work / "own", log=lambda s: print(s, flush=True))
