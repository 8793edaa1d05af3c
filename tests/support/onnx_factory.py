"""Small deterministic ONNX models for the tests, built with ``onnx.helper``.

Every builder returns an ``onnx.ModelProto`` with a dynamic batch dimension ``"N"`` and
seeded numpy weights, so two calls with the same arguments give the same model. Tensor
names are stable (``x``, ``hidden0``, ``hidden1``, ``logits``, ``probs``...) so tests can
find them; zooindex itself must not rely on them.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17


def _finish(nodes, inputs, outputs, initializers, name, opset):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset)]
    # The lowest IR version that carries this opset, so older runtimes load it too.
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model


def _weight(rng, name, shape, scale=0.5):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _input(shape):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])


def _dense(nodes, inits, rng, source, out, fan_in, fan_out, tag, *, gemm=True, relu=True):
    """Append a dense layer ``source -> out``; with ``relu`` the ReLU output is ``out``."""
    inits += [_weight(rng, f"W{tag}", (fan_in, fan_out)), _weight(rng, f"b{tag}", (fan_out,))]
    pre = f"{out}_pre" if relu else out
    if gemm:
        nodes.append(helper.make_node("Gemm", [source, f"W{tag}", f"b{tag}"], [pre]))
    else:
        nodes.append(helper.make_node("MatMul", [source, f"W{tag}"], [f"{out}_mm"]))
        nodes.append(helper.make_node("Add", [f"{out}_mm", f"b{tag}"], [pre]))
    if relu:
        nodes.append(helper.make_node("Relu", [pre], [out]))


def mlp(input_dim=8, hidden=(16, 12), classes=3, seed=0, softmax=True, gemm=True,
        opset=DEFAULT_OPSET):
    """x -> [dense+ReLU named hidden0, hidden1, ...] -> logits (-> probs with softmax).

    Weights are ``W0, b0, W1, b1, ...`` with ``Wi`` of shape (fan_in, fan_out) and the
    logits layer last; ``gemm=False`` writes each dense layer as MatMul + Add.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    source, fan_in = "x", input_dim
    for i, width in enumerate(hidden):
        _dense(nodes, inits, rng, source, f"hidden{i}", fan_in, width, i, gemm=gemm)
        source, fan_in = f"hidden{i}", width
    _dense(nodes, inits, rng, source, "logits", fan_in, classes, len(hidden), gemm=gemm,
           relu=False)
    output = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
        output = "probs"
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", classes])]
    return _finish(nodes, [_input((input_dim,))], outputs, inits, "mlp", opset)


def _conv_pool(nodes, inits, rng, input_shape, filters):
    """Conv 3x3 (same padding) + ReLU named conv1, then 2x2 max pool named pool1, flattened."""
    channels, height, width = input_shape
    inits += [_weight(rng, "Wc", (filters, channels, 3, 3)), _weight(rng, "bc", (filters,))]
    nodes += [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["conv1_pre"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1_pre"], ["conv1"]),
        helper.make_node("MaxPool", ["conv1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool1"], ["flat"], axis=1),
    ]
    return filters * (height // 2) * (width // 2)


def cnn(input_shape=(1, 8, 8), filters=4, hidden=16, classes=3, seed=0, dropout=True,
        opset=DEFAULT_OPSET):
    """x -> conv1 (Conv+ReLU) -> pool1 -> flat -> fc1 (Gemm+ReLU) -> [Dropout] -> logits -> probs.

    The classifier reads ``fc1`` through Dropout, as in graphs exported with Dropout kept.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    flat_dim = _conv_pool(nodes, inits, rng, input_shape, filters)
    _dense(nodes, inits, rng, "flat", "fc1", flat_dim, hidden, 1)
    source = "fc1"
    if dropout:
        nodes.append(helper.make_node("Dropout", ["fc1"], ["fc1_drop"]))
        source = "fc1_drop"
    _dense(nodes, inits, rng, source, "logits", hidden, classes, 2, relu=False)
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])]
    return _finish(nodes, [_input(input_shape)], outputs, inits, "cnn", opset)


def cnn_no_dense(input_shape=(1, 8, 8), filters=4, classes=3, seed=0, softmax=True,
                 opset=DEFAULT_OPSET):
    """x -> conv1 (Conv+ReLU) -> pool1 -> flat -> logits (Gemm) [-> probs]: no hidden dense."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    flat_dim = _conv_pool(nodes, inits, rng, input_shape, filters)
    _dense(nodes, inits, rng, "flat", "logits", flat_dim, classes, 1, relu=False)
    output = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
        output = "probs"
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", classes])]
    return _finish(nodes, [_input(input_shape)], outputs, inits, "cnn_no_dense", opset)


def linear_features(W, classes=2, seed=0, opset=DEFAULT_OPSET):
    """x (N, in) -> hidden = ReLU(x @ W) -> logits (seeded Gemm) -> probs.

    The default layer is ``hidden``, a known function of the input, so tests of the
    search can predict the features exactly. ``W`` has shape (in, width).
    """
    W = np.asarray(W, dtype=np.float32)
    rng = np.random.default_rng(seed)
    fan_in, width = W.shape
    inits = [numpy_helper.from_array(W, "W0"),
             numpy_helper.from_array(np.zeros(width, np.float32), "b0"),
             _weight(rng, "W1", (width, classes)), _weight(rng, "b1", (classes,))]
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "b0"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "W1", "b1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])]
    return _finish(nodes, [_input((fan_in,))], outputs, inits, "linear_features", opset)


def weights(model):
    """The model's initializers as ``{name: numpy array}`` (weights must be loaded)."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def save(model, path, external_data=False):
    """Write ``model`` to ``path``; with ``external_data`` all weights go to ``<name>.data``.

    The model passed in is not modified (``onnx.save`` rewrites tensors in place when
    it moves them to an external file, so a copy is saved).
    """
    path = os.fspath(path)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if external_data:
        onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=0)
    else:
        onnx.save_model(copy, path)
    return path


def labels_only(model):
    """A copy of ``model`` whose only output is the argmax label of its first output (int64).

    Such a model has neither class scores nor a float output to take features from by
    default: zooindex gives it no default layer.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    g = copy.graph
    g.node.append(helper.make_node("ArgMax", [g.output[0].name], ["label"], axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 1]))
    onnx.checker.check_model(copy)
    return copy


def keras_like_cnn(image=(8, 8), channels=3, filters=4, hidden=16, classes=3, seed=0,
                   dynamic_flatten=False, opset=DEFAULT_OPSET):
    """An image classifier laid out the way Keras models reach ONNX (through tf2onnx).

    NHWC input ``(N, H, W, C)``, a Transpose to NCHW before the convolution and back
    after the pooling, a Reshape flatten (its target shape computed from the input's
    batch size with ``dynamic_flatten``), then dense layers written as MatMul + Add::

        x -> Transpose -> Conv 3x3 (same) -> Relu -> MaxPool 2x2 -> Transpose
          -> Reshape (N, -1) -> MatMul W1 + b1 -> Relu (the hidden layer)
          -> MatMul W2 + b2 -> Softmax

    Tensor names imitate tf2onnx's (``sequential/dense/Relu:0``); the flattened
    features are in NHWC order, as Keras computes them. Weights: ``Wc`` (filters, C, 3, 3),
    ``bc``, ``W1`` (flat, hidden), ``b1``, ``W2`` (hidden, classes), ``b2``.
    """
    rng = np.random.default_rng(seed)
    height, width = image
    flat = filters * (height // 2) * (width // 2)
    inits = [_weight(rng, "Wc", (filters, channels, 3, 3)), _weight(rng, "bc", (filters,)),
             _weight(rng, "W1", (flat, hidden), scale=0.2), _weight(rng, "b1", (hidden,)),
             _weight(rng, "W2", (hidden, classes)), _weight(rng, "b2", (classes,))]
    p = "sequential/"
    nodes = [
        helper.make_node("Transpose", ["input_1"], [p + "conv2d/Conv2D__6:0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", [p + "conv2d/Conv2D__6:0", "Wc", "bc"], [p + "conv2d/BiasAdd:0"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [p + "conv2d/BiasAdd:0"], [p + "conv2d/Relu:0"]),
        helper.make_node("MaxPool", [p + "conv2d/Relu:0"], [p + "max_pooling2d/MaxPool:0"],
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", [p + "max_pooling2d/MaxPool:0"],
                         [p + "max_pooling2d/MaxPool__12:0"], perm=[0, 2, 3, 1]),
    ]
    if dynamic_flatten:
        inits += [numpy_helper.from_array(np.array([0], np.int64), "const_starts"),
                  numpy_helper.from_array(np.array([1], np.int64), "const_ends"),
                  numpy_helper.from_array(np.array([flat], np.int64), "const_flat")]
        nodes += [
            helper.make_node("Shape", ["input_1"], [p + "flatten/Shape:0"]),
            helper.make_node("Slice", [p + "flatten/Shape:0", "const_starts", "const_ends"],
                             [p + "flatten/strided_slice:0"]),
            helper.make_node("Concat", [p + "flatten/strided_slice:0", "const_flat"],
                             [p + "flatten/Reshape/shape:0"], axis=0),
        ]
        shape_name = p + "flatten/Reshape/shape:0"
    else:
        inits.append(numpy_helper.from_array(np.array([-1, flat], np.int64), "const_fold_opt__7"))
        shape_name = "const_fold_opt__7"
    nodes += [
        helper.make_node("Reshape", [p + "max_pooling2d/MaxPool__12:0", shape_name],
                         [p + "flatten/Reshape:0"]),
        helper.make_node("MatMul", [p + "flatten/Reshape:0", "W1"], [p + "dense/MatMul:0"]),
        helper.make_node("Add", [p + "dense/MatMul:0", "b1"], [p + "dense/BiasAdd:0"]),
        helper.make_node("Relu", [p + "dense/BiasAdd:0"], [p + "dense/Relu:0"]),
        helper.make_node("MatMul", [p + "dense/Relu:0", "W2"], [p + "dense_1/MatMul:0"]),
        helper.make_node("Add", [p + "dense_1/MatMul:0", "b2"], [p + "dense_1/BiasAdd:0"]),
        helper.make_node("Softmax", [p + "dense_1/BiasAdd:0"], ["dense_1"], axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                            ["unk__0", height, width, channels])]
    outputs = [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["unk__1", classes])]
    return _finish(nodes, inputs, outputs, inits, "keras_like_cnn", opset)


def two_inputs(input_dim=6, hidden=(8, 5), classes=3, aux_shape=("N", 4),
               aux_type=TensorProto.FLOAT, seed=0, opset=DEFAULT_OPSET):
    """:func:`mlp` with a second data input ``aux`` that shifts the first hidden layer.

    ``hidden0 = ReLU(x W0 + b0 + sum(aux) * v)``: with ``aux`` all zeros the model
    computes exactly :func:`mlp`'s layers from the same weights (``v`` is an extra
    initializer of shape (hidden[0],)); any other ``aux`` changes them. ``aux`` may have
    any shape and numeric type: it is cast to float and summed over every axis.
    """
    model = mlp(input_dim=input_dim, hidden=hidden, classes=classes, seed=seed, opset=opset)
    rng = np.random.default_rng(seed + 1)
    graph = model.graph
    graph.initializer.append(_weight(rng, "v", (hidden[0],)))
    first_relu = next(n for n in graph.node if n.op_type == "Relu")
    pre = first_relu.input[0]
    first_relu.input[0] = "hidden0_shifted"
    extra = [
        helper.make_node("Cast", ["aux"], ["aux_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["aux_float"], ["aux_sum"], keepdims=0),
        helper.make_node("Mul", ["aux_sum", "v"], ["aux_shift"]),
        helper.make_node("Add", [pre, "aux_shift"], ["hidden0_shifted"]),
    ]
    index = list(graph.node).index(first_relu)
    for offset, node in enumerate(extra):
        graph.node.insert(index + offset, node)
    graph.input.append(helper.make_tensor_value_info("aux", aux_type, list(aux_shape)))
    onnx.checker.check_model(model)
    return model


def fix_batch(model, size=1):
    """A copy of ``model`` whose inputs and outputs have the batch dimension fixed at ``size``.

    Exporters write such models when traced with a static example batch.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in list(copy.graph.input) + list(copy.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = size
    del copy.graph.value_info[:]
    onnx.checker.check_model(copy)
    return copy


def relu(a):
    return np.maximum(a, 0.0)


def run(model, feeds):
    """Every graph output of ``model`` on ``feeds``, by name, with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def fitted_sklearn_mlp(classes=3, seed=0):
    """A scikit-learn ``MLPClassifier`` (hidden 7, 6) fitted on 60 seeded 5-feature rows,
    and those rows, for exporter tests."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    y = np.arange(60) % classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(7, 6), max_iter=30, random_state=0).fit(x, y)
    return clf, x
