"""Training and test data of the zoo, read through zooindex's own readers.

The paper trains on three data sets, all brought to 28x28 grey: MNIST and Fashion-MNIST
as they are, CIFAR-10 converted to grey (luminance) and resized 32 -> 28 (bilinear).
Decoding and converting CIFAR-10 takes a while, so the converted arrays are cached as
``.npz`` files keyed by the source file's size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def _find_data_dir() -> Path:
    """``shared/data`` beside the checkout, or beside a folder above it (a git worktree)."""
    for folder in (REPO_ROOT, *REPO_ROOT.parents):
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return REPO_ROOT.parent / "shared" / "data"


DEFAULT_DATA_DIR = _find_data_dir()
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# where each data set lives under the data folder (a folder of IDX files, or a tarball)
SOURCES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "cifar10-grey": "cifar10/cifar10-jpeg.tar.gz",
}
# IDX files carry no class names; these are the published ones, in label order
IDX_CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights
GREY_SIDE = 28


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 28, 28), integer labels (N,), and the names of the labels."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]


def to_grey(images: np.ndarray, side: int = GREY_SIDE, chunk: int = 4096) -> np.ndarray:
    """Colour images uint8 (N, H, W, 3) -> grey uint8 (N, side, side), as the paper does.

    Luminance first, then a bilinear resize with half-pixel centres and no anti-aliasing
    (the common ``resize_bilinear`` behaviour). Works in chunks to keep memory bounded.
    """
    import torch
    import torch.nn.functional as F

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected colour images (N, H, W, 3), got shape {images.shape}")
    out = np.empty((len(images), side, side), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) @ LUMA
        resized = F.interpolate(torch.from_numpy(block)[:, None], size=(side, side),
                                mode="bilinear", align_corners=False, antialias=False)
        out[start:start + chunk] = np.clip(np.rint(resized[:, 0].numpy()), 0, 255)
    return out


def _read(dataset: str, path: Path, split: str) -> Split:
    from zooindex.readers import read

    ds = read(str(path), split=split)
    names = ds.class_names if ds.class_names is not None else IDX_CLASS_NAMES[dataset]
    return Split(np.asarray(ds.x), np.asarray(ds.y, dtype=np.int64), tuple(str(n) for n in names))


def _cache_key(path: Path) -> str:
    """Short key of the source file's identity: a changed file gets a fresh cache entry."""
    stat = path.stat()
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def _save_npz_atomic(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(dataset: str, split: str, data_dir: str | Path | None = None,
         cache_dir: str | Path | None = None) -> Split:
    """One split ("train" or "test") of a zoo data set, as 28x28 grey uint8 images."""
    if dataset not in SOURCES:
        raise ValueError(f"unknown data set '{dataset}'; choose from: {', '.join(SOURCES)}")
    path = Path(data_dir or DEFAULT_DATA_DIR) / SOURCES[dataset]
    if not path.exists():
        raise FileNotFoundError(f"data set '{dataset}' not found at {path}; "
                                "pass the shared data folder with --data DIR")
    if dataset != "cifar10-grey":
        return _read(dataset, path, split)
    cache = Path(cache_dir or DEFAULT_CACHE_DIR) / f"{dataset}-{split}-{_cache_key(path)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return Split(z["x"], z["y"], tuple(str(n) for n in z["class_names"]))
    colour = _read(dataset, path, split)
    grey = Split(to_grey(colour.x), colour.y, colour.class_names)
    _save_npz_atomic(cache, x=grey.x, y=grey.y, class_names=np.array(grey.class_names))
    return grey


def select_classes(split: Split, classes: tuple[int, int]) -> Split:
    """Keep the samples of labels ``first..last`` (inclusive), relabelled ``0..last-first``."""
    first, last = classes
    keep = (split.y >= first) & (split.y <= last)
    return Split(split.x[keep], split.y[keep] - first, split.class_names[first:last + 1])


def stratified_sample(split: Split, per_class: int, seed: int) -> Split:
    """``per_class`` samples of every label, drawn without replacement, in shuffled order."""
    rng = np.random.default_rng(seed)
    picks = []
    for label in np.unique(split.y):
        members = np.flatnonzero(split.y == label)
        if len(members) < per_class:
            raise ValueError(f"label {label} has {len(members)} samples, fewer than {per_class}")
        picks.append(rng.choice(members, size=per_class, replace=False))
    order = rng.permutation(np.concatenate(picks))
    return Split(split.x[order], split.y[order], split.class_names)
