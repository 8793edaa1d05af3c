"""IDX files (the MNIST family), raw or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of
dimensions), one big-endian uint32 per dimension, then the values in big-endian row-major
order. A target is either a folder holding the canonical files
(``train-images-idx3-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and their ``labels-idx1``
partners; split ``train`` or ``test``, default ``test``) or one images file whose labels file
sits beside it under the same name with ``images``/``idx3`` replaced by ``labels``/``idx1``.

Raw uint8 files are memory-mapped, so a large data set costs no memory until it is used.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib

import numpy as np

from ..errors import TargetError
from . import Dataset, register_reader, unknown_split

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
# which file names belong to which split, e.g. train-images-idx3-ubyte, t10k-images.idx3-ubyte
SPLIT_PATTERNS = {"train": re.compile(r"train"), "test": re.compile(r"t10k|test")}
IMAGES_FILE = re.compile(r"images.*idx3", re.IGNORECASE)


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _header_ok(header: bytes) -> bool:
    return (len(header) == 4 and header[0] == 0 and header[1] == 0
            and header[2] in DTYPES and 1 <= header[3] <= 4)


def _raw_size_ok(path: str) -> bool:
    with open(path, "rb") as fh:
        header = fh.read(4)
        if not _header_ok(header):
            return False
        dims = struct.unpack(f">{header[3]}I", fh.read(4 * header[3]))
    itemsize = np.dtype(DTYPES[header[2]]).itemsize
    return os.path.getsize(path) == 4 + 4 * len(dims) + math.prod(dims) * itemsize


def _images_files(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder)
                  if IMAGES_FILE.search(name) and os.path.isfile(os.path.join(folder, name)))


def sniff(path: str) -> bool:
    if os.path.isdir(path):
        return bool(_images_files(path))
    if not os.path.isfile(path):
        return False
    named = "idx" in os.path.basename(path).lower()
    if _is_gzip(path):
        if not named:
            return False
        with gzip.open(path, "rb") as fh:
            return _header_ok(fh.read(4))
    if named:  # claim it even when damaged, so that load() can say what is wrong
        with open(path, "rb") as fh:
            return _header_ok(fh.read(4))
    return _raw_size_ok(path)


def read_idx(path: str) -> np.ndarray:
    """The array stored in one IDX file; raw uint8 files come back memory-mapped."""
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as fh:
                header = fh.read(4)
                dtype, dims = _parse_header(path, header, fh.read(4 * header[3]) if
                                            _header_ok(header) else b"")
                expected = math.prod(dims) * dtype.itemsize
                data = fh.read(expected)
                extra = fh.read(1)
            if len(data) != expected:
                raise _truncated(path, expected, len(data))
            if extra:
                raise TargetError(f"IDX file '{path}' has bytes after its declared "
                                  f"{'x'.join(map(str, dims))} values; the file is corrupt",
                                  path=path)
            array = np.frombuffer(data, dtype=dtype).reshape(dims)
        else:
            with open(path, "rb") as fh:
                header = fh.read(4)
                dtype, dims = _parse_header(path, header, fh.read(4 * header[3]) if
                                            _header_ok(header) else b"")
            offset = 4 + 4 * len(dims)
            expected = math.prod(dims) * dtype.itemsize
            actual = os.path.getsize(path) - offset
            if actual != expected:
                raise _truncated(path, expected, actual)
            if expected == 0:
                array = np.zeros(dims, dtype=dtype)
            else:
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise TargetError(f"IDX file '{path}' is truncated or corrupt ({exc}); download it "
                          "again", path=path) from None
    except OSError as exc:
        raise TargetError(f"cannot read IDX file '{path}': {exc}", path=path) from None
    if dtype.itemsize > 1:  # big-endian on disk: hand on native-order values
        array = array.astype(dtype.newbyteorder("="))
    return array


def _parse_header(path: str, header: bytes, dim_bytes: bytes):
    if not _header_ok(header):
        raise TargetError(f"'{path}' is not an IDX file (magic number {header.hex() or 'missing'}"
                          "; expected 0000 followed by a dtype code 08/09/0b/0c/0d/0e and "
                          "the number of dimensions)", path=path)
    ndim = header[3]
    if len(dim_bytes) != 4 * ndim:
        raise _truncated(path, 4 * ndim, len(dim_bytes), what="dimension bytes")
    return np.dtype(DTYPES[header[2]]), struct.unpack(f">{ndim}I", dim_bytes)


def _truncated(path: str, expected: int, actual: int, what: str = "data bytes") -> TargetError:
    return TargetError(f"IDX file '{path}' is truncated or corrupt: {actual} {what} where its "
                       f"header promises {expected}; download it again", path=path)


def labels_path(images_path: str) -> str:
    """The labels file that belongs to ``images_path`` (raw or gzipped)."""
    folder, name = os.path.split(images_path)
    if not IMAGES_FILE.search(name):
        raise TargetError(f"'{images_path}' does not look like an IDX images file (its name has "
                          "no 'images...idx3'); give the images file, e.g. "
                          "t10k-images-idx3-ubyte.gz, with its labels file beside it",
                          path=images_path)
    wanted = name.replace("images", "labels").replace("idx3", "idx1")
    stem = wanted[:-3] if wanted.endswith(".gz") else wanted
    for candidate in (wanted, stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    raise TargetError(f"labels file '{wanted}' not found beside '{images_path}'; put the "
                      "labels-idx1 file next to the images file", path=images_path)


def _images_for_split(folder: str, split: str) -> str:
    files = _images_files(folder)
    splits = {name: [f for f in files if pattern.search(f.lower())]
              for name, pattern in SPLIT_PATTERNS.items()}
    matches = splits.get(split)
    if not matches:
        raise unknown_split(folder, split, [name for name, found in splits.items() if found])
    # raw and gzipped copies of one file are the same data: prefer the raw one (memory-mapped)
    distinct = {f[:-3] if f.endswith(".gz") else f for f in matches}
    if len(distinct) > 1:
        raise TargetError(f"folder '{folder}' holds several {split} image files "
                          f"({', '.join(sorted(distinct))}); give the one you mean as the target",
                          path=folder)
    (stem,) = distinct
    return os.path.join(folder, stem if stem in matches else stem + ".gz")


def load(path: str, split: str | None) -> Dataset:
    if os.path.isdir(path):
        images = _images_for_split(path, split or "test")
    elif split is not None:
        raise TargetError(f"--split applies to a folder of IDX files; '{path}' is one file. "
                          "Give the folder, or drop --split", path=path)
    else:
        images = path
    labels_file = labels_path(images)
    x, y = read_idx(images), read_idx(labels_file)
    if y.ndim != 1:
        raise TargetError(f"IDX labels file '{labels_file}' has shape {y.shape}; expected one "
                          "label per sample", path=labels_file)
    if len(x) != len(y):
        raise TargetError(f"'{images}' holds {len(x)} images but '{labels_file}' holds "
                          f"{len(y)} labels; the two files do not belong together", path=path)
    return Dataset(x=x, y=np.array(y), class_names=None, source=path)


register_reader("idx", sniff=sniff, load=load)
