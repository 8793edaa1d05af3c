"""Exposing layers: a copy of a model that also outputs the chosen tensors.

:func:`expose` works on the in-memory model; :func:`exposed_bytes` serializes it for
onnxruntime, appending the new outputs to the file's own bytes where it has them.
"""

from __future__ import annotations

import onnx

from ..errors import LayerError, ModelError
from ..layer import Layer, listing
from .info import inspect
from .shapes import _value_types


def expose(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """Return a copy of ``model`` that also outputs the tensors ``names``.

    Names that already are graph outputs, or are the graph input (whose values the
    caller feeds and so already has), are accepted and not added again. The original
    proto is left untouched.
    """
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(_new_outputs(model, names))
    return exposed


def exposed_bytes(model: onnx.ModelProto, names, serialized: bytes | None = None) -> bytes:
    """``expose(model, names)``, serialized for onnxruntime.

    Given ``serialized``, the bytes ``model`` was parsed from, the new outputs are
    appended to them as a serialized fragment ``ModelProto(graph=GraphProto(output=...))``
    instead: protobuf parsers merge concatenated messages, appending repeated fields, so
    the result reads as the exposed model, without copying and re-serializing the
    weights (for a 13 MB model, 15 ms and two copies of it saved).
    """
    if serialized is None:
        return expose(model, names).SerializeToString()
    fragment = onnx.ModelProto()
    fragment.graph.output.extend(_new_outputs(model, names))
    return serialized + fragment.SerializeToString()


def _new_outputs(model: onnx.ModelProto, names) -> list[onnx.ValueInfoProto]:
    """Typed graph outputs for the tensors ``names`` that are not outputs or inputs yet."""
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input if i.name not in initializers}
    outputs = {o.name for o in graph.output}
    produced = {name for node in graph.node for name in node.output if name}
    unknown = [name for name in names if name not in produced and name not in inputs]
    if unknown:
        candidates = _candidate_layers(model)
        listed = ", ".join(f"'{name}'" for name in unknown)
        where = f"model graph '{graph.name}'" if graph.name else "the model"
        raise LayerError(f"layer {listed} not in {where}; candidates: "
                         f"{listing(candidates)}.",
                         layer=unknown[0], candidates=[c.name for c in candidates])
    wanted = [name for name in names if name not in outputs and name not in inputs]
    types = _value_types(model) if wanted else {}
    new = []
    for name in wanted:
        known = types.get(name)
        if known is not None and known.HasField("tensor_type") and known.tensor_type.elem_type:
            new.append(onnx.helper.make_value_info(name, known))
        else:
            new.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return new


def _candidate_layers(model: onnx.ModelProto) -> list[Layer]:
    """Candidate layers for error messages, best effort (an invalid model lists none).

    With several inputs, the layers are those seen from the first one: they do not
    depend on which input is chosen, except for the input layer itself.
    """
    try:
        initializers = {t.name for t in model.graph.initializer}
        first = next((i.name for i in model.graph.input if i.name not in initializers), None)
        return list(inspect(model, first).layers)
    except ModelError:
        return []
