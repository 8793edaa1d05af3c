"""Separable image resampling as matrix products, with Pillow's filters and anti-aliasing.

Resizing one axis from ``n_in`` to ``n_out`` samples is a linear map: an ``(n_out, n_in)``
weight matrix. A 2-D resize applies one matrix to the rows and one to the columns,
``out = R @ image @ C.T``, and a whole batch of images goes through each pass as one
matrix product. The weights are those of Pillow's ``Resample.c`` (``precompute_coeffs``),
which torchvision's ``Resize`` and ``torch.nn.functional.interpolate(antialias=True)``
reproduce:

- output sample ``j`` is centred at input coordinate ``c = (j + 0.5) * scale`` with
  ``scale = n_in / n_out``: pixel centres at half-pixel offsets (``align_corners=False``);
- input sample ``x`` gets the weight ``filter((x + 0.5 - c) / s)``, where ``s = scale``
  when shrinking with anti-aliasing (the filter is stretched, so every input pixel
  contributes: a low-pass filter before subsampling) and ``s = 1`` otherwise (plain
  interpolation, which skips pixels when shrinking, and aliases);
- weights of samples outside the image are dropped and each row is divided by its sum:
  edges are not padded, and a constant image stays constant.

Filters (Pillow's definitions): ``bilinear`` the triangle ``1 - |x|``; ``bicubic`` the
Keys cubic with ``a = -0.5``; ``lanczos`` the 3-lobed windowed sinc; ``box`` and
``hamming`` as Pillow. ``nearest`` copies the input sample ``floor((j + 0.5) * scale)``,
Pillow's nearest neighbour (torch's ``nearest-exact``), and is never anti-aliased.

Matrices are built once per (sizes, filter, crop) and cached. Rows that read only a
narrow band of the input (shrinking a large image) are applied in blocks that touch only
that band; selections (nearest, or a crop without resizing) are gathers, not products.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .choices import INTERPOLATIONS

# Pillow's resample codes, as HF preprocessor configs store them
PIL_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# filters with negative lobes: their output can leave the input's range (over- and undershoot)
OVERSHOOTING = ("bicubic", "lanczos")
_BLOCK_ROWS = 32       # output rows per block when a product reads a band of the input
_BAND_WORTH_IT = 0.5   # use blocks when they read under this fraction of the input...
_BAND_MIN_INPUT = 128  # ...and the input is long enough for the saving to beat the overhead


def _box(x):
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _hamming(x):
    x = np.abs(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        px = x * math.pi
        # Pillow writes the window's constants as C floats (0.54f, 0.46f)
        w = np.sin(px) / px * (float(np.float32(0.54)) + float(np.float32(0.46)) * np.cos(px))
    return np.where(x == 0.0, 1.0, np.where(x >= 1.0, 0.0, w))


def _bicubic(x, a=-0.5):
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _lanczos(x):
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3), 0.0)


_FILTERS = {"box": (_box, 0.5), "bilinear": (_triangle, 1.0), "hamming": (_hamming, 1.0),
            "bicubic": (_bicubic, 2.0), "lanczos": (_lanczos, 3.0)}


def weights(n_in: int, n_out: int, interpolation: str = "bilinear", antialias: bool = True,
            start: int = 0, length: int | None = None) -> np.ndarray:
    """The ``(length, n_in)`` float64 matrix of rows ``start:start+length`` of the map that
    resizes ``n_in`` samples to ``n_out`` (all ``n_out`` rows by default): a resize to
    ``n_out`` followed by a crop, computed together. Read-only and cached."""
    return _axis(int(n_in), int(n_out), interpolation, bool(antialias), int(start),
                 int(n_out - start if length is None else length), "float64").matrix


@dataclass(frozen=True)
class _Axis:
    """One axis's map, with the structure that makes applying it cheap."""

    matrix: np.ndarray            # (n_out, n_in), in the working dtype
    index: np.ndarray | None      # a selection: output j copies input index[j]
    blocks: tuple                 # (r0, r1, c0, c1): rows r0:r1 read only inputs c0:c1


@functools.lru_cache(maxsize=256)
def _axis(n_in: int, n_out: int, interpolation: str, antialias: bool, start: int, length: int,
          dtype: str) -> _Axis:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose from "
                         f"{', '.join(INTERPOLATIONS)}")
    if n_in < 1 or n_out < 1 or start < 0 or length < 1 or start + length > n_out:
        raise ValueError(f"bad resize {n_in} -> {n_out} rows {start}:{start + length}")
    rows = np.arange(start, start + length)
    if interpolation == "nearest":
        # exact integers: floor((j + 0.5) * n_in / n_out) without rounding error
        index = np.minimum((2 * rows + 1) * n_in // (2 * n_out), n_in - 1)
        matrix = np.zeros((length, n_in))
        matrix[np.arange(length), index] = 1.0
    else:
        matrix = _filter_matrix(n_in, n_out, interpolation, antialias, rows)
        one_hot = (np.count_nonzero(matrix, axis=1) == 1) & np.all(
            (matrix == 0.0) | (matrix == 1.0), axis=1)
        index = np.argmax(matrix, axis=1) if one_hot.all() else None
    matrix = matrix.astype(dtype)
    matrix.flags.writeable = False
    if index is not None:
        index.flags.writeable = False
    return _Axis(matrix, index, _blocks(matrix))


def _filter_matrix(n_in, n_out, interpolation, antialias, rows) -> np.ndarray:
    kernel, support = _FILTERS[interpolation]
    scale = n_in / n_out
    stretch = max(scale, 1.0) if antialias else 1.0
    support = support * stretch
    centre = (rows + 0.5) * scale
    # Pillow's bounds: (int)(centre -/+ support + 0.5), clamped to the image
    low = np.maximum(np.floor(centre - support + 0.5), 0)
    high = np.minimum(np.floor(centre + support + 0.5), n_in)
    x = np.arange(n_in, dtype=np.float64)
    inside = (x[None, :] >= low[:, None]) & (x[None, :] < high[:, None])
    w = np.where(inside, kernel((x[None, :] - centre[:, None] + 0.5) / stretch), 0.0)
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total != 0.0)


def _blocks(matrix: np.ndarray) -> tuple:
    """Row blocks with the input columns they read, or one block for the whole matrix
    when the band is too wide for blocks to save work."""
    n_out, n_in = matrix.shape
    nonzero = matrix != 0
    any_row = nonzero.any(axis=1)
    first = np.where(any_row, np.argmax(nonzero, axis=1), 0)
    last = np.where(any_row, n_in - np.argmax(nonzero[:, ::-1], axis=1), 0)
    blocks = []
    for r0 in range(0, n_out, _BLOCK_ROWS):
        r1 = min(n_out, r0 + _BLOCK_ROWS)
        blocks.append((r0, r1, int(first[r0:r1].min()), int(max(last[r0:r1].max(), 1))))
    read = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in blocks)
    if len(blocks) == 1 or n_in < _BAND_MIN_INPUT or read > _BAND_WORTH_IT * n_out * n_in:
        return ((0, n_out, 0, n_in),)
    return tuple(blocks)


class Resampler:
    """Resize ``(n_in_rows, n_in_cols)`` images to ``(rows.length, cols.length)``.

    ``rows``/``cols`` are ``(n_in, n_out, start, length)`` for each axis, or None to leave
    that axis alone; see :func:`weights`.
    """

    def __init__(self, rows, cols, interpolation: str = "bilinear", antialias: bool = True,
                 dtype=np.float32):
        name = np.dtype(dtype).name
        self.rows = None if rows is None else _axis(*map(int, rows[:2]), interpolation,
                                                    bool(antialias), *map(int, rows[2:]), name)
        self.cols = None if cols is None else _axis(*map(int, cols[:2]), interpolation,
                                                    bool(antialias), *map(int, cols[2:]), name)

    def planes(self, hnw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Resample planes given as one C-contiguous ``(H, n, W)`` array (rows first, then
        every plane, then columns) into ``out`` of shape ``(n, h, w)``."""
        n_rows, n, n_cols = hnw.shape
        if self.rows is not None:
            moved = np.empty((self.rows.matrix.shape[0], n * n_cols), dtype=out.dtype)
            _apply_rows(self.rows, hnw.reshape(n_rows, n * n_cols), moved)
            hnw = moved.reshape(-1, n, n_cols)
        if self.cols is None:
            out[...] = hnw.transpose(1, 0, 2)
            return out
        nhw = np.ascontiguousarray(hnw.transpose(1, 0, 2))
        _apply_cols(self.cols, nhw.reshape(-1, n_cols), out.reshape(-1, out.shape[-1]))
        return out


def _apply_rows(axis: _Axis, a: np.ndarray, out: np.ndarray) -> None:
    """``out = axis.matrix @ a`` for ``a`` of shape (n_in, m)."""
    if axis.index is not None:
        np.take(a, axis.index, axis=0, out=out)
        return
    for r0, r1, c0, c1 in axis.blocks:
        np.matmul(axis.matrix[r0:r1, c0:c1], a[c0:c1], out=out[r0:r1])


def _apply_cols(axis: _Axis, a: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ axis.matrix.T`` for ``a`` of shape (m, n_in)."""
    if axis.index is not None:
        np.take(a, axis.index, axis=1, out=out)
        return
    if len(axis.blocks) == 1:
        np.matmul(a, axis.matrix.T, out=out)
        return
    for r0, r1, c0, c1 in axis.blocks:
        out[:, r0:r1] = a[:, c0:c1] @ axis.matrix[r0:r1, c0:c1].T
