"""Running one model: load it with its layers exposed, feed it the target in batches.

:func:`load_model` edits the ONNX graph in memory so that the chosen layers (and the
class-score output) become outputs, and starts an onnxruntime session on the device;
:func:`run_model` fits each batch of the target to the model's input
(:func:`zooindex.adapt.adapt`), runs it, and returns every exposed layer's activations
flattened to ``(n, width)`` and the class scores. Nothing here knows about the index
or the estimators.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .adapt import Preprocessing, adapt
from .catalogue import ModelRecord
from .errors import ModelError
from .reduce import StreamingPCA

# Held activations cost several times their size while scored (float64 copies, PCA,
# cache encoding): above this, a layer is reduced as it streams instead.
DEFAULT_MAX_ACTIVATION_BYTES = 128 * 1024**2
# Streaming keeps a features x features covariance: wider layers (conv outputs in a layer
# sweep) are held in memory instead, where it would cost more than the activations.
MAX_STREAMED_FEATURES = 4096


# Memory onnxruntime may take for one batch's intermediate tensors, by device: on the CPU
# (measured, ResNet-50 at 224x224: about 12.5 MB per sample, four times its largest
# tensor; batches of 8 to 64 run equally fast per image), and on a GPU, whose memory is
# much larger (not measured here).
BATCH_MEMORY = {"CPUExecutionProvider": 256 * 1024**2, "CUDAExecutionProvider": 4 * 1024**3}
MAX_BATCH = {"CPUExecutionProvider": 256, "CUDAExecutionProvider": 1024}
_LIVE_TENSORS = 4  # largest tensors alive at once during a forward pass (see above)


def auto_batch_size(record: ModelRecord, provider: str = "CPUExecutionProvider") -> int:
    """Samples per batch so that the model's intermediate tensors stay within a memory
    budget (``$ZOOINDEX_BATCH_MEMORY`` bytes, default 256 MiB on the CPU, 4 GiB on a
    GPU), from the width of the model's largest candidate layer: the paper's CNNs get
    256, a ResNet-50 at 224x224 about 20."""
    env = os.environ.get("ZOOINDEX_BATCH_MEMORY")
    budget = int(float(env)) if env else BATCH_MEMORY.get(provider, BATCH_MEMORY[
        "CPUExecutionProvider"])
    widest = max((layer.width for layer in record.layers if layer.width), default=1)
    per_sample = 4 * widest * _LIVE_TENSORS
    cap = MAX_BATCH.get(provider, MAX_BATCH["CPUExecutionProvider"])
    return max(1, min(cap, budget // per_sample))


def max_activation_bytes() -> int:
    """Above this many bytes of one layer's activations, they are reduced as they stream
    (``$ZOOINDEX_MAX_ACTIVATION_BYTES``, default 128 MiB)."""
    env = os.environ.get("ZOOINDEX_MAX_ACTIVATION_BYTES")
    return int(float(env)) if env else DEFAULT_MAX_ACTIVATION_BYTES


@dataclass
class Loaded:
    """A model's session with ``outputs`` exposed, ready to run (see :func:`load_model`)."""

    session: object       # zooindex.runtime.Session
    outputs: list


@dataclass
class RunOutput:
    """What :func:`run_model` produced.

    ``features``: layer -> ``(n, width)`` float32 activations, or for a streamed layer
    its ``(n, m)`` float64 PCA projection (``reduced`` names those, with ``m``).
    ``output``: the class-score output ``(n, classes)`` float32 when asked for.
    """

    features: dict
    output: np.ndarray | None
    provider: str
    inference_seconds: float
    reduced: dict = field(default_factory=dict)


def exposed_outputs(record: ModelRecord, layers, with_output: bool) -> list[str]:
    """The graph outputs a run needs: the layers (the input is fed, not computed) and,
    with ``with_output``, the class-score output."""
    outputs = [n for n in layers if n != record.input_name]
    if with_output and record.output_name and record.output_name not in outputs:
        outputs.append(record.output_name)
    return outputs


def load_model(record: ModelRecord, layers, *, device: str = "auto",
               with_output: bool = False) -> Loaded:
    """Load ``record``'s model with ``layers`` (and its class scores) exposed, in a session.

    The graph is edited in memory: no edited copy touches the disk. Touches no index, so
    it can run in another thread while the previous model runs.
    """
    from . import graph, runtime

    # checked when it was added; onnxruntime refuses whatever changed since
    proto, serialized = graph.load_serialized(record.path, load_weights=True, check=False)
    extra = None
    initializers = {t.name for t in proto.graph.initializer}
    if sum(i.name not in initializers for i in proto.graph.input) > 1:
        info = graph.inspect(proto, input_name=record.input_name)
        extra = lambda n: graph.default_feeds(info, n)  # noqa: E731
    outputs = exposed_outputs(record, layers, with_output)
    model_bytes = graph.exposed_bytes(proto, outputs, serialized)
    del proto, serialized
    session = runtime.create_session(model_bytes, device=device, model=record.name,
                                     input_name=record.input_name, extra=extra)
    return Loaded(session=session, outputs=outputs)


def class_probabilities(record: ModelRecord, output: np.ndarray) -> np.ndarray:
    """The class-score output as probabilities: as it is when the graph ends in a
    softmax, else the softmax of the logits (float32)."""
    if record.output_is_probs:
        return output
    from scipy.special import softmax

    return softmax(output.astype(np.float64), axis=1).astype(np.float32)


def run_model(record: ModelRecord, x: np.ndarray, layers, prep: Preprocessing | None = None,
              *, batch_size: int | None = None, device: str = "auto",
              with_output: bool = False,
              reduce_to: int | None = None, max_bytes: int | None = None,
              loaded: Loaded | None = None, input_range: str | None = None) -> RunOutput:
    """Run ``x`` through the model with ``layers`` exposed; flatten each to (n, width).

    The model is loaded by :func:`load_model`, unless ``loaded`` (a :class:`Loaded`
    that exposes at least what is needed) is given. ``batch_size`` ``None`` chooses it
    by memory (:func:`auto_batch_size`). ``prep`` defaults to the record's
    preprocessing; ``input_range`` is the target's (see
    :attr:`zooindex.target.Target.input_range`). The model's input itself is a valid
    layer: its features are the adapted inputs. With ``reduce_to``, a layer whose activations would exceed
    ``max_bytes`` (default :func:`max_activation_bytes`) is reduced as it streams: a
    first pass accumulates its covariance, a second projects every batch on the top
    ``reduce_to`` principal components, so peak memory stays bounded whatever the
    target's size.

    Text models (:attr:`ModelRecord.text`) are run by
    :func:`zooindex.text.run.run_text_model` instead, which returns the same.
    """
    from . import runtime

    prep = prep if prep is not None else Preprocessing.from_dict(record.preprocessing)
    layers = list(layers)
    outputs = exposed_outputs(record, layers, with_output)
    if loaded is None or not set(outputs) <= set(loaded.outputs):
        loaded = load_model(record, layers, device=device, with_output=with_output)
    session = loaded.session
    if batch_size is None:
        batch_size = auto_batch_size(record, session.provider)
    n = len(x)
    limit = max_activation_bytes() if max_bytes is None else max_bytes
    infer = [0.0]

    def batches(wanted: list[str]):
        """(start, {layer: (b, width) array}) for every batch of the target."""
        for start in range(0, n, batch_size):
            batch = adapt(x[start:start + batch_size], record.input_shape,
                          record.input_dtype, prep, input_range=input_range)
            t = time.perf_counter()
            try:
                values = session.run(wanted, batch) if wanted else []
            except runtime.Stopped:
                raise
            except Exception as exc:  # onnxruntime's own error types
                reason = runtime.error_text(exc)
                raise ModelError(f"model '{record.name}' failed to run on the target: "
                                 f"{reason}", model=record.name) from None
            infer[0] += time.perf_counter() - t
            got = {k: np.asarray(v).reshape(len(batch), -1) for k, v in zip(wanted, values)}
            if record.input_name in layers:
                got[record.input_name] = batch.reshape(len(batch), -1)
            for name, v in got.items():
                if not np.all(np.isfinite(v)):
                    raise ModelError(f"model '{record.name}' produced NaN or inf at layer "
                                     f"'{name}'", model=record.name)
            yield start, got

    feats: dict[str, np.ndarray] = {}
    streams: dict[str, StreamingPCA] = {}
    out_arr = None
    for start, got in batches(outputs):
        for name in layers:
            v = got[name]
            if name not in feats and name not in streams:
                if (reduce_to is not None and n * v.shape[1] * 4 > limit
                        and v.shape[1] <= MAX_STREAMED_FEATURES):
                    streams[name] = StreamingPCA()
                else:
                    feats[name] = np.empty((n, v.shape[1]), dtype=np.float32)
            if name in streams:
                streams[name].update(v)
            else:
                feats[name][start:start + len(v)] = v
        if with_output and record.output_name in got:
            v = got[record.output_name]
            if out_arr is None:
                out_arr = np.empty((n, v.shape[1]), dtype=np.float32)
            out_arr[start:start + len(v)] = v
    reduced = {}
    if streams:  # second pass: project each batch on the top components
        basis = {name: (s.mean, s.components(reduce_to)) for name, s in streams.items()}
        for name, (_, comps) in basis.items():
            feats[name] = np.empty((n, comps.shape[1]), dtype=np.float64)
            reduced[name] = comps.shape[1]
        exposed = [o for o in outputs if o in streams]
        for start, got in batches(exposed):
            for name, (mean, comps) in basis.items():
                v = got[name]
                feats[name][start:start + len(v)] = (v.astype(np.float64) - mean) @ comps
    return RunOutput(features=feats, output=out_arr, provider=session.provider,
                     inference_seconds=infer[0], reduced=reduced)


__all__ = ["Loaded", "RunOutput", "load_model", "run_model", "class_probabilities",
           "exposed_outputs", "max_activation_bytes", "auto_batch_size"]
