"""A third ground truth: fine-tuning the whole network, for a subset of the paper's zoo.

The base's other two protocols train a new head on *frozen* features. Here every weight
moves: the paper CNN is rebuilt from its last training checkpoint
(``<zoo>/.checkpoints/<name>.pt``, written by ``models.build_zoo``; its ``net`` entry is
the state dict of ``models.nets.build_net``), its classifier (``logits``) is replaced by
a fresh, seeded one with the target's classes, and the whole network is trained on the
target's training subsample, then tested on its test subsample: the same images the
frozen protocols use, so the per-image bootstrap pairs all three.

The recipe, this project's choice (``RECIPE``): Adam, learning rate 1e-4 for the body and
1e-3 for the new head, batches of 100 drawn in a seeded order (a fresh permutation when
the current one runs out; a last partial batch is dropped), 100 steps (5 epochs of the
2,000 training images, about 22 of digits' 450), the network's own dropout (0.4) active
while training, softmax cross-entropy, seed 0, one torch thread. The same number of
steps for every target keeps the cost per unit fixed.

Only a subset is affordable on a small CPU (``MODELS`` x ``TARGETS``, about 8 s a unit
here). The models keep the zoo's diversity: for each source data set the network trained
on all ten classes, one trained on half the classes, a *lite* one (one convolution), and
a 512-unit one where the paper has it (Fashion-MNIST, CIFAR-10; MNIST has none, so its
ten-class lite network takes the place). The targets are one per data set, the two halves
alternating.

Each unit is cached in ``WORK/finetune/<model>__<target>.npz`` (per-image correctness
and a JSON record: the model file's sha256, the recipe, accuracy, seconds); a rerun
computes only what is missing, or what a retrained model or a changed recipe made stale.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

RECIPE = {"optimizer": "adam", "lr_body": 1e-4, "lr_head": 1e-3, "batch_size": 100,
          "steps": 100, "seed": 0}
# per source data set: ten classes, a half, lite, and 512 units (MNIST: ten-class lite)
MODELS = ("mnist-all", "mnist-0-4", "mnist-5-9-lite", "mnist-all-lite",
          "fashion-all", "fashion-5-9", "fashion-0-4-lite", "fashion-all-512",
          "cifar10-all", "cifar10-5-9", "cifar10-0-4-lite", "cifar10-0-4-512")
TARGETS = ("mnist-5-9", "fashion-mnist-0-4", "cifar10-grey-5-9", "digits-0-4")
HEAD = "logits"  # the classifier module of models.nets.build_net


def available() -> bool:
    """Can this environment fine-tune (is torch installed)?"""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# -- the pure core: a network and arrays in, per-image correctness out ----------------


def replace_head(net, num_classes: int, seed: int, head: str = HEAD):
    """``net`` with its classifier module ``head`` (a ``Linear``) replaced by a fresh one
    of ``num_classes`` outputs, initialised by torch's default under ``seed``."""
    import torch
    from torch import nn

    old = getattr(net, head)
    torch.manual_seed(seed)
    setattr(net, head, nn.Linear(old.in_features, num_classes))
    return net


def _as_input(images: np.ndarray):
    import torch

    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def fine_tune(net, x: np.ndarray, y: np.ndarray, *, optimizer: str, lr_body: float,
              lr_head: float, batch_size: int, steps: int, seed: int, head: str = HEAD):
    """Train every weight of ``net`` in place on uint8 images ``x`` ``(n, 28, 28)`` and
    labels ``y``: ``steps`` batches, the head at ``lr_head``, the rest at ``lr_body``.
    The network ends in eval mode."""
    import torch
    import torch.nn.functional as F

    if optimizer != "adam":
        raise ValueError(f"unknown optimizer '{optimizer}'; this recipe knows: adam")
    head_params = list(getattr(net, head).parameters())
    ids = {id(p) for p in head_params}
    body_params = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": body_params, "lr": lr_body},
                            {"params": head_params, "lr": lr_head}])
    torch.manual_seed(seed)  # the dropout masks
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    size = min(batch_size, len(y))
    order, pos = rng.permutation(len(y)), 0
    net.train()
    for _ in range(steps):
        if pos + size > len(order):
            order, pos = rng.permutation(len(y)), 0
        batch = order[pos:pos + size]
        pos += size
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(_as_input(x[batch])), labels[batch]).backward()
        opt.step()
    net.eval()
    return net


def correct(net, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Per-image correctness (bool ``(n,)``) of ``net``'s predictions on ``x``."""
    import torch

    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(_as_input(x[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(x), batch_size)])
    return pred == np.asarray(y)


def run_unit(net, data: dict, recipe: dict = RECIPE) -> tuple[np.ndarray, float]:
    """Fine-tune a copy of ``net`` on ``data`` (``x_train``, ``y_train``, ``x_test``,
    ``y_test``, labels 0..k-1); its per-image correctness on the test images, and the
    seconds it took. ``net`` itself is left as it was."""
    start = time.perf_counter()
    num_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    tuned = replace_head(copy.deepcopy(net), num_classes, recipe["seed"])
    fine_tune(tuned, data["x_train"], data["y_train"], **recipe)
    right = correct(tuned, data["x_test"], data["y_test"])
    return right, time.perf_counter() - start


# -- the edges: checkpoints in, cached units out ---------------------------------------


def load_zoo_net(zoo: Path, name: str, entry: dict):
    """The torch network of zoo model ``name`` from its checkpoint, checked against the
    manifest ``entry``: the checkpoint must hold the finished run the ONNX file was
    exported from (same number of steps), and give the ONNX file's outputs."""
    import torch

    from models.nets import Probabilities, Widths, build_net

    path = Path(zoo) / ".checkpoints" / f"{name}.pt"
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("steps") != entry["steps"]:
        raise ValueError(f"checkpoint {path} is at step {state.get('steps')}, the model "
                         f"'{name}' in the manifest at {entry['steps']}: retrain or rebuild "
                         "the zoo so that they match")
    widths = Widths(conv=tuple(entry["widths"]["conv"]), dense=entry["widths"]["dense"])
    first, last = (int(c) for c in entry["classes"].split("-"))
    net = build_net(widths, last - first + 1)
    net.load_state_dict(state["net"])
    net.eval()
    _check_against_onnx(Probabilities(net), Path(zoo) / entry["file"], name)
    return net


def _check_against_onnx(net, onnx_path: Path, name: str) -> None:
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    if not np.allclose(got, want, atol=1e-4):
        raise ValueError(f"the checkpoint of '{name}' does not reproduce {onnx_path} "
                         f"(largest difference {np.abs(got - want).max():.2g})")


class Cached:
    """The cached fine-tuning of one (model, target)."""

    def __init__(self, work: Path, model: str, target: str):
        self.path = Path(work) / "finetune" / f"{model}__{target}.npz"

    def load(self, sha256: str, recipe: dict = RECIPE) -> dict | None:
        """``{"correct", "accuracy", "seconds"}`` if measured for this model file and
        recipe, else None."""
        if not self.path.exists():
            return None
        with np.load(self.path) as z:
            meta = json.loads(str(z["meta"]))
            right = z["correct"]
        if meta.get("sha256") != sha256 or meta.get("recipe") != recipe:
            return None
        return {"correct": right, "accuracy": meta["accuracy"], "seconds": meta["seconds"]}

    def save(self, right: np.ndarray, seconds: float, sha256: str,
             recipe: dict = RECIPE) -> dict:
        meta = {"sha256": sha256, "recipe": recipe, "accuracy": float(right.mean()),
                "seconds": seconds, "test_images": int(len(right))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, correct=right.astype(bool), meta=np.array(json.dumps(meta)))
        os.replace(tmp, self.path)
        return {"correct": right, "accuracy": meta["accuracy"], "seconds": seconds}


def get_or_compute(work: Path, model: str, sha256: str, target: str, data: dict,
                   load_net: Callable[[], object], recipe: dict = RECIPE,
                   compute: bool = True) -> dict | None:
    """The unit's result from the cache (``"cached": True``), else computed
    (``load_net()`` gives the network) and cached; None when it is missing and
    ``compute`` is false."""
    cached = Cached(work, model, target)
    found = cached.load(sha256, recipe)
    if found is not None:
        return {**found, "cached": True}
    if not compute:
        return None
    right, seconds = run_unit(load_net(), data, recipe)
    return {**cached.save(right, seconds, sha256, recipe), "cached": False}


def build(work: Path, zoo: Path, target_data: dict, *, compute: bool = True,
          log=print) -> dict:
    """Every unit of ``MODELS`` x ``TARGETS`` (those whose model and checkpoint are in
    ``zoo``): ``{(model, target): {"correct", "accuracy", "seconds"}}``. With ``compute``
    false, only what is cached."""
    import torch

    torch.set_num_threads(1)
    manifest = json.loads((Path(zoo) / "manifest.json").read_text())["models"]
    missing = [m for m in MODELS if m not in manifest
               or not (Path(zoo) / ".checkpoints" / f"{m}.pt").exists()]
    if missing:
        log(f"fine-tuning: no checkpoint (or no manifest entry) for {', '.join(missing)}; "
            "left out")
    out = {}
    done, total = 0, len(MODELS) * len(TARGETS)
    for model in MODELS:
        if model in missing:
            continue
        entry = manifest[model]
        net = None

        def load_net():
            nonlocal net
            if net is None:
                net = load_zoo_net(zoo, model, entry)
            return net

        for target in TARGETS:
            result = get_or_compute(work, model, entry["sha256"], target, target_data[target],
                                    load_net, compute=compute)
            done += 1
            if result is not None:
                out[model, target] = result
                if not result["cached"]:
                    log(f"fine-tuned {done}/{total} {model} x {target}: accuracy "
                        f"{result['accuracy']:.3f}, {result['seconds']:.0f} s")
    return out
