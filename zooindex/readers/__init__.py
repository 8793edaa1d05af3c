"""Registry of target data-set readers.

A reader turns a file or folder into a :class:`Dataset`: the inputs and labels exactly as
stored, plus the class names when the format has them. Validation (numeric inputs, label
encoding, class sizes) happens once, later, in :mod:`zooindex.target`; readers only check
that the file is what it claims to be.

Each format lives in its own module and registers itself on import::

    register_reader("myformat", sniff=lambda path: ..., load=lambda path, split: ...)

``sniff(path)`` must be cheap (a suffix, a folder listing, a few header bytes) and must not
raise; ``load(path, split)`` returns a :class:`Dataset` or raises :class:`TargetError`.
The modules are imported only when :func:`read` or :func:`formats` is first called, so that
importing zooindex stays cheap.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import SplitError, TargetError

# modules that register readers when imported, in the order their sniffers are tried:
# the specific layouts (IDX, CIFAR folders) before the generic image-folder layout
_MODULES = ("npz", "npy", "idx", "cifar", "imagefolder", "text")


@dataclass(frozen=True)
class Dataset:
    """Inputs and raw labels of a data set, as stored.

    ``x`` is ``(N, ...)``: uint8 images ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (colour), or
    numeric vectors. ``y`` holds the raw labels (ints or strings), shape ``(N,)``, or
    ``None`` for an unlabeled data set.
    ``class_names`` names the label values when the format has names (CIFAR's label names,
    image-folder names); then ``y`` holds indices into it.
    """

    x: np.ndarray
    y: np.ndarray | None
    class_names: tuple | None
    source: str


@dataclass(frozen=True)
class Reader:
    name: str
    sniff: Callable[[str], bool]
    load: Callable[[str, str | None], Dataset]


_REGISTRY: dict[str, Reader] = {}


def register_reader(name: str, *, sniff: Callable[[str], bool],
                    load: Callable[[str, str | None], Dataset]) -> None:
    """Register a reader for format ``name``; sniffers are tried in registration order."""
    if name in _REGISTRY:
        raise ValueError(f"reader '{name}' registered twice")
    _REGISTRY[name] = Reader(name=name, sniff=sniff, load=load)


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


def formats() -> list[str]:
    """Names of every registered format, in the order they are tried."""
    _load_all()
    return list(_REGISTRY)


def readers() -> list[Reader]:
    """Every registered reader, in the order they are tried."""
    _load_all()
    return list(_REGISTRY.values())


def read(path, *, split: str | None = None) -> Dataset:
    """Read the data set at ``path`` with the first reader that recognises it.

    ``split`` picks a part of formats that ship several (``train``/``test``); each reader
    says which splits it has when asked for one it lacks.
    """
    _load_all()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TargetError(f"target '{path}' does not exist; give a data-set file or folder",
                          path=path)
    for reader in _REGISTRY.values():
        if _sniffs(reader, path):
            return reader.load(path, split)
    raise TargetError(
        f"cannot tell the format of target '{path}'; supported: {describe_formats()}. "
        "Convert it to .npz with arrays 'x' and 'y'", path=path)


def _sniffs(reader: Reader, path: str) -> bool:
    # a sniffer that trips over an odd file only means "not mine"
    try:
        return bool(reader.sniff(path))
    except (OSError, ValueError, EOFError):
        return False


FORMAT_HELP = {
    "npz": ".npz with arrays x/y (or x_train/y_train, x_test/y_test)",
    "npy": "X.npy with labels in y.npy beside it (or NAME_x.npy and NAME_y.npy), memory-mapped",
    "idx": "IDX files or an MNIST-style folder",
    "cifar": "CIFAR-10/100 python batches",
    "imagefolder": "an image folder root/<class>/*.png (or a .tar.gz of one)",
    "csv": ".csv of texts with columns text,label (see --text-column, --label-column)",
    "tsv": ".tsv of texts, as .csv",
    "jsonl": ".jsonl, one object per line with fields text and label",
    "parquet": ".parquet with columns text and label (needs pyarrow)",
}


def describe_formats() -> str:
    return "; ".join(FORMAT_HELP.get(name, name) for name in formats())


def unknown_split(path: str, split: str, available) -> SplitError:
    """The error for a split the data set does not have, listing the ones it has."""
    have = ", ".join(sorted(available)) or "none (the data set is not split)"
    return SplitError(f"target '{path}' has no split '{split}'; available: {have}",
                      path=path, available=sorted(available))
