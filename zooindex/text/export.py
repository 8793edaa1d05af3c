"""Exporting a transformers text model to ONNX, as zooindex runs it.

:func:`from_transformers` writes one self-contained file with inputs ``input_ids``,
``attention_mask`` and, for models with segment embeddings (``type_vocab_size`` above 1),
``token_type_ids``; batch and sequence axes are dynamic. Its output is the class scores
(``logits``) of a sequence classifier, else the ``last_hidden_state``; the hidden states
of every layer are found in the graph by structure (:mod:`zooindex.text.graph`), so no
extra output is needed. TorchScript exporter, opset 17, in eval mode (dropout off). The
most tokens the position embeddings allow is written into the file's metadata
(``zooindex.max_length``), so that texts are truncated to it.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

from ..errors import ModelError, require
from .tokenizer import MAX_LENGTH_KEY, max_positions

OPSET = 17


def text_inputs_of(model) -> list[str]:
    """The inputs the export takes: ``token_type_ids`` only where the model has more
    than one segment embedding (RoBERTa has one and DistilBERT none)."""
    names = ["input_ids", "attention_mask"]
    accepts = "token_type_ids" in inspect.signature(model.forward).parameters
    if accepts and int(getattr(model.config, "type_vocab_size", 0) or 0) > 1:
        names.append("token_type_ids")
    return names


def _wrapper(torch, model, names: list[str]):
    class TextOutput(torch.nn.Module):
        """Token ids in; the class scores of a classifier, else the last hidden state."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            out = self.model(**dict(zip(names, tensors)), return_dict=True)
            logits = getattr(out, "logits", None)
            return logits if logits is not None else out.last_hidden_state

    return TextOutput()


def from_transformers(model, path, *, opset: int = OPSET) -> Path:
    """Export a transformers text model (``BertModel``, ``...ForSequenceClassification``,
    ...) to ``path``; returns the path. Put the model's ``tokenizer.json`` beside it
    before ``zooindex add``."""
    torch = require("torch", "exporting a text model needs torch and transformers: "
                    "pip install 'zooindex[export]'")
    names = text_inputs_of(model)
    vocab = int(getattr(model.config, "vocab_size", 2) or 2)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, max(5, vocab), (2, 8), generator=generator)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
               "token_type_ids": torch.zeros_like(ids)}
    wrapper = _wrapper(torch, model, names)
    was_training = model.training
    model.eval()
    path = Path(os.fspath(path))
    classifier = hasattr(model, "classifier") or hasattr(model, "score")
    output = "logits" if classifier else "last_hidden_state"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shapes, checked by the tests
            torch.onnx.export(wrapper, tuple(example[n] for n in names), str(path),
                              dynamo=False, opset_version=opset, input_names=names,
                              output_names=[output],
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            output: {0: "batch"}})
    except Exception as exc:  # the exporter raises many types; one message for all
        raise ModelError(f"torch.onnx.export failed for {type(model).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}", path=str(path)) from exc
    finally:
        model.train(was_training)
    length = max_positions(model.config)
    if length is not None:  # the file rewritten in place, atomically
        from ..export import stamp

        stamp(path, metadata={MAX_LENGTH_KEY: str(length)})
    return path
