"""CIFAR-10 and CIFAR-100 "python version" batches.

Accepted targets: the extracted folder (``cifar-10-batches-py`` with ``data_batch_1..5``,
``test_batch`` and ``batches.meta``; or ``cifar-100-python`` with ``train``, ``test`` and
``meta``), a folder that holds one of those, or the downloaded archive
(``cifar-10-python.tar.gz``), read member by member without extracting it. Splits ``train``
and ``test``, default ``test``. CIFAR-100 uses the 100 fine labels.

The batches are pickles, and unpickling runs whatever callables the file names. They are
read with an unpickler that resolves only the few names a batch needs (numpy's array and
dtype reconstruction and plain builtin containers) and refuses every other name with a
:class:`TargetError` before anything is called.
"""

from __future__ import annotations

import builtins
import codecs
import os
import pickle
import tarfile

import numpy as np

from ..errors import TargetError
from . import Dataset, register_reader, unknown_split

# file names of each variant: split -> batch files, plus the metadata file and its keys
LAYOUTS = {
    "cifar-10": {"folder": "cifar-10-batches-py",
                 "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                 "test": ("test_batch",), "meta": "batches.meta",
                 "labels": "labels", "names": "label_names"},
    "cifar-100": {"folder": "cifar-100-python", "train": ("train",), "test": ("test",),
                  "meta": "meta", "labels": "fine_labels", "names": "fine_label_names"},
}
SPLITS = ("train", "test")
SIDE = 32
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SAFE_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray", "str",
                 "int", "float", "complex", "bool")


def _allowed() -> dict:
    """The only globals a batch pickle may name, mapped to the objects they resolve to.

    numpy's reconstruction helpers are taken from numpy's own ``__reduce__`` output, so the
    list stays right across numpy versions (``numpy.core`` became ``numpy._core``).
    """
    reconstruct = np.empty(0).__reduce__()[0]
    frombuffer = np.empty(1).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    for module in ("builtins", "__builtin__"):
        for name in SAFE_BUILTINS:
            allowed[(module, name)] = getattr(builtins, name)
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        # encoding="bytes": the batches were written by Python 2, whose str holds raw bytes
        super().__init__(file, encoding="bytes")
        self._source = source
        self._allowed = _allowed()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise TargetError(
                f"'{self._source}' is a pickle that asks for {module}.{name}; a CIFAR batch "
                "needs only numpy arrays, so zooindex refuses to load it. Download the "
                "batches again from their official source", path=self._source) from None


def load_pickle(file, source: str):
    """Unpickle a CIFAR batch from an open binary file, refusing anything but plain data."""
    try:
        return _BatchUnpickler(file, source).load()
    except TargetError:
        raise
    except Exception as exc:  # a corrupt pickle can fail in many ways, all of them "corrupt"
        raise TargetError(f"cannot read CIFAR batch '{source}' ({type(exc).__name__}: {exc}); "
                          "download it again", path=source) from None


def _get(batch, key: str, source: str):
    if not isinstance(batch, dict):
        raise TargetError(f"'{source}' holds a {type(batch).__name__}, not a CIFAR batch "
                          "dictionary", path=source)
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    have = ", ".join(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
    raise TargetError(f"CIFAR batch '{source}' has no '{key}' entry (it has: {have})",
                      path=source)


def _images(batch, labels_key: str, source: str):
    data = np.asarray(_get(batch, "data", source))
    labels = np.asarray(_get(batch, labels_key, source))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise TargetError(f"CIFAR batch '{source}' has data of shape {data.shape} and dtype "
                          f"{data.dtype}; expected uint8 rows of {3 * SIDE * SIDE} values",
                          path=source)
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise TargetError(f"CIFAR batch '{source}' has {len(data)} images but labels of shape "
                          f"{labels.shape} and dtype {labels.dtype}", path=source)
    # rows store the red plane, then green, then blue: (N, 3, 32, 32) -> (N, 32, 32, 3)
    images = data.reshape(len(data), 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _names(meta, key: str, source: str) -> tuple:
    names = _get(meta, key, source)
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _layout_of_folder(folder: str):
    for name, layout in LAYOUTS.items():
        if os.path.isfile(os.path.join(folder, layout["meta"])) and any(
                os.path.isfile(os.path.join(folder, f)) for f in layout["test"] + layout["train"]):
            return folder, layout
    for layout in LAYOUTS.values():  # a parent folder holding the extracted batches
        inner = os.path.join(folder, layout["folder"])
        if os.path.isdir(inner) and os.path.isfile(os.path.join(inner, layout["meta"])):
            return inner, layout
    return None, None


def _is_cifar_tar(path: str) -> bool:
    name = os.path.basename(path).lower()
    return os.path.isfile(path) and name.startswith("cifar-") and name.endswith(TAR_SUFFIXES)


def sniff(path: str) -> bool:
    if os.path.isdir(path):
        return _layout_of_folder(path)[0] is not None
    return _is_cifar_tar(path)


def _assemble(parts: dict, meta, layout, files, source: str) -> Dataset:
    images = [parts[f][0] for f in files]
    labels = [parts[f][1] for f in files]
    x = np.ascontiguousarray(np.concatenate(images) if len(images) > 1 else images[0])
    y = np.concatenate(labels) if len(labels) > 1 else labels[0]
    names = _names(meta, layout["names"], source) if meta is not None else None
    if names is not None and len(y) and y.max() >= len(names):
        raise TargetError(f"CIFAR labels in '{source}' go up to {y.max()} but the metadata "
                          f"names {len(names)} classes", path=source)
    return Dataset(x=x, y=y, class_names=names, source=source)


def _split(path: str, split: str | None) -> str:
    split = split or "test"
    if split not in SPLITS:
        raise unknown_split(path, split, SPLITS)
    return split


def _load_folder(path: str, split: str | None) -> Dataset:
    folder, layout = _layout_of_folder(path)
    files = layout[_split(path, split)]
    parts = {}
    for name in files:
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise TargetError(f"CIFAR batch '{file}' is missing; extract the full archive "
                              "again", path=path)
        with open(file, "rb") as fh:
            parts[name] = _images(load_pickle(fh, file), layout["labels"], file)
    meta_file = os.path.join(folder, layout["meta"])
    with open(meta_file, "rb") as fh:
        meta = load_pickle(fh, meta_file)
    return _assemble(parts, meta, layout, files, path)


def _load_tar(path: str, split: str | None) -> Dataset:
    split = _split(path, split)
    name = os.path.basename(path).lower()
    layout = LAYOUTS["cifar-100" if name.startswith("cifar-100") else "cifar-10"]
    files = layout[split]
    parts, meta = {}, None
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one streaming pass: no seeking back in a gzip stream
                base = os.path.basename(member.name)
                if not member.isfile() or base not in files + (layout["meta"],):
                    continue
                source = f"{path}:{member.name}"
                data = tar.extractfile(member)
                if base == layout["meta"]:
                    meta = load_pickle(data, source)
                else:
                    parts[base] = _images(load_pickle(data, source), layout["labels"], source)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TargetError(f"cannot read archive '{path}' ({exc}); download it again",
                          path=path) from None
    missing = [f for f in files if f not in parts]
    if missing:
        raise TargetError(f"archive '{path}' lacks CIFAR batches {', '.join(missing)}; is it "
                          "the python version of CIFAR?", path=path)
    return _assemble(parts, meta, layout, files, path)


def load(path: str, split: str | None) -> Dataset:
    if os.path.isdir(path):
        return _load_folder(path, split)
    return _load_tar(path, split)


register_reader("cifar", sniff=sniff, load=load)
