"""Fitting target inputs to model inputs: small arrays with values worked out by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from zooindex.adapt import (METADATA_KEYS, Preprocessing, adapt, check_fit, describe_fit,
                            input_layout, model_dtype, resize)
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
    # halving [0, 1, 2, 3] without anti-aliasing: output j samples at (j + 0.5) * 4/2 - 0.5
    # = 0.5 and 2.5, the means of neighbouring pairs
    row = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(resize(row, 1, 2, antialias=False)[0, 0, :, 0], [0.5, 2.5])


def test_shrinking_is_anti_aliased_by_default():
    # halving [0, 1, 2, 3] with anti-aliasing: the triangle is stretched by the factor 2, so
    # output j (centred at input coordinate c = (j + 0.5) * 2) weighs input x by
    # 1 - |x + 0.5 - c| / 2 over |x + 0.5 - c| < 2, renormalised:
    # j=0 (c=1): x=0,1,2 weigh 0.75, 0.75, 0.25 -> (0 + 0.75 + 0.5) / 1.75 = 5/7
    # j=1 (c=3): x=1,2,3 weigh 0.25, 0.75, 0.75 -> (0.25 + 1.5 + 2.25) / 1.75 = 16/7
    row = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(resize(row, 1, 2)[0, 0, :, 0], [5 / 7, 16 / 7], rtol=1e-6)
    # enlarging is the same either way: the filter only widens when shrinking
    up = np.array([[[[0.0], [1.0]]]], dtype=np.float32)
    np.testing.assert_array_equal(resize(up, 1, 4), resize(up, 1, 4, antialias=False))


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
     "model expects 3-channel 224x224 images (NCHW); target has 10 features per sample; "
     "flattened images fit when a sample has 224*224 = 50176 values (grey) or 150528 (RGB, "
     "in H, W, C order), otherwise reshape the inputs to (N, H, W) or (N, H, W, 3)"),
    ((28, 28), [None, 100],
     "model expects 100 features per sample; target has 1-channel 28x28 images (784 values)"),
    ((12,), [None, 10], "model expects 10 features per sample; target has 12 features per sample"),
    ((8, 8, 3), [None, 4, 8, 8],
     "model expects 4-channel 8x8 images (NCHW); target has 3-channel 8x8 images; only 1 and 3 "
     "channels convert into each other"),
    ((4, 4, 4, 4), [None, 3, 8, 8],
     "model expects 3-channel 8x8 images (NCHW); target has samples of shape (4, 4, 4, 4)"),
    ((10,), ["N", "C", "H", "W"],
     "model expects images of any size (NCHW); target has 10 features per sample; give image "
     "samples: reshape the inputs to (N, H, W) or (N, H, W, 3)"),
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


# -- resize, crop and presets ----------------------------------------------------------------

def test_new_fields_are_validated_and_normalised():
    prep = Preprocessing(interpolation="BICUBIC", antialias="false", crop="Center",
                         crop_pct="0.9", input_size="224x320")
    assert (prep.interpolation, prep.antialias, prep.crop, prep.crop_pct, prep.input_size) == \
        ("bicubic", False, "center", 0.9, (224, 320))
    assert Preprocessing(resize_size=256).resize_size == (256, 256)
    assert Preprocessing(resize_size=[256, 320]).resize_size == (256, 320)
    for kwargs, message in [
            ({"interpolation": "cubic"}, "unknown interpolation 'cubic'; choose from: bilinear"),
            ({"crop": "random"}, "unknown crop 'random'; choose from: none, center, squash"),
            ({"crop_pct": 1.2}, r"crop_pct 1.2 must be in \(0, 1\]"),
            ({"crop_pct": 0}, r"must be in \(0, 1\]"),
            ({"antialias": "maybe"}, "antialias must be true or false"),
            ({"resize_size": (256, 0)}, "resize_size .* must be one positive whole number"),
            ({"input_size": "big"}, "input_size 'big' must be"),
            ({"crop": "none", "crop_pct": 0.9}, "crop_pct needs a crop, but crop is 'none'"),
            ({"crop_pct": 0.9, "resize_size": 256}, "give crop_pct or resize_size, not both"),
            ({"preset": "vgg"}, "unknown preset 'vgg'; choose from: imagenet, clip, inception")]:
        with pytest.raises(AdaptError, match=message):
            Preprocessing(**kwargs)


def test_presets_fill_what_is_not_given():
    imagenet = Preprocessing(preset="imagenet")
    assert imagenet == Preprocessing(scale=1.0, mean=(0.485, 0.456, 0.406),
                                     std=(0.229, 0.224, 0.225), interpolation="bilinear",
                                     crop="center", crop_pct=0.875)
    clip = Preprocessing(preset="CLIP", crop_pct=0.9)  # an explicit field wins
    assert clip.mean == (0.48145466, 0.4578275, 0.40821073)
    assert (clip.interpolation, clip.crop, clip.crop_pct) == ("bicubic", "center", 0.9)
    assert Preprocessing(preset="inception").std == (0.5, 0.5, 0.5)
    # a preset is not a stored field: what it filled in is
    assert "preset" not in imagenet.to_dict()
    assert Preprocessing.from_dict({"preset": "imagenet"}) == imagenet
    # a size or crop given explicitly keeps the preset's crop_pct out of the way
    assert Preprocessing(preset="imagenet", resize_size=256).crop_pct is None
    assert Preprocessing(preset="imagenet", crop="none").crop_pct is None


FULL = Preprocessing(layout="NHWC", scale=255.0, mean=(0.5,), std=(0.25,),
                     interpolation="bicubic", antialias=False, crop="squash", crop_pct=0.9,
                     input_size=(224, 192))


def test_new_fields_round_trip_through_dict_and_onnx_metadata():
    sized = replace(FULL, crop_pct=None, resize_size=(256, 230))
    for prep in (FULL, sized, Preprocessing(preset="clip")):
        assert Preprocessing.from_dict(prep.to_dict()) == prep
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
        model = helper.make_model(graph)
        helper.set_model_props(model, prep.to_metadata())
        model = onnx.load_from_string(model.SerializeToString())
        assert Preprocessing.from_metadata({p.key: p.value for p in model.metadata_props}) == prep
    assert FULL.to_metadata()["zooindex.antialias"] == "false"
    assert sized.to_metadata()["zooindex.resize_size"] == "256,230"
    # what an exporter may write by hand reads back too
    assert Preprocessing.from_metadata({"zooindex.preset": "imagenet",
                                        "zooindex.resize_size": "232"}) == \
        Preprocessing(preset="imagenet", resize_size=232)
    with pytest.raises(AdaptError, match="zooindex.crop_pct='wide' is not valid; expected a "
                                         "number in"):
        Preprocessing.from_metadata({"zooindex.crop_pct": "wide"})


def test_merged_keeps_one_way_of_sizing_the_crop():
    hub = Preprocessing(crop="center", resize_size=(256, 256), interpolation="bicubic")
    # the user's crop_pct replaces the hub's resize size, and keeps its crop and filter
    user = hub.merged(Preprocessing(crop_pct=0.95))
    assert (user.crop, user.crop_pct, user.resize_size, user.interpolation) == \
        ("center", 0.95, None, "bicubic")
    assert Preprocessing(crop_pct=0.9).merged(Preprocessing(resize_size=300)).crop_pct is None
    # crop none drops both sizes
    flat = Preprocessing(preset="imagenet").merged(Preprocessing(crop="none"))
    assert (flat.crop, flat.crop_pct, flat.resize_size) == ("none", None, None)
    assert flat.mean == (0.485, 0.456, 0.406)
    # a preset given by the user overrides every field it covers
    assert hub.merged(Preprocessing(preset="clip")).interpolation == "bicubic"
    assert hub.merged(Preprocessing(preset="none")).crop == "none"


def test_key_changes_with_every_new_field_and_not_with_spelling():
    variants = [PLAIN, Preprocessing(interpolation="bicubic"), Preprocessing(antialias=False),
                Preprocessing(crop="center"), Preprocessing(crop="squash"),
                Preprocessing(crop_pct=0.875), Preprocessing(resize_size=256),
                Preprocessing(resize_size=(256, 300)), Preprocessing(input_size=224),
                Preprocessing(preset="imagenet"), Preprocessing(preset="clip")]
    assert len({p.key() for p in variants}) == len(variants)
    # the same adapting, said differently, is the same key
    same = [(PLAIN, Preprocessing(interpolation="bilinear", antialias=True, crop="none")),
            (Preprocessing(crop="center"), Preprocessing(crop_pct=1.0)),
            (Preprocessing(crop="center", crop_pct=0.9), Preprocessing(crop_pct=0.9)),
            (Preprocessing(preset="imagenet"), Preprocessing.from_dict(
                Preprocessing(preset="imagenet").to_dict()))]
    for a, b in same:
        assert a.key() == b.key()


def test_describe_says_what_is_applied():
    assert PLAIN.describe() == "bilinear (anti-aliased) resize to the model's size; no mean/std"
    assert Preprocessing(preset="imagenet").describe([None, 3, 224, 224]) == (
        "bilinear (anti-aliased) resize of the shorter side to 256, centre crop 224x224; "
        "scale 1, mean 0.485,0.456,0.406, std 0.229,0.224,0.225 (imagenet)")
    assert Preprocessing(preset="clip").describe() == (
        "bicubic (anti-aliased) resize of the shorter side to the model's size, centre crop; "
        "scale 1, mean 0.48145466,0.4578275,0.40821073, std 0.26862954,0.26130258,0.27577711 "
        "(clip)")
    assert FULL.describe() == (
        "bicubic (not anti-aliased) resize to size/0.9, centre crop to the model's size; "
        "scale 255, mean 0.5, std 0.25; layout NHWC; input 224x192 where the model leaves "
        "it open")
    assert Preprocessing(resize_size=(256, 320), crop="squash",
                         interpolation="nearest").describe(["N", 3, "H", "W"]) == \
        "nearest resize to 256x320, centre crop to the model's size; no mean/std"


@pytest.mark.parametrize("sample,model,prep,text", [
    ((32, 32, 3), [None, 1, 28, 28], PLAIN,
     "RGB to grey, 32x32 resized to 28x28 (bilinear, anti-aliased)"),
    ((28, 28), [None, 3, 224, 224], PLAIN, "grey to RGB, 28x28 resized to 224x224 (bilinear)"),
    ((784,), [None, 1, 28, 28], PLAIN, "784 values reshaped to 28x28 grey"),
    ((192,), [None, 3, 8, 8], PLAIN, "192 values reshaped to 8x8 RGB (H, W, C order)"),
    ((28, 28), [None, 1, 28, 28], PLAIN, ""),
    ((300, 400, 3), [None, 3, 224, 224], Preprocessing(preset="clip"),
     "300x400 resized to 224x298 (bicubic, anti-aliased), centre crop 224x224"),
    ((256, 256, 3), [None, 3, 224, 224], Preprocessing(resize_size=256),
     "256x256 kept, centre crop 224x224"),
    ((64, 64), [None, 1, 16, 16], Preprocessing(antialias=False),
     "64x64 resized to 16x16 (bilinear, not anti-aliased)"),
    ((28, 28), [None, 784], PLAIN, "1-channel 28x28 images flattened to 784 features"),
    ((784,), [None, 784], PLAIN, ""),
])
def test_describe_fit_says_in_one_line_what_happens(sample, model, prep, text):
    assert describe_fit(sample, model, prep) == text


def test_center_crop_by_hand():
    # a 4x6 image to a 2x2 model, shorter side resized to 2 (aspect kept: 2x3), nearest:
    # rows floor((i + 0.5) * 2) = 1, 3 and columns floor((j + 0.5) * 2) = 1, 3, 5; the
    # centre 2x2 starts at column round((3 - 2) / 2) = round(0.5) = 0 (torchvision's
    # rounding, half to even), so columns 1 and 3 are kept
    x = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    prep = Preprocessing(crop="center", interpolation="nearest")
    out = adapt(x, [None, 1, 2, 2], np.float32, prep)
    np.testing.assert_array_equal(out[0, 0], x[0][[1, 3]][:, [1, 3]])
    # squash: both sides to 4 (a 4x4 grid from the 4x6 image), then the centre 2x2 from
    # (1, 1): rows 1, 2 and columns floor((j + 0.5) * 1.5) for j = 1, 2, i.e. 2 and 3
    squash = Preprocessing(crop="squash", resize_size=4, interpolation="nearest")
    np.testing.assert_array_equal(adapt(x, [None, 1, 2, 2], np.float32, squash)[0, 0],
                                  x[0][[1, 2]][:, [2, 3]])
    # crop_pct 0.5: resize to floor(2 / 0.5) = 4, crop 2: the middle of a 4x4 resize
    pct = Preprocessing(crop_pct=0.5, interpolation="nearest")
    square = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    # 8 -> 4 nearest takes floor((j + 0.5) * 2) = 1, 3, 5, 7; the centre keeps 3 and 5
    np.testing.assert_array_equal(adapt(square, [None, 1, 2, 2], np.float32, pct)[0, 0],
                                  square[0][[3, 5]][:, [3, 5]])


def test_crop_without_resize_is_a_plain_cut():
    x = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    out = adapt(x, [None, 3, 224, 224], np.float32, Preprocessing(resize_size=256))
    # round((256 - 224) / 2) = 16
    np.testing.assert_allclose(out, x[:, 16:240, 16:240].transpose(0, 3, 1, 2) / 255,
                               rtol=1e-6)


def test_input_size_sizes_symbolic_models_only():
    x = np.zeros((2, 32, 32), np.uint8)
    sized = Preprocessing(input_size=(24, 20))
    assert adapt(x, ["N", 1, "H", "W"], np.float32, sized).shape == (2, 1, 24, 20)
    assert adapt(x, ["N", 1, 16, 16], np.float32, sized).shape == (2, 1, 16, 16)
    assert adapt(x, ["N", 1, "H", "W"], np.float32, PLAIN).shape == (2, 1, 32, 32)


def test_bicubic_overshoot_is_clipped_for_pixels_only():
    # a hard edge enlarged with bicubic rings past 0 and 1 (the cubic's negative lobes); an
    # 8-bit pipeline clips that, so uint8 pixels (and declared pixel ranges) are clipped,
    # in normalised units
    edge = np.zeros((1, 8, 8), np.uint8)
    edge[:, :, 4:] = 255
    prep = Preprocessing(interpolation="bicubic", mean=0.5, std=0.5)  # [0, 1] -> [-1, 1]
    out = adapt(edge, [None, 1, 32, 32], np.float32, prep)
    assert out.min() == -1.0 and out.max() == 1.0
    floats = edge.astype(np.float32) / 255
    assert adapt(floats, [None, 1, 32, 32], np.float32, prep, input_range="0-1").max() == 1.0
    # numbers that are not known to be pixels are resampled as they are
    assert adapt(floats, [None, 1, 32, 32], np.float32, prep).max() > 1.0


def test_grey_to_rgb_resized_normalises_each_channel():
    x = np.random.default_rng(1).integers(0, 256, (3, 10, 10), dtype=np.uint8)
    prep = Preprocessing(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    out = adapt(x, [None, 3, 20, 20], np.float32, prep)
    plane = resize(x[..., None].astype(np.float32) / 255, 20, 20)[..., 0]
    for c, (m, s) in enumerate(zip(prep.mean, prep.std)):
        np.testing.assert_allclose(out[:, c], (plane - m) / s, atol=2e-6)


def test_float64_models_are_adapted_in_float64():
    x = np.random.default_rng(2).integers(0, 256, (2, 9, 9, 3), dtype=np.uint8)
    prep = Preprocessing(preset="imagenet")
    out64 = adapt(x, [None, 3, 16, 16], np.float64, prep)
    out32 = adapt(x, [None, 3, 16, 16], np.float32, prep)
    assert out64.dtype == np.float64 and out32.dtype == np.float32
    assert 0 < np.abs(out64 - out32).max() < 1e-5  # the same numbers, at two precisions


def legacy(x, scale=None, mean=None, std=None):
    """adapt() before resizing was reworked, for unresized uint8 images, op by op."""
    data = x.astype(np.float32)
    data /= 255.0
    if scale is not None and scale != 1.0:
        data = data * np.float32(scale)
    if mean is not None:
        data = data - np.asarray(mean, dtype=np.float32)
    if std is not None:
        data = data / np.asarray(std, dtype=np.float32)
    return data


@pytest.mark.parametrize("prep", [PLAIN, Preprocessing(scale=255.0, mean=(123.7, 116.3, 103.5),
                                                       std=(58.4, 57.1, 57.4)),
                                  Preprocessing(mean=(0.485, 0.456, 0.406),
                                                std=(0.229, 0.224, 0.225))])
def test_unresized_uint8_images_are_bit_for_bit_as_before(prep):
    x = np.random.default_rng(3).integers(0, 256, (4, 7, 5, 3), dtype=np.uint8)
    expected = legacy(x, prep.scale, prep.mean, prep.std)
    np.testing.assert_array_equal(adapt(x, [None, 7, 5, 3], np.float32, prep), expected)
    np.testing.assert_array_equal(adapt(x, [None, 3, 7, 5], np.float32, prep),
                                  expected.transpose(0, 3, 1, 2))


# -- inputs users trip over ------------------------------------------------------------------

def test_float_pixels_declared_0_255_adapt_like_uint8():
    x = np.random.default_rng(4).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    prep = Preprocessing(mean=0.45, std=0.226, interpolation="bicubic", crop_pct=0.875)
    for model in ([None, 3, 12, 12], [None, 3, 24, 24], [None, 1, 12, 12]):
        as_uint8 = adapt(x, model, np.float32, prep)
        for dtype in (np.float32, np.float64, np.int64):
            np.testing.assert_array_equal(
                adapt(x.astype(dtype), model, np.float32, prep, input_range="0-255"), as_uint8)
    # declared 0-1: even uint8 numbers are used as stored
    np.testing.assert_array_equal(adapt(GREY, [None, 1, 2, 2], np.float32, PLAIN,
                                        input_range="0-1")[0, 0], GREY[0])
    with pytest.raises(AdaptError, match="input_range '0-100' is not one of: 0-1, 0-255"):
        adapt(GREY, [None, 1, 2, 2], np.float32, PLAIN, input_range="0-100")


def test_flattened_images_are_reshaped_for_image_models():
    images = np.random.default_rng(5).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    flat = images.reshape(4, 784)
    for model in ([None, 1, 28, 28], [None, 28, 28, 1], [None, 28, 28], [None, 3, 28, 28]):
        check_fit((784,), model, PLAIN)
        np.testing.assert_array_equal(adapt(flat, model, np.float32, PLAIN),
                                      adapt(images, model, np.float32, PLAIN))
    # RGB flattened in H, W, C order (as the readers store it) to an RGB model
    rgb = np.random.default_rng(6).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(adapt(rgb.reshape(2, -1), [None, 3, 8, 8], np.float32, PLAIN),
                                  adapt(rgb, [None, 3, 8, 8], np.float32, PLAIN))
    # symbolic sizes take input_size
    np.testing.assert_array_equal(
        adapt(flat, ["N", 1, "H", "W"], np.float32, Preprocessing(input_size=28)),
        adapt(images, [None, 1, 28, 28], np.float32, PLAIN))


@pytest.mark.parametrize("size,model,hint", [
    (784, [None, 1, 32, 32], "32*32 = 1024 values (grey) or 3072 (RGB, in H, W, C order), "
                             "otherwise reshape the inputs to (N, H, W) or (N, H, W, 3), "
                             "e.g. x.reshape(-1, 28, 28)"),
    (3072, ["N", 3, "H", "W"], "give image samples: reshape the inputs to (N, H, W) or "
                               "(N, H, W, 3), e.g. x.reshape(-1, 32, 32, 3)"),
    (1000, [None, 1, 28, 28], "otherwise reshape the inputs to (N, H, W) or (N, H, W, 3)"),
])
def test_flattened_images_that_do_not_fit_say_how_to_reshape(size, model, hint):
    with pytest.raises(AdaptError) as err:
        check_fit((size,), model, PLAIN)
    assert str(err.value).endswith(hint)
    assert f"target has {size} features per sample" in str(err.value)
