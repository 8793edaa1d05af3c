"""Layers recognised by graph structure, never by node or tensor names.

Every exporter (PyTorch, TensorFlow, scikit-learn) names things its own way, so a layer
is what its operators make:

* convolutions (kind ``"conv"``), taken after a following activation when the
  convolution feeds only that activation;
* pooling layers (kind ``"pool"``);
* dense layers (kind ``"dense"``): ``Gemm``, ``MatMul`` with a constant weight followed
  by an ``Add`` of a constant bias (op ``"MatMul+Add"``), or such a ``MatMul`` alone,
  again taken after a following activation.

A ``BatchNormalization`` fed only by a convolution or dense layer is absorbed before the
activation, since unfused exports put it there and its output is what the next layer
sees. ``_Unit.op`` is the operator that produces the layer's tensor (``"Relu"`` for a
convolution taken after its ReLU), except that a dense layer ending in its bias ``Add``
reads ``"MatMul+Add"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from .proto import _DEFAULT_DOMAINS, _Topology

ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Gelu", "HardSigmoid", "Clip",
    "PRelu", "HardSwish", "Softplus", "Mish",
})
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})


@dataclass(frozen=True)
class _Unit:
    """A recognised layer: its chain of tensors from the main op to the candidate."""

    kind: str
    op: str
    tensor: str
    position: int
    data_input: str | None
    chain: tuple[str, ...]
    activation: str | None


def _find_units(topology: _Topology) -> list[_Unit]:
    """Recognise conv, pool and dense layers in graph (that is, topological) order."""
    units = []
    for index, node in enumerate(topology.graph.node):
        if node.domain not in _DEFAULT_DOMAINS or not node.output or not node.output[0]:
            continue
        op = node.op_type
        if op == "Conv":
            units.append(_extend(topology, "conv", op, node, index, node.input[0]))
        elif op in POOLS:
            units.append(_Unit("pool", op, node.output[0], index + 1, node.input[0],
                               (node.output[0],), None))
        elif op == "Gemm":
            operands = list(node.input[:2])
            data = next((n for n in operands if n not in topology.constant), operands[0])
            units.append(_extend(topology, "dense", op, node, index, data))
        elif op == "MatMul":
            operands = list(node.input[:2])
            variable = [n for n in operands if n not in topology.constant]
            if len(variable) != 1:
                continue  # two activations multiplied (attention) is not a dense layer
            unit = _extend(topology, "dense", op, node, index, variable[0])
            following = topology.sole_consumer(node.output[0])
            if following is not None and following.op_type == "Add" and \
                    following.domain in _DEFAULT_DOMAINS:
                bias = [n for n in following.input if n != node.output[0]]
                if len(bias) == 1 and bias[0] in topology.constant:
                    add_index = topology.producer[following.output[0]][0]
                    unit = _extend(topology, "dense", "MatMul+Add", following, add_index,
                                   variable[0], chain=(node.output[0],))
            units.append(unit)
    return units


def _extend(topology: _Topology, kind: str, op: str, node: onnx.NodeProto, index: int,
            data_input: str, chain: tuple[str, ...] = ()) -> _Unit:
    """Follow a layer's output through an optional batch norm and activation it alone feeds."""
    tensor = node.output[0]
    chain = chain + (tensor,)
    activation = None
    following = topology.sole_consumer(tensor)
    if following is not None and following.op_type == "BatchNormalization" and \
            following.domain in _DEFAULT_DOMAINS:
        tensor, op = following.output[0], following.op_type
        index = topology.producer[tensor][0]
        chain += (tensor,)
        following = topology.sole_consumer(tensor)
    if following is not None and following.op_type in ACTIVATIONS and \
            following.domain in _DEFAULT_DOMAINS and following.input[0] == tensor:
        tensor, op = following.output[0], following.op_type
        index = topology.producer[tensor][0]
        chain += (tensor,)
        activation = following.op_type
    return _Unit(kind, op, tensor, index + 1, data_input, chain, activation)
