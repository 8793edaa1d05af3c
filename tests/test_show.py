"""``zooindex show``: a readable summary by default, the record and its resolved
preprocessing with ``--json``, the same data as ``zooindex.show``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zooindex
from support.data import clustered
from support.onnx_factory import cnn, linear_features, mlp, save
from zooindex.zoo import summary


@pytest.fixture
def imagenet(tmp_path):
    """A 3x224x224 model added with the imagenet preset, nothing else said."""
    save(cnn(input_shape=(3, 224, 224), filters=2, hidden=4), tmp_path / "big.onnx")
    index = tmp_path / "i.db"
    zooindex.add(tmp_path / "big.onnx", index=index, preset="imagenet",
                 source={"hub": "hf", "repo": "acme/big", "revision": "abc123",
                         "license": "mit", "tags": ["vision", "onnx"]})
    return index


def test_json_resolves_what_the_record_leaves_to_defaults(run, imagenet):
    code, out, _ = run("show", "--index", imagenet, "big", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown == json.loads(json.dumps(zooindex.show("big", index=imagenet)))
    # the record as it was given: sizes and anti-aliasing left to the defaults
    stored = shown["preprocessing"]
    assert (stored["resize_size"], stored["input_size"], stored["antialias"]) == \
        (None, None, None)
    # resolved: floor(224 / 0.875) = 256, cut to 224x224, anti-aliased when shrinking
    assert shown["preprocessing_resolved"] == {
        "layout": "NCHW", "channels": "rgb", "input_size": [224, 224], "crop": "center",
        "resize_size": [256, 256], "crop_size": [224, 224], "crop_pct": 0.875,
        "interpolation": "bilinear", "antialias": True, "scale": 1.0,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "dtype": "float32"}
    assert shown["targets"] == []


def test_the_summary_says_what_a_user_needs(run, imagenet):
    code, out, _ = run("show", "--index", imagenet, "big")
    assert code == 0
    shown = zooindex.show("big", index=imagenet)
    labels = [label for label, _ in summary(shown)]
    lines = {}
    for line in out.splitlines():  # "label   text", the labels padded to one width
        label = next(label for label in labels if line.startswith(label + " "))
        lines[label] = line[len(label):]
    assert lines["model"].strip() == "big (ok)"
    assert lines["sha256"].strip() == shown["sha256"]
    assert lines["file"].strip() == shown["path"]
    assert lines["input"].strip() == "x: float32 Nx3x224x224 (NCHW, RGB)"
    assert lines["preprocessing"].strip() == (
        "resize the shorter side to 256 (bilinear, anti-aliased when shrinking), centre "
        "crop 224x224, pixels to [0, 1], mean 0.485,0.456,0.406, std 0.229,0.224,0.225, "
        "channels RGB")
    assert "hidden" in lines["default layer"] and "4 wide" in lines["default layer"]
    assert lines["class scores"].strip() == "probs (softmax output)"
    assert lines["source"].strip() == ("hf: license mit; repo acme/big; revision abc123; "
                                       "tags vision,onnx")
    assert lines["cached targets"].strip() == "none yet"


def test_bgr_grey_and_vector_inputs_are_said(tmp_path):
    save(cnn(input_shape=(3, 8, 8)), tmp_path / "bgr.onnx")
    save(cnn(input_shape=(1, 8, 8)), tmp_path / "grey.onnx")
    save(mlp(input_dim=8), tmp_path / "vec.onnx")
    index = tmp_path / "i.db"
    zooindex.add(tmp_path / "bgr.onnx", index=index, channels="bgr", mean=(0.1, 0.2, 0.3),
                 scale=255)
    zooindex.add([tmp_path / "grey.onnx", tmp_path / "vec.onnx"], index=index)

    def text(name):
        return dict(summary(zooindex.show(name, index=index)))["preprocessing"]

    assert text("bgr") == ("resize to 8x8 (bilinear, anti-aliased when shrinking), pixels "
                           "to [0, 1], scale 255, channels reversed to BGR, mean 0.1,0.2,0.3, "
                           "std 1, channels BGR")
    assert text("grey").endswith("channels grey (RGB targets by BT.601 luminance)")
    assert text("vec") == "pixels to [0, 1], mean 0, std 1"
    resolved = zooindex.show("vec", index=index)["preprocessing_resolved"]
    assert (resolved["layout"], resolved["crop"], resolved["resize_size"]) == \
        ("vector", None, None)


def test_cached_targets_with_the_model_rank(run, tmp_path):
    w = np.zeros((8, 2), np.float32)
    w[0, 0] = w[1, 1] = 1
    save(linear_features(w, classes=3), tmp_path / "good.onnx")
    w[...] = 0
    w[5, 0] = w[6, 1] = 1
    save(linear_features(w, classes=3), tmp_path / "noise.onnx")
    x, y = clustered()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    index = tmp_path / "i.db"
    zooindex.add(tmp_path, index=index)
    zooindex.search(tmp_path / "t.npz", index=index, scorers=["knn", "logme"])
    [target] = zooindex.show("noise", index=index)["targets"]
    assert (target["samples"], target["classes"]) == (len(y), 3)
    assert {(s["estimator"], s["rank"], s["of"]) for s in target["scores"]} == \
        {("knn", 2, 2), ("logme", 2, 2)}
    code, out, _ = run("show", "--index", index, "noise")
    assert f"{target['key'][:12]} {tmp_path / 't.npz'} ({len(y)} samples, 3 classes): " \
        "rank logme 2/2, knn 2/2" in out  # the default scorer (LogME) first
