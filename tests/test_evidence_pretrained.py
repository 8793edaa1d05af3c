"""The graph edits that turn packaged networks into zooindex models, on graphs built here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from evidence import pretrained  # noqa: E402

ort = pytest.importorskip("onnxruntime")


def run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def net(**fields):
    base = dict(name="n", family="f", source="pypi", package="p", version="1", member="m",
                input_size=(2, 2), channels=3, preprocessing={"layout": "NCHW"},
                trained_on="t", licence="l", convert="onnx_as_is")
    return pretrained.Net(**{**base, **fields})


def identity(shape):
    return helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]),
        opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("layout,axis", [("NCHW", 1), ("NHWC", 3)])
def test_flip_channels_feeds_the_graph_bgr(layout, axis):
    shape = [2, 3, 2, 2] if layout == "NCHW" else [2, 2, 2, 3]
    proto = pretrained.flip_channels(identity(shape), layout)
    x = np.arange(24, dtype=np.float32).reshape(shape)
    # the identity graph returns what it is fed: the RGB input with its channels reversed
    np.testing.assert_array_equal(run(proto, x), np.flip(x, axis=axis))


def test_fix_shapes_opens_the_batch_and_closes_the_image_size():
    proto = identity([1, 3, "h", "w"])
    pretrained.fix_shapes(proto, net(input_size=(4, 5)))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 4, 5]
    with pytest.raises(ValueError, match="not 5"):
        pretrained.fix_shapes(identity([1, 3, 4, 6]), net(input_size=(4, 5)))


def test_batch_reshapes_lets_a_batch_one_graph_take_any_batch():
    shape = numpy_helper.from_array(np.array([1, 6], dtype=np.int64), "shape")
    proto = helper.make_model(
        helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
                          [shape]),
        opset_imports=[helper.make_opsetid("", 17)])
    pretrained.batch_reshapes(proto)
    pretrained.fix_shapes(proto, net(input_size=(2, 3), channels=1,
                                     preprocessing={"layout": "NHWC"}))
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.testing.assert_array_equal(run(proto, x), x.reshape(4, 6))


def test_pooled_trunk_outputs_the_pooled_map_entering_the_head():
    # x (N, 2, 2, 2) -> Relu -> "map" -> Conv 1x1 (2 -> 3) -> Reshape -> "head"
    weights = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, 12], dtype=np.int64), "shape")
    nodes = [helper.make_node("Relu", ["x"], ["map"]),
             helper.make_node("Conv", ["map", "w"], ["scores"]),
             helper.make_node("Reshape", ["scores", "shape"], ["head"])]
    proto = helper.make_model(
        helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         ["n", 2, 2, 2])],
                          [helper.make_tensor_value_info("head", TensorProto.FLOAT,
                                                         ["n", 12])],
                          [weights, shape]),
        opset_imports=[helper.make_opsetid("", 17)])
    trunk = pretrained.pooled_trunk(proto, "head")
    onnx.checker.check_model(trunk)
    assert [n.op_type for n in trunk.graph.node] == ["Relu", "GlobalAveragePool", "Flatten"]
    assert not trunk.graph.initializer  # the head's weights went with it
    x = np.array([[[[1, -1], [3, 5]], [[-2, -2], [0, 8]]]], dtype=np.float32)
    # channel 0: relu -> 1, 0, 3, 5 -> mean 2.25; channel 1: 0, 0, 0, 8 -> mean 2
    np.testing.assert_allclose(run(trunk, x), [[2.25, 2.0]])


def test_parameter_count_counts_initializers_and_constants():
    proto = identity([1, 3])
    proto.graph.initializer.append(numpy_helper.from_array(np.zeros((2, 5), np.float32), "a"))
    proto.graph.node.append(helper.make_node(
        "Constant", [], ["c"], value=numpy_helper.from_array(np.zeros(7, np.float32), "c")))
    assert pretrained.parameter_count(proto) == 10 + 7


def test_every_network_names_a_known_converter_and_a_valid_preprocessing():
    from zooindex.adapt import Preprocessing

    for entry in pretrained.NETS.values():
        assert entry.convert in pretrained.CONVERTERS, entry.name
        assert entry.source in ("pypi", "npm", "deb"), entry.name
        Preprocessing(**entry.preprocessing, input_size=entry.input_size)
