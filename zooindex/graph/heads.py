"""The class-score output of a model and the final classifier behind it.

The class-score output is the graph output that traces back, through head operators
(Softmax, LogSoftmax, Dropout, Flatten, Reshape, Cast, ...), a scaling by a constant, or
an average of several heads, to a classifier: a dense layer (Gemm; MatMul + Add;
MatMul), bare or with a sigmoid, or a 1x1 convolution whose scores are pooled over all
positions (SqueezeNet). A dense layer with another activation (a tanh pooler) makes
features, not scores. Among several such outputs, one behind a Softmax or LogSoftmax
wins (a detector's class scores over its box regression), then float tensors, then
graph order; ``inspect(..., output_name=...)`` overrides the choice.

The outputs tied at the top of that order, each behind a classifier of its own, are
the model's heads (:func:`_class_scores`): one for most models, several for a network
with, say, age, gender and race outputs behind their own dense layers, none of them
behind a Softmax. What the default layer is then is decided in
:mod:`zooindex.graph.representation`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import onnx

from ..errors import LayerError
from .proto import _DEFAULT_DOMAINS, _FLOAT_TYPES, _Topology
from .shapes import _Shapes
from .units import _Unit

# Operators between the final classifier and the class-score output that keep the
# classifier's identity (ZipMap is scikit-learn's label -> probability dictionary).
_HEAD_OPS = frozenset({
    "Softmax", "LogSoftmax", "Identity", "Dropout", "Flatten", "Reshape", "Cast",
    "Squeeze", "Unsqueeze", "ZipMap",
})
_SCORE_OPS = frozenset({"Softmax", "LogSoftmax"})
# Pooling over all positions: after a 1x1 convolution classifier (SqueezeNet), and, with
# the local pools, the kind "pool" of a representation they produce.
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"})


@dataclass(frozen=True)
class _Head:
    """The final classifier behind a class-score output, and what lies between them."""

    unit: _Unit
    probs: bool = False   # a Softmax (or scikit-learn's sigmoid pair): probabilities
    scores: bool = False  # a Softmax or LogSoftmax: surely class scores
    pooled: bool = False  # a global pooling after a convolution classifier
    summed: int = 1       # how many classifiers' scores are added up (DeiT's two heads)
    wide: bool = False    # a convolution classifier whose kernel is wider than 1x1


def _trace_head(topology: _Topology, unit_of: dict[str, _Unit], tensor: str,
                depth: int = 0) -> _Head | None:
    """The classifier an output comes from through head ops, or ``None``.

    A classifier is a dense layer, bare or with a sigmoid (multi-label), or a 1x1
    convolution (bare, or with a ReLU or sigmoid) whose scores are pooled over all
    positions or cover one position. A dense layer with another activation (a pooler's
    tanh, a ReLU) makes features, not scores. Besides plain chains of head ops, scaling
    by a constant (a temperature) keeps the scores; scores of several classifiers
    averaged (as distilled DeiTs average their class and distillation heads) trace to
    the first of them in graph order; and the two-column probability scikit-learn
    writes for binary classifiers, ``Concat(1 - sigmoid(z), sigmoid(z))``, traces to
    ``z``'s layer and counts as probabilities.
    """
    if depth > 32:
        return None
    unit = unit_of.get(tensor)
    if unit is not None:
        if unit.kind == "dense" and unit.activation in (None, "Sigmoid"):
            return _Head(unit)
        if unit.kind == "conv" and unit.activation in (None, "Relu", "Sigmoid"):
            return _Head(unit, wide=not _pointwise(topology, unit))
        if unit.kind == "pool" and unit.op in _GLOBAL_POOLS:
            return _pooled(_trace_head(topology, unit_of, unit.data_input, depth + 1))
        return None
    node = topology.node_of(tensor)
    if node is None or not node.input or node.domain not in _DEFAULT_DOMAINS + ("ai.onnx.ml",):
        return None
    op = node.op_type
    variable = [n for n in node.input if n and n not in topology.constant]
    if op in _HEAD_OPS:
        found = _trace_head(topology, unit_of, node.input[0], depth + 1)
        if found is None:
            return None
        return replace(found, probs=found.probs or op == "Softmax",
                       scores=found.scores or op in _SCORE_OPS)
    if op in _GLOBAL_POOLS:
        return _pooled(_trace_head(topology, unit_of, node.input[0], depth + 1))
    scaled = op == "Mul" or (op == "Div" and variable[:1] == [node.input[0]])
    if scaled and len(variable) == 1:  # by a constant: a temperature, or an average
        summed = topology.node_of(variable[0])
        if summed is not None and summed.op_type in ("Add", "Sum"):
            return _averaged(topology, unit_of, summed, depth + 1)
        return _trace_head(topology, unit_of, variable[0], depth + 1)
    if op == "Mean":
        return _averaged(topology, unit_of, node, depth)
    if op in ("Concat", "Sub"):
        traced = {_trace_head(topology, unit_of, n, depth + 1) for n in variable}
        if len(traced) == 1:
            found = traced.pop()
            if found is not None:
                pair = op == "Concat" and found.unit.activation == "Sigmoid"
                return replace(found, probs=found.probs or pair, scores=found.scores or pair)
    return None


def _classifier(topology: _Topology, unit_of: dict[str, _Unit], tensor: str) -> _Head | None:
    """:func:`_trace_head`, where a convolution wider than 1x1 counts as a classifier only
    when its maps are pooled over all positions into a Softmax (mini-Xception's head: a
    3x3 convolution to one map per class, then global pooling); a feature extractor that
    ends in a convolution and a pooling, with no Softmax, keeps its output as the layer."""
    head = _trace_head(topology, unit_of, tensor)
    if head is not None and head.wide and not (head.pooled and head.scores):
        return None
    return head


def _averaged(topology: _Topology, unit_of: dict[str, _Unit], node: onnx.NodeProto,
              depth: int) -> _Head | None:
    """The first of the classifiers whose scores ``node`` adds up, when all inputs are.

    Only reached from a Mean, or a sum scaled by a constant: a plain residual ``Add``
    (``h + mlp(h)``) of a feature extractor is not an average of classifiers.
    """
    variable = [n for n in node.input if n and n not in topology.constant]
    traced = [_trace_head(topology, unit_of, n, depth + 1) for n in variable]
    if len(traced) < 2 or not all(traced):
        return None
    first = min(traced, key=lambda found: found.unit.position)
    return replace(first, probs=all(t.probs for t in traced),
                   scores=all(t.scores for t in traced), summed=sum(t.summed for t in traced))


def _pooled(found: _Head | None) -> _Head | None:
    """A global pooling after a convolution classifier; after anything else, no classifier."""
    if found is None or found.unit.kind != "conv":
        return None
    return replace(found, pooled=True)


def _pointwise(topology: _Topology, unit: _Unit) -> bool:
    """Is the convolution of ``unit`` a 1x1 one, by its attribute or its weight's shape?"""
    node = topology.node_of(unit.chain[0])
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
    if kernel is None and len(node.input) > 1:
        kernel = list(topology.initializer_dims.get(node.input[1], ())[2:])
    return bool(kernel) and all(k == 1 for k in kernel)


def _class_scores(graph: onnx.GraphProto, topology: _Topology, unit_of: dict[str, _Unit],
                  shapes: _Shapes, output_name: str | None
                  ) -> tuple[str | None, _Head | None, list[tuple[str, _Head]]]:
    """The graph output that carries class scores, the classifier behind it, and the heads.

    An output qualifies when it traces back to a classifier (:func:`_trace_head`) and
    holds one score vector per sample. Among those, one behind a Softmax or LogSoftmax
    comes first (the class scores of a detector beside its box regression, which comes
    from a dense layer too), then a float tensor (scikit-learn's label outputs are
    int64 and come first in its exports), then graph order. ``output_name`` forces the
    choice; ``(None, None, [])`` when no output qualifies.

    The heads are ``(output, classifier)`` for the outputs tied with the chosen one in
    that order, one per classifier (the first output of each in graph order), so that
    a classifier's logits and its probabilities count once. There are several only when
    no single classifier stands out: a Softmax behind one output and none behind the
    others makes that one the class scores and the others regression, while outputs
    that are all behind a Softmax, or none of them, are heads of equal standing. A
    forced ``output_name`` has no heads besides its own.
    """
    names = [o.name for o in graph.output]
    if output_name is not None:
        if output_name not in names:
            listed = ", ".join(f"'{n}'" for n in names)
            raise LayerError(f"output '{output_name}' not in the model; its outputs: "
                             f"{listed}; pass --output with the one that holds class scores",
                             layer=output_name, candidates=names)
        head = _classifier(topology, unit_of, output_name)
        return output_name, head, [] if head is None else [(output_name, head)]
    found = []
    for output in graph.output:
        head = _classifier(topology, unit_of, output.name)
        if head is None:
            continue
        shape, per_sample = shapes.sample(output.name)
        if per_sample is False:
            continue
        spread = None if shape is None or None in shape else sum(d > 1 for d in shape)
        if spread is not None and spread > 1:
            continue  # a score map (segmentation, tokens), not one vector per sample
        if head.unit.kind == "conv" and not head.pooled and spread is None:
            continue  # a convolution's output map, unless it is known to be 1x1
        is_float = (output.type.HasField("tensor_type")
                    and output.type.tensor_type.elem_type in _FLOAT_TYPES)
        found.append(((not head.scores, not is_float), output.name, head))
    if not found:
        return None, None, []
    best, name, head = min(found, key=lambda entry: entry[0])  # min keeps graph order on ties
    heads: dict[str, tuple[str, _Head]] = {}
    for rank, output, traced in found:
        if rank == best:
            heads.setdefault(traced.unit.tensor, (output, traced))
    return name, head, list(heads.values())
