"""Channel order: BGR models get the target's channels reversed before mean and std.

A tiny ONNX model outputs the mean of its input's channel 0, so its feature tells which
channel arrived first and how it was normalised.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import zooindex
from zooindex.adapt import Preprocessing, adapt, describe_fit
from zooindex.errors import AdaptError
from zooindex.export import stamp
from zooindex.hubconfig import from_hf_preprocessor_config

# pixels of every sample: R 255, G 0, B 51 (0.2 in [0, 1]), constant over the image
RGB = (255, 0, 51)
# mean/std in the model's own order (B, G, R) when the model is BGR
MEAN, STD = (0.1, 0.2, 0.3), (0.5, 1.0, 1.0)
# what channel 0 of the model holds after normalising:
#   BGR, reversed before mean/std: (0.2 - 0.1) / 0.5 = 0.2
#   RGB (no reversal):             (1.0 - 0.1) / 0.5 = 1.8
#   reversed after mean/std:       (0.2 - 0.3) / 1.0 = -0.1 (the wrong order)
BGR_CHANNEL0, RGB_CHANNEL0 = 0.2, 1.8
TOL = 1e-6  # float32 arithmetic on numbers of order 1


def channel0_model(channels=3, size=4) -> onnx.ModelProto:
    """x (N, C, size, size) -> per-channel means -> channel 0 (N, 1) -> logits (N, 2)."""
    pick = np.zeros((channels, 1), np.float32)
    pick[0, 0] = 1.0
    inits = [numpy_helper.from_array(pick, "W0"),
             numpy_helper.from_array(np.zeros(1, np.float32), "b0"),
             numpy_helper.from_array(np.array([[1.0, -1.0]], np.float32), "W1"),
             numpy_helper.from_array(np.zeros(2, np.float32), "b1")]
    nodes = [helper.make_node("ReduceMean", ["x"], ["means"], axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["means", "W0", "b0"], ["channel0"]),
             helper.make_node("Gemm", ["channel0", "W1", "b1"], ["logits"])]
    graph = helper.make_graph(
        nodes, "channel0",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model


def images(n=4, size=4, form="HWC") -> np.ndarray:
    x = np.empty((n, size, size, 3), np.uint8)
    x[...] = RGB
    return x if form == "HWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, x=images(), y=np.array([0, 0, 1, 1]))
    return path


def _features(target, index, model="m") -> np.ndarray:
    return zooindex.features(target, model, index=index, layer="channel0")


# -- adapting ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["HWC", "CHW"])
@pytest.mark.parametrize("size", [4, 8])  # 8: resized to the model's 4x4 on the way
def test_bgr_reverses_the_channels_before_mean_and_std(form, size):
    prep = Preprocessing(channels="bgr", mean=MEAN, std=STD)
    out = adapt(images(size=size, form=form), [None, 3, 4, 4], "float32", prep)
    # channel c of the model: (pixel of (B, G, R)[c] - MEAN[c]) / STD[c]
    want = [(51 / 255 - 0.1) / 0.5, (0.0 - 0.2) / 1.0, (1.0 - 0.3) / 1.0]
    np.testing.assert_allclose(out.mean(axis=(2, 3)), np.tile(want, (4, 1)), atol=TOL)
    rgb = adapt(images(size=size, form=form), [None, 3, 4, 4], "float32",
                Preprocessing(mean=MEAN, std=STD))
    np.testing.assert_allclose(rgb[:, 0], RGB_CHANNEL0, atol=TOL)


def test_bgr_in_a_channels_last_model():
    out = adapt(images(), [None, 4, 4, 3], "float32", Preprocessing(channels="bgr"))
    np.testing.assert_allclose(out[0, 0, 0], [0.2, 0.0, 1.0], atol=TOL)


def test_a_grey_target_is_the_same_in_either_order():
    grey = np.full((2, 4, 4), 128, np.uint8)
    a = adapt(grey, [None, 3, 4, 4], "float32", Preprocessing(channels="bgr"))
    b = adapt(grey, [None, 3, 4, 4], "float32", Preprocessing())
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [[None, 1, 4, 4], [None, 4, 4], [None, 16]])
def test_bgr_is_refused_for_inputs_without_colour_channels(shape):
    with pytest.raises(AdaptError, match="no colour channels"):
        adapt(np.zeros((2, 4, 4), np.uint8), shape, "float32", Preprocessing(channels="bgr"))
    # rgb is the default order: saying it changes nothing, for any input
    adapt(np.zeros((2, 4, 4), np.uint8), shape, "float32", Preprocessing(channels="rgb"))


def test_channels_is_validated_normalised_and_described():
    assert Preprocessing(channels=" BGR ").channels == "bgr"
    with pytest.raises(AdaptError, match="choose from: rgb, bgr"):
        Preprocessing(channels="grb")
    assert "RGB to BGR" in describe_fit((4, 4, 3), [None, 3, 8, 8],
                                        Preprocessing(channels="bgr"))
    assert "channels BGR" in Preprocessing(channels="bgr").describe([None, 3, 4, 4])
    assert "BGR" not in Preprocessing().describe([None, 3, 4, 4])


def test_the_key_changes_for_bgr_only():
    # a BGR model's cached activations are not an RGB model's; RGB keeps the key it had
    assert Preprocessing(channels="bgr").key() != Preprocessing().key()
    assert Preprocessing(channels="rgb").key() == Preprocessing().key()


def test_metadata_round_trip():
    prep = Preprocessing(channels="bgr", mean=MEAN)
    assert prep.to_metadata()["zooindex.channels"] == "bgr"
    assert Preprocessing.from_metadata(prep.to_metadata()) == prep
    with pytest.raises(AdaptError, match="model metadata"):
        Preprocessing.from_metadata({"zooindex.channels": "cmyk"})


def test_hf_flip_channel_order_means_bgr_with_mean_and_std_in_bgr_order():
    config = {"do_flip_channel_order": True, "image_mean": [0.1, 0.2, 0.3],
              "image_std": [0.5, 0.6, 0.7], "image_processor_type": "ViTImageProcessor"}
    prep = from_hf_preprocessor_config(config)
    # transformers normalises in RGB order, then flips: here the flip comes first
    assert (prep.channels, prep.mean, prep.std) == ("bgr", (0.3, 0.2, 0.1), (0.7, 0.6, 0.5))
    assert from_hf_preprocessor_config({**config, "do_flip_channel_order": False}).channels \
        is None
    # MobileViT's processors flip unless told not to; the others do not
    assert from_hf_preprocessor_config({"image_processor_type": "MobileViTImageProcessor"}
                                       ).channels == "bgr"
    assert from_hf_preprocessor_config({"image_processor_type": "ViTImageProcessor"}
                                       ).channels is None
    with pytest.raises(AdaptError, match="do_flip_channel_order"):
        from_hf_preprocessor_config({"do_flip_channel_order": "yes"})


# -- through the index -------------------------------------------------------------------

def test_features_of_a_bgr_model_from_the_flag(tmp_path, target):
    path = tmp_path / "m.onnx"
    onnx.save(channel0_model(), path)
    index = tmp_path / "i.db"
    zooindex.add(path, index=index, mean=MEAN, std=STD)
    np.testing.assert_allclose(_features(target, index), RGB_CHANNEL0, atol=TOL)
    # the same file, now BGR: new activations, not the RGB ones from the cache
    zooindex.add(path, index=index, mean=MEAN, std=STD, channels="bgr", replace=True)
    np.testing.assert_allclose(_features(target, index), BGR_CHANNEL0, atol=TOL)


def test_metadata_says_bgr_and_the_flag_wins(tmp_path, target):
    path = tmp_path / "m.onnx"
    onnx.save(stamp(channel0_model(), {"channels": "bgr", "mean": MEAN, "std": STD}), path)
    index = tmp_path / "i.db"
    zooindex.add(path, index=index)
    assert zooindex.show("m", index=index)["preprocessing"]["channels"] == "bgr"
    np.testing.assert_allclose(_features(target, index), BGR_CHANNEL0, atol=TOL)
    zooindex.add(path, index=index, channels="rgb", replace=True)
    assert zooindex.show("m", index=index)["preprocessing"]["channels"] == "rgb"
    np.testing.assert_allclose(_features(target, index), RGB_CHANNEL0, atol=TOL)


def test_a_grey_model_refuses_bgr_at_add(tmp_path):
    path = tmp_path / "grey.onnx"
    onnx.save(channel0_model(channels=1), path)
    with pytest.raises(AdaptError, match="model 'grey'.*no colour channels"):
        zooindex.add(path, index=tmp_path / "i.db", channels="bgr")
    assert zooindex.add(path, index=tmp_path / "i.db")[0].status == "added"


def test_the_command_line_option(run, tmp_path, target):
    code, out, _ = run("add", "--help")
    assert code == 0 and "--channels [rgb|bgr]" in out
    path = tmp_path / "m.onnx"
    onnx.save(channel0_model(), path)
    index = tmp_path / "i.db"
    code, _, err = run("add", "--index", index, path, "--channels", "BGR", "--mean",
                       "0.1,0.2,0.3", "--std", "0.5,1,1")
    assert code == 0, err
    code, out, _ = run("show", "--index", index, "m", "--json")
    assert json.loads(out)["preprocessing"]["channels"] == "bgr"
    np.testing.assert_allclose(_features(target, index), BGR_CHANNEL0, atol=TOL)


def test_a_record_stored_before_channels_existed_is_re_added_unchanged(tmp_path):
    import sqlite3

    path = tmp_path / "m.onnx"
    onnx.save(channel0_model(), path)
    index = tmp_path / "i.db"
    zooindex.add(path, index=index, mean=MEAN)
    with sqlite3.connect(index) as db:  # as an earlier version wrote it: no channels key
        [(text,)] = db.execute("SELECT preprocessing FROM models").fetchall()
        old = {k: v for k, v in json.loads(text).items() if k != "channels"}
        db.execute("UPDATE models SET preprocessing = ?", [json.dumps(old)])
    assert [a.status for a in zooindex.add(path, index=index, mean=MEAN)] == ["unchanged"]
