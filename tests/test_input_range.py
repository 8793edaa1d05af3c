"""What a target's stored numbers are: decided once per target, then applied to every batch."""

from __future__ import annotations

import numpy as np
import pytest

from zooindex import target as target_mod
from zooindex.adapt import Preprocessing, adapt
from zooindex.errors import TargetError
from zooindex.target import detect_input_range, fingerprint, load_target

MODEL = [None, 3, 16, 16]
PREP = Preprocessing(preset="imagenet")


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8), np.arange(40) % 4


def adapted(tgt) -> np.ndarray:
    return adapt(tgt.x, MODEL, np.float32, PREP, input_range=tgt.input_range)


def test_float_copies_of_uint8_images_adapt_exactly_alike(images):
    x, y = images
    reference = load_target(x=x, y=y)
    assert (reference.input_range, reference.input_note) == ("0-255", None)
    for dtype in (np.float32, np.float64, np.int64):
        tgt = load_target(x=x.astype(dtype), y=y)
        assert tgt.input_range == "0-255"
        np.testing.assert_array_equal(adapted(tgt), adapted(reference))
    note = load_target(x=x.astype(np.float32), y=y).input_note
    assert note == ("inputs are float32 from 0 to 255: taken as 0..255 pixels and divided by "
                    "255 like uint8 images; pass --input-range 0-1 to use them as stored")


def test_floats_in_0_1_are_used_as_stored(images):
    x, y = images
    tgt = load_target(x=x.astype(np.float32) / 255, y=y)
    assert (tgt.input_range, tgt.input_note) == ("0-1", None)
    np.testing.assert_allclose(adapted(tgt), adapted(load_target(x=x, y=y)), atol=1e-5)


def test_the_range_is_decided_over_the_whole_target_not_per_batch(images, monkeypatch):
    x, y = images
    x = x.astype(np.float32)
    x[:20] = np.minimum(x[:20], 1.0)  # the first batches alone would look like [0, 1]
    monkeypatch.setattr(target_mod, "_CHUNK_VALUES", 12 * 12 * 3 * 4)  # 4 samples a chunk
    tgt = load_target(x=x, y=y)
    assert tgt.input_range == "0-255"
    whole = adapt(x, MODEL, np.float32, PREP, input_range=tgt.input_range)
    batches = np.concatenate([adapt(x[s:s + 8], MODEL, np.float32, PREP,
                                    input_range=tgt.input_range) for s in range(0, 40, 8)])
    # (the matrix products may round the last bit differently for other batch sizes)
    np.testing.assert_allclose(batches, whole, atol=1e-6)
    # each batch deciding for itself would have left the dark first half undivided
    alone = detect_input_range(x[:8])[0]
    assert alone == "0-1"


def test_memory_mapped_targets_are_read_a_chunk_at_a_time(images, tmp_path, monkeypatch):
    x, y = images
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    seen = []
    blocks = target_mod._row_blocks

    def counting(inputs):
        for block in blocks(inputs):
            seen.append(len(block))
            yield block

    monkeypatch.setattr(target_mod, "_CHUNK_VALUES", 12 * 12 * 3 * 5)
    monkeypatch.setattr(target_mod, "_row_blocks", counting)
    assert detect_input_range(mapped)[0] == "0-255"
    assert seen == [5] * 8  # one pass, 5 samples at a time


@pytest.mark.parametrize("x,expected", [
    # flattened pixels stored as floats (OpenML's mnist_784): whole numbers, 0..255
    (np.tile(np.arange(0, 256, dtype=np.float64), (8, 4))[:, :784], "0-255"),
    # features that happen to lie in 0..255 but are not whole numbers: used as stored
    (np.linspace(0.1, 7.9, 32).reshape(8, 4), None),
    # normalised images, and 16-bit images: neither range
    (np.linspace(-1.5, 2.5, 8 * 64).reshape(8, 8, 8), None),
    (np.linspace(0, 65535, 8 * 64).reshape(8, 8, 8), None),
])
def test_detection_rules(x, expected):
    assert detect_input_range(x)[0] == expected


def test_notes_say_what_was_assumed():
    # image-shaped numbers outside both ranges: said, since they may be pixels after all
    _, note = detect_input_range(np.linspace(-1.5, 2.5, 8 * 64).reshape(8, 8, 8))
    assert note == ("inputs are float64 from -1.5 to 2.5, neither 0..1 nor 0..255 pixels: "
                    "used as stored; pass --input-range 0-255 or 0-1 if they are pixels")
    # feature vectors: nothing to say
    assert detect_input_range(np.linspace(-3, 3, 32).reshape(8, 4)) == (None, None)


def test_an_explicit_range_wins_and_is_part_of_the_key(images):
    x, y = images
    floats = x.astype(np.float32)
    detected = load_target(x=floats, y=y)
    stored = load_target(x=floats, y=y, input_range="0-1")
    assert (stored.input_range, stored.input_note) == ("0-1", None)
    assert stored.key != detected.key
    # without an explicit range the key is what it always was: the range is a function of
    # the bytes, which the key already hashes
    codes = np.unique(y, return_inverse=True)[1].astype(np.int64)
    assert detected.key == fingerprint(floats, codes, tuple(range(4)),
                                       {"classes": None, "limit": None, "seed": None})
    with pytest.raises(TargetError, match="input range '0-100' is not one of: 0-1, 0-255"):
        load_target(x=floats, y=y, input_range="0-100")


def test_nan_is_still_refused_while_detecting(images):
    x, y = images
    x = x.astype(np.float32)
    x[7, 3, 3, 1] = np.nan
    with pytest.raises(TargetError, match="NaN or inf at sample 7"):
        load_target(x=x, y=y)
