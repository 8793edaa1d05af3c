"""transformer-ranker's side of the text benchmark, and two cross paths that tell where a
difference comes from.

transformer-ranker (PyPI ``transformer-ranker``, read at version 0.2.0) embeds a text so:
split it into words with ``tokenizers``' ``Whitespace`` pre-tokenizer (``\\w+|[^\\w\\s]+``),
tokenize the words (``is_split_into_words=True``, truncation at ``model_max_length``, 512
when unset), run the model with ``output_hidden_states``, drop ``hidden_states[0]`` (the
embeddings), average each word's sub-word tokens, then average the words: special tokens
([CLS], [SEP], <s>, </s>) never enter. Its layer aggregations: ``layermean`` averages the
L layers' token states before pooling; ``bestlayer`` scores every layer and keeps the
maximum; ``lastlayer`` passes ``layer_ids="0"``, which selects ``hidden_states[1]``, the
*first* block's output (a slip in 0.2.0: the docstring and the paper mean the last).
Estimators: H-score with Ledoit-Wolf shrinkage (between-class covariance over ``n - 1``),
LogME (alpha = beta = 1 once, carried from class to class, at most 11 steps, tolerance
1e-3), 3-NN on the full features (Euclidean, itself left out, ``torch.mode`` vote), F1-micro.

Cross paths: :func:`onnx_tr_recipe` feeds transformer-ranker's own token ids to the ONNX
export and pools its way (so a difference is the runtime's arithmetic alone);
:func:`torch_mask_mean` pools transformers' hidden states over the attention mask with the
tokenizer applied to the whole text (zooindex's recipe on PyTorch).
"""

from __future__ import annotations

import time

import numpy as np

TR_AGGREGATIONS = ("lastlayer", "layermean", "bestlayer")
TR_ESTIMATORS = ("hscore", "logme", "knn")


def tr_embedder(folder):
    from transformer_ranker.embedder import Embedder

    return Embedder(str(folder), layer_ids="all", layer_mean=False, sentence_pooling="mean",
                    local_files_only=True, device="cpu")


def tr_embeddings(folder, texts, batch_size: int = 32):
    """``(n, L, d)`` float32: every block's output pooled transformer-ranker's way, and the
    seconds spent in its tokenizing and in all of ``embed`` (one pass)."""
    embedder = tr_embedder(folder)
    tokenizing = [0.0]
    inner = embedder._tokenize

    def timed(sentences):
        start = time.perf_counter()
        out = inner(sentences)
        tokenizing[0] += time.perf_counter() - start
        return out

    embedder._tokenize = timed
    start = time.perf_counter()
    rows = embedder.embed(list(texts), batch_size=batch_size, show_progress=False)
    total = time.perf_counter() - start
    return np.stack([r.numpy() for r in rows]), tokenizing[0], total


def tr_layer_scores(per_layer: np.ndarray, labels) -> dict:
    """transformer-ranker's estimators on each layer ``(n, L, d)`` and on the layer mean:
    ``{estimator: {"layers": [...], "layermean": x}}``."""
    import torch
    from transformer_ranker.estimators import HScore, LogME, NearestNeighbors

    y = torch.tensor(np.asarray(labels))
    classes = {"hscore": HScore, "logme": LogME, "knn": NearestNeighbors}
    out = {}
    for name, cls in classes.items():
        layers = [cls(regression=False).fit(embeddings=torch.tensor(per_layer[:, i]), labels=y)
                  for i in range(per_layer.shape[1])]
        mean = cls(regression=False).fit(embeddings=torch.tensor(per_layer.mean(axis=1)),
                                         labels=y)
        out[name] = {"layers": [float(v) for v in layers], "layermean": float(mean)}
    return out


def tr_aggregate(scores: dict) -> dict:
    """transformer-ranker's three aggregations of :func:`tr_layer_scores` as ``run`` computes
    them (``lastlayer`` = the first block, as 0.2.0 does), and the true last block."""
    return {"lastlayer": scores["layers"][0], "layermean": scores["layermean"],
            "bestlayer": max(scores["layers"]), "last block": scores["layers"][-1]}


def tr_run(folders, texts, labels, estimator: str, aggregation: str) -> dict:
    """``TransformerRanker(...).run`` itself on an in-memory ``datasets.Dataset``: model
    folder -> score."""
    import logging

    from datasets import Dataset
    from transformer_ranker import TransformerRanker

    logging.getLogger("transformer_ranker").setLevel(logging.WARNING)
    data = Dataset.from_dict({"text": list(texts), "label": [int(v) for v in labels]})
    ranker = TransformerRanker(data, text_column="text", label_column="label")
    result = ranker.run([str(f) for f in folders], estimator=estimator,
                        layer_aggregator=aggregation, device="cpu")
    return {str(k): float(v) for k, v in result.scores.items()}


def onnx_tr_recipe(onnx_path, folder, texts, batch_size: int = 32) -> np.ndarray:
    """``(n, L, d)``: transformer-ranker's token ids and pooling on an ONNX export that
    outputs every hidden state (``hidden_state_<i>``)."""
    import onnxruntime as ort

    embedder = tr_embedder(folder)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs() if o.name.startswith("hidden_state_")]
    names = sorted(names, key=lambda s: int(s.rsplit("_", 1)[1]))[1:]  # drop the embeddings
    rows = []
    for start in range(0, len(texts), batch_size):
        tokens = embedder._tokenize(list(texts[start:start + batch_size]))
        word_ids = tokens.pop("word_ids")
        inputs = {k: v.numpy() for k, v in tokens.items() if k in feeds}
        if "token_type_ids" in feeds and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])  # the model's default
        states = np.stack(session.run(names, inputs), axis=2)  # (b, tokens, L, d)
        for state, ids in zip(states, word_ids):
            words: dict[int, list] = {}
            for vector, wid in zip(state, ids):
                if wid is not None:
                    words.setdefault(wid, []).append(vector)
            # words in order of first appearance, as transformer-ranker groups runs
            pooled = [np.mean(v, axis=0) for v in words.values()]
            rows.append(np.mean(pooled, axis=0))
    return np.stack(rows)


def torch_mask_mean(folder, texts, batch_size: int = 32) -> np.ndarray:
    """``(n, L + 1, d)``: transformers' hidden states (embeddings first) averaged over the
    attention mask, the whole text tokenized as it is (truncated at the model's maximum)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[start:start + batch_size]), padding=True,
                            truncation=True, return_tensors="pt")
            out = model(**enc, output_hidden_states=True)
            mask = enc["attention_mask"].unsqueeze(-1).to(torch.float64)
            states = torch.stack(out.hidden_states, dim=1).to(torch.float64)  # (b, L+1, t, d)
            pooled = (states * mask.unsqueeze(1)).sum(2) / mask.sum(1).unsqueeze(1)
            rows.append(pooled.numpy())
    return np.concatenate(rows).astype(np.float32)


def onnx_mask_mean(onnx_path, tokenizer_json, texts, *, max_length: int | None = None,
                   batch_size: int = 32, threads: int = 1, by_length: bool = False):
    """``(n, L + 1, d)`` from an export with every hidden state (``hidden_state_<i>``):
    ``tokenizer.json`` applied with the ``tokenizers`` library (truncation at
    ``max_length``, each batch padded to its longest text), states averaged over the
    attention mask; with the seconds spent tokenizing and in all (one pass). ``by_length``
    batches texts of similar length together (less padding; rows come back in the given
    order)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name for i in session.get_inputs()}
    names = sorted((o.name for o in session.get_outputs() if o.name.startswith("hidden_state_")),
                   key=lambda s: int(s.rsplit("_", 1)[1]))
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    declared = (tokenizer.truncation or {}).get("max_length")
    tokenizer.enable_truncation(max_length or declared or 512)
    pad = tokenizer.padding or {}
    tokenizer.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
    order = (np.argsort([len(t) for t in texts], kind="stable") if by_length
             else np.arange(len(texts)))
    rows, tokenizing = [], 0.0
    start_all = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        t0 = time.perf_counter()
        enc = tokenizer.encode_batch([texts[i] for i in order[start:start + batch_size]])
        inputs = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
        if "token_type_ids" in feeds:
            inputs["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
        tokenizing += time.perf_counter() - t0
        states = np.stack(session.run(names, inputs), axis=1).astype(np.float64)  # (b,L+1,t,d)
        mask = inputs["attention_mask"].astype(np.float64)[:, None, :, None]
        rows.append(((states * mask).sum(2) / mask.sum(2)).astype(np.float32))
    pooled = np.empty_like(np.concatenate(rows))
    pooled[order] = np.concatenate(rows)
    return pooled, tokenizing, time.perf_counter() - start_all
