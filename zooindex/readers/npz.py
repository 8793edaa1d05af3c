"""NumPy ``.npz`` archives: inputs and labels under the usual array names.

An archive with inputs and no labels is an unlabeled target (ranked by label-free scores).

Accepted names, first match wins: inputs ``x, X, images, data, inputs, features``; labels
``y, Y, labels, targets, label, target``. Split archives use ``<name>_<split>`` or
``<split>_<name>`` (``x_train``/``y_train``, ``train_images``/``train_labels``, ...).
Arrays are loaded with ``allow_pickle=False``: an object array is a pickle, and unpickling
an untrusted file can run arbitrary code.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..errors import TargetError
from . import Dataset, register_reader, unknown_split

INPUT_NAMES = ("x", "X", "images", "data", "inputs", "features")
LABEL_NAMES = ("y", "Y", "labels", "targets", "label", "target")


def sniff(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(".npz")


def _first(keys, candidates):
    return next((name for name in candidates if name in keys), None)


def _split_names(keys) -> set[str]:
    """Every split for which the archive has both an input and a label array."""
    candidates = set()
    for key in keys:
        for name in INPUT_NAMES:
            if key.startswith(f"{name}_"):
                candidates.add(key[len(name) + 1:])
            if key.endswith(f"_{name}"):
                candidates.add(key[:-len(name) - 1])
    return {split for split in candidates if split and None not in _pair(keys, split)}


def _pair(keys, split: str | None):
    """(inputs key, labels key) for ``split`` (``None``: the unsplit names)."""
    if split is None:
        return _first(keys, INPUT_NAMES), _first(keys, LABEL_NAMES)

    def names(base):
        return [form for name in base for form in (f"{name}_{split}", f"{split}_{name}")]

    return _first(keys, names(INPUT_NAMES)), _first(keys, names(LABEL_NAMES))


def load(path: str, split: str | None) -> Dataset:
    # the file is opened here so that it is closed even when numpy rejects it
    with open(path, "rb") as fh:
        try:
            archive = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise TargetError(f"cannot read '{path}' as .npz ({exc}); save it with numpy.savez",
                              path=path) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise TargetError(f"'{path}' holds a single array, not an .npz archive; save inputs "
                              "and labels together with numpy.savez(path, x=..., y=...)",
                              path=path)
        with archive:
            x_key, y_key = _choose(list(archive.files), split, path)
            x = _array(archive, x_key, path)
            y = None if y_key is None else _array(archive, y_key, path)
    return Dataset(x=x, y=y, class_names=None, source=path)


def _choose(keys: list[str], split: str | None, path: str):
    """(inputs key, labels key) for ``split``, or an error naming the keys the file has."""
    splits = _split_names(keys)
    plain = _pair(keys, None)
    if split is None:
        if None not in plain:
            return plain
        if "test" in splits or len(splits) == 1:
            return _pair(keys, "test" if "test" in splits else next(iter(splits)))
        if splits:
            raise TargetError(f"target '{path}' has several splits ({', '.join(sorted(splits))})"
                              "; choose one with --split", path=path)
    elif split in splits:
        return _pair(keys, split)
    elif splits or None not in plain:
        raise unknown_split(path, split, splits)
    if split is None and plain[0] is not None and not splits:
        return plain  # inputs without labels: an unlabeled target
    raise TargetError(
        f"'{path}' has arrays {', '.join(keys) or '(none)'}; expected inputs under one "
        f"of {', '.join(INPUT_NAMES)} and labels under one of {', '.join(LABEL_NAMES)} "
        "(or x_train/y_train, x_test/y_test). Re-save with numpy.savez(path, x=..., y=...)",
        path=path)


def _array(archive, key: str, path: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise TargetError(
                f"array '{key}' in '{path}' holds Python objects (a pickle), which zooindex "
                "does not load; save it as a numeric or string array", path=path) from None
        raise TargetError(f"cannot read array '{key}' in '{path}': {exc}", path=path) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise TargetError(f"cannot read array '{key}' in '{path}': {exc}", path=path) from None


register_reader("npz", sniff=sniff, load=load)
