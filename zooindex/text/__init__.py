"""Text models: ONNX transformer encoders ranked for a labeled text data set.

* :mod:`zooindex.text.graph`: which tensors of the graph are its hidden states;
* :mod:`zooindex.text.tokenizer`: the model's ``tokenizer.json``, found, hashed, applied;
* :mod:`zooindex.text.run`: tokenize, run, and pool each layer over the tokens.

Text targets are read by :mod:`zooindex.readers.text`. The estimators then run
unchanged on the ``(n, width)`` features. Nothing heavy is imported here.
"""

from __future__ import annotations

import hashlib
import json

from ..layer import Layer
from .graph import HIDDEN, LAYER_MEAN


def choose_layers(record, options) -> list[Layer]:
    """The layers a search scores for a text model: ``--layer`` when given, else by
    ``options.layer_aggregation``: ``last`` the default layer, ``mean`` the mean of
    every block's hidden state (the virtual layer :data:`LAYER_MEAN`), ``best`` every
    block's hidden state (the best one ranks the model). Both leave the embeddings'
    output (``hidden_states[0]``) out, as transformer-ranker's ``layermean`` and
    ``bestlayer`` do."""
    from ..errors import LayerError
    from .run import block_outputs

    aggregation = getattr(options, "layer_aggregation", "last")
    if options.layer not in (None, "default") or aggregation == "last":
        return record.choose_layers(options.layer)
    hidden = [l for l in record.layers if l.kind == HIDDEN]
    if not hidden:
        raise LayerError(f"model '{record.name}' has no hidden states to aggregate; search "
                         "with --layer-aggregation last", layer=LAYER_MEAN, model=record.name)
    blocks = block_outputs(record)
    if aggregation == "best":
        return [l for l in hidden if l.name in blocks]
    width = next(l.width for l in hidden if l.name == blocks[-1])
    return [Layer(name=LAYER_MEAN, op=f"mean of hidden_states[1..{len(blocks)}]",
                  kind="aggregate", shape=(width,), width=width,
                  position=max(l.position for l in hidden))]


def features_key(record, options) -> str:
    """A short hash of what turns texts into a text model's features (the tokenizer's
    content, the maximum length, the inputs fed, the pooling), for cache keys."""
    info = record.text
    d = {"tokenizer_sha256": info.get("tokenizer_sha256"), "max_length": info.get("max_length"),
         "inputs": info.get("inputs"), "pooling": getattr(options, "pooling", "mean"),
         "rules": 1}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def target_summary(target, shown: int = 5, chars: int = 160) -> dict:
    """What a page shows of a text target instead of images: ``{"kind": "text", "task",
    "pairs", "counts"`` (samples per class, for classification), ``"samples"`` (``shown``
    texts with their labels, the first of each class first, each cut to ``chars``)``}``;
    ``{}`` for other targets."""
    if getattr(target, "kind", "image") != "text":
        return {}
    import numpy as np

    def short(text: str) -> str:
        return text if len(text) <= chars else text[:chars - 1] + "\u2026"

    rows = [" \u2016 ".join(row) if isinstance(row, list) else row
            for row in target.x.tolist()]
    info = {"kind": "text", "task": target.task, "pairs": target.x.ndim == 2}
    if target.regression:
        info["samples"] = [{"label": f"{target.y[i]:g}", "text": short(rows[i])}
                           for i in range(min(shown, len(rows)))]
        return info
    if target.y is None:
        info["samples"] = [{"label": "", "text": short(t)} for t in rows[:shown]]
        return info
    counts = np.bincount(target.y, minlength=len(target.classes))
    names = [str(c) for c in (target.class_names or target.classes)]
    info["counts"] = dict(zip(names, counts.tolist()))
    firsts = [int(np.flatnonzero(target.y == c)[0]) for c in range(len(names))]
    rest = [i for i in range(len(rows)) if i not in set(firsts)]
    info["samples"] = [{"label": names[target.y[i]], "text": short(rows[i])}
                       for i in (firsts + rest)[:shown]]
    return info


__all__ = ["choose_layers", "features_key", "target_summary", "HIDDEN", "LAYER_MEAN"]
