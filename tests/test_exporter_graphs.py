"""Default layer, graph editing and running on graphs as real exporters write them.

Each graph comes from the exporter itself (PyTorch's TorchScript and dynamo exporters,
skl2onnx) or, for Keras, whose exporters are not installed here, from ``onnx.helper`` in
the layout tf2onnx writes. The default layer is checked against the known architecture
(the dense layer of known width right before the classifier), never by its name, and by
value: exposing it and running onnxruntime gives the framework's own hidden activations.
"""

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from support.onnx_factory import (fix_batch, keras_like_cnn, mlp, relu, run, save, two_inputs,
                          weights)
from zooindex import export, graph
from zooindex.adapt import Preprocessing
from zooindex.errors import LayerError, ModelError
from zooindex.runner import run_model
from zooindex.catalogue import inspect_file

OPSETS = range(11, 22)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hidden_before_classifier(info):
    """The default layer's Layer, checked to be the dense layer feeding the classifier."""
    dense = [l for l in info.layers if l.kind == "dense"]
    assert len(dense) >= 2, info.layers
    assert info.default_layer == dense[-2].name
    return dense[-2]


def mlp_hidden(model, x, layers):
    """Activations of :func:`onnx_factory.mlp`'s last hidden layer, in float64 numpy."""
    w = weights(model)
    h = x.astype(np.float64)
    for i in range(layers):
        h = relu(h @ w[f"W{i}"] + w[f"b{i}"])
    return h


def run_record(path, x, *, batch_size, with_output=False):
    """The default layer (and output) of the model file at ``path``, as a search runs it."""
    record = inspect_file(path)
    prep = Preprocessing.from_dict(record.preprocessing)
    out = run_model(record, x, [record.default_layer], prep, batch_size=batch_size,
                    device="cpu", with_output=with_output)
    return record, out


# ---------------------------------------------------------------------------
# PyTorch: the TorchScript exporter (/act2/Relu_output_0) and dynamo (relu_2)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch exporter graphs need torch")


def _torch_nets(torch):
    class Mlp(torch.nn.Module):
        """fc1 (6->10) -> BatchNorm -> ReLU -> fc2 (10->8) -> ReLU [hidden] -> Dropout -> head."""

        def __init__(self):
            super().__init__()
            self.fc1, self.bn = torch.nn.Linear(6, 10), torch.nn.BatchNorm1d(10)
            self.act1 = torch.nn.ReLU()
            self.fc2, self.act2 = torch.nn.Linear(10, 8), torch.nn.ReLU()
            self.drop, self.head = torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)

        def forward(self, x):
            x = self.act1(self.bn(self.fc1(x)))
            return torch.softmax(self.head(self.drop(self.act2(self.fc2(x)))), dim=-1)

    class Cnn(torch.nn.Module):
        """conv 3x3 (3->4) -> ReLU -> pool -> flatten -> fc1 (64->12) -> ReLU [hidden] -> head."""

        def __init__(self):
            super().__init__()
            self.conv, self.act0 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()
            self.pool, self.flat = torch.nn.MaxPool2d(2), torch.nn.Flatten()
            self.fc1, self.act2 = torch.nn.Linear(64, 12), torch.nn.ReLU()
            self.drop, self.head = torch.nn.Dropout(0.5), torch.nn.Linear(12, 3)

        def forward(self, x):
            x = self.flat(self.pool(self.act0(self.conv(x))))
            return self.head(self.drop(self.act2(self.fc1(x))))  # logits

    torch.manual_seed(0)
    mlp_net = Mlp()
    with torch.no_grad():  # running statistics far from (0, 1), so BatchNorm matters
        mlp_net.bn.running_mean.uniform_(-1, 1)
        mlp_net.bn.running_var.uniform_(0.5, 2)
    return {"mlp": (mlp_net.eval(), (6,), 8), "cnn": (Cnn().eval(), (3, 8, 8), 12)}


@pytest.fixture(scope="module")
def nets(torch):
    return _torch_nets(torch)


def _torch_hidden(torch, net, x):
    """The output of ``net.act2`` (the last hidden ReLU) and of the net, by forward hook."""
    seen = {}
    handle = net.act2.register_forward_hook(lambda m, args, out: seen.setdefault("h", out))
    try:
        with torch.no_grad():
            out = net(torch.from_numpy(x))
    finally:
        handle.remove()
    return seen["h"].numpy(), out.numpy()


def _export(torch, net, sample_shape, path, *, dynamo, opset=None, dynamic=True, batch=2,
            **kwargs):
    example = torch.zeros((batch, *sample_shape))
    options = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if dynamo:
            if dynamic:
                options["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
            torch.onnx.export(net, (example,), str(path), dynamo=True, **options, **kwargs)
        else:
            if dynamic:
                options.update(input_names=["input"], dynamic_axes={"input": {0: "batch"}})
            torch.onnx.export(net, (example,), str(path), dynamo=False, **options, **kwargs)
    return path


def _check_torch_graph(torch, net, sample_shape, width, path, *, probs):
    model = graph.load(path, load_weights=True)
    info = graph.inspect(model)
    hidden = hidden_before_classifier(info)
    assert (hidden.width, hidden.op) == (width, "Relu")
    assert info.output_is_probs is probs
    x = np.random.default_rng(3).standard_normal((4, *sample_shape)).astype(np.float32)
    want_hidden, want_out = _torch_hidden(torch, net, x)
    if not isinstance(info.input_shape[0], str):  # static batch: feed exactly that many
        x, want_hidden, want_out = (a[:info.input_shape[0]] for a in (x, want_hidden, want_out))
    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x})
    np.testing.assert_allclose(got[info.default_layer], want_hidden, atol=1e-4)
    np.testing.assert_allclose(got[info.output_name], want_out, atol=1e-4)
    return info


@pytest.mark.torch
@pytest.mark.parametrize("arch, opset", [("mlp", opset) for opset in OPSETS] +
                         [("cnn", opset) for opset in (11, 16, 21)])
def test_torchscript_exporter(torch, nets, tmp_path, arch, opset):
    net, shape, width = nets[arch]
    path = _export(torch, net, shape, tmp_path / "m.onnx", dynamo=False, opset=opset)
    info = _check_torch_graph(torch, net, shape, width, path, probs=arch == "mlp")
    assert info.opset == opset and info.input_shape[0] == "batch"
    # BatchNormalization sits between fc1 and its ReLU: absorbed into that dense layer
    assert [l.width for l in info.layers if l.kind == "dense"] == \
        ([10, 8, 3] if arch == "mlp" else [12, 3])


@pytest.mark.torch
def test_dynamo_exporter_dynamic_batch(torch, nets, tmp_path):
    # dynamo exports are slow: one dynamic MLP here, a static CNN below, and the
    # conversion to opsets below 18 in test_export
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    net, shape, width = nets["mlp"]
    path = _export(torch, net, shape, tmp_path / "m.onnx", dynamo=True, opset=18,
                   external_data=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    info = _check_torch_graph(torch, net, shape, width, path, probs=True)
    assert info.opset == 18 and isinstance(info.input_shape[0], str)
    # BatchNormalization after fc1 is folded into its Gemm by the exporter
    assert [l.width for l in info.layers if l.kind == "dense"] == [10, 8, 3]


@pytest.mark.torch
def test_dynamo_exporter_defaults_static_batch_and_side_file(torch, nets, tmp_path):
    """torch 2.13's defaults: the example's batch size is fixed, weights go to .onnx.data."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    net, shape, width = nets["cnn"]
    path = _export(torch, net, shape, tmp_path / "m.onnx", dynamo=True, dynamic=False, batch=1,
                   opset=21)
    assert (tmp_path / "m.onnx.data").exists()
    info = _check_torch_graph(torch, net, shape, width, path, probs=False)
    assert info.opset == 21
    assert info.input_shape == (1, 3, 8, 8) and graph.inspect(graph.load(path)).external_data
    # fixed at one sample, it still ranks: the runner feeds it one sample at a time
    x = np.random.default_rng(4).standard_normal((5, *shape)).astype(np.float32)
    record, out = run_record(path, x, batch_size=3, with_output=True)
    want_hidden, want_out = _torch_hidden(torch, net, x)
    np.testing.assert_allclose(out.features[record.default_layer], want_hidden, atol=1e-4)
    np.testing.assert_allclose(out.output, want_out, atol=1e-4)


@pytest.mark.torch
def test_torchscript_static_batch_runs_through_the_search(torch, nets, tmp_path):
    net, shape, width = nets["mlp"]
    path = _export(torch, net, shape, tmp_path / "m.onnx", dynamo=False, dynamic=False,
                   batch=2)
    x = np.random.default_rng(5).standard_normal((7, *shape)).astype(np.float32)
    record, out = run_record(path, x, batch_size=3)  # pieces of 2, the last one padded
    assert record.input_shape == [2, 6]
    want_hidden, _ = _torch_hidden(torch, net, x)
    np.testing.assert_allclose(out.features[record.default_layer], want_hidden, atol=1e-4)


# ---------------------------------------------------------------------------
# skl2onnx: MatMul + Add + Relu, label output first, then probabilities


@pytest.fixture(scope="module")
def sklearn_mlp():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(7, 6), max_iter=30, random_state=0)
        clf.fit(x, np.arange(60) % 3)
    return clf, x


@pytest.mark.parametrize("opset, zipmap", [(opset, False) for opset in OPSETS] +
                         [(opset, True) for opset in (11, 15, 21)])
def test_skl2onnx_graphs(sklearn_mlp, opset, zipmap):
    pytest.importorskip("skl2onnx", reason="skl2onnx converts scikit-learn models")
    from skl2onnx import to_onnx

    clf, x = sklearn_mlp
    options = None if zipmap else {id(clf): {"zipmap": False}}
    model = to_onnx(clf, x[:1], options=options, target_opset=opset)
    ops = [n.op_type for n in model.graph.node]
    assert "Softmax" in ops and ops.count("MatMul") == 3 and "Gemm" not in ops
    label, probs_output = model.graph.output[:2]
    assert label.type.tensor_type.elem_type == TensorProto.INT64
    info = graph.inspect(model)
    assert info.output_name == probs_output.name and info.output_is_probs
    assert info.opset <= opset  # skl2onnx writes the lowest opset its operators need
    hidden = hidden_before_classifier(info)
    assert (hidden.width, hidden.op) == (6, "Relu")
    assert [l.op for l in info.layers if l.kind == "dense"] == ["Relu", "Relu", "MatMul+Add"]

    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x[:5]})
    h = x[:5].astype(np.float64)
    for coef, intercept in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        h = relu(h @ coef + intercept)
    np.testing.assert_allclose(got[info.default_layer], h, atol=1e-4)


# ---------------------------------------------------------------------------
# Keras through tf2onnx: NHWC input, Transpose around the convolution, MatMul + Add


def keras_reference(model, x):
    """The hidden dense activations of :func:`onnx_factory.keras_like_cnn`, in numpy."""
    w = weights(model)
    nchw = x.transpose(0, 3, 1, 2).astype(np.float64)
    padded = np.pad(nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    conv = np.einsum("nchwij,fcij->nfhw", windows, w["Wc"]) + w["bc"][:, None, None]
    n, f, height, width = conv.shape
    pooled = relu(conv).reshape(n, f, height // 2, 2, width // 2, 2).max(axis=(3, 5))
    flat = pooled.transpose(0, 2, 3, 1).reshape(n, -1)  # Keras flattens channels-last
    return relu(flat @ w["W1"] + w["b1"])


@pytest.mark.parametrize("opset, dynamic_flatten", [(opset, False) for opset in OPSETS] +
                         [(opset, True) for opset in (11, 13, 14, 21)])
def test_keras_like_graphs(opset, dynamic_flatten):
    model = keras_like_cnn(opset=opset, dynamic_flatten=dynamic_flatten)
    info = graph.inspect(model)
    assert info.input_shape == ("unk__0", 8, 8, 3) and info.output_is_probs
    hidden = hidden_before_classifier(info)
    assert hidden.op == "Relu"
    # shape inference cannot follow a Shape-computed flatten before opset 14: width unknown
    assert hidden.width == 16 or (dynamic_flatten and opset < 14 and hidden.width is None)
    assert [l.kind for l in info.layers] == ["input", "conv", "pool", "dense", "dense"]
    x = np.random.default_rng(opset).standard_normal((3, 8, 8, 3)).astype(np.float32)
    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x})
    np.testing.assert_allclose(got[info.default_layer], keras_reference(model, x), atol=1e-4)


def test_keras_like_model_ranks_nhwc_images_end_to_end(tmp_path):
    model = keras_like_cnn()
    path = export.stamp(save(model, tmp_path / "k.onnx"), Preprocessing(layout="NHWC"))
    images = np.random.default_rng(6).uniform(0, 1, (5, 8, 8, 3)).astype(np.float32)
    record, out = run_record(path, images, batch_size=2)
    assert record.preprocessing["layout"] == "NHWC"
    np.testing.assert_allclose(out.features[record.default_layer],
                               keras_reference(model, images), atol=1e-4)


# ---------------------------------------------------------------------------
# a batch dimension fixed by the exporter


@pytest.mark.parametrize("size", [1, 4])
def test_fixed_batch_runs_in_pieces(tmp_path, size):
    model = fix_batch(mlp(input_dim=8, hidden=(16, 12), classes=3), size)
    path = save(model, tmp_path / "fixed.onnx")
    x = np.random.default_rng(7).standard_normal((7, 8)).astype(np.float32)
    record, out = run_record(path, x, batch_size=3, with_output=True)
    assert record.input_shape == [size, 8]
    hidden = mlp_hidden(model, x, 2)
    np.testing.assert_allclose(out.features[record.default_layer], hidden, atol=1e-4)
    w = weights(model)
    np.testing.assert_allclose(out.output, softmax(hidden @ w["W2"] + w["b2"]), atol=1e-4)


# ---------------------------------------------------------------------------
# several data inputs


def test_several_inputs_need_a_choice():
    model = two_inputs()
    with pytest.raises(ModelError, match=r"several inputs \('x', 'aux'\); pass --input NAME"):
        graph.inspect(model)
    with pytest.raises(ModelError, match=r"input 'mask' not in the model; its inputs: 'x', "
                                         r"'aux'; pass --input"):
        graph.inspect(model, "mask")
    info = graph.inspect(model, input_name="x")
    assert info.input_name == "x" and info.input_shape == ("N", 6)
    assert info.extra_inputs == (("aux", ("N", 4), "float32"),)
    assert hidden_before_classifier(info).width == 5
    other = graph.inspect(model, input_name="aux")
    assert other.input_shape == ("N", 4) and [e[0] for e in other.extra_inputs] == ["x"]


def test_single_input_by_name():
    assert graph.inspect(mlp(), "x").extra_inputs == ()
    with pytest.raises(ModelError, match="input 'y' not in the model; its inputs: 'x'"):
        graph.inspect(mlp(), "y")


def test_default_feeds_give_zeros_that_leave_the_model_as_without_them():
    model = two_inputs(input_dim=6, hidden=(8, 5))
    info = graph.inspect(model, "x")
    x = np.random.default_rng(8).standard_normal((3, 6)).astype(np.float32)
    feeds = graph.default_feeds(info, len(x))
    assert list(feeds) == ["aux"] and feeds["aux"].shape == (3, 4)
    assert feeds["aux"].dtype == np.float32 and not feeds["aux"].any()
    exposed = graph.expose(model, [info.default_layer])
    got = run(exposed, {"x": x, **feeds})[info.default_layer]
    np.testing.assert_allclose(got, mlp_hidden(model, x, 2), atol=1e-5)
    # the extra input is live: other values change the hidden layer
    shifted = run(exposed, {"x": x, "aux": np.ones((3, 4), np.float32)})[info.default_layer]
    assert not np.allclose(shifted, got)


@pytest.mark.parametrize("shape, elem, want_shape, want_dtype", [
    ((2, 3), TensorProto.INT64, (2, 3), np.int64),       # fixed sizes are kept as they are
    ((), TensorProto.FLOAT, (), np.float32),              # a scalar
    ((None, 2), TensorProto.BOOL, (5, 2), np.bool_),      # an unnamed batch dimension
    (("batch",), TensorProto.DOUBLE, (5,), np.float64),
])
def test_default_feeds_shapes_and_types(shape, elem, want_shape, want_dtype):
    info = graph.inspect(two_inputs(aux_shape=shape, aux_type=elem), "x")
    feed = graph.default_feeds(info, 5)["aux"]
    assert feed.shape == want_shape and feed.dtype == want_dtype and not feed.any()
    run(graph.expose(two_inputs(aux_shape=shape, aux_type=elem), []),
        {"x": np.zeros((5, 6), np.float32), "aux": feed})  # and onnxruntime accepts it


def test_default_feeds_refuse_free_non_batch_sizes():
    info = graph.inspect(two_inputs(aux_shape=("N", "T")), "x")
    with pytest.raises(ModelError, match=r"'aux' has shape \(N, T\) with a free size at axis 1"):
        graph.default_feeds(info, 2)
    without_shape = two_inputs()
    without_shape.graph.input[1].type.tensor_type.ClearField("shape")
    info = graph.inspect(without_shape, "x")
    assert info.extra_inputs == (("aux", None, "float32"),)
    with pytest.raises(ModelError, match="'aux' has no declared shape"):
        graph.default_feeds(info, 2)


def test_expose_lists_candidates_of_a_model_with_several_inputs():
    with pytest.raises(LayerError, match=r"candidates: .*hidden1 \(5\)") as caught:
        graph.expose(two_inputs(hidden=(8, 5)), ["nope"])
    assert "hidden1" in caught.value.candidates


def test_exporter_graphs_are_valid_onnx():
    for model in (keras_like_cnn(opset=11, dynamic_flatten=True), two_inputs(opset=11)):
        onnx.checker.check_model(model, full_check=True)
