"""Tests of zooindex.graph: candidate layers, default layer, expose, load checks."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support.onnx_factory import (cnn, cnn_no_dense, fitted_sklearn_mlp, fix_batch, labels_only,
                          linear_features, mlp, relu, run, save, weights)
from zooindex import graph
from zooindex.errors import LayerError, ModelError


def renamed(model, prefix="t"):
    """The same model with every tensor renamed to an opaque ``t0, t1, ...``.

    Default-layer detection must survive this: exporters name things as they please.
    """
    mapping = {}

    def name(old):
        if old and old not in mapping:
            mapping[old] = f"{prefix}{len(mapping)}"
        return mapping.get(old, old)

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    g = copy.graph
    for value in list(g.input) + list(g.output) + list(g.value_info):
        value.name = name(value.name)
    for tensor in g.initializer:
        tensor.name = name(tensor.name)
    for node in g.node:
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
        node.name = ""
    return copy, mapping


# ---------------------------------------------------------------------------
# candidate and default layers


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm", "matmul_add"])
def test_mlp_layers_and_default(gemm):
    info = graph.inspect(mlp(input_dim=8, hidden=(16, 12), classes=3, gemm=gemm))
    assert [(l.name, l.kind, l.shape, l.width) for l in info.layers] == [
        ("x", "input", (8,), 8),
        ("hidden0", "dense", (16,), 16),
        ("hidden1", "dense", (12,), 12),
        ("logits", "dense", (3,), 3),
    ]
    assert info.layers[0].op == "input" and info.layers[0].position == 0
    assert info.layers[-1].op == ("Gemm" if gemm else "MatMul+Add")
    assert info.layers[1].op == "Relu"  # the hidden layer is taken after its activation
    positions = [l.position for l in info.layers]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert info.default_layer == "hidden1"
    assert info.input_name == "x" and info.input_shape == ("N", 8)
    assert info.input_dtype == "float32" and info.opset == 17
    # 8*16+16 + 16*12+12 + 12*3+3 = 144 + 204 + 39
    assert info.params == 387
    assert info.output_name == "probs" and info.output_is_probs is True
    assert info.external_data is False


def test_default_layer_does_not_depend_on_names():
    model, mapping = renamed(mlp(gemm=False))
    info = graph.inspect(model)
    assert info.default_layer == mapping["hidden1"]
    assert info.output_name == mapping["probs"]


def test_without_softmax_the_output_is_logits():
    info = graph.inspect(mlp(softmax=False))
    assert info.output_name == "logits"
    assert info.output_is_probs is False
    assert info.default_layer == "hidden1"


def test_log_softmax_is_not_probabilities():
    model = mlp(softmax=False)
    model.graph.node.append(helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=-1))
    model.graph.output[0].name = "logp"
    info = graph.inspect(model)
    assert info.output_name == "logp" and info.output_is_probs is False
    assert info.default_layer == "hidden1"


def test_cnn_layers_and_default_through_dropout():
    info = graph.inspect(cnn(input_shape=(1, 8, 8), filters=4, hidden=16, classes=3))
    assert [(l.name, l.op, l.kind, l.shape, l.width) for l in info.layers] == [
        ("x", "input", "input", (1, 8, 8), 64),
        ("conv1", "Relu", "conv", (4, 8, 8), 256),
        ("pool1", "MaxPool", "pool", (4, 4, 4), 64),
        ("fc1", "Relu", "dense", (16,), 16),
        ("logits", "Gemm", "dense", (3,), 3),
    ]
    # the classifier reads fc1 through Dropout: the default is the dense layer itself
    assert info.default_layer == "fc1"
    assert info.input_shape == ("N", 1, 8, 8)
    # conv 4*1*3*3+4 = 40, fc1 64*16+16 = 1040, logits 16*3+3 = 51
    assert info.params == 40 + 1040 + 51


def test_cnn_without_hidden_dense_defaults_to_the_pooled_features():
    info = graph.inspect(cnn_no_dense())
    # the classifier reads Flatten(pool1): the representation is pool1, values unchanged
    assert info.default_layer == "pool1"
    assert info.default_reason == ("input of the final classifier Gemm (64 -> 3): pooled "
                                   "features (MaxPool), through Flatten")
    assert [l.name for l in info.layers] == ["x", "conv1", "pool1", "logits"]
    assert info.output_name == "probs" and info.output_is_probs


def test_paper_cnn_reason_names_the_hidden_dense_layer():
    info = graph.inspect(cnn(input_shape=(1, 8, 8), filters=4, hidden=16, classes=3))
    assert info.default_reason == ("input of the final classifier Gemm (16 -> 3): hidden "
                                   "dense layer (Relu), through Dropout")
    info = graph.inspect(mlp(gemm=False))
    assert info.default_reason == ("input of the final classifier MatMul+Add (12 -> 3): "
                                   "hidden dense layer (Relu)")


def test_conv_feeding_two_nodes_is_taken_before_the_activation():
    model = cnn()
    g = model.graph
    # a second reader of the raw convolution output keeps the activation separate
    g.node.append(helper.make_node("Identity", ["conv1_pre"], ["conv_copy"]))
    g.output.append(helper.make_tensor_value_info("conv_copy", TensorProto.FLOAT, None))
    info = graph.inspect(model)
    conv = [l for l in info.layers if l.kind == "conv"]
    assert [(l.name, l.op) for l in conv] == [("conv1_pre", "Conv")]
    assert info.output_name == "probs"  # conv_copy leads to no dense layer


def test_matmul_of_two_activations_is_not_dense():
    # y = (x W) (x W)^T style products appear in attention; they are not dense layers
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Transpose", ["h"], ["ht"]),
             helper.make_node("MatMul", ["h", "ht"], ["scores"])]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 2])], [w]),
        opset_imports=[helper.make_opsetid("", 17)])
    info = graph.inspect(model)
    assert [(l.name, l.op, l.kind) for l in info.layers] == [
        ("x", "input", "input"), ("h", "MatMul", "dense"), ("scores", "MatMul", "feature")]
    # no classifier: the output itself is the default, and there are no class scores
    assert info.output_name is None and info.output_is_probs is False
    assert info.default_layer == "scores"
    assert info.default_reason == "no classifier: the model's output, features (MatMul)"


def test_batchnorm_between_dense_and_activation_is_absorbed():
    model = mlp(hidden=(6,), classes=2)
    g = model.graph
    ones, zeros = np.ones(6, np.float32), np.zeros(6, np.float32)
    g.initializer.extend(numpy_helper.from_array(a, n) for a, n in
                         [(ones, "s"), (zeros, "bb"), (zeros, "mu"), (ones, "var")])
    relu_node = next(n for n in g.node if n.op_type == "Relu")
    relu_node.input[0] = "bn"
    index = list(g.node).index(relu_node)
    g.node.insert(index, helper.make_node("BatchNormalization",
                                          ["hidden0_pre", "s", "bb", "mu", "var"], ["bn"]))
    info = graph.inspect(model)
    assert [l.name for l in info.layers] == ["x", "hidden0", "logits"]
    assert info.default_layer == "hidden0"


def test_several_inputs_are_refused_with_their_names():
    model = mlp()
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 8]))
    with pytest.raises(ModelError, match=r"several inputs \('x', 'mask'\)"):
        graph.inspect(model)


def test_metadata_and_opsets():
    model = mlp(opset=11)
    helper.set_model_props(model, {"zooindex.scale": "255", "source": "test"})
    info = graph.inspect(model)
    assert info.metadata == {"zooindex.scale": "255", "source": "test"}
    assert info.opset == 11


# ---------------------------------------------------------------------------
# the class-score output and the classifier behind it


def _net(nodes, outputs, inits, inputs=None):
    model = helper.make_model(helper.make_graph(
        nodes, "net", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _w(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def detector(softmax=True):
    """A face-detector-like net: a shared trunk, then box regression (4 values, a dense
    layer) as the first output and class scores (a dense layer + softmax) as the second."""
    nodes = [helper.make_node("Gemm", ["x", "Wt", "bt"], ["trunk_pre"]),
             helper.make_node("Relu", ["trunk_pre"], ["trunk"]),
             helper.make_node("Gemm", ["trunk", "Wb", "bb"], ["boxes"]),
             helper.make_node("Gemm", ["trunk", "Wc", "bc"], ["logits"])]
    scores = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=-1))
        scores = "scores"
    inits = [_w("Wt", (6, 5)), _w("bt", (5,)), _w("Wb", (5, 4)), _w("bb", (4,)),
             _w("Wc", (5, 2)), _w("bc", (2,))]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4]),
               helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", 2])]
    return _net(nodes, outputs, inits)


def test_class_scores_are_the_softmax_output_not_the_first_dense_one():
    info = graph.inspect(detector())
    assert info.output_name == "scores" and info.output_is_probs is True
    assert info.default_layer == "trunk"
    assert info.default_reason == ("input of the final classifier Gemm (5 -> 2): hidden "
                                   "dense layer (Relu)")
    model, mapping = renamed(detector())
    info = graph.inspect(model)
    assert info.output_name == mapping["scores"] and info.default_layer == mapping["trunk"]


def test_without_softmax_the_first_classifier_output_is_taken():
    info = graph.inspect(detector(softmax=False))
    assert info.output_name == "boxes" and info.output_is_probs is False
    # two heads of equal standing: the default is the trunk they share
    assert info.default_layer == "trunk"
    assert info.default_reason == ("representation shared by 2 heads (boxes, logits): "
                                   "hidden dense layer (Relu)")


def test_output_name_forces_the_class_score_output():
    info = graph.inspect(detector(softmax=False), output_name="logits")
    assert info.output_name == "logits" and info.output_is_probs is False
    assert info.default_layer == "trunk"
    forced = graph.inspect(detector(), output_name="boxes")
    assert forced.output_name == "boxes" and forced.output_is_probs is False
    assert forced.default_reason.startswith("input of the final classifier Gemm (5 -> 4)")


def test_unknown_output_name_lists_the_outputs():
    with pytest.raises(LayerError) as caught:
        graph.inspect(detector(), output_name="probs")
    assert str(caught.value) == ("output 'probs' not in the model; its outputs: 'boxes', "
                                 "'scores'; pass --output with the one that holds class scores")
    assert caught.value.candidates == ["boxes", "scores"]


def test_forced_output_without_a_classifier_has_no_default():
    model = _net([helper.make_node("Gemm", ["x", "W", "b"], ["h_pre"]),
                  helper.make_node("Tanh", ["h_pre"], ["h"])],
                 [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 3])],
                 [_w("W", (6, 3)), _w("b", (3,))])
    info = graph.inspect(model, output_name="h")
    assert info.output_name == "h" and info.default_layer is None
    assert "output 'h' comes from no classifier" in info.default_reason


def test_a_multi_label_sigmoid_classifier_is_a_classifier():
    model = mlp(softmax=False)
    model.graph.node.append(helper.make_node("Sigmoid", ["logits"], ["p"]))
    model.graph.output[0].name = "p"
    info = graph.inspect(model)
    assert info.output_name == "p" and info.output_is_probs is False
    assert info.default_layer == "hidden1"
    assert info.default_reason.startswith("input of the final classifier Gemm (12 -> 3)")


def test_a_classifier_on_the_input_reads_the_input():
    info = graph.inspect(mlp(hidden=()))  # logistic regression: x -> Gemm -> Softmax
    assert info.default_layer == "x" and info.output_name == "probs"
    assert info.default_reason == "input of the final classifier Gemm (8 -> 3): the model input"


def test_feature_extractor_output_is_the_default_and_has_no_class_scores():
    # a dense layer with a tanh (a pooler) makes features, not class scores
    model = _net([helper.make_node("Gemm", ["x", "W0", "b0"], ["h_pre"]),
                  helper.make_node("Relu", ["h_pre"], ["h"]),
                  helper.make_node("Gemm", ["h", "W1", "b1"], ["e_pre"]),
                  helper.make_node("Tanh", ["e_pre"], ["e"]),
                  helper.make_node("Flatten", ["e"], ["embedding"])],
                 [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])],
                 [_w("W0", (6, 4)), _w("b0", (4,)), _w("W1", (4, 3)), _w("b1", (3,))])
    info = graph.inspect(model)
    assert info.output_name is None and info.output_is_probs is False
    assert info.default_layer == "e"  # the output's values, before the no-op Flatten
    assert info.default_reason == ("no classifier: the model's output, hidden dense layer "
                                   "(Tanh), through Flatten")


def test_averaged_classifiers_trace_to_the_first():
    # distilled DeiT: (head(token 0) + head_dist(token 1)) / 2
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])
    i0 = numpy_helper.from_array(np.array(0, np.int64), "i0")
    i1 = numpy_helper.from_array(np.array(1, np.int64), "i1")
    two = numpy_helper.from_array(np.array(2, np.float32), "two")
    nodes = [helper.make_node("Gather", ["x", "i0"], ["cls"], axis=1),
             helper.make_node("Gather", ["x", "i1"], ["dist"], axis=1),
             helper.make_node("Gemm", ["cls", "W0", "b0"], ["s0"]),
             helper.make_node("Gemm", ["dist", "W1", "b1"], ["s1"]),
             helper.make_node("Add", ["s0", "s1"], ["sum"]),
             helper.make_node("Div", ["sum", "two"], ["logits"])]
    model = _net(nodes, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                 [i0, i1, two, _w("W0", (4, 5)), _w("b0", (5,)), _w("W1", (4, 5)),
                  _w("b1", (5,))], inputs=[x])
    info = graph.inspect(model)
    assert info.output_name == "logits" and info.default_layer == "cls"
    layer = graph.resolve_layer(info, None)
    assert (layer.op, layer.kind, layer.width) == ("Gather", "token", 4)
    assert info.default_reason == ("input of the first of 2 final classifiers whose scores "
                                   "are added, Gemm (4 -> 5): one token of the sequence (Gather)")


def test_a_sliced_class_token_is_a_token():
    # x[:, 0:1, :] then squeeze, as some exporters write x[:, 0]
    c = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["normed"], axis=-1),
             helper.make_node("Slice", ["normed", "start", "stop", "axis"], ["first"]),
             helper.make_node("Squeeze", ["first", "axis"], ["cls"]),
             helper.make_node("Gemm", ["cls", "W", "bias"], ["logits"])]
    inits = [c("start", [0]), c("stop", [1]), c("axis", [1]), _w("g", (4,)), _w("b", (4,)),
             _w("W", (4, 5)), _w("bias", (5,))]
    model = _net(nodes, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                 inits, inputs=[x])
    info = graph.inspect(model)
    layer = graph.resolve_layer(info, None)
    assert (layer.name, layer.op, layer.kind, layer.shape) == ("first", "Slice", "token", (1, 4))
    assert info.default_reason == ("input of the final classifier Gemm (4 -> 5): one token of "
                                   "the sequence (Slice), through Squeeze")


def test_a_residual_sum_of_dense_layers_is_not_an_average_of_classifiers():
    # a feature extractor ending in h + W2 relu(W1 h), h a dense embedding: its output
    # is the embedding, not class scores
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"]),
             helper.make_node("Gemm", ["h", "W1", "b1"], ["u_pre"]),
             helper.make_node("Relu", ["u_pre"], ["u"]),
             helper.make_node("Gemm", ["u", "W2", "b2"], ["v"]),
             helper.make_node("Add", ["h", "v"], ["embedding"])]
    inits = [_w("W0", (6, 4)), _w("b0", (4,)), _w("W1", (4, 8)), _w("b1", (8,)),
             _w("W2", (8, 4)), _w("b2", (4,))]
    model = _net(nodes, [helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                       ["N", 4])], inits)
    info = graph.inspect(model)
    assert info.output_name is None and info.default_layer == "embedding"
    assert graph.resolve_layer(info, None).kind == "feature"


def squeezenet_like(pool="GlobalAveragePool"):
    """conv 3x3 + ReLU (the features), then the classifier: Dropout, 1x1 conv (4 -> 3),
    ReLU, global average pooling, Flatten, as torchvision's SqueezeNet."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])
    nodes = [helper.make_node("Conv", ["x", "Wf", "bf"], ["f_pre"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["f_pre"], ["features"]),
             helper.make_node("Dropout", ["features"], ["dropped"]),
             helper.make_node("Conv", ["dropped", "Wc", "bc"], ["c_pre"]),
             helper.make_node("Relu", ["c_pre"], ["c"])]
    inits = [_w("Wf", (4, 2, 3, 3)), _w("bf", (4,)), _w("Wc", (3, 4, 1, 1)), _w("bc", (3,))]
    if pool == "GlobalAveragePool":
        nodes.append(helper.make_node("GlobalAveragePool", ["c"], ["pooled"]))
    else:  # the dynamo exporter's mean over the spatial axes
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
        nodes.append(helper.make_node("ReduceMean", ["c", "axes"], ["pooled"], keepdims=1))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["logits"]))
    model = helper.make_model(helper.make_graph(
        nodes, "squeeze", [x], [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                              ["N", 3])], inits),
        opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("pool", ["GlobalAveragePool", "ReduceMean"])
def test_a_1x1_convolution_classifier_reads_the_feature_map(pool):
    info = graph.inspect(squeezenet_like(pool))
    assert info.output_name == "logits"
    assert info.default_layer == "features"
    layer = graph.resolve_layer(info, None)
    assert (layer.kind, layer.op, layer.width) == ("conv", "Relu", 4 * 5 * 5)
    assert info.default_reason == ("input of the final classifier 1x1 Conv (4 -> 3 per "
                                   "position): convolution output (Relu), through Dropout")


def xception_like(softmax=True):
    """mini-Xception's head: conv 3x3 + ReLU (the features, 4 x 5 x 5), a 3x3 convolution
    to one map per class (4 -> 3), global average pooling, Flatten[, Softmax]."""
    model = squeezenet_like()
    g = model.graph
    g.initializer[2].CopyFrom(_w("Wc", (3, 4, 3, 3)))
    g.node[3].attribute.append(helper.make_attribute("pads", [1, 1, 1, 1]))
    del g.node[4]  # no ReLU after the classifier
    g.node[3].output[0] = "c"
    if softmax:
        g.node[-1].output[0] = "flat"
        g.node.append(helper.make_node("Softmax", ["flat"], ["logits"]))
    onnx.checker.check_model(model)
    return model


def test_a_wider_convolution_classifier_pooled_into_a_softmax_reads_its_feature_map():
    info = graph.inspect(xception_like())
    assert info.output_name == "logits" and info.default_layer == "features"
    assert info.default_reason == ("input of the final classifier 3x3 Conv (4 -> 3 per "
                                   "position): convolution output (Relu), through Dropout")


def test_a_feature_extractor_ending_in_a_convolution_and_a_pooling_keeps_its_output():
    # without a Softmax a 3x3 convolution then a pooling makes features, not class scores
    info = graph.inspect(xception_like(softmax=False))
    assert info.output_name is None and info.default_layer == "pooled"  # walked back: Flatten


def test_a_convolution_output_map_is_not_class_scores():
    model = squeezenet_like()
    g = model.graph
    del g.node[-2:]  # no pooling: a score map per position (segmentation-like)
    g.output[0].CopyFrom(helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 3, 5, 5]))
    info = graph.inspect(model)
    assert info.output_name is None and info.default_layer == "c"


# ---------------------------------------------------------------------------
# widths where shape inference needs the batch size


def tokens_folded_into_rows():
    """x (N, 4, 6) -> Reshape to (N*4, 6) -> Gemm per token (6 -> 8) -> Reshape to (N, 32)
    -> Gemm classifier; both reshape targets are computed from ``Shape(x)``, as TorchScript
    exports of attention write them."""
    c = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Mul", ["n1", "four"], ["n4"]),
             helper.make_node("Concat", ["n4", "six"], ["rows_shape"], axis=0),
             helper.make_node("Reshape", ["x", "rows_shape"], ["rows"]),
             helper.make_node("Gemm", ["rows", "W", "b"], ["per_token"]),
             helper.make_node("Slice", ["s", "zero1", "one1"], ["n_"]),
             helper.make_node("Concat", ["n_", "minus1"], ["flat_shape"], axis=0),
             helper.make_node("Reshape", ["per_token", "flat_shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W2", "b2"], ["logits"])]
    inits = [c("zero", 0), c("zero1", [0]), c("one1", [1]), c("four", [4]), c("six", [6]),
             c("minus1", [-1]), _w("W", (6, 8)), _w("b", (8,)), _w("W2", (32, 3)),
             _w("b2", (3,))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])
    return _net(nodes, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                inits, inputs=[x])


def test_widths_and_rows_come_from_a_pass_with_the_batch_fixed():
    model = tokens_folded_into_rows()
    # with a symbolic batch, inference leaves both reshapes open
    types = graph._value_types(model)
    assert graph._dims(types["per_token"])[1:] == (8,)
    assert not isinstance(graph._dims(types["flat"])[1], int)
    info = graph.inspect(model)
    # per_token's rows are tokens, not samples: not a candidate; flat's width is derived
    assert [(l.name, l.kind, l.width) for l in info.layers] == [
        ("x", "input", 24), ("flat", "feature", 32), ("logits", "dense", 3)]
    assert info.default_layer == "flat"
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    got = run(graph.expose(model, ["flat"]), {"x": x})["flat"]
    assert got.shape == (2, 32)


def test_fixed_batch_sizes_are_read_as_declared():
    model = fix_batch(tokens_folded_into_rows(), 1)
    info = graph.inspect(model)
    assert [(l.name, l.width) for l in info.layers] == [("x", 24), ("flat", 32), ("logits", 3)]


# ---------------------------------------------------------------------------
# resolve_layer


def test_resolve_layer_default_and_by_name():
    info = graph.inspect(mlp())
    assert graph.resolve_layer(info, None).name == "hidden1"
    assert graph.resolve_layer(info, "default").name == "hidden1"
    assert graph.resolve_layer(info, "hidden0").width == 16
    assert graph.resolve_layer(info, "x").kind == "input"


def test_resolve_layer_without_default_lists_candidates():
    info = graph.inspect(labels_only(cnn_no_dense()))
    assert info.default_layer is None and info.output_name is None
    with pytest.raises(LayerError) as caught:
        graph.resolve_layer(info, None, "tiny")
    message = str(caught.value)
    assert "model 'tiny' has no default layer (no classifier and no float output" in message
    assert "--layer" in message and "`zooindex layers tiny`" in message
    assert "x (64), conv1 (256), pool1 (64), logits (3)" in message
    assert caught.value.candidates == ["x", "conv1", "pool1", "logits"]


def test_resolve_unknown_layer():
    info = graph.inspect(mlp())
    with pytest.raises(LayerError) as caught:
        graph.resolve_layer(info, "fc9", "m")
    assert str(caught.value) == ("layer 'fc9' not in model 'm'; candidates: x (8), hidden0 (16), "
                                 "hidden1 (12), logits (3). See `zooindex layers m`.")
    assert caught.value.layer == "fc9"


# ---------------------------------------------------------------------------
# expose


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm", "matmul_add"])
def test_expose_round_trip_matches_numpy(gemm):
    model = mlp(input_dim=8, hidden=(16, 12), classes=3, gemm=gemm)
    before = model.SerializeToString()
    exposed = graph.expose(model, ["hidden0", "hidden1"])
    assert model.SerializeToString() == before  # the original is untouched
    assert [o.name for o in exposed.graph.output] == ["probs", "hidden0", "hidden1"]

    w = weights(model)
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    got = run(exposed, {"x": x})
    h0 = relu(x @ w["W0"] + w["b0"])
    h1 = relu(h0 @ w["W1"] + w["b1"])
    np.testing.assert_allclose(got["hidden0"], h0, atol=1e-5)
    np.testing.assert_allclose(got["hidden1"], h1, atol=1e-5)
    # the original outputs are unchanged by the extra ones
    np.testing.assert_allclose(got["probs"], run(model, {"x": x})["probs"], atol=1e-6)
    logits = h1 @ w["W2"] + w["b2"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got["probs"], probs / probs.sum(1, keepdims=True), atol=1e-5)


def test_expose_keeps_known_types_and_skips_existing_outputs_and_input():
    model = cnn()
    exposed = graph.expose(model, ["pool1", "probs", "x", "pool1"])
    outputs = {o.name: o for o in exposed.graph.output}
    assert list(outputs) == ["probs", "pool1"]
    pool_type = outputs["pool1"].type.tensor_type
    assert pool_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in pool_type.shape.dim][1:] == [4, 4, 4]
    got = run(exposed, {"x": np.ones((2, 1, 8, 8), np.float32)})
    assert got["pool1"].shape == (2, 4, 4, 4)


def test_expose_unknown_layer_lists_candidates():
    with pytest.raises(LayerError, match=r"layer 'fc9' not in .*candidates: x \(8\), hidden0"):
        graph.expose(mlp(), ["hidden0", "fc9"])


def test_linear_features_default_layer_computes_known_function():
    w = np.array([[1.0, -1.0, 0.0], [0.5, 2.0, -3.0]], np.float32)  # (in=2, width=3)
    model = linear_features(w, classes=2)
    info = graph.inspect(model)
    assert info.default_layer == "hidden"
    x = np.array([[1.0, 2.0], [-1.0, 0.0]], np.float32)
    # row 1: [1+1, -1+4, 0-6] = [2, 3, -6] -> relu [2, 3, 0]; row 2: [-1, 1, 0] -> [0, 1, 0]
    got = run(graph.expose(model, [info.default_layer]), {"x": x})["hidden"]
    np.testing.assert_allclose(got, [[2, 3, 0], [0, 1, 0]], atol=1e-6)


@pytest.mark.parametrize("opset", [11, 21])
def test_opsets_inspect_and_run(opset):
    for model in (mlp(opset=opset, gemm=False), cnn(opset=opset)):
        info = graph.inspect(model)
        assert info.opset == opset
        assert info.default_layer in ("hidden1", "fc1")
        x_shape = (3,) + tuple(info.input_shape[1:])
        got = run(graph.expose(model, [info.default_layer]),
                  {"x": np.ones(x_shape, np.float32)})
        assert got[info.default_layer].shape == (3, graph.resolve_layer(info, None).width)


# ---------------------------------------------------------------------------
# load


def test_load_valid_file(tmp_path):
    path = save(mlp(), tmp_path / "m.onnx")
    model = graph.load(path)
    assert graph.inspect(model).default_layer == "hidden1"


def test_load_missing_file(tmp_path):
    with pytest.raises(ModelError, match=r"model file '.*nothere.onnx' not found"):
        graph.load(tmp_path / "nothere.onnx")


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("content", ["random", "truncated", "tensor", "empty"])
def test_load_refuses_non_models(tmp_path, content):
    good = mlp().SerializeToString()
    data = {
        "random": np.random.default_rng(3).bytes(400),
        "truncated": good[: len(good) // 2],
        "tensor": numpy_helper.from_array(np.arange(6, dtype=np.float32)).SerializeToString(),
        "empty": b"",
    }[content]
    path = _write(tmp_path / f"{content}.onnx", data)
    with pytest.raises(ModelError, match=r"'.*\.onnx' is not a valid ONNX model: ") as caught:
        graph.load(path)
    assert caught.value.path == str(path)


def test_load_refuses_every_truncation(tmp_path):
    good = mlp(hidden=(3,)).SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(0, len(good), 5):  # some prefixes parse into a partial model
        path.write_bytes(good[:cut])
        with pytest.raises(ModelError):
            graph.load(path)


def test_load_refuses_model_failing_the_checker(tmp_path):
    model = mlp()
    model.graph.node[0].input[1] = "missing_weight"
    path = _write(tmp_path / "bad.onnx", model.SerializeToString())
    with pytest.raises(ModelError, match="is not a valid ONNX model: .*missing_weight"):
        graph.load(path)


# ---------------------------------------------------------------------------
# external data


def test_external_data_load_without_and_with_weights(tmp_path):
    path = save(mlp(), tmp_path / "ext.onnx", external_data=True)
    assert (tmp_path / "ext.onnx.data").exists()
    light = graph.load(path)
    assert light.graph.initializer[0].data_location == TensorProto.EXTERNAL
    info = graph.inspect(light)
    assert info.external_data is True and info.params == 387
    assert [l.width for l in info.layers] == [8, 16, 12, 3]
    assert info.default_layer == "hidden1"

    full = graph.load(path, load_weights=True)
    x = np.ones((2, 8), np.float32)
    w = weights(mlp())
    expected = relu(x @ w["W0"] + w["b0"])
    got = run(graph.expose(full, ["hidden0"]), {"x": x})["hidden0"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_missing_external_weights_only_fail_when_loaded(tmp_path):
    path = save(mlp(), tmp_path / "ext.onnx", external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    assert graph.inspect(graph.load(path)).params == 387
    with pytest.raises(ModelError, match="external weights"):
        graph.load(path, load_weights=True)


def _external(location):
    model = mlp(hidden=(2,), classes=2)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return model


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "sub/../../secret.bin"])
def test_check_external_data_refuses_escaping_paths(tmp_path, location):
    with pytest.raises(ModelError, match=r"tensor 'W0'") as caught:
        graph.check_external_data(_external(location), tmp_path)
    assert location in str(caught.value)


def test_check_external_data_refuses_symlink_out(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink(outside, folder / "weights.bin")
    with pytest.raises(ModelError, match="symlink"):
        graph.check_external_data(_external("weights.bin"), folder)
    (folder / "inside.bin").write_bytes(b"\0" * 64)
    graph.check_external_data(_external("inside.bin"), folder)  # a plain file inside is fine


def test_load_refuses_escaping_external_data(tmp_path):
    path = _write(tmp_path / "m.onnx", _external("../secret.bin").SerializeToString())
    with pytest.raises(ModelError, match=r"'\.\./secret\.bin' of tensor 'W0'"):
        graph.load(path)


def _external_in_function(location):
    """:func:`mlp` whose output is scaled by a local function reading an external constant.

    The reference sits in a Constant node inside ``model.functions``, not in the graph.
    """
    model = mlp(hidden=(2,), classes=2)
    scale = onnx.TensorProto(name="scale", data_type=TensorProto.FLOAT, dims=[1],
                             data_location=TensorProto.EXTERNAL)
    scale.external_data.add(key="location", value=location)
    scale.external_data.add(key="length", value="4")
    body = [helper.make_node("Constant", [], ["s"], value=scale),
            helper.make_node("Mul", ["v", "s"], ["out"])]
    model.functions.append(helper.make_function(
        "local", "Scale", ["v"], ["out"], body, [helper.make_opsetid("", 17)]))
    model.opset_import.append(helper.make_opsetid("local", 1))
    g = model.graph
    g.node.append(helper.make_node("Scale", [g.output[0].name], ["scaled"], domain="local"))
    g.output[0].name = "scaled"
    return model


def test_the_tensor_walker_reaches_function_bodies_and_sparse_indices():
    model = _external_in_function("w.bin")
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(2, np.float32), "sv"),
        numpy_helper.from_array(np.array([0, 3], np.int64), "si"), [4])
    model.graph.sparse_initializer.append(sparse)
    names = [t.name for t in graph.all_tensors(model)]
    assert names[:4] == ["W0", "b0", "W1", "b1"]
    assert "sv" in names and "si" in names and names[-1] == "scale"
    assert graph.external_files(model) == ["w.bin"]


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin"])
def test_external_data_in_a_function_body_is_refused(tmp_path, location):
    model = _external_in_function(location)
    with pytest.raises(ModelError, match=r"tensor 'scale'") as caught:
        graph.check_external_data(model, tmp_path)
    assert location in str(caught.value)
    path = _write(tmp_path / "m.onnx", model.SerializeToString())
    with pytest.raises(ModelError, match=r"tensor 'scale'"):
        graph.load(path)


def test_external_data_in_a_function_body_inside_the_folder_loads(tmp_path):
    (tmp_path / "inside.bin").write_bytes(np.float32(2).tobytes())
    path = _write(tmp_path / "m.onnx", _external_in_function("inside.bin").SerializeToString())
    model = graph.load(path, check_files=True)  # the checker does not open the file itself
    assert graph.inspect(model).external_data is True
    (tmp_path / "inside.bin").unlink()
    with pytest.raises(ModelError, match=r"'inside.bin' of tensor 'scale' does not exist"):
        graph.load(path, check_files=True)


# ---------------------------------------------------------------------------
# scikit-learn exports


@pytest.mark.parametrize("classes", [3, 2])
@pytest.mark.parametrize("zipmap", [False, True], ids=["no_zipmap", "zipmap"])
def test_sklearn_mlp_export(classes, zipmap):
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx

    clf, x = fitted_sklearn_mlp(classes)
    options = None if zipmap else {id(clf): {"zipmap": False}}
    model = to_onnx(clf, x[:1], options=options)
    info = graph.inspect(model)
    # label output comes first; the probabilities are picked
    assert info.output_name == ("output_probability" if zipmap else "probabilities")
    assert info.output_is_probs is True
    dense = [l for l in info.layers if l.kind == "dense"]
    assert [l.width for l in dense] == [7, 6, 1 if classes == 2 else classes]
    assert info.default_layer == dense[1].name

    # the default layer is the last hidden activation sklearn computes
    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x[:4]})
    h = x[:4].astype(np.float64)
    for coef, intercept in zip(clf.coefs_[:2], clf.intercepts_[:2]):
        h = relu(h @ coef + intercept)
    np.testing.assert_allclose(got[info.default_layer], h, atol=1e-5)


def test_exposed_bytes_appended_to_the_file_read_as_the_exposed_model(tmp_path):
    """The serialized fragment merges into the model: the same graph as expose() gives."""
    from zooindex.graph import expose, exposed_bytes, load_serialized

    path = tmp_path / "m.onnx"
    save(mlp(seed=4), path)
    model, raw = load_serialized(path)
    assert raw == path.read_bytes()
    appended = onnx.load_model_from_string(exposed_bytes(model, ["hidden1"], raw))
    reference = expose(model, ["hidden1"])
    assert appended.SerializeToString() == reference.SerializeToString()
    assert [o.name for o in appended.graph.output] == ["probs", "hidden1"]
    # and without the file's bytes, the same model serialized whole
    assert exposed_bytes(model, ["hidden1"]) == reference.SerializeToString()
