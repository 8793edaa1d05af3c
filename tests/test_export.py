"""Tests of zooindex.export: stamping preprocessing, and the torch/sklearn/keras helpers."""

import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from support.onnx_factory import fitted_sklearn_mlp, keras_like_cnn, mlp, relu, run, save, weights
from zooindex import export, graph
from zooindex.adapt import Preprocessing
from zooindex.errors import AdaptError, DependencyError, ModelError


def props(model):
    return {p.key: p.value for p in model.metadata_props}


def leftovers(folder, keep):
    """Files in ``folder`` other than ``keep``: temporary files an export left behind."""
    return sorted(set(os.listdir(folder)) - set(keep))


# ---------------------------------------------------------------------------
# stamp


def test_stamp_proto_returns_a_stamped_copy():
    model = mlp()
    helper.set_model_props(model, {"source": "old", "keep": "me"})
    prep = Preprocessing(scale=255, mean=(0.5,), std=(0.25,))
    stamped = export.stamp(model, prep, {"source": "new", "keep": None, "epochs": 3})
    assert props(model) == {"source": "old", "keep": "me"}  # the argument is untouched
    got = props(stamped)
    # None removes a key; other values are written with str()
    assert got["source"] == "new" and "keep" not in got and got["epochs"] == "3"
    assert Preprocessing.from_metadata(got) == prep
    assert graph.inspect(stamped).metadata == got


def test_stamp_preprocessing_wins_over_metadata_keys_and_accepts_a_dict():
    stamped = export.stamp(mlp(), {"scale": 2}, {"zooindex.scale": "7", "zooindex.std": "3"})
    # scale comes from the preprocessing, std (which it leaves unset) from the metadata
    assert Preprocessing.from_metadata(props(stamped)) == Preprocessing(scale=2.0, std=(3.0,))


def test_stamp_refuses_what_zooindex_add_would_refuse():
    with pytest.raises(AdaptError, match=r"zooindex.mean='a,b'"):
        export.stamp(mlp(), None, {"zooindex.mean": "a,b"})
    with pytest.raises(AdaptError, match="unknown layout 'NCWH'"):
        export.stamp(mlp(), {"layout": "NCWH"})
    with pytest.raises(ModelError, match="metadata key 3"):
        export.stamp(mlp(), None, {3: "x"})
    with pytest.raises(TypeError, match="Preprocessing, a dict or None"):
        export.stamp(mlp(), "NHWC")


def test_stamp_file_in_place_keeps_external_weights(tmp_path):
    path = save(mlp(), tmp_path / "m.onnx", external_data=True)
    data_before = (tmp_path / "m.onnx.data").read_bytes()
    assert export.stamp(path, Preprocessing(layout=None, scale=255.0)) == Path(path)
    assert leftovers(tmp_path, ["m.onnx", "m.onnx.data"]) == []
    assert (tmp_path / "m.onnx.data").read_bytes() == data_before
    loaded = graph.load(path, load_weights=True)
    assert props(loaded) == {"zooindex.scale": "255.0"}
    for name, value in weights(mlp()).items():
        np.testing.assert_array_equal(weights(loaded)[name], value)


def test_stamp_leaves_the_file_alone_when_refused(tmp_path):
    path = save(mlp(), tmp_path / "m.onnx")
    before = open(path, "rb").read()
    with pytest.raises(AdaptError):
        export.stamp(path, None, {"zooindex.scale": "inf"})
    assert open(path, "rb").read() == before
    assert leftovers(tmp_path, ["m.onnx"]) == []
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        export.stamp(tmp_path / "bad.onnx", Preprocessing(scale=2))


def test_over_the_protobuf_limit_weights_go_next_to_the_file(tmp_path, monkeypatch):
    # a limit of 0 bytes stands in for a model over 2 GB
    monkeypatch.setattr(export, "_PROTOBUF_LIMIT", 0)
    model = mlp(input_dim=64, hidden=(32,))  # W0 holds 8 KiB, over onnx's 1 KiB threshold
    path = export.stamp(save(model, tmp_path / "m.onnx"), Preprocessing(scale=3))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data"]
    assert graph.inspect(graph.load(path)).external_data
    loaded = graph.load(path, load_weights=True)
    np.testing.assert_array_equal(weights(loaded)["W0"], weights(model)["W0"])


# ---------------------------------------------------------------------------
# scikit-learn


def test_from_sklearn_mlp_default_layer_is_the_last_hidden_layer(tmp_path):
    pytest.importorskip("skl2onnx", reason="skl2onnx converts scikit-learn models")
    clf, x = fitted_sklearn_mlp()
    path = export.from_sklearn(clf, tmp_path / "clf.onnx", n_features=5,
                               preprocessing=Preprocessing(mean=(0.1,), std=(2.0,)),
                               metadata={"source": "sklearn"})
    assert path == tmp_path / "clf.onnx" and leftovers(tmp_path, ["clf.onnx"]) == []
    model = graph.load(path)
    info = graph.inspect(model)
    assert info.input_shape == (None, 5) and info.input_dtype == "float32"
    # without ZipMap the probabilities are a plain tensor, and they are the output used
    probs = next(o for o in model.graph.output if o.name == info.output_name)
    assert probs.type.HasField("tensor_type") and info.output_is_probs
    dense = [l for l in info.layers if l.kind == "dense"]
    assert [l.width for l in dense] == [7, 6, 3]
    assert info.default_layer == dense[1].name
    assert info.metadata["source"] == "sklearn"
    assert Preprocessing.from_metadata(info.metadata) == Preprocessing(mean=(0.1,), std=(2.0,))

    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x[:5]})
    h = x[:5].astype(np.float64)
    for coef, intercept in zip(clf.coefs_[:2], clf.intercepts_[:2]):
        h = relu(h @ coef + intercept)
    np.testing.assert_allclose(got[info.default_layer], h, atol=1e-4)
    np.testing.assert_allclose(got[info.output_name], clf.predict_proba(x[:5]), atol=1e-4)


def test_from_sklearn_pipeline_and_regressor(tmp_path):
    pytest.importorskip("skl2onnx", reason="skl2onnx converts scikit-learn models")
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf, x = fitted_sklearn_mlp()
    pipe = make_pipeline(StandardScaler(), clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit that has not converged is all we need
        pipe.fit(x, np.arange(60) % 3)
    info = graph.inspect(graph.load(export.from_sklearn(pipe, tmp_path / "p.onnx",
                                                        n_features=5, opset=15)))
    assert info.opset <= 15 and info.output_is_probs  # the ZipMap option reached the MLP
    assert info.default_layer == [l for l in info.layers if l.kind == "dense"][1].name
    # a regressor takes no ZipMap option; it converts all the same
    ridge = Ridge().fit(x, x[:, 0])
    assert graph.load(export.from_sklearn(ridge, tmp_path / "r.onnx", n_features=5))


def test_from_sklearn_refuses_an_unfitted_estimator_and_keeps_the_old_file(tmp_path):
    pytest.importorskip("skl2onnx", reason="skl2onnx converts scikit-learn models")
    from sklearn.neural_network import MLPClassifier

    path = save(mlp(), tmp_path / "m.onnx")
    before = open(path, "rb").read()
    with pytest.raises(ModelError, match="MLPClassifier is not fitted"):
        export.from_sklearn(MLPClassifier(), path, n_features=8)
    assert open(path, "rb").read() == before and leftovers(tmp_path, ["m.onnx"]) == []


def test_from_sklearn_without_skl2onnx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # makes `import skl2onnx` fail
    with pytest.raises(DependencyError, match=r"pip install 'zooindex\[sklearn-export\]'"):
        export.from_sklearn(object(), tmp_path / "m.onnx", n_features=3)


# ---------------------------------------------------------------------------
# PyTorch


def _torch_mlp():
    torch = pytest.importorskip("torch", reason="PyTorch exports need torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 9), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(9, 7), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(7, 3), torch.nn.Softmax(dim=-1))
    return torch, net


@pytest.mark.torch
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_from_torch_writes_one_file_with_a_dynamic_batch(tmp_path, dynamo):
    torch, net = _torch_mlp()
    if dynamo:
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    net.train()
    # the default opset 17 is below the dynamo exporter's own 18: onnx converts it down
    path = export.from_torch(net, tmp_path / "net.onnx", input_shape=(5,), dynamo=dynamo,
                             layout=None, scale=2.0, metadata={"arch": "mlp"})
    assert net.training  # put back as it was
    assert leftovers(tmp_path, ["net.onnx"]) == []  # no .onnx.data, no scratch folder
    model = graph.load(path)
    info = graph.inspect(model)
    assert not info.external_data and info.opset == 17
    assert isinstance(info.input_shape[0], str) and info.input_shape[1:] == (5,)
    assert info.metadata["arch"] == "mlp" and info.metadata["zooindex.scale"] == "2.0"
    assert [l.width for l in info.layers if l.kind == "dense"] == [9, 7, 3]

    # the default layer is the second ReLU's output, whatever the exporter called it
    seen = {}
    net[4].register_forward_hook(lambda module, args, out: seen.setdefault("h", out))
    x = np.random.default_rng(1).standard_normal((5, 5)).astype(np.float32)
    with torch.no_grad():
        probs = net.eval()(torch.from_numpy(x)).numpy()
    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x})
    np.testing.assert_allclose(got[info.default_layer], seen["h"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got[info.output_name], probs, atol=1e-4)


@pytest.mark.torch
def test_from_torch_errors(tmp_path, monkeypatch):
    torch, net = _torch_mlp()
    with pytest.raises(ModelError, match="torch.onnx.export failed for Sequential"):
        export.from_torch(net, tmp_path / "bad.onnx", input_shape=(4,))  # 4 != 5 features
    assert leftovers(tmp_path, []) == []

    def no_onnxscript(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'onnxscript'", name="onnxscript")

    monkeypatch.setattr(torch.onnx, "export", no_onnxscript)
    with pytest.raises(DependencyError, match="pip install onnxscript"):
        export.from_torch(net, tmp_path / "m.onnx", input_shape=(5,), dynamo=True)


def test_from_torch_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(DependencyError, match="pip install torch"):
        export.from_torch(object(), tmp_path / "m.onnx", input_shape=(3,))


# ---------------------------------------------------------------------------
# Keras (not installed: a stand-in module checks the stamping around model.export)


class _StandInKerasModel:
    """Writes a fixed ONNX graph where Keras 3's ``model.export(format="onnx")`` would."""

    def __init__(self, proto):
        self.proto = proto
        self.calls = []

    def export(self, filepath, format, **kwargs):
        self.calls.append((format, kwargs))
        save(self.proto, filepath, external_data=True)  # as exporters of big models do


def _stand_in_keras(monkeypatch, version="3.6.0"):
    monkeypatch.setitem(sys.modules, "keras", types.SimpleNamespace(__version__=version))


def test_from_keras_stamps_nhwc_for_images_and_writes_one_file(tmp_path, monkeypatch):
    _stand_in_keras(monkeypatch)
    model = _StandInKerasModel(keras_like_cnn(channels=3))
    path = export.from_keras(model, tmp_path / "k.onnx", scale=255, metadata={"from": "keras"},
                             opset_version=18)
    assert model.calls == [("onnx", {"opset_version": 18})]
    assert leftovers(tmp_path, ["k.onnx"]) == []  # weights folded into the one file
    info = graph.inspect(graph.load(path))
    assert not info.external_data and info.metadata["from"] == "keras"
    assert Preprocessing.from_metadata(info.metadata) == Preprocessing(layout="NHWC", scale=255)


def test_from_keras_explicit_layout_wins_and_vectors_get_none(tmp_path, monkeypatch):
    _stand_in_keras(monkeypatch)
    path = export.from_keras(_StandInKerasModel(keras_like_cnn()), tmp_path / "a.onnx",
                             preprocessing=Preprocessing(layout="NCHW"))
    assert graph.inspect(graph.load(path)).metadata["zooindex.layout"] == "NCHW"
    path = export.from_keras(_StandInKerasModel(mlp()), tmp_path / "b.onnx")
    assert "zooindex.layout" not in graph.inspect(graph.load(path)).metadata


def test_from_keras_needs_keras_3(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(DependencyError, match="pip install keras"):
        export.from_keras(object(), tmp_path / "k.onnx")
    _stand_in_keras(monkeypatch, version="2.15.0")
    with pytest.raises(DependencyError, match="needs Keras 3, found 2.15.0"):
        export.from_keras(object(), tmp_path / "k.onnx")


def test_from_keras_export_failure_is_a_model_error(tmp_path, monkeypatch):
    _stand_in_keras(monkeypatch)

    class Broken:
        def export(self, filepath, format, **kwargs):
            raise ValueError("input_signature is required")

    with pytest.raises(ModelError, match="keras export to ONNX failed: input_signature"):
        export.from_keras(Broken(), tmp_path / "k.onnx")
    assert leftovers(tmp_path, []) == []


def test_stamped_files_are_checked_models(tmp_path):
    # a model without a graph output cannot be indexed: nothing is written
    model = mlp()
    del model.graph.output[:]
    with pytest.raises(ModelError, match="k.onnx' is not a valid ONNX model: its graph has no"):
        export._finish(model, tmp_path / "k.onnx", Preprocessing(), None)
    assert leftovers(tmp_path, []) == []
