"""Exporting a trained zoo network to one self-contained ONNX file that zooindex can read.

The exported graph takes ``input`` float32 (batch, 1, 28, 28) in [0, 1] with a dynamic batch
axis, runs in eval mode (no dropout) and answers with softmax probabilities. Metadata keys
tell ``zooindex add`` the input layout and scale, and describe where the model came from,
so that adding it needs no flags.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from .nets import IMAGE_SIZE, Probabilities

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def to_onnx(net: torch.nn.Module, metadata: dict[str, str], doc: str = "") -> onnx.ModelProto:
    """The ONNX model of ``net`` (logits) with a softmax on top and ``metadata`` attached.

    Uses the TorchScript exporter, which keeps the weights inside the model rather than in
    a side file. ``net`` is put in eval mode.
    """
    net.eval()
    wrapped = Probabilities(net).eval()
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            wrapped, (example,), buffer, dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    model.doc_string = doc
    onnx.checker.check_model(model)
    return model


def save_atomic(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path`` through a temporary file, so a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # a model file is meant to be shared, unlike a private temp file
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
