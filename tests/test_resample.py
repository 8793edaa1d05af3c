"""Resampling against trusted implementations: Pillow's Image.resize and torch's interpolate."""

from __future__ import annotations

import numpy as np
import pytest

from zooindex.adapt import Preprocessing, adapt
from zooindex.resample import INTERPOLATIONS, PIL_CODES, Resampler, weights

Image = pytest.importorskip("PIL.Image")

PIL_FILTER = {name: code for code, name in PIL_CODES.items()}
# (H, W) -> (h, w): enlarging, shrinking, both at once, one axis only, a large shrink that
# the blocked products handle, and odd ratios
SIZES = [((32, 32), (224, 224)), ((28, 28), (16, 16)), ((40, 30), (17, 23)),
         ((64, 64), (64, 100)), ((300, 200), (224, 224)), ((224, 224), (24, 24)),
         ((10, 10), (3, 7))]


def ties(n_in: int, n_out: int) -> bool:
    """Whether some output centre falls exactly on an input pixel boundary, where nearest
    neighbour has two answers: zooindex takes the exact upper one, Pillow and torch the
    one their floating-point rounding lands on."""
    return any((2 * j + 1) * n_in % (2 * n_out) == 0 for j in range(n_out))


def resized(images: np.ndarray, size, interpolation: str, antialias: bool = True,
            dtype=np.float64) -> np.ndarray:
    """(n, H, W) float images resized with zooindex.resample."""
    n, h_in, w_in = images.shape
    h, w = size
    resampler = Resampler((h_in, h, 0, h), (w_in, w, 0, w), interpolation, antialias, dtype)
    out = np.empty((n, h, w), dtype=dtype)
    return resampler.planes(np.ascontiguousarray(images.transpose(1, 0, 2), dtype=dtype), out)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_equals_pillow_on_float_images(size_in, size_out, interpolation):
    # Pillow's "F" mode resamples in double precision without rounding or clipping: the
    # same numbers up to float32 storage
    if interpolation == "nearest" and any(map(ties, size_in, size_out)):
        pytest.skip("nearest neighbour has ties at these sizes")
    rng = np.random.default_rng(0)
    images = rng.random((2,) + size_in).astype(np.float32)
    expected = np.stack([np.asarray(Image.fromarray(im, mode="F").resize(
        size_out[::-1], PIL_FILTER[interpolation])) for im in images])
    np.testing.assert_allclose(resized(images, size_out, interpolation), expected, atol=3e-7)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_adapted_rgb_uint8_images_equal_pillow_within_one_level(size_in, size_out,
                                                                interpolation):
    # Pillow resizes 8-bit images in two passes, rounding to 8 bits after each, so the
    # exact result (zooindex's) and Pillow's differ by up to about one level; rounded to 8
    # bits as Pillow stores it, zooindex's result is within one level (1/255) of Pillow's.
    # Mid-range pixels: Pillow also clips its intermediate pass to 0..255, which bicubic
    # overshoot on full-range noise would reach.
    rng = np.random.default_rng(1)
    x = rng.integers(64, 192, size=(3,) + size_in + (3,), dtype=np.uint8)
    expected = np.stack([np.asarray(Image.fromarray(im).resize(size_out[::-1],
                                                               PIL_FILTER[interpolation]))
                         for im in x]).astype(np.int64)
    out = adapt(x, [None, size_out[0], size_out[1], 3], np.float32,
                Preprocessing(layout="NHWC", interpolation=interpolation))
    assert np.abs(out * 255 - expected).max() <= 1.1
    assert np.abs(np.rint(out * 255) - expected).max() <= 1


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_equals_torch_interpolate_with_antialias(size_in, size_out, mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    images = rng.random((2,) + size_in)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images)[:, None], size=size_out, mode=mode, antialias=True,
        align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(resized(images, size_out, mode), expected, atol=1e-12)


@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_without_antialias_equals_torch_plain_bilinear(size_in, size_out):
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(3).random((2,) + size_in)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images)[:, None], size=size_out, mode="bilinear", antialias=False,
        align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(resized(images, size_out, "bilinear", antialias=False),
                               expected, atol=1e-12)


@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_nearest_equals_torch_nearest_exact(size_in, size_out):
    torch = pytest.importorskip("torch")
    if any(map(ties, size_in, size_out)):
        pytest.skip("nearest neighbour has ties at these sizes")
    images = np.random.default_rng(4).random((2,) + size_in)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(images)[:, None], size=size_out, mode="nearest-exact")[:, 0].numpy()
    np.testing.assert_array_equal(resized(images, size_out, "nearest"), expected)


def test_float32_work_matches_float64():
    images = np.random.default_rng(5).random((4, 300, 200))
    np.testing.assert_allclose(resized(images, (224, 224), "bicubic", dtype=np.float32),
                               resized(images, (224, 224), "bicubic"), atol=2e-6)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("antialias", [True, False])
def test_rows_sum_to_one_so_constants_stay_constant(interpolation, antialias):
    for n_in, n_out in [(7, 3), (3, 7), (512, 224), (1, 5), (5, 1)]:
        w = weights(n_in, n_out, interpolation, antialias)
        assert w.shape == (n_out, n_in)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)


def test_weights_by_hand():
    # 2 -> 4 bilinear: centres at (j + 0.5) / 2 = 0.25, 0.75, 1.25, 1.75 in input
    # coordinates, input pixel centres at 0.5 and 1.5; outside the image nothing is
    # padded: j=0 reads pixel 0 alone, j=1 is 3/4 of pixel 0 and 1/4 of pixel 1
    np.testing.assert_allclose(weights(2, 4, "bilinear"),
                               [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # 4 -> 2 box, anti-aliased: each output averages the two pixels under it
    np.testing.assert_allclose(weights(4, 2, "box"), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # nearest 4 -> 3: floor((j + 0.5) * 4/3) = floor(0.67), floor(2), floor(3.33)
    np.testing.assert_array_equal(weights(4, 3, "nearest"),
                                  [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    # a crop is rows of the full map: resizing 4 -> 8 and keeping rows 2:6
    np.testing.assert_array_equal(weights(4, 8, "bicubic", start=2, length=4),
                                  weights(4, 8, "bicubic")[2:6])
    assert not weights(4, 8).flags.writeable


def test_blocked_products_equal_the_dense_ones():
    # shrinking 512 -> 64 reads a narrow band per output row, so the products run in
    # blocks; the result must be the dense product's
    images = np.random.default_rng(6).random((3, 512, 480))
    dense = np.stack([weights(512, 64, "lanczos") @ im @ weights(480, 60, "lanczos").T
                      for im in images])
    np.testing.assert_allclose(resized(images, (64, 60), "lanczos"), dense, atol=1e-12)
