"""Running a text encoder: tokenize each batch, feed it, pool each layer over tokens.

The text counterpart of :func:`zooindex.runner.run_model`, which hands text models over
to :func:`run_text_model`. Texts are run sorted by length, so that each batch pads to
little more than its own texts (the features come back in the target's order). A layer
read per token, ``(batch, tokens, width)``, becomes one row per text:

* ``mean`` pooling (default): the mean over the real tokens, where the attention mask
  is 1 (special tokens included), as sentence-transformers' mean pooling does;
  transformer-ranker instead averages each word's sub-word tokens, then the words,
  leaving the special tokens out (``benchmarks/TEXT.md`` measures the difference);
* ``first`` pooling: the first token (``[CLS]``, ``<s>``).

A layer already read per sample (a classification head's pooler) is taken as it is.
The virtual layer :data:`~zooindex.text.graph.LAYER_MEAN` is the mean of the pooled
hidden states of every transformer block (``hidden_states[1..L]``, the embeddings'
output left out), transformer-ranker's ``layermean``.
"""

from __future__ import annotations

import time

import numpy as np

from ..choices import POOLINGS
from ..errors import ModelError
from .graph import HIDDEN, LAYER_MEAN
DEFAULT_BATCH = 32
_TOKEN_BUDGET = 1 << 14  # tokens per batch at most, so that long texts come in fewer rows


def text_info(record) -> dict | None:
    """What ``add`` recorded about a text model (tokenizer, maximum length, inputs),
    or ``None`` for an image model."""
    return (record.source or {}).get("text")


def block_outputs(record) -> list[str]:
    """The hidden states that :data:`LAYER_MEAN` averages: every block's output."""
    hidden = [layer.name for layer in sorted(record.layers, key=lambda l: l.position)
              if layer.kind == HIDDEN]
    return hidden[1:] if len(hidden) > 1 else hidden


def graph_outputs(record, layers, with_output: bool) -> list[str]:
    """The graph tensors a run needs: the layers (the virtual layer's hidden states in
    its place) and, with ``with_output``, the class scores."""
    names = []
    for name in layers:
        for tensor in (block_outputs(record) if name == LAYER_MEAN else [name]):
            if tensor not in names:
                names.append(tensor)
    if with_output and record.output_name and record.output_name not in names:
        names.append(record.output_name)
    return names


def load_text_model(record, layers, *, device: str = "auto", with_output: bool = False):
    """``record``'s model with the layers' tensors exposed, in a session."""
    from .. import graph, runtime
    from ..runner import Loaded

    proto, serialized = graph.load_serialized(record.path, load_weights=True, check=False)
    outputs = graph_outputs(record, layers, with_output)
    model_bytes = graph.exposed_bytes(proto, outputs, serialized)
    del proto, serialized
    session = runtime.create_session(model_bytes, device=device, model=record.name,
                                     input_name=record.input_name)
    return Loaded(session=session, outputs=outputs)


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """One row per text from ``(n, tokens, width)`` token states and the ``(n, tokens)``
    attention mask: the mean over real tokens, or the first token; float64."""
    if pooling == "first":
        return hidden[:, 0, :].astype(np.float64)
    if pooling != "mean":
        raise ModelError(f"unknown pooling '{pooling}'; choose from: {', '.join(POOLINGS)}")
    weights = mask.astype(np.float64)[:, :, None]
    counts = np.maximum(weights.sum(axis=1), 1.0)
    return (hidden.astype(np.float64) * weights).sum(axis=1) / counts


def run_text_model(record, texts: np.ndarray, layers, *, batch_size: int | None = None,
                   device: str = "auto", with_output: bool = False, loaded=None,
                   pooling: str = "mean"):
    """Run ``texts`` (``(n,)`` or pairs ``(n, 2)``) through a text model: each layer's
    ``(n, width)`` float32 features, pooled (see the module docstring)."""
    from .. import runtime
    from ..runner import RunOutput
    from . import tokenizer as tokenizers

    info = text_info(record)
    if info is None:
        raise ModelError(f"model '{record.name}' is not a text model", model=record.name)
    if texts.dtype.kind != "U":
        raise ModelError(f"model '{record.name}' reads text; the target holds numbers",
                         model=record.name)
    if pooling not in POOLINGS:
        raise ModelError(f"unknown pooling '{pooling}'; choose from: {', '.join(POOLINGS)}")
    tok = tokenizers.load(info, record.name)
    layers = list(layers)
    outputs = graph_outputs(record, layers, with_output)
    if loaded is None or not set(outputs) <= set(loaded.outputs):
        loaded = load_text_model(record, layers, device=device, with_output=with_output)
    session = loaded.session
    feeds_wanted = info.get("inputs") or ["input_ids", "attention_mask"]
    n = len(texts)
    lengths = np.array([sum(len(t) for t in row) if texts.ndim == 2 else len(row)
                        for row in texts.tolist()])
    order = np.argsort(lengths, kind="stable")
    rows = batch_size or DEFAULT_BATCH
    pooled: dict[str, np.ndarray] = {}
    out_arr = None
    infer = 0.0
    start = 0
    while start < n:
        index = order[start:start + rows]
        encoded = tokenizers.encode(tok, texts[index])
        # keep a batch of long texts within the token budget
        while len(index) > 1 and encoded["input_ids"].size > _TOKEN_BUDGET:
            index = index[:max(1, len(index) // 2)]
            encoded = tokenizers.encode(tok, texts[index])
        feed = {name: encoded[name] for name in feeds_wanted}
        t = time.perf_counter()
        try:
            values = session.run_feeds(outputs, feed)
        except runtime.Stopped:
            raise
        except Exception as exc:  # onnxruntime's own error types
            raise ModelError(f"model '{record.name}' failed to run on the target: "
                             f"{runtime.error_text(exc)}", model=record.name) from None
        infer += time.perf_counter() - t
        got = dict(zip(outputs, values))
        for name, value in got.items():
            if not np.all(np.isfinite(value)):
                raise ModelError(f"model '{record.name}' produced NaN or inf at layer "
                                 f"'{name}'", model=record.name)
        for name in outputs:
            if with_output and name == record.output_name and name not in layers:
                continue
            value = np.asarray(got[name])
            if value.ndim == 3:
                rows_out = pool(value, encoded["attention_mask"], pooling)
            else:
                rows_out = value.reshape(len(index), -1).astype(np.float64)
            if name not in pooled:
                pooled[name] = np.empty((n, rows_out.shape[1]), dtype=np.float64)
            pooled[name][index] = rows_out
        if with_output and record.output_name in got:
            value = np.asarray(got[record.output_name]).reshape(len(index), -1)
            if out_arr is None:
                out_arr = np.empty((n, value.shape[1]), dtype=np.float32)
            out_arr[index] = value
        start += len(index)
    features = {}
    for name in layers:
        if name == LAYER_MEAN:
            stack = [pooled[t] for t in block_outputs(record)]
            features[name] = np.mean(stack, axis=0).astype(np.float32)
        else:
            features[name] = pooled[name].astype(np.float32)
    return RunOutput(features=features, output=out_arr, provider=session.provider,
                     inference_seconds=infer)
