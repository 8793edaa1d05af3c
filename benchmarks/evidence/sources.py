"""The data of the evidence base: four data sets as 28x28 grey uint8, and eight targets.

MNIST, Fashion-MNIST and CIFAR-10 come from the shared data folder through
``models.data`` (CIFAR-10 is the JPEG copy, converted to grey and resized 32 -> 28 as the
paper's zoo saw it). The fourth is scikit-learn's bundled ``load_digits`` (1,797 8x8
images, values 0-16): scaled to 0-255 and resized to 28x28 bilinearly; it has no official
split, so a stratified, seeded half is its training split and the other half its test
split.

A target is one data set restricted to five classes (0-4 or 5-9, relabelled 0-4): a
stratified, seeded subsample of its *test* split for the scores, and of its *training*
split for the ground truth (the transfer protocols train on it, and test on the test
subsample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion-mnist", "cifar10-grey", "digits")
SHORT = {"mnist": "MNIST", "fashion-mnist": "Fashion", "cifar10-grey": "CIFAR-10 grey",
         "digits": "digits"}
SPANS = {"0-4": (0, 4), "5-9": (5, 9)}
SEED = 0


@dataclass(frozen=True)
class TargetSpec:
    dataset: str
    span: str

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.span}"

    @property
    def label(self) -> str:
        return f"{SHORT[self.dataset]} {self.span}"


TARGETS = [TargetSpec(d, s) for d in DATASETS for s in SPANS]


def digits_splits(seed: int = SEED) -> dict:
    """scikit-learn's digits at 28x28 grey uint8: ``{"train": (x, y), "test": (x, y)}``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float64) * (255.0 / 16.0))[:, None]
    big = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    x = np.clip(np.rint(big[:, 0].numpy()), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.5, stratify=y,
                                              random_state=seed)
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


class Data:
    """Loads each (data set, split) once: uint8 ``(n, 28, 28)`` images and int labels."""

    def __init__(self, data_dir, cache_dir):
        self.data_dir, self.cache_dir = Path(data_dir), Path(cache_dir)
        self._splits: dict = {}

    def split(self, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        key = (dataset, split)
        if key not in self._splits:
            if dataset == "digits":
                for name, value in digits_splits().items():
                    self._splits["digits", name] = value
            else:
                from models.data import load

                s = load(dataset, split, self.data_dir, self.cache_dir)
                self._splits[key] = (s.x, s.y)
        return self._splits[key]


def _stratified(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified, seeded subsample of at most ``limit`` (equal per class)."""
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    if limit is None or limit >= len(y):
        return rng.permutation(len(y))
    per = limit // len(classes)
    picks = [rng.choice(np.flatnonzero(y == c), size=min(per, int(np.sum(y == c))),
                        replace=False) for c in classes]
    return rng.permutation(np.concatenate(picks))


def build_target(data: Data, spec: TargetSpec, out: Path, *, test_limit: int,
                 train_limit: int, seed: int = SEED) -> Path:
    """Write ``out`` (npz: x_train, y_train, x_test, y_test; labels 0..4) once."""
    if out.exists():
        return out
    first, last = SPANS[spec.span]
    arrays = {}
    for split, limit in (("train", train_limit), ("test", test_limit)):
        x, y = data.split(spec.dataset, split)
        keep = np.flatnonzero((y >= first) & (y <= last))
        pick = keep[_stratified(y[keep], limit, seed)]
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[pick], y[pick] - first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return out


def load_target(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
