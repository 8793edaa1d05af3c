"""Per-sample shapes of a graph's tensors, and layers built from them.

Widths come from ONNX shape inference, and where it leaves sizes open (reshape targets
computed from the input's shape, as in ViTs), from a second pass with the batch size
fixed (:class:`_Shapes`); sizes that depend on other free input sizes, or on shape
arithmetic ONNX cannot propagate (torchvision Swin's padding in TorchScript exports),
stay unknown (``dim`` ``None``). A candidate layer is a tensor with one row per sample:
tensors whose first axis is not the batch (the ``(tokens, batch, width)`` internals of
``nn.MultiheadAttention`` in TorchScript exports) are left out, since their rows are not
the samples'. Shape inference runs on a weightless copy of the model, so that it costs
little and never needs the weights.
"""

from __future__ import annotations

import math

import onnx

from ..layer import Layer
from .proto import _FLOAT_TYPES, _dims, _weightless_copy

# The batch size of the second shape-inference pass (see _Shapes): an odd prime, so that
# a first axis of that size is the batch rather than a channel, head or token count.
_PROBE_BATCH = 13


def _value_types(model: onnx.ModelProto, probe_batch: int | None = None
                 ) -> dict[str, onnx.TypeProto]:
    """Type and shape of every tensor that shape inference can tell, by name.

    Inference failures are not fatal: the graph's own declarations are used instead and
    the remaining shapes read as unknown. With ``probe_batch``, every graph input whose
    first size is not fixed gets that size, on a copy whose declared intermediate and
    output shapes are dropped, so that shapes computed from the batch (``Shape``,
    ``Gather``, ``Concat`` into a ``Reshape``) become numbers by data propagation.
    """
    light = _weightless_copy(model, keep_small=True)
    if probe_batch is not None:
        for value in light.graph.input:
            dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else ()
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_value = probe_batch
        del light.graph.value_info[:]
        for value in light.graph.output:
            if value.type.HasField("tensor_type"):
                value.type.tensor_type.ClearField("shape")
    inferred = light
    for data_prop in (True, False):
        try:
            inferred = onnx.shape_inference.infer_shapes(light, data_prop=data_prop)
            break
        except Exception:  # inference raises several private types; any means "unknown"
            continue
    graph = inferred.graph
    types: dict[str, onnx.TypeProto] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.HasField("type"):
            types[value.name] = value.type
    return types


class _Shapes:
    """Per-sample shapes of a graph's tensors, by ONNX shape inference.

    The first pass keeps the graph's batch dimension: a tensor whose first size is the
    input's batch size (the same symbol, or the same fixed number) is per sample. Where
    it leaves a size open (a reshape whose target is computed from the input's shape,
    as TorchScript exports of ViTs write) or cannot tell whether the first axis is the
    batch, a second pass with the batch fixed at ``_PROBE_BATCH`` settles it, when the
    input's batch is not a fixed number. A tensor whose first size is then another
    number is not per sample (sequence-first attention internals: ``(tokens, batch,
    width)``), and its rows are not the samples'. Other symbolic sizes (a free image
    height) stay unknown, and so does every size when inference fails on the graph.
    """

    def __init__(self, model: onnx.ModelProto, input_info: onnx.ValueInfoProto):
        self._model = model
        self._types = _value_types(model)
        self._probe: dict[str, onnx.TypeProto] | None = None
        dims = _dims(input_info.type)
        self._batch = dims[0] if dims else None
        self._can_probe = bool(dims) and not isinstance(dims[0], int)

    def sample(self, tensor: str) -> tuple[tuple | None, bool | None]:
        """``(shape per sample, whether the first axis is the batch)``, ``None`` if unknown.

        The shape holds ints, or ``None`` for sizes that stay unknown.
        """
        full = _dims(self._types.get(tensor)) or None
        rest = None if full is None else tuple(d if isinstance(d, int) else None
                                               for d in full[1:])
        if full is not None and full[0] is not None and full[0] == self._batch:
            if None in rest and self._can_probe:
                probed = self._probed(tensor)
                if probed is not None and len(probed) == len(full) and \
                        probed[0] == _PROBE_BATCH:
                    rest = _merged(rest, probed[1:])
            return rest, True
        if not self._can_probe:
            fixed = isinstance(self._batch, int) and full is not None and \
                isinstance(full[0], int)
            return rest, False if fixed else None
        probed = self._probed(tensor)
        if probed is not None and isinstance(probed[0], int):
            if probed[0] != _PROBE_BATCH:
                return _merged(None, probed[1:]), False
            known = rest if rest is not None and len(rest) == len(probed) - 1 else None
            return _merged(known, probed[1:]), True
        return rest, None

    def is_float(self, tensor: str) -> bool | None:
        """Whether ``tensor`` holds floating-point values; ``None`` when unknown."""
        known = self._types.get(tensor)
        if known is None or not known.HasField("tensor_type") or \
                not known.tensor_type.elem_type:
            return None
        return known.tensor_type.elem_type in _FLOAT_TYPES

    def _probed(self, tensor: str) -> tuple | None:
        if self._probe is None:
            self._probe = _value_types(self._model, probe_batch=_PROBE_BATCH)
        return _dims(self._probe.get(tensor)) or None


def _merged(known: tuple | None, probed: tuple) -> tuple:
    """Sizes of the first pass, completed by the probe pass's numbers where unknown."""
    known = known if known is not None else (None,) * len(probed)
    return tuple(k if k is not None else (p if isinstance(p, int) else None)
                 for k, p in zip(known, probed))


def _layer(name: str, op: str, kind: str, shape: tuple | None, position: int) -> Layer:
    if shape is None:
        return Layer(name, op, kind, (), None, position)
    return Layer(name, op, kind, shape, _count(shape), position)


def _count(shape: tuple | None) -> int | None:
    """Values per sample of a per-sample shape, ``None`` when any size is unknown."""
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)
