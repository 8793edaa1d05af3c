"""What zooindex needs to know about a model, read from its in-memory graph alone.

:func:`inspect` takes an ``onnx.ModelProto`` and never touches files: its input, its
candidate layers (the model input and the layers of :mod:`zooindex.graph.units`), its
class-score output (:mod:`zooindex.graph.heads`) and its default layer
(:mod:`zooindex.graph.representation`). A model with several data inputs is inspected
for the one named by ``input_name``; the others are recorded so that the runner can
feed them neutral values (:func:`default_feeds`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import ModelError
from ..layer import Layer, choose
from .heads import _class_scores
from .proto import (
    _DEFAULT_DOMAINS, _dims, _has_external_data, _shape_text, _structure_problem,
    _tensor_elements, _Topology,
)
from .representation import _default_layer
from .shapes import _layer, _Shapes
from .units import _find_units


@dataclass(frozen=True)
class ModelInfo:
    """What zooindex needs to know about a model, read from its graph alone.

    ``input_shape`` keeps the batch dimension; sizes are ints, ``str`` for symbolic
    dimensions and ``None`` for dimensions that are neither. ``extra_inputs`` holds
    ``(name, shape, dtype)`` for every data input other than the one the target feeds
    (see :func:`default_feeds`); ``shape`` reads like ``input_shape``, or ``None`` when
    even the rank is unknown, and ``dtype`` is ``None`` for non-tensor inputs.

    ``default_layer`` is the representation entering the final classifier (see
    :mod:`zooindex.graph.representation`), one of ``layers``, or ``None``;
    ``default_reason`` says in one line why, e.g. "input of the final classifier Gemm
    (2048 -> 1000): pooled features (GlobalAveragePool), through Flatten", or
    "representation shared by 3 heads (age, gender, race): pooled features
    (GlobalAveragePool)". ``output_name`` is the graph output carrying
    class scores, ``None`` when the model has none (a feature extractor);
    ``output_is_probs`` says whether a softmax is already applied to it.
    """

    input_name: str
    input_shape: tuple
    input_dtype: str
    opset: int
    params: int
    layers: tuple[Layer, ...]
    default_layer: str | None
    default_reason: str
    output_name: str | None
    output_is_probs: bool
    metadata: dict
    external_data: bool
    extra_inputs: tuple = ()


def inspect(model: onnx.ModelProto, input_name: str | None = None,
            output_name: str | None = None) -> ModelInfo:
    """Describe ``model``: its input, candidate layers, default layer and classifier output.

    A model with several data inputs (a mask, a sequence length, a second modality)
    needs ``input_name`` to say which one takes the target's data; the others are
    listed in ``ModelInfo.extra_inputs`` and get :func:`default_feeds` when it runs.

    ``output_name`` names the graph output that carries class scores, where the rule
    that finds it (see :mod:`zooindex.graph.heads`) would pick another; the default layer
    is then the input of the classifier behind that output.
    """
    problem = _structure_problem(model)
    if problem is not None:
        raise ModelError(f"the model is not a valid ONNX model: {problem}")
    graph = model.graph
    topology = _Topology(graph)
    input_info, others = _data_input(graph, topology, input_name)

    input_dims = _dims(input_info.type)
    elem_type = (input_info.type.tensor_type.elem_type
                 if input_info.type.HasField("tensor_type") else 0)
    if not elem_type:
        raise ModelError(f"the model input '{input_info.name}' is not a tensor of a known "
                         "element type; only tensor inputs can be fed")
    input_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name

    shapes = _Shapes(model, input_info)
    units = _find_units(topology)
    unit_of = {tensor: unit for unit in units for tensor in unit.chain}
    layers = [_layer(input_info.name, "input", "input", shapes.sample(input_info.name)[0], 0)]
    for unit in units:
        shape, per_sample = shapes.sample(unit.tensor)
        if per_sample is not False:  # a first axis that is not the batch has no rows to read
            layers.append(_layer(unit.tensor, unit.op, unit.kind, shape, unit.position))

    output_name, head, heads = _class_scores(graph, topology, unit_of, shapes, output_name)
    default, reason = _default_layer(graph, topology, unit_of, shapes, input_info.name,
                                     output_name, head, heads)
    if default is not None and all(layer.name != default.name for layer in layers):
        layers.append(default)
        layers.sort(key=lambda layer: layer.position)

    return ModelInfo(
        input_name=input_info.name,
        input_shape=input_dims if input_dims is not None else (),
        input_dtype=input_dtype,
        opset=_default_opset(model),
        params=_count_params(graph),
        layers=tuple(layers),
        default_layer=default.name if default is not None else None,
        default_reason=reason,
        output_name=output_name,
        output_is_probs=head is not None and head.probs,
        metadata={prop.key: prop.value for prop in model.metadata_props},
        external_data=_has_external_data(model),
        extra_inputs=tuple(_input_spec(value) for value in others),
    )


def default_feeds(info: ModelInfo, batch: int) -> dict[str, np.ndarray]:
    """Zeros for every extra input of ``info``, sized for a batch of ``batch`` samples.

    The extra inputs of a model fed one target (masks, auxiliary features) are given
    their neutral value: zeros of their declared shape, whose first dimension, when it
    is not a fixed size, is the batch's. Any other free size has no value that could
    be called neutral, so such a model is refused.
    """
    feeds = {}
    for name, shape, dtype in info.extra_inputs:
        if dtype is None or shape is None:
            what = "is not a tensor of a known type" if dtype is None else "has no declared shape"
            raise ModelError(
                f"extra model input '{name}' {what}, so zooindex cannot feed it a default "
                f"value; pass --input '{name}' if the target belongs there, or export the "
                "model without that input")
        dims = []
        for axis, size in enumerate(shape):
            if isinstance(size, int) and size >= 0:
                dims.append(size)
            elif axis == 0:
                dims.append(int(batch))
            else:
                raise ModelError(
                    f"extra model input '{name}' has shape {_shape_text(shape)} with a free "
                    f"size at axis {axis}; zooindex feeds extra inputs zeros and cannot choose "
                    "that size; export the model with a fixed size there, or pass --input "
                    f"'{name}' if the target belongs there")
        if np.dtype(dtype).kind not in "biuf":
            raise ModelError(
                f"extra model input '{name}' is of type {dtype}; zooindex can feed zeros "
                "only to numeric and boolean inputs; export the model without that input")
        feeds[name] = np.zeros(dims, dtype=dtype)
    return feeds


def resolve_layer(info: ModelInfo, layer: str | None, model: str = "model") -> Layer:
    """The layer to extract features from: the default for ``None``/"default", else by
    name (see :func:`zooindex.layer.choose`, the one rule every command uses)."""
    return choose(info.layers, info.default_layer, layer, model, reason=info.default_reason)[0]


def _data_input(graph: onnx.GraphProto, topology: _Topology, input_name: str | None
                ) -> tuple[onnx.ValueInfoProto, list[onnx.ValueInfoProto]]:
    """The input the target feeds, chosen by ``input_name`` when there are several, and the rest.

    Inputs that are also initializers are weights (older exporters list them as inputs).
    """
    inputs = [i for i in graph.input if i.name not in topology.initializers]
    listed = ", ".join(f"'{i.name}'" for i in inputs)
    if input_name is None:
        if len(inputs) > 1:
            raise ModelError(f"the model has several inputs ({listed}); pass --input NAME "
                             "with the one that takes the target data (the others are fed "
                             "zeros)")
        return inputs[0], []
    chosen = [i for i in inputs if i.name == input_name]
    if not chosen:
        raise ModelError(f"input '{input_name}' not in the model; its inputs: {listed}; "
                         "pass --input with one of them")
    return chosen[0], [i for i in inputs if i.name != input_name]


def _input_spec(value: onnx.ValueInfoProto) -> tuple:
    """``(name, shape, dtype)`` of a graph input, as ``ModelInfo.extra_inputs`` holds it."""
    elem_type = (value.type.tensor_type.elem_type
                 if value.type.HasField("tensor_type") else 0)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else None
    return (value.name, _dims(value.type), dtype)


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS:
            return int(opset.version)
    return 1  # the ONNX default when the default domain is not declared


def _count_params(graph: onnx.GraphProto) -> int:
    total = sum(_tensor_elements(t) for t in graph.initializer)
    total += sum(_tensor_elements(t.values) for t in graph.sparse_initializer)
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            continue
        for attr in node.attribute:
            if attr.name == "value":
                total += _tensor_elements(attr.t)
            elif attr.name == "sparse_value":
                total += _tensor_elements(attr.sparse_tensor.values)
            elif attr.name in ("value_float", "value_int"):
                total += 1
            elif attr.name == "value_floats":
                total += len(attr.floats)
            elif attr.name == "value_ints":
                total += len(attr.ints)
    return total
