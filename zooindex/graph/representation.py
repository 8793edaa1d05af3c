"""The default layer: the representation that enters the final classifier.

This is the paper's "last hidden layer" generalised beyond dense heads:

1. The default layer is the classifier's data input (the classifier behind the
   class-score output, see :mod:`zooindex.graph.heads`), walked back through operators
   that only move each sample's values (Identity, Dropout, Flatten, and Reshape,
   Squeeze, Unsqueeze or Transpose that keep the batch axis and the values per sample):
   the walk ends at the operator that made the representation, which names it. Its
   kind is that of a recognised layer (``"dense"`` for the paper's CNN and
   MobileNetV3's and VGG's hidden Linear + activation; ``"conv"``), else ``"pool"``
   (GlobalAveragePool, ReduceMean: ResNet, EfficientNet, DenseNet, RegNet, MobileNetV2,
   Swin), ``"norm"`` (LayerNormalization or a normalisation written op by op: ConvNeXt,
   ViTs with a pooled ``fc_norm``), ``"token"`` (a Gather or Slice along the sequence:
   the class token of ViT and DeiT), or ``"feature"`` (anything else, e.g. a Concat).
   It is added to the candidates when it is not one already.
2. For a convolution classifier, the default is the feature map the convolution
   reads: every position is classified on its own and the scores pooled afterwards, so
   the map is the representation the classifier sees (SqueezeNet 1.0: 512x13x13, its
   1x1 convolution; mini-Xception: 128x4x4, a 3x3 convolution to one map per class,
   pooled into a Softmax); no tensor of the graph holds a pooled version of it.
3. A network with several heads of equal standing (several outputs behind classifiers
   of their own, all or none of them behind a Softmax: a face model's age, gender and
   race outputs) takes the representation the heads share: the nearest tensor that
   every head's classifier input is computed from, walked back as in 1. A head whose
   output another head's classifier reads is a hidden layer of that head, not a head
   of its own. The first head's input stays the default when one head is left, when
   a Softmax singles one out (class scores beside regression outputs), when the output
   is forced, and when the heads share nothing but the model input.
4. A model with no classifier (a feature extractor whose output is the embedding) takes
   its first float output, walked back the same way, and has ``output_name`` ``None``.
   A model with neither a classifier nor a float output of one row per sample has no
   default.

The reason says which case applied in one line, e.g. "input of the final classifier
Gemm (2048 -> 1000): pooled features (GlobalAveragePool), through Flatten", or
"representation shared by 3 heads (age, gender, race): pooled features
(GlobalAveragePool)".
"""

from __future__ import annotations

import onnx

from ..layer import Layer
from .heads import _GLOBAL_POOLS, _Head
from .proto import _DEFAULT_DOMAINS, _FLOAT_TYPES, _attribute, _Topology
from .shapes import _count, _layer, _Shapes
from .units import POOLS, _Unit

_NORMS = frozenset({
    "LayerNormalization", "BatchNormalization", "GroupNormalization",
    "InstanceNormalization", "LpNormalization", "RMSNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization",
})
# Operators that may pass each sample's values on unchanged, at most laid out anew; the
# walk from the classifier back to its representation goes through them (see
# _moves_values for the conditions on each).
_LAYOUT_OPS = frozenset({
    "Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
})
# How a reason names a representation of each kind.
_KIND_TEXT = {
    "input": "the model input", "conv": "convolution output", "pool": "pooled features",
    "dense": "hidden dense layer", "norm": "normalised features",
    "token": "one token of the sequence", "feature": "features",
}


def _default_layer(graph: onnx.GraphProto, topology: _Topology, unit_of: dict[str, _Unit],
                   shapes: _Shapes, input_name: str, output_name: str | None,
                   head: _Head | None, heads: list[tuple[str, _Head]] = ()
                   ) -> tuple[Layer | None, str]:
    """The default layer and the one-line reason for it (see the module's docstring).

    ``head`` is the classifier behind the class-score output ``output_name``; ``heads``
    the ``(output, classifier)`` pairs of equal standing (see
    :func:`zooindex.graph.heads._class_scores`).
    """
    note = ""
    shared = _shared_representation(topology, shapes, heads) if len(heads) > 1 else None
    if shared is not None:
        tensor, path, names = shared
        layer = _representation_layer(topology, unit_of, shapes, input_name, tensor)
        named = f"{len(names)} heads ({', '.join(names)})"
        if layer.kind != "input":
            return layer, f"representation shared by {named}: {_describe(layer, path)}"
        note = f"; its {named} share nothing but the model input"
    if head is not None:
        classifier = topology.node_of(head.unit.chain[0])
        tensor, path = _representation(topology, shapes, _classifier_input(topology, head))
        layer = _representation_layer(topology, unit_of, shapes, input_name, tensor)
        if head.unit.kind == "conv":
            weight = topology.initializer_dims.get(classifier.input[1], ())
            width = weight[0] if weight else (shapes.sample(head.unit.chain[0])[0] or (None,))[0]
            kernel = "x".join(str(k) for k in weight[2:]) if len(weight) > 2 else "1x1"
            what = f"{kernel} Conv ({_size(layer.shape[0] if layer.shape else None)} -> " \
                   f"{_size(width)} per position)"
        else:
            op = classifier.op_type  # not the unit's op, which may be a sigmoid after it
            if op == "MatMul" and len(head.unit.chain) > 1 and \
                    topology.node_of(head.unit.chain[1]).op_type == "Add":
                op = "MatMul+Add"
            what = f"{op} ({_size(layer.width)} -> " \
                   f"{_size(_count(shapes.sample(head.unit.chain[0])[0]))})"
        final = "final classifier" if head.summed == 1 else \
            f"first of {head.summed} final classifiers whose scores are added,"
        return layer, f"input of the {final} {what}: {_describe(layer, path)}{note}"
    if output_name is not None:
        return None, (f"output '{output_name}' comes from no classifier zooindex recognises "
                      "(a dense layer, or a 1x1 convolution)")
    for output in graph.output:
        if not output.type.HasField("tensor_type") or \
                output.type.tensor_type.elem_type not in _FLOAT_TYPES or \
                shapes.sample(output.name)[1] is False:
            continue
        tensor, path = _representation(topology, shapes, output.name)
        layer = _representation_layer(topology, unit_of, shapes, input_name, tensor)
        return layer, f"no classifier: the model's output, {_describe(layer, path)}"
    return None, "no classifier and no float output of one row per sample"


def _shared_representation(topology: _Topology, shapes: _Shapes,
                           heads: list[tuple[str, _Head]]
                           ) -> tuple[str, list[str], list[str]] | None:
    """The representation several heads share: its tensor, the operators walked back
    through, and the heads' outputs; ``None`` when fewer than two heads are independent.

    A head is independent unless another head's classifier reads its classifier's output
    (an embedding output with a classifier on top of it is that classifier's hidden
    layer). The shared tensor is the nearest one, in graph order, that every head's
    classifier input is computed from and that holds float values, one row per sample
    (not the shape arithmetic of a Reshape they share); then it is walked back like a
    classifier's input (:func:`_representation`).
    """
    reads = {output: _computed_from(topology, _classifier_input(topology, head))
             for output, head in heads}
    independent = [output for output, head in heads
                   if not any(tensor in reads[other] for other, _ in heads if other != output
                              for tensor in head.unit.chain)]
    if len(independent) < 2:
        return None
    common = set.intersection(*(reads[output] for output in independent))
    rows = [tensor for tensor in common
            if shapes.is_float(tensor) is not False and shapes.sample(tensor)[1] is not False]
    if not rows:
        return None
    nearest = max(rows, key=lambda tensor: topology.producer.get(tensor, (-1,))[0])
    tensor, path = _representation(topology, shapes, nearest)
    return tensor, path, independent


def _classifier_input(topology: _Topology, head: _Head) -> str:
    """The tensor a head's classifier reads (its data input; a convolution's first input)."""
    if head.unit.kind == "dense":
        return head.unit.data_input
    return topology.node_of(head.unit.chain[0]).input[0]


def _computed_from(topology: _Topology, tensor: str) -> set[str]:
    """``tensor`` and every non-constant tensor it is computed from."""
    seen = {tensor}
    stack = [tensor]
    while stack:
        node = topology.node_of(stack.pop())
        if node is None:
            continue
        for name in node.input:
            if name and name not in seen and name not in topology.constant:
                seen.add(name)
                stack.append(name)
    return seen


def _representation(topology: _Topology, shapes: _Shapes, tensor: str
                    ) -> tuple[str, list[str]]:
    """Walk back from ``tensor`` through operators that only move each sample's values.

    Returns the tensor reached and the operators walked through, in graph order. Those
    operators change neither the values nor, up to their order, the features that PCA
    and the estimators see, so the representation is named by the operator that made it.
    """
    path: list[str] = []
    seen = set()
    while tensor not in seen:
        seen.add(tensor)
        node = topology.node_of(tensor)
        if node is None or not node.input or not _moves_values(node, shapes):
            break
        path.append(node.op_type)
        tensor = node.input[0]
    return tensor, path[::-1]


def _moves_values(node: onnx.NodeProto, shapes: _Shapes) -> bool:
    """Does ``node`` pass each sample's values on unchanged, at most laid out anew?"""
    op = node.op_type
    if op not in _LAYOUT_OPS or node.domain not in _DEFAULT_DOMAINS:
        return False
    if op in ("Identity", "Dropout"):
        return True  # Dropout is the identity at inference
    if op == "Flatten":
        return _attribute(node, "axis", 1) == 1
    if op == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        return bool(perm) and perm[0] == 0
    # Reshape, Squeeze, Unsqueeze: both sides per sample, with as many values each
    before, batch_before = shapes.sample(node.input[0])
    after, batch_after = shapes.sample(node.output[0])
    return bool(batch_before and batch_after) and _count(before) is not None and \
        _count(before) == _count(after)


def _representation_layer(topology: _Topology, unit_of: dict[str, _Unit], shapes: _Shapes,
                          input_name: str, tensor: str) -> Layer:
    """``tensor`` as a candidate layer, named by what makes it (see the module's docstring)."""
    shape = shapes.sample(tensor)[0]
    if tensor == input_name or tensor not in topology.producer:  # a graph input
        return _layer(tensor, "input", "input", shape, 0)
    unit = unit_of.get(tensor)
    index, node = topology.producer[tensor]
    if unit is not None and unit.tensor == tensor:
        return _layer(tensor, unit.op, unit.kind, shape, unit.position)
    op = node.op_type
    if unit is not None:
        kind = unit.kind
    elif op in POOLS or op in _GLOBAL_POOLS:
        kind = "pool"
    elif op in _NORMS or _written_out_norm(topology, node):
        kind = "norm"
    elif op in ("Gather", "Slice") and _selects_along_sequence(topology, node):
        kind = "token"
    else:
        kind = "feature"
    return _layer(tensor, op, kind, shape, index + 1)


def _written_out_norm(topology: _Topology, node: onnx.NodeProto) -> bool:
    """Does ``node`` end a normalisation written op by op: ``(x - mean) / sqrt(var + eps)``,
    then an optional constant scale and shift, as exporters write LayerNorm before opset 17?"""
    for _ in range(3):
        if node is None:
            return False
        if node.op_type == "Div":
            parts = [topology.node_of(n) for n in node.input[:2]]
            return all(parts) and parts[0].op_type == "Sub" and parts[1].op_type == "Sqrt"
        variable = [n for n in node.input if n not in topology.constant]
        if node.op_type not in ("Add", "Mul") or len(variable) != 1:
            return False
        node = topology.node_of(variable[0])
    return False


def _selects_along_sequence(topology: _Topology, node: onnx.NodeProto) -> bool:
    """Does a Gather or Slice pick positions along an axis other than the batch's?"""
    if node.op_type == "Gather":
        return _attribute(node, "axis", 0) != 0
    if len(node.input) > 3 and node.input[3]:
        axes = topology.small_ints(node.input[3])
        return axes is not None and 0 not in axes
    return False  # Slice without axes slices from the first axis, the batch's


def _size(value) -> str:
    return "?" if value is None else str(value)


def _describe(layer: Layer, path: list[str]) -> str:
    """``pooled features (GlobalAveragePool), through Flatten`` and the like."""
    text = _KIND_TEXT.get(layer.kind, layer.kind)
    if layer.kind != "input":
        text += f" ({layer.op})"
    if path:
        text += ", through " + " + ".join(path)
    return text
