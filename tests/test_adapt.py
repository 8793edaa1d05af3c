"""Fitting target inputs to model inputs: small arrays with values worked out by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from zooindex.adapt import (METADATA_KEYS, Preprocessing, adapt, check_fit, input_layout,
                            model_dtype, resize)
from zooindex.errors import AdaptError

PLAIN = Preprocessing()


# -- layouts -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,expected", [
    ([1, 3, 224, 224], ("NCHW", 3, 224, 224)),
    (["N", 224, 224, 3], ("NHWC", 3, 224, 224)),
    ([None, 1, 28, 28], ("NCHW", 1, 28, 28)),
    ([None, 28, 28, 1], ("NHWC", 1, 28, 28)),
    ([1, 3, 3, 3], ("NCHW", 3, 3, 3)),              # ambiguous: NCHW
    ([1, 8, 8, 8], ("NCHW", 8, 8, 8)),              # neither dim is 1 or 3: NCHW
    (["N", "C", "H", "W"], ("NCHW", None, None, None)),
    ([None, 28, 28], ("NHW", 1, 28, 28)),
    (["batch", 784], ("vector", 784)),
    ([None, -1], ("vector", None)),
])
def test_input_layout_inference(shape, expected):
    assert input_layout(shape, PLAIN) == expected


def test_explicit_layout_overrides_inference():
    assert input_layout([1, 3, 3, 3], Preprocessing(layout="nhwc")) == ("NHWC", 3, 3, 3)


def test_unsupported_rank():
    with pytest.raises(AdaptError, match=r"shape \[1, 3, 8, 8, 8\].*image inputs"):
        input_layout([1, 3, 8, 8, 8], PLAIN)


# -- conversions ---------------------------------------------------------------------------

GREY = np.array([[[0, 51], [102, 255]]], dtype=np.uint8)  # one 2x2 image
# /255: 0 -> 0.0, 51 -> 0.2, 102 -> 0.4, 255 -> 1.0
GREY_01 = np.array([[0.0, 0.2], [0.4, 1.0]], dtype=np.float32)


def test_grey_to_single_channel_models():
    nchw = adapt(GREY, [None, 1, 2, 2], np.float32, PLAIN)
    assert nchw.shape == (1, 1, 2, 2) and nchw.dtype == np.float32
    np.testing.assert_allclose(nchw[0, 0], GREY_01, rtol=1e-6)
    nhwc = adapt(GREY, [None, 2, 2, 1], np.float32, PLAIN)
    np.testing.assert_allclose(nhwc[0, :, :, 0], GREY_01, rtol=1e-6)
    nhw = adapt(GREY, [None, 2, 2], np.float32, PLAIN)
    np.testing.assert_allclose(nhw[0], GREY_01, rtol=1e-6)


def test_grey_to_rgb_repeats_the_plane():
    out = adapt(GREY, [None, 3, 2, 2], "tensor(float)", PLAIN)
    assert out.shape == (1, 3, 2, 2)
    for channel in range(3):
        np.testing.assert_allclose(out[0, channel], GREY_01, rtol=1e-6)


def test_rgb_to_grey_uses_bt601_luminance():
    # pixels: pure red, pure green, pure blue, white
    rgb = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]]], np.uint8)
    out = adapt(rgb, [None, 1, 2, 2], np.float32, PLAIN)
    # 0.299 R + 0.587 G + 0.114 B with R, G, B in [0, 1]; white is 0.299+0.587+0.114 = 1
    np.testing.assert_allclose(out[0, 0], [[0.299, 0.587], [0.114, 1.0]], rtol=1e-6)


def test_channels_first_target_is_detected():
    chw = np.zeros((1, 3, 2, 2), np.uint8)
    chw[0, 0] = 255  # red plane full
    out = adapt(chw, [None, 2, 2, 3], np.float32, PLAIN)  # NHWC model
    np.testing.assert_allclose(out[0, :, :, 0], 1.0)
    np.testing.assert_allclose(out[0, :, :, 1:], 0.0)


def test_resize_of_a_constant_image_stays_constant():
    x = np.full((2, 5, 7, 3), 123, np.uint8)
    out = adapt(x, [None, 3, 16, 9], np.float32, PLAIN)
    assert out.shape == (2, 3, 16, 9)
    np.testing.assert_allclose(out, 123 / 255, rtol=1e-6)


def test_resize_is_bilinear_with_half_pixel_centres():
    # widening [0, 1] to 4 pixels: output pixel j samples the input at (j + 0.5) * 2/4 - 0.5
    # = -0.25, 0.25, 0.75, 1.25 -> clamped to 0, 0.25, 0.75, 1 (edges repeat), and linear
    # interpolation between 0 and 1 gives those same numbers
    row = np.array([[[[0.0], [1.0]]]], dtype=np.float32)  # (n=1, H=1, W=2, C=1)
    np.testing.assert_allclose(resize(row, 1, 4)[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0])
    # halving [0, 1, 2, 3]: output j samples at (j + 0.5) * 4/2 - 0.5 = 0.5 and 2.5, the
    # means of neighbouring pairs
    row = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(resize(row, 1, 2)[0, 0, :, 0], [0.5, 2.5])


def test_symbolic_dims_take_the_target_size():
    x = np.zeros((3, 5, 7), np.uint8)
    assert adapt(x, ["N", 3, "H", "W"], np.float32, PLAIN).shape == (3, 3, 5, 7)
    assert adapt(x, ["N", "C", "H", "W"], np.float32, PLAIN).shape == (3, 1, 5, 7)


def test_scale_mean_std_per_channel():
    # one pixel (255, 0, 51): /255 -> (1, 0, 0.2); *2 -> (2, 0, 0.4);
    # - mean (1, 0.5, 0) -> (1, -0.5, 0.4); / std (0.5, 0.25, 2) -> (2, -2, 0.2)
    x = np.array([[[[255, 0, 51]]]], np.uint8)
    prep = Preprocessing(scale=2, mean=(1, 0.5, 0), std=(0.5, 0.25, 2))
    out = adapt(x, [None, 3, 1, 1], np.float32, prep)
    np.testing.assert_allclose(out[0, :, 0, 0], [2.0, -2.0, 0.2], rtol=1e-6)


def test_scale_255_and_single_mean_std():
    # 255 -> 1 -> *255 = 255 -> (255 - 127.5) / 127.5 = 1; 0 -> -1
    prep = Preprocessing(scale=255, mean=127.5, std=127.5)
    out = adapt(np.array([[[0, 255]]], np.uint8), [None, 1, 1, 2], np.float32, prep)
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 1.0])


def test_float_targets_are_not_divided():
    x = np.array([[0.5, 2.0]], dtype=np.float64)
    np.testing.assert_allclose(adapt(x, [None, 2], np.float32, PLAIN), [[0.5, 2.0]])


@pytest.mark.parametrize("dtype", [np.float16, np.float64, "tensor(double)", 1, 11])
def test_cast_to_model_dtype(dtype):
    out = adapt(GREY, [None, 1, 2, 2], dtype, PLAIN)
    assert out.dtype == model_dtype(dtype) and out.flags.c_contiguous
    np.testing.assert_allclose(out[0, 0], GREY_01, rtol=1e-3)


def test_integer_models_get_pixels_0_to_255():
    out = adapt(GREY, [None, 2, 2, 1], "tensor(uint8)", PLAIN)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], GREY)


def test_model_dtype_refuses_non_numeric():
    with pytest.raises(AdaptError, match="not supported"):
        model_dtype("tensor(bool)")
    with pytest.raises(AdaptError, match="not a numeric tensor type"):
        model_dtype("tensor(string)")


def test_vector_models_flatten_images_of_the_right_size():
    out = adapt(GREY, [None, 4], np.float32, PLAIN)
    np.testing.assert_allclose(out, GREY_01.reshape(1, 4), rtol=1e-6)
    per_feature = Preprocessing(mean=(0, 0, 0, 1))
    np.testing.assert_allclose(adapt(GREY, [None, 4], np.float32, per_feature)[0, 3], 0.0)


# -- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("sample,model,message", [
    ((10,), [1, 3, 224, 224],
     "model expects 3-channel 224x224 images (NCHW); target has 10 features per sample"),
    ((28, 28), [None, 100],
     "model expects 100 features per sample; target has 1-channel 28x28 images (784 values)"),
    ((12,), [None, 10], "model expects 10 features per sample; target has 12 features per sample"),
    ((8, 8, 3), [None, 4, 8, 8],
     "model expects 4-channel 8x8 images (NCHW); target has 3-channel 8x8 images; only 1 and 3 "
     "channels convert into each other"),
    ((4, 4, 4, 4), [None, 3, 8, 8],
     "model expects 3-channel 8x8 images (NCHW); target has samples of shape (4, 4, 4, 4)"),
    ((10,), ["N", "C", "H", "W"],
     "model expects images of any size (NCHW); target has 10 features per sample"),
])
def test_adapt_errors_say_what_each_side_has(sample, model, message):
    with pytest.raises(AdaptError) as err:
        check_fit(sample, model, PLAIN)
    assert str(err.value) == message
    with pytest.raises(AdaptError):
        adapt(np.zeros((1,) + sample, np.uint8), model, np.float32, PLAIN)


def test_mean_length_must_match_channels():
    with pytest.raises(AdaptError, match="mean has 2 values but the model takes 3 channels"):
        check_fit((8, 8), [None, 3, 8, 8], Preprocessing(mean=(0.5, 0.5)))


def test_check_fit_accepts_what_adapt_can_do():
    for sample, model in [((28, 28), [None, 3, 224, 224]), ((32, 32, 3), [None, 1, 28, 28]),
                          ((3, 32, 32), [None, 224, 224, 3]), ((28, 28), [None, 784])]:
        check_fit(sample, model, PLAIN)
        out = adapt(np.zeros((2,) + sample, np.uint8), model, np.float32, PLAIN)
        assert out.shape[1:] == tuple(model[1:])


# -- Preprocessing -------------------------------------------------------------------------

IMAGENET = Preprocessing(layout="NCHW", scale=1.0, mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225))


def test_dict_round_trip():
    assert Preprocessing.from_dict(IMAGENET.to_dict()) == IMAGENET
    assert Preprocessing.from_dict(PLAIN.to_dict()) == PLAIN
    with pytest.raises(AdaptError, match="unknown preprocessing field.*colour; valid: layout"):
        Preprocessing.from_dict({"colour": "rgb"})


def test_metadata_round_trip_through_an_onnx_model():
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph)
    helper.set_model_props(model, IMAGENET.to_metadata())
    model = onnx.load_from_string(model.SerializeToString())
    props = {p.key: p.value for p in model.metadata_props}
    assert props[METADATA_KEYS["mean"]] == "0.485,0.456,0.406"
    assert Preprocessing.from_metadata(props) == IMAGENET


def test_from_metadata_ignores_other_keys_and_reports_bad_values():
    assert Preprocessing.from_metadata({"author": "x", "zooindex.scale": "255"}) == \
        Preprocessing(scale=255.0)
    with pytest.raises(AdaptError, match=r"zooindex.mean='a,b' is not valid; expected comma"):
        Preprocessing.from_metadata({"zooindex.mean": "a,b"})
    with pytest.raises(AdaptError, match="unknown layout 'CHWN'"):
        Preprocessing.from_metadata({"zooindex.layout": "CHWN"})


def test_merged_lets_set_fields_override():
    base = Preprocessing(layout="NHWC", scale=255.0, mean=(0.5,))
    merged = base.merged(Preprocessing(mean=(0.1, 0.2, 0.3), std=(2.0,)))
    assert merged == Preprocessing(layout="NHWC", scale=255.0, mean=(0.1, 0.2, 0.3), std=(2.0,))
    assert base.merged(PLAIN) == base and base.merged(None) == base


def test_key_is_stable_and_tracks_every_field():
    assert IMAGENET.key() == Preprocessing.from_dict(IMAGENET.to_dict()).key()
    assert len(IMAGENET.key()) == 16
    variants = [PLAIN, Preprocessing(layout="NHWC"), Preprocessing(scale=255.0),
                Preprocessing(mean=(0.5,)), Preprocessing(std=(0.5,)), IMAGENET]
    assert len({p.key() for p in variants}) == len(variants)
    # one number and a one-element tuple are the same preprocessing
    assert Preprocessing(mean=0.5).key() == Preprocessing(mean=(0.5,)).key()


def test_invalid_preprocessing():
    with pytest.raises(AdaptError, match="std 1.0,0.0 must be positive"):
        Preprocessing(std=(1, 0))
    with pytest.raises(AdaptError, match="scale must be a number"):
        Preprocessing(scale="big")
    with pytest.raises(AdaptError, match="scale must be finite"):
        Preprocessing(scale=float("nan"))
