"""NumPy ``.npy`` inputs, memory-mapped, with their labels in a sibling file.

A target too large to read into memory can be given as two ``.npy`` files: the inputs
are opened with ``mmap_mode="r"``, so only the rows being hashed, checked or run are in
memory at a time, and the labels (one per sample, small) are read whole. The labels file
is found beside the inputs by name:

* ``X.npy`` (or ``x.npy``) -> ``y.npy`` (or ``Y.npy``) in the same folder;
* ``<stem>_x.npy`` (or ``<stem>_X.npy``) -> ``<stem>_y.npy`` (or ``<stem>_Y.npy``).

Pass the inputs file as the target. Both files are read with ``allow_pickle=False``: an
object array is a pickle, and unpickling an untrusted file can run arbitrary code.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import TargetError
from . import Dataset, register_reader, unknown_split


def labels_path(path: str) -> list[str]:
    """Where the labels of the inputs file ``path`` may be, in the order tried."""
    folder, name = os.path.split(path)
    stem = name[:-len(".npy")]
    if stem in ("x", "X"):
        candidates = ["y.npy", "Y.npy"]
    elif stem[-2:] in ("_x", "_X"):
        candidates = [f"{stem[:-2]}_y.npy", f"{stem[:-2]}_Y.npy"]
    else:
        candidates = []
    return [os.path.join(folder, c) for c in candidates]


def sniff(path: str) -> bool:
    return os.path.isfile(path) and path.endswith(".npy")


def load(path: str, split: str | None) -> Dataset:
    if split is not None:
        raise unknown_split(path, split, [])
    candidates = labels_path(path)
    if not candidates:
        raise TargetError(
            f"cannot tell where the labels of '{path}' are: name the inputs X.npy (labels "
            "in y.npy beside it) or <name>_x.npy (labels in <name>_y.npy), or save both "
            "in one .npz", path=path)
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        raise TargetError(f"the labels of '{path}' are missing: expected "
                          f"{' or '.join(repr(c) for c in candidates)}", path=path)
    x = _open(path, mmap=True)
    y = _open(found, mmap=False)
    return Dataset(x=x, y=y, class_names=None, source=path)


def _open(path: str, *, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc).lower():
            raise TargetError(f"'{path}' holds Python objects (a pickle), which zooindex "
                              "does not load; save it as a numeric or string array",
                              path=path) from None
        raise TargetError(f"cannot read '{path}' as .npy ({exc}); save it with numpy.save",
                          path=path) from None
    except (OSError, EOFError) as exc:
        raise TargetError(f"cannot read '{path}' as .npy ({exc}); save it with numpy.save",
                          path=path) from None
    if not isinstance(array, np.ndarray):
        raise TargetError(f"'{path}' is not a single .npy array; save it with numpy.save",
                          path=path)
    return array


register_reader("npy", sniff=sniff, load=load)
