"""Running models with onnxruntime: device choice, sessions, batched inference.

onnxruntime is an extra (``zooindex[cpu]`` or ``zooindex[gpu]``), imported only when a
model must really run, so that cached searches and ``--help`` never pay for it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from .errors import DependencyError, ModelError, ZooIndexError, require

from .options import DEVICES

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class Stopped(Exception):
    """A run that :func:`stop_runs` ended before it finished (Ctrl-C, SIGTERM)."""


# onnxruntime's RunOptions of the batches running now, in any thread: setting their
# ``terminate`` flag makes onnxruntime abandon the batch within milliseconds, so a
# search stops at once even in the middle of a long batch.
_RUNNING: set = set()
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_runs() -> None:
    """Abandon every batch running now and refuse new ones until :func:`allow_runs`."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        for options in _RUNNING:
            options.terminate = True


def allow_runs() -> None:
    """Let runs start again after :func:`stop_runs`."""
    _STOPPING.clear()


def onnxruntime():
    """The onnxruntime module, or a one-line error saying which extra to install."""
    ort = require("onnxruntime", "running models needs onnxruntime: pip install "
                  "'zooindex[cpu]' (or 'zooindex[gpu]' on a machine with an NVIDIA GPU)")
    ort.set_default_logger_severity(3)  # errors only: keep C++ log lines off the terminal
    return ort


def gpu_present() -> bool:
    """Is an NVIDIA GPU really there (not merely a CUDA-enabled onnxruntime build)?"""
    if glob.glob("/proc/driver/nvidia/gpus/*") or glob.glob("/dev/nvidia[0-9]*"):
        return True
    return False


def providers(device: str = "auto") -> list[str]:
    """Execution providers to ask for, in order, for ``device``."""
    if device not in DEVICES:
        raise ZooIndexError(f"unknown device '{device}'; choose from: {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    ort = onnxruntime()
    cuda_built = CUDA in ort.get_available_providers()
    if device == "cuda":
        if not cuda_built:
            raise DependencyError(
                "--device cuda needs onnxruntime-gpu: pip uninstall onnxruntime && "
                "pip install 'zooindex[gpu]'", package="onnxruntime-gpu")
        if not gpu_present():
            raise ZooIndexError("--device cuda: no NVIDIA GPU is visible on this machine; "
                                "use --device cpu")
        return [CUDA, CPU]
    return [CUDA, CPU] if cuda_built and gpu_present() else [CPU]


# cuDNN's exhaustive search benchmarks every convolution algorithm for each new input
# shape, and the last batch of a target has a shape of its own: its heuristic choice
# costs nothing per shape.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}
_PRELOADED = []


def provider_options(wanted: list[str]) -> list:
    """``providers=`` for onnxruntime: each provider with the options zooindex sets."""
    return [(CUDA, dict(CUDA_OPTIONS)) if p == CUDA else p for p in wanted]


def preload_cuda() -> None:
    """Load the CUDA and cuDNN libraries that pip installed (``onnxruntime-gpu[cuda,
    cudnn]``) before the first CUDA session, where this onnxruntime can
    (``onnxruntime.preload_dlls``, from 1.21); once per process, best effort: libraries
    installed system-wide are found without it."""
    if _PRELOADED:
        return
    _PRELOADED.append(True)
    preload = getattr(onnxruntime(), "preload_dlls", None)
    if preload is not None:
        with _quiet_stderr(), contextlib.suppress(Exception):
            preload()


# the real fd 2 of every redirection in progress, outermost first (see restore_stderr)
_REDIRECTED: list[int] = []


@contextlib.contextmanager
def _quiet_stderr():
    """Swallow what native code writes to fd 2 (CUDA loader noise), keep it for errors."""
    try:
        fd = os.dup(2)
    except OSError:
        yield lambda: ""
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        _REDIRECTED.append(fd)
        os.dup2(sink.fileno(), 2)
        captured = {"text": ""}
        try:
            yield lambda: captured["text"]
        finally:
            os.dup2(fd, 2)
            _REDIRECTED.remove(fd)
            os.close(fd)
            sink.seek(0)
            captured["text"] = sink.read().decode(errors="replace")


def restore_stderr() -> None:
    """Point fd 2 back at the real stderr now, for a process about to exit while a
    thread it abandons (a model being loaded) has it redirected."""
    if _REDIRECTED:
        os.dup2(_REDIRECTED[0], 2)


@dataclass
class Session:
    """An onnxruntime session plus the provider it really uses."""

    session: object
    provider: str
    input_name: str
    batch_dim: int | None  # fixed batch size of the model input, None when dynamic
    extra: object = None   # callable(batch) -> {name: array} for the model's other inputs

    def _feed(self, x: np.ndarray) -> dict:
        feed = {self.input_name: x}
        if self.extra is not None:
            feed.update(self.extra(len(x)))
        return feed

    def run(self, outputs: list[str], x: np.ndarray) -> list[np.ndarray]:
        """Run one batch; a model with a fixed batch size is fed in pieces of that size.

        Raises :class:`Stopped` when :func:`stop_runs` ends it.
        """
        if self.batch_dim is None or len(x) == self.batch_dim:
            return self._run(outputs, self._feed(x))
        b = self.batch_dim
        pieces = []
        for start in range(0, len(x), b):
            chunk = x[start:start + b]
            n = len(chunk)
            if n < b:  # pad the last piece to the fixed size, then drop the padding
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            pieces.append([o[:n] for o in self._run(outputs, self._feed(chunk))])
        return [np.concatenate([p[i] for p in pieces]) for i in range(len(outputs))]

    def run_feeds(self, outputs: list[str], feed: dict) -> list[np.ndarray]:
        """Run one batch given every input by name (a text model's token ids and mask)."""
        return self._run(outputs, feed)

    def _run(self, outputs, feed):
        options = onnxruntime().RunOptions()
        with _RUNNING_LOCK:
            if _STOPPING.is_set():
                raise Stopped("stopped")
            _RUNNING.add(options)
        try:
            return self.session.run(outputs, feed, options)
        except Exception:
            if options.terminate:
                raise Stopped("stopped") from None
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(options)


def error_text(exc: BaseException, limit: int = 300) -> str:
    """onnxruntime's error message on one line, without its C++ source location.

    Its messages read ``[ONNXRuntimeError] : 1 : FAIL : /path/model.cc:202
    onnxruntime::Model::Model(<signature>) Unsupported model IR version: 12, ...``; the
    reason comes last and would be cut off by the signature.
    """
    text = " ".join(str(exc).split())
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"\S+\.(?:cc|cpp|h):\d+ (?:[\w:~<>]+\((?:[^()]|\([^()]*\))*\) )?", "", text)
    return text[:limit]


THREADS_ENV = "ZOOINDEX_THREADS"


def default_threads() -> int | None:
    """onnxruntime's intra-op threads: ``$ZOOINDEX_THREADS`` when set (a Ray worker sets
    it to the CPUs Ray gave its task), else one core fewer than the machine has, from 8
    cores.

    A search loads the next model and scores the previous one beside the running model;
    onnxruntime's own default takes every core, and its threads then wait on whichever
    one is descheduled. Measured on 16 cores (ten 5,000-sample searches, median of 3):
    cold search 3.06 s with 16 threads, 2.65 s with 15. On a small machine every core
    is worth more to inference (``None``: onnxruntime's default).
    """
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            threads = int(env)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ZooIndexError(f"{THREADS_ENV} must be a positive whole number, not {env!r}")
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores - 1 if cores >= 8 else None


def create_session(model_bytes: bytes, *, device: str = "auto", model: str = "model",
                   input_name: str | None = None, extra=None,
                   threads: int | None = None) -> Session:
    """Build a session from serialized ONNX, on ``device``; report the provider used.

    onnxruntime-gpu silently falls back to the CPU when CUDA cannot start: the provider
    actually used is read back from the session, and ``--device cuda`` fails loudly.
    ``threads``: onnxruntime's intra-op threads; by default :func:`default_threads`.
    """
    ort = onnxruntime()
    wanted = providers(device)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = threads or default_threads()
    if threads:
        opts.intra_op_num_threads = threads
    # only CUDA's loader is noisy; fd 2 is the whole process's, so it is left alone else
    quiet = _quiet_stderr() if CUDA in wanted else contextlib.nullcontext(lambda: "")
    with quiet as noise:
        try:
            if CUDA in wanted:
                preload_cuda()
            sess = ort.InferenceSession(model_bytes, sess_options=opts,
                                        providers=provider_options(wanted))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            reason = error_text(exc)
            raise ModelError(f"onnxruntime cannot load model '{model}': {reason}",
                             model=model) from None
    used = sess.get_providers()[0]
    if device == "cuda" and used != CUDA:
        detail = " ".join(noise().split())[:200]
        raise ZooIndexError(f"--device cuda: onnxruntime fell back to {used} for model "
                            f"'{model}'{': ' + detail if detail else ''}")
    inputs = {i.name: i for i in sess.get_inputs()}
    inp = inputs[input_name] if input_name in inputs else next(iter(inputs.values()))
    batch = inp.shape[0] if inp.shape else None
    return Session(session=sess, provider=used, input_name=inp.name,
                   batch_dim=batch if isinstance(batch, int) and batch > 0 else None,
                   extra=extra)
