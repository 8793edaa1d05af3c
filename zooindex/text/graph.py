"""Which tensors of a transformer text encoder are its hidden states.

A text encoder exported to ONNX (transformers' or optimum's exporters) takes
``input_ids``, ``attention_mask`` and optionally ``token_type_ids``, and computes one
hidden state per layer, ``(batch, tokens, width)``. Exporters name nothing, so they are
found by structure, on the in-memory graph alone:

* the input of every transformer block: a tensor read by at least three matrix products
  with weights (the query, key and value projections) and by an ``Add`` (the residual
  connection). These are ``hidden_states[0..L-1]`` of transformers (the embeddings'
  output first);
* the output of the last block: the graph output ``last_hidden_state`` when the graph
  has one, else the deepest layer normalisation (a ``LayerNormalization`` node, or the
  arithmetic that opsets before 17 write for it) after the last block's input
  (BERT-style blocks end in one), ``hidden_states[L]``.

Each becomes a candidate :class:`~zooindex.layer.Layer` of kind ``hidden`` whose width is
the hidden size: its features are the tokens pooled over the attention mask (see
:mod:`zooindex.text.run`).
"""

from __future__ import annotations

import onnx

from ..layer import Layer

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
HIDDEN = "hidden"
LAYER_MEAN = "::layermean"  # the mean over the hidden layers, a virtual layer
_MATMULS = ("MatMul", "Gemm", "FusedMatMul")


def is_text_model(model: onnx.ModelProto) -> bool:
    """Whether the graph takes token ids (an ``input_ids`` input)."""
    return any(i.name == "input_ids" for i in model.graph.input)


def text_inputs(model: onnx.ModelProto) -> list[str]:
    """The text inputs the graph has, of :data:`TEXT_INPUTS`, in that order; refuses a
    graph with another data input (it could not be fed)."""
    from ..errors import ModelError

    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    other = [n for n in names if n not in TEXT_INPUTS]
    if other:
        raise ModelError(f"text model has inputs {', '.join(other)} besides "
                         f"{', '.join(n for n in TEXT_INPUTS if n in names)}; zooindex feeds "
                         "input_ids, attention_mask and token_type_ids only")
    return [n for n in TEXT_INPUTS if n in names]


def hidden_states(model: onnx.ModelProto) -> list[str]:
    """Tensor names of the hidden states, shallowest first (see the module docstring)."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in set(node.input):
            consumers.setdefault(name, []).append(node)
    weights = {t.name for t in graph.initializer}
    # weights reached through a Transpose or Cast of an initializer are weights too
    for node in graph.node:
        if node.op_type in ("Transpose", "Cast", "Identity") and node.input \
                and node.input[0] in weights:
            weights.update(node.output)
    order = {}
    for position, node in enumerate(graph.node):
        for name in node.output:
            order[name] = position

    def projections(tensor: str) -> int:
        return sum(1 for node in consumers.get(tensor, ()) if node.op_type in _MATMULS
                   and len(node.input) > 1 and node.input[0] == tensor
                   and node.input[1] in weights)

    found = [tensor for tensor in order if projections(tensor) >= 3 and any(
        node.op_type == "Add" for node in consumers.get(tensor, ()))]
    found.sort(key=order.get)
    outputs = {o.name for o in graph.output}
    last = "last_hidden_state" if "last_hidden_state" in outputs else None
    if last is None:
        norms = _norm_outputs(graph, weights)
        deeper = [t for t in norms if not found or order[t] > order[found[-1]]]
        last = deeper[-1] if deeper else None
    if last is not None and last not in found:
        found.append(last)
    return found


def _norm_outputs(graph: onnx.GraphProto, weights: set) -> list[str]:
    """Outputs of layer normalisations, in graph order: ``LayerNormalization`` nodes
    (opset 17 and later), and the form older opsets write out,
    ``Add(Mul(Div(x - mean, std), gamma), beta)`` with weights ``gamma`` and ``beta``."""
    producer = {name: node for node in graph.node for name in node.output}
    out = []
    for node in graph.node:
        if node.op_type == "LayerNormalization" and node.output:
            out.append(node.output[0])
            continue
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for scaled, shift in (node.input, reversed(node.input)):
            mul = producer.get(scaled)
            if shift not in weights or mul is None or mul.op_type != "Mul":
                continue
            sources = [producer.get(i) for i in mul.input if i not in weights]
            if len(sources) == 1 and sources[0] is not None and \
                    sources[0].op_type == "Div" and any(i in weights for i in mul.input):
                out.append(node.output[0])
                break
    return out


def text_layers(model: onnx.ModelProto, info) -> tuple[list[Layer], str | None, str]:
    """``(candidate layers, default layer, reason)`` of a text model.

    The candidates are every hidden state (kind ``hidden``, pooled over tokens), then the
    per-sample dense layers the graph rules found (a classification head's pooler and
    logits). The default is the input of the final classifier when the model has one
    read per sample, else the last hidden state.
    """
    names = hidden_states(model)
    shapes = _hidden_shapes(info, model, names)
    layers = []
    for i, name in enumerate(names):
        width = shapes.get(name)
        layers.append(Layer(name=name, op=f"hidden_states[{i}]", kind=HIDDEN,
                            shape=(None, width), width=width, position=_position(model, name)))
    per_sample = [layer for layer in info.layers if layer.kind != "input" and
                  layer.width is not None and len(layer.shape) == 1 and
                  layer.name not in names]
    layers = sorted(layers + per_sample, key=lambda layer: layer.position)
    default = info.default_layer
    if default is not None and any(l.name == default for l in per_sample):
        return layers, default, info.default_reason
    if names:
        return layers, names[-1], ("mean of the last hidden state over real tokens "
                                   f"(hidden_states[{len(names) - 1}])")
    return layers, None, "no hidden state found in the graph"


def _position(model: onnx.ModelProto, tensor: str) -> int:
    for position, node in enumerate(model.graph.node):
        if tensor in node.output:
            return position
    return len(model.graph.node)


def _hidden_shapes(info, model: onnx.ModelProto, names: list[str]) -> dict:
    """Hidden size of each hidden state, from shape inference (``None`` when unknown)."""
    from ..graph.shapes import _value_types
    from ..graph.proto import _dims

    types = _value_types(model)
    out = {}
    for name in names:
        dims = _dims(types.get(name)) if name in types else None
        size = dims[-1] if dims else None
        out[name] = size if isinstance(size, int) else None
    return out
