"""Build a zoo: train every recipe of a set that is not built yet, export it, record it.

    python -m models.build_zoo [--set paper|demo] [--data DIR] [--out DIR]
                               [--only NAME ...] [--epochs E] [--threads N]

Resumable: a model whose ``.onnx`` file and ``manifest.json`` entry both exist is skipped,
files are written through a temporary file and renamed, and the manifest is rewritten
after every model, so an interrupted build continues where it stopped. The demo set also
writes the demo target, ``fashion-0-4-target.npz`` (Fashion-MNIST test images, classes 0-4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import data
from .recipes import BATCH_SIZE, EPOCHS, LEARNING_RATE, SETS, Recipe

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = {"paper": MODELS_DIR / "zoo", "demo": MODELS_DIR / "demo"}
MANIFEST = "manifest.json"
THREADS = 2

# the demo target: unseen Fashion-MNIST test images of the classes the demo's F0-4 knows
TARGET_NAME = "fashion-0-4-target"
TARGET_DATASET, TARGET_CLASSES, TARGET_PER_CLASS, TARGET_SEED = "fashion-mnist", (0, 4), 200, 0

Loader = Callable[[str, str], data.Split]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.exists():
        return {"models": {}, "targets": {}}
    manifest = json.loads(path.read_text())
    manifest.setdefault("models", {})
    manifest.setdefault("targets", {})
    return manifest


def write_manifest(out_dir: Path, manifest: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=MANIFEST, suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, out_dir / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def metadata(recipe: Recipe, accuracy: float, epochs: int,
             class_names: tuple[str, ...]) -> dict[str, str]:
    """The ONNX metadata_props of a zoo model: how to feed it, and where it came from."""
    return {
        "zooindex.layout": "NCHW",
        "zooindex.scale": "1",
        "zooindex.source_dataset": recipe.dataset,
        "zooindex.source_classes": recipe.class_label,
        "zooindex.source_accuracy": f"{accuracy:.4f}",
        "zooindex.architecture": recipe.architecture,
        "zooindex.recipe_seed": str(recipe.seed),
        "zooindex.recipe_epochs": str(epochs),
        "zooindex.class_names": ",".join(class_names),
    }


def build_model(recipe: Recipe, out_dir: Path, epochs: int, load: Loader) -> dict:
    """Train, evaluate and export one recipe; returns its manifest entry."""
    import torch
    from tqdm import tqdm

    from .export import save_atomic, to_onnx
    from .nets import build_net, parameter_count
    from .train import accuracy, train

    train_split = data.select_classes(load(recipe.dataset, "train"), recipe.classes)
    test_split = data.select_classes(load(recipe.dataset, "test"), recipe.classes)
    torch.manual_seed(recipe.seed)  # the initial weights are part of the recipe
    net = build_net(recipe.widths, recipe.num_classes)
    seconds = train(net, train_split.x, train_split.y, epochs, recipe.seed, desc=recipe.name)
    acc = accuracy(net, test_split.x, test_split.y)
    doc = (f"neuralRank zoo model '{recipe.name}': {recipe.architecture} network "
           f"(conv {list(recipe.widths.conv)}, dense {recipe.widths.dense}) trained on "
           f"{recipe.dataset} classes {recipe.class_label}; input (N,1,28,28) in [0,1]; "
           f"output softmax probabilities over {', '.join(train_split.class_names)}")
    path = out_dir / f"{recipe.name}.onnx"
    save_atomic(to_onnx(net, metadata(recipe, acc, epochs, train_split.class_names), doc), path)
    tqdm.write(f"{recipe.name}: test accuracy {acc:.4f} after {epochs} epoch(s), "
               f"{seconds:.0f} s", file=sys.stderr)
    return {
        "file": path.name,
        "sha256": sha256(path),
        "dataset": recipe.dataset,
        "classes": recipe.class_label,
        "class_names": list(train_split.class_names),
        "architecture": recipe.architecture,
        "widths": {"conv": list(recipe.widths.conv), "dense": recipe.widths.dense},
        "parameters": parameter_count(net),
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "seed": recipe.seed,
        "train_samples": int(len(train_split.y)),
        "train_seconds": round(seconds, 1),
        "test_samples": int(len(test_split.y)),
        "test_accuracy": round(acc, 4),
    }


def build_target(out_dir: Path, load: Loader) -> dict:
    """Write the demo target (stratified, seeded test images) and return its manifest entry."""
    test = data.select_classes(load(TARGET_DATASET, "test"), TARGET_CLASSES)
    sample = data.stratified_sample(test, TARGET_PER_CLASS, TARGET_SEED)
    path = out_dir / f"{TARGET_NAME}.npz"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=path.name, suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, x=sample.x.astype(np.uint8), y=sample.y.astype(np.int64))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {
        "file": path.name,
        "sha256": sha256(path),
        "dataset": TARGET_DATASET,
        "split": "test",
        "classes": f"{TARGET_CLASSES[0]}-{TARGET_CLASSES[1]}",
        "class_names": list(sample.class_names),
        "samples": int(len(sample.y)),
        "per_class": TARGET_PER_CLASS,
        "seed": TARGET_SEED,
    }


def cached_loader(data_dir: str | Path | None, cache_dir: str | Path | None = None) -> Loader:
    """A loader over the shared data folder that reads each split once per build."""
    splits: dict[tuple[str, str], data.Split] = {}

    def load(dataset: str, split: str) -> data.Split:
        if (dataset, split) not in splits:
            splits[dataset, split] = data.load(dataset, split, data_dir, cache_dir)
        return splits[dataset, split]

    return load


def build(recipes: list[Recipe], out_dir: str | Path, epochs: int, load: Loader,
          with_target: bool = False, threads: int = THREADS) -> dict:
    """Build every recipe (and the demo target) not yet in ``out_dir``; returns the manifest.

    ``threads`` sets torch's intra-op threads for the whole process.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir)
    todo = [r for r in recipes
            if not ((out_dir / f"{r.name}.onnx").exists() and r.name in manifest["models"])]
    skipped = len(recipes) - len(todo)
    if skipped:
        tqdm.write(f"{skipped} model(s) already built in {out_dir}, skipped", file=sys.stderr)
    for recipe in tqdm(todo, desc="zoo", unit="model", file=sys.stderr, mininterval=0):
        manifest["models"][recipe.name] = build_model(recipe, out_dir, epochs, load)
        write_manifest(out_dir, manifest)
    target_file = out_dir / f"{TARGET_NAME}.npz"
    if with_target and not (target_file.exists() and TARGET_NAME in manifest["targets"]):
        manifest["targets"][TARGET_NAME] = build_target(out_dir, load)
        write_manifest(out_dir, manifest)
    return manifest


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m models.build_zoo",
        description="Train and export the zoo models of a recipe set that are not built yet.")
    parser.add_argument("--set", dest="recipe_set", choices=sorted(SETS), default="paper",
                        help="which recipes: the paper's 23 models or the 6 small demo ones")
    parser.add_argument("--data", default=str(data.DEFAULT_DATA_DIR),
                        help="folder holding mnist/, fashion-mnist/, cifar10/ "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: models/zoo for paper, models/demo for demo)")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None,
                        help="build only these models of the set, e.g. mnist-all fashion-0-4-lite")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per model (default: the set's chosen number)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="torch threads for training (default: %(default)s)")
    args = parser.parse_args(argv)
    names = [r.name for r in SETS[args.recipe_set]]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"not in the {args.recipe_set} set: {', '.join(unknown)}; "
                     f"choose from: {', '.join(names)}")
    for flag in ("epochs", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be at least 1, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipes = [r for r in SETS[args.recipe_set] if args.only is None or r.name in args.only]
    out_dir = Path(args.out) if args.out else DEFAULT_OUT[args.recipe_set]
    epochs = args.epochs or EPOCHS[args.recipe_set]
    manifest = build(recipes, out_dir, epochs, cached_loader(args.data),
                     with_target=args.recipe_set == "demo", threads=args.threads)
    built = [m for name, m in manifest["models"].items() if name in {r.name for r in recipes}]
    for entry in built:
        print(f"{entry['file']}\t{entry['architecture']}\t{entry['classes']}\t"
              f"acc {entry['test_accuracy']:.4f}\t{entry['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
