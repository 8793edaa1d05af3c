"""The targets of the real-network base: five classes of an image data set each, with a
fixed test set and a training pool, drawn once (seeded) and kept in the work folder.

The images are kept as the data set stores them (CIFAR-10 colour 32x32, MNIST and
Fashion-MNIST grey 28x28, uint8): each network adapts them itself through zooindex's
runner (its own preprocessing, its native input size), as a user's target would be.

CIFAR-10 is the shared folder's JPEG copy ("CIFAR-10 (JPEG copy)"): its pixels differ
slightly from the official batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PER_CLASS_TEST = 100
PER_CLASS_POOL = 100
SEED = 0

# the shared data folder's files for each data set, read by zooindex's own readers
SOURCES = {"cifar10": "cifar10/cifar10-jpeg.tar.gz", "mnist": "mnist",
           "fashion": "fashion-mnist"}
LABELS = {"cifar10": "CIFAR-10 (JPEG copy)", "mnist": "MNIST", "fashion": "Fashion-MNIST"}


@dataclass(frozen=True)
class TargetSpec:
    dataset: str
    classes: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.classes[0]}-{self.classes[-1]}"

    @property
    def label(self) -> str:
        return f"{LABELS[self.dataset]} {self.classes[0]}-{self.classes[-1]}"


TARGETS = {t.name: t for t in (
    TargetSpec("cifar10", (0, 1, 2, 3, 4)), TargetSpec("cifar10", (5, 6, 7, 8, 9)),
    TargetSpec("fashion", (0, 1, 2, 3, 4)), TargetSpec("mnist", (0, 1, 2, 3, 4)),
    TargetSpec("fashion", (5, 6, 7, 8, 9)), TargetSpec("mnist", (5, 6, 7, 8, 9)))}
DEFAULT_TARGETS = ("cifar10-0-4", "cifar10-5-9", "fashion-0-4", "mnist-0-4")


def stratified(labels: np.ndarray, classes, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` rows of each of ``classes``, drawn without
    replacement by a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
             for c in classes]
    return np.sort(np.concatenate(picks))


def build(spec: TargetSpec, data_dir: Path, *, per_class_test: int = PER_CLASS_TEST,
          per_class_pool: int = PER_CLASS_POOL, seed: int = SEED) -> dict:
    """``{x_train, y_train, x_test, y_test}``: labels recoded ``0..k-1`` in class order."""
    from zooindex import readers

    out = {}
    path = str(Path(data_dir) / SOURCES[spec.dataset])
    for split, per_class, key in (("train", per_class_pool, "train"),
                                  ("test", per_class_test, "test")):
        d = readers.read(path, split=split)
        y = np.asarray(d.y)
        keep = stratified(y, spec.classes, per_class, seed)
        out[f"x_{key}"] = np.asarray(d.x)[keep]
        out[f"y_{key}"] = np.searchsorted(np.array(spec.classes), y[keep]).astype(np.int64)
    return out


def load(spec: TargetSpec, data_dir: Path, work: Path) -> dict:
    """The target from ``work/targets/NAME.npz``, built there on first use."""
    path = Path(work) / "targets" / f"{spec.name}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = build(spec, data_dir)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def regime_draws(labels: np.ndarray, per_class: int, draws: int, seed: int = SEED) -> list:
    """Index arrays into the training pool: ``draws`` stratified draws of ``per_class``
    labeled images per class (the whole pool, once, when ``per_class`` is its size)."""
    classes = np.unique(labels)
    sizes = np.bincount(labels)
    if per_class >= sizes.min():
        return [np.arange(len(labels))]
    return [stratified(labels, classes, per_class, seed=10_000 * per_class + d)
            for d in range(draws)]
