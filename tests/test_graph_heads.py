"""Tests of the default layer of networks with several heads (zooindex.graph.representation).

The nets are small ``onnx.helper`` graphs shaped like a face model: a convolution, a
global average pooling (6 channels, standing for a 192-wide one), then one dense layer per
output (age, gender, race), sometimes behind a private hidden dense layer each.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support.onnx_factory import mlp, run
from zooindex import graph

WIDTHS = {"age": 1, "gender": 2, "race": 5, "boxes": 4}
POOLED = 6


def _w(name, shape, seed):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def face(heads=("age", "gender", "race"), *, hidden=0, softmax=(), own_flatten=False):
    """x (N, 3, 5, 5) -> Conv + Relu -> GlobalAveragePool -> Flatten -> one Gemm per head.

    ``hidden``: width of a private hidden Gemm + Relu before each head's Gemm (0: none);
    ``softmax``: heads whose output is a Softmax of their Gemm; ``own_flatten``: each
    head flattens the pooled map itself instead of sharing one Flatten.
    """
    nodes = [helper.make_node("Conv", ["x", "Wc", "bc"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["conv_act"]),
             helper.make_node("GlobalAveragePool", ["conv_act"], ["pooled"])]
    inits = [_w("Wc", (POOLED, 3, 3, 3), 0), _w("bc", (POOLED,), 1)]
    if not own_flatten:
        nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"]))
    outputs = []
    for seed, head in enumerate(heads, start=2):
        source, fan_in = "flat", POOLED
        if own_flatten:
            source = f"{head}_flat"
            nodes.append(helper.make_node("Flatten", ["pooled"], [source]))
        if hidden:
            nodes += [helper.make_node("Gemm", [source, f"{head}_Wh", f"{head}_bh"],
                                       [f"{head}_pre"]),
                      helper.make_node("Relu", [f"{head}_pre"], [f"{head}_hidden"])]
            inits += [_w(f"{head}_Wh", (fan_in, hidden), 10 * seed),
                      _w(f"{head}_bh", (hidden,), 10 * seed + 1)]
            source, fan_in = f"{head}_hidden", hidden
        width = WIDTHS[head]
        logits = f"{head}_logits" if head in softmax else head
        nodes.append(helper.make_node("Gemm", [source, f"{head}_W", f"{head}_b"], [logits]))
        inits += [_w(f"{head}_W", (fan_in, width), 10 * seed + 2),
                  _w(f"{head}_b", (width,), 10 * seed + 3)]
        if head in softmax:
            nodes.append(helper.make_node("Softmax", [logits], [head], axis=-1))
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT, ["N", width]))
    model = helper.make_model(helper.make_graph(
        nodes, "face", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
        outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _x(n=4):
    return np.random.default_rng(7).standard_normal((n, 3, 5, 5)).astype(np.float32)


@pytest.mark.parametrize("heads", [("age", "gender"), ("age", "gender", "race")],
                         ids=["2-heads", "3-heads"])
def test_heads_on_a_shared_pooled_vector_take_the_pooling(heads):
    info = graph.inspect(face(heads))
    assert info.default_layer == "pooled"
    layer = graph.resolve_layer(info, None)
    assert (layer.kind, layer.op, layer.width) == ("pool", "GlobalAveragePool", POOLED)
    names = ", ".join(heads)
    assert info.default_reason == (f"representation shared by {len(heads)} heads ({names}): "
                                   "pooled features (GlobalAveragePool), through Flatten")


def test_heads_that_flatten_the_pooling_each_share_the_pooling():
    info = graph.inspect(face(own_flatten=True))
    assert info.default_layer == "pooled"
    # each head has its own Flatten, so the shared tensor is the pooling itself
    assert info.default_reason == ("representation shared by 3 heads (age, gender, race): "
                                   "pooled features (GlobalAveragePool)")


def test_heads_with_a_private_hidden_layer_each_share_what_the_hidden_layers_read():
    info = graph.inspect(face(hidden=4))
    # each head's classifier reads its own hidden layer (age_hidden, ...); before the
    # multi-head rule the first head's hidden layer was the default
    assert info.default_layer == "pooled"
    assert info.default_reason.startswith("representation shared by 3 heads (age, gender, race)")
    assert [layer.name for layer in info.layers if layer.kind == "dense"] == [
        "age_hidden", "age", "gender_hidden", "gender", "race_hidden", "race"]


def test_the_shared_representation_is_the_pooled_mean_of_the_feature_map():
    model = face(hidden=4)
    info = graph.inspect(model)
    x = _x()
    exposed = run(graph.expose(model, info.default_layer), {"x": x})
    conv_act = run(graph.expose(model, "conv_act"), {"x": x})["conv_act"]
    # GlobalAveragePool: the mean over the 5 x 5 positions of each channel
    np.testing.assert_allclose(exposed["pooled"].reshape(len(x), POOLED),
                               conv_act.mean(axis=(2, 3)), rtol=1e-6, atol=1e-6)


def test_the_class_score_output_choice_is_unchanged():
    info = graph.inspect(face())
    assert info.output_name == "age" and info.output_is_probs is False  # first in graph order
    info = graph.inspect(face(softmax=("age", "gender", "race")))
    assert info.output_name == "age" and info.output_is_probs is True
    assert info.default_layer == "pooled"  # all behind a Softmax: heads of equal standing
    assert info.default_reason.startswith("representation shared by 3 heads")


def test_one_softmax_head_among_regression_heads_keeps_its_own_input():
    # gender alone is behind a Softmax: class scores beside two regression outputs
    info = graph.inspect(face(hidden=4, softmax=("gender",)))
    assert info.output_name == "gender" and info.output_is_probs is True
    assert info.default_layer == "gender_hidden"
    assert info.default_reason == ("input of the final classifier Gemm (4 -> 2): hidden "
                                   "dense layer (Relu)")


def test_two_softmax_heads_share_their_representation_without_the_regression_head():
    info = graph.inspect(face(("age", "gender", "race"), hidden=4, softmax=("gender", "race")))
    assert info.output_name == "gender" and info.default_layer == "pooled"
    assert info.default_reason.startswith("representation shared by 2 heads (gender, race):")


def test_a_forced_output_keeps_the_input_of_its_own_classifier():
    info = graph.inspect(face(hidden=4), output_name="race")
    assert info.output_name == "race" and info.default_layer == "race_hidden"
    assert info.default_reason.startswith("input of the final classifier Gemm (4 -> 5)")


def test_a_single_head_model_is_unchanged():
    info = graph.inspect(face(("gender",), hidden=4))
    assert info.default_layer == "gender_hidden"
    assert info.default_reason == ("input of the final classifier Gemm (4 -> 2): hidden "
                                   "dense layer (Relu)")
    info = graph.inspect(mlp())
    assert info.default_layer == "hidden1"
    assert info.default_reason == ("input of the final classifier Gemm (12 -> 3): hidden "
                                   "dense layer (Relu)")


def test_an_embedding_output_under_a_classifier_is_not_a_head_of_its_own():
    # pooled -> Gemm "embedding" (an output) -> Gemm "logits" (an output): the embedding
    # is the classifier's hidden layer, so the classifier's input stays the default
    model = face(("gender",))
    nodes = [n for n in model.graph.node if n.op_type != "Gemm"]
    nodes += [helper.make_node("Gemm", ["flat", "We", "be"], ["embedding"]),
              helper.make_node("Gemm", ["embedding", "Wl", "bl"], ["logits"])]
    inits = [t for t in model.graph.initializer if t.name in ("Wc", "bc")]
    inits += [_w("We", (POOLED, 4), 3), _w("be", (4,), 4), _w("Wl", (4, 2), 5),
              _w("bl", (2,), 6)]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2]),
               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4])]
    model = helper.make_model(helper.make_graph(nodes, "face", list(model.graph.input),
                                                outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    info = graph.inspect(model)
    assert info.output_name == "logits" and info.default_layer == "embedding"
    assert info.default_reason == ("input of the final classifier Gemm (4 -> 2): hidden "
                                   "dense layer (Gemm)")


def test_heads_that_share_only_the_input_keep_the_first_head_and_say_so():
    # two separate branches from the input, each a hidden layer and a classifier
    nodes, inits, outputs = [], [], []
    for seed, head in enumerate(("age", "gender")):
        nodes += [helper.make_node("Gemm", ["x", f"{head}_Wh", f"{head}_bh"], [f"{head}_pre"]),
                  helper.make_node("Relu", [f"{head}_pre"], [f"{head}_hidden"]),
                  helper.make_node("Gemm", [f"{head}_hidden", f"{head}_W", f"{head}_b"],
                                   [head])]
        inits += [_w(f"{head}_Wh", (6, 4), seed), _w(f"{head}_bh", (4,), seed + 10),
                  _w(f"{head}_W", (4, WIDTHS[head]), seed + 20),
                  _w(f"{head}_b", (WIDTHS[head],), seed + 30)]
        outputs.append(helper.make_tensor_value_info(head, TensorProto.FLOAT,
                                                     ["N", WIDTHS[head]]))
    model = helper.make_model(helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    info = graph.inspect(model)
    assert info.default_layer == "age_hidden"
    assert info.default_reason == ("input of the final classifier Gemm (4 -> 1): hidden "
                                   "dense layer (Relu); its 2 heads (age, gender) share "
                                   "nothing but the model input")


def test_the_shared_representation_does_not_depend_on_names():
    model = face(hidden=4)
    mapping = {}
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            mapping.setdefault(name, f"t{len(mapping)}")
            node.output[i] = mapping[name]
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.name = ""
    for value in model.graph.output:
        value.name = mapping[value.name]
    info = graph.inspect(model)
    assert info.default_layer == mapping["pooled"]
    assert info.default_reason.startswith(
        f"representation shared by 3 heads ({mapping['age']}, {mapping['gender']}, "
        f"{mapping['race']})")
