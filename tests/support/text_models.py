"""Tiny text encoders and tokenizers built in code, without torch.

:func:`tiny_encoder` writes an ONNX graph shaped like an exported transformer encoder:
inputs ``input_ids`` and ``attention_mask``, an embedding table and a LayerNorm (the
embeddings' output, ``hidden_states[0]``), then blocks whose input is read by three
weight products (query, key, value) and a residual ``Add``, each ending in a
LayerNorm. :func:`reference_hidden_states` computes the same in numpy, so that the
features zooindex reads can be checked against them.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (
    "good bad movie film great awful nice terrible fine poor plot actor story boring fun "
    "love hate the a is was very not").split()


def write_tokenizer(folder, *, max_length: int | None = None):
    """A word-level tokenizer.json (lower-cased, split on whitespace and punctuation,
    ``[CLS] text [SEP]``, pairs ``[CLS] a [SEP] b [SEP]``) in ``folder``; with
    ``max_length`` a tokenizer_config.json beside it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    path = folder / "tokenizer.json"
    tok.save(str(path))
    if max_length is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"model_max_length": max_length}))
    return path


def _weights(seed: int, hidden: int, blocks: int):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(len(WORDS), hidden)).astype(np.float32)
    mats = [[rng.normal(scale=0.5, size=(hidden, hidden)).astype(np.float32)
             for _ in range(3)] for _ in range(blocks)]
    return table, mats


def tiny_encoder(path, *, seed: int = 0, hidden: int = 8, blocks: int = 2,
                 token_type_ids: bool = False):
    """Write the encoder to ``path``; returns ``path``. Its output is
    ``last_hidden_state`` only when ``blocks`` is odd (else the last LayerNorm is found
    by structure)."""
    table, mats = _weights(seed, hidden, blocks)
    inits = [numpy_helper.from_array(table, "embeddings.weight"),
             numpy_helper.from_array(np.ones(hidden, np.float32), "ln.scale"),
             numpy_helper.from_array(np.zeros(hidden, np.float32), "ln.bias")]
    nodes = [helper.make_node("Gather", ["embeddings.weight", "input_ids"], ["emb"]),
             helper.make_node("LayerNormalization", ["emb", "ln.scale", "ln.bias"], ["h0"],
                              axis=-1, epsilon=1e-5)]
    state = "h0"
    for b, (wq, wk, wv) in enumerate(mats):
        for name, w in (("q", wq), ("k", wk), ("v", wv)):
            inits.append(numpy_helper.from_array(w, f"block{b}.{name}.weight"))
            nodes.append(helper.make_node("MatMul", [state, f"block{b}.{name}.weight"],
                                          [f"block{b}.{name}"]))
        out = f"h{b + 1}" if not (b == blocks - 1 and blocks % 2) else "last_hidden_state"
        nodes += [
            helper.make_node("Mul", [f"block{b}.q", f"block{b}.k"], [f"block{b}.qk"]),
            helper.make_node("Add", [f"block{b}.qk", f"block{b}.v"], [f"block{b}.mix"]),
            helper.make_node("Tanh", [f"block{b}.mix"], [f"block{b}.act"]),
            helper.make_node("Add", [state, f"block{b}.act"], [f"block{b}.res"]),
            helper.make_node("LayerNormalization", [f"block{b}.res", "ln.scale", "ln.bias"],
                             [out], axis=-1, epsilon=1e-5)]
        state = out
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                            ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch", "sequence"])]
    if token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64,
                                                    ["batch", "sequence"]))
    outputs = [helper.make_tensor_value_info(state, TensorProto.FLOAT,
                                             ["batch", "sequence", hidden])]
    graph = helper.make_graph(nodes, "tiny_encoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _layer_norm(x):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5)


def reference_hidden_states(ids: list, *, seed: int = 0, hidden: int = 8, blocks: int = 2):
    """The hidden states ``[(tokens, hidden), ...]`` of one token-id sequence, in float64."""
    table, mats = _weights(seed, hidden, blocks)
    state = _layer_norm(table[np.asarray(ids)].astype(np.float64))
    out = [state]
    for wq, wk, wv in mats:
        q, k, v = (state @ w.astype(np.float64) for w in (wq, wk, wv))
        state = _layer_norm(state + np.tanh(q * k + v))
        out.append(state)
    return out
