"""What every part of the graph work reads off an ``onnx.ModelProto``.

The one tensor walker (:func:`all_tensors`: every weight or constant, wherever it can
hide), the weightless copy that the checker and shape inference run on, the structural
checks that tell a model from a truncated or foreign protobuf, and :class:`_Topology`
(producer, consumers and constant-ness of every tensor). Nothing here touches files.
"""

from __future__ import annotations

import math
from collections import defaultdict

import onnx

_DEFAULT_DOMAINS = ("", "ai.onnx")
_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
})
# Initializers up to this many elements stay in the copy used for shape inference, so
# that Reshape targets and similar small constants still drive it; larger ones travel
# as typed inputs, which keeps inference cheap and independent of the weights.
_SMALL_INITIALIZER = 1024
# Declared tensor shapes beyond this many values are corrupt (2^36 float32 = 256 GiB)
_MAX_DECLARED_VALUES = 2**36


class _Topology:
    """Producer, consumers and constant-ness of every tensor of a graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer: dict[str, tuple[int, onnx.NodeProto]] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.outputs = {o.name for o in graph.output}
        self.initializers = {t.name for t in graph.initializer}
        self.initializers.update(t.values.name for t in graph.sparse_initializer)
        self.initializer_dims = {t.name: tuple(t.dims) for t in graph.initializer}
        # Constant folding by propagation: weights reached through Cast, Transpose or
        # DequantizeLinear of initializers are still weights.
        self.constant = set(self.initializers)
        for index, node in enumerate(graph.node):
            for name in node.output:
                if name:
                    self.producer[name] = (index, node)
            for name in set(node.input):
                if name:
                    self.consumers[name].append(node)
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant" or (inputs and all(n in self.constant for n in inputs)):
                self.constant.update(name for name in node.output if name)

    def node_of(self, tensor: str) -> onnx.NodeProto | None:
        found = self.producer.get(tensor)
        return None if found is None else found[1]

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The one node reading ``tensor``, if nothing else (graph output included) does."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def small_ints(self, tensor: str) -> list[int] | None:
        """The values of a small integer constant (an initializer or a Constant node)."""
        value = next((t for t in self.graph.initializer if t.name == tensor), None)
        if value is None:
            node = self.node_of(tensor)
            if node is None or node.op_type != "Constant":
                return None
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is None:
                ints = next((list(a.ints) for a in node.attribute if a.name == "value_ints"), None)
                return ints if ints is not None else next(
                    ([a.i] for a in node.attribute if a.name == "value_int"), None)
        if (value.data_location == onnx.TensorProto.EXTERNAL
                or _tensor_elements(value) > _SMALL_INITIALIZER
                or value.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)):
            return None
        return [int(v) for v in onnx.numpy_helper.to_array(value).ravel()]


def all_tensors(model: onnx.ModelProto):
    """Every TensorProto ``model`` holds, wherever weights or constants can hide.

    Initializers and sparse initializers (values and indices), and the tensor attributes
    of every node (a ``Constant``'s value, for instance): in the main graph, in the
    subgraphs of control-flow nodes at any depth, and in the body of every local function
    (``model.functions``). Every check of external-data locations walks this one list, so
    that a reference cannot slip past one of them by sitting in a function body.
    """
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)

def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for subgraph in attr.graphs:
                yield from _graph_tensors(subgraph)


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in all_tensors(model))


def _weightless_copy(model: onnx.ModelProto, *, keep_small: bool) -> onnx.ModelProto:
    """A copy of ``model`` whose weights are typed graph inputs instead of data.

    The checker and shape inference then run without the weights being present (external
    data) or copied (large models). External initializers always move; with
    ``keep_small``, only initializers above a small size move, and the small ones keep
    their values so that shape-carrying constants still inform shape inference. Without
    it (the checker's copy), external constants in function bodies become empty tensors.
    """
    graph = model.graph
    light = onnx.GraphProto()
    light.name = graph.name
    light.node.extend(graph.node)
    light.input.extend(graph.input)
    light.output.extend(graph.output)
    light.value_info.extend(graph.value_info)
    light.sparse_initializer.extend(graph.sparse_initializer)
    declared = {i.name for i in graph.input}
    for tensor in graph.initializer:
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if not external and (not keep_small or _tensor_elements(tensor) <= _SMALL_INITIALIZER):
            light.initializer.append(tensor)
        elif tensor.name not in declared:
            light.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    copy.functions.extend(model.functions)
    if not keep_small:
        # The checker would open what a function body's constants name; it needs their
        # types, not their values, and shape inference (keep_small) reads only their dims.
        for function in copy.functions:
            for tensor in _node_tensors(function.node):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    tensor.data_location = onnx.TensorProto.DEFAULT
                    tensor.ClearField("external_data")
                    tensor.ClearField("dims")
                    tensor.dims.append(0)
    copy.graph.CopyFrom(light)
    return copy


def _structure_problem(model) -> str | None:
    """Why ``model`` cannot be a usable model, or ``None``.

    Truncated or foreign protobufs often parse without error into an empty or partial
    ModelProto; these checks are what tells them apart from a model.
    """
    if not isinstance(model, onnx.ModelProto):
        return f"expected an onnx.ModelProto, got {type(model).__name__}"
    if not model.HasField("graph"):
        return "it has no graph"
    graph = model.graph
    if not graph.node:
        return "its graph has no nodes"
    if not graph.output:
        return "its graph has no outputs"
    initializers = {t.name for t in graph.initializer}
    if not any(i.name not in initializers for i in graph.input):
        return "its graph has no inputs"
    for value in (*graph.input, *graph.output, *graph.value_info):
        dims = _dims(value.type) or ()
        sizes = [d for d in dims if isinstance(d, int)]
        if any(d < 0 for d in sizes):
            return f"tensor '{value.name}' declares a negative size {_shape_text(dims)}"
        if math.prod(sizes) > _MAX_DECLARED_VALUES:
            return (f"tensor '{value.name}' declares shape {_shape_text(dims)}, "
                    f"{math.prod(sizes):,} values: its shape information is corrupt")
    return None

def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _tensor_elements(tensor: onnx.TensorProto) -> int:
    return math.prod(tensor.dims)  # dims live in the proto even when the data does not


def _dims(type_proto: onnx.TypeProto | None) -> tuple | None:
    """Full shape of a tensor type (ints, str for symbolic, None for unknown), or None."""
    if type_proto is None or not type_proto.HasField("tensor_type"):
        return None
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)
