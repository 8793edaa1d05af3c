"""The per-model unit of work: one model, one target, the options -> scores.

A search is one independent unit per model: load the model with the chosen layers
exposed, run the target through it, reduce the activations, score them. :func:`run`
does that as a pure function of a :class:`ModelTask` (the model's record, the layers,
which estimators are still to compute, which activations are already known) and the
:class:`~zooindex.target.Target`, and returns an :class:`Outcome` (new scores and their
timings, the activations worth caching, status and reason). It opens no database:
inputs and outputs are picklable, so a thread pipeline, a process pool or a cluster
can schedule it unchanged (:mod:`zooindex.executor`), and the caller alone reads the
index before and writes it after (:mod:`zooindex.ranking`).

:func:`run` is three stages, which an executor may overlap across models:

1. :func:`prepare` (I/O): read the cached activations the task was given (a damaged
   file counts as missing), and load the model's session with the missing layers
   exposed;
2. :func:`infer` (the device): run the target through the model;
3. :func:`score` (the CPU): the estimators on each layer's activations.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import estimators as registry
from .adapt import Preprocessing
from .catalogue import ModelRecord
from .errors import AdaptError, ModelError, ZooIndexError
from .options import SearchOptions
from .reduce import shared_projections

OUTPUT = "::output"  # cache key of the model's own class scores (as probabilities)


@dataclass(frozen=True)
class ModelTask:
    """What to do for one model.

    ``layers``: names of the layers whose activations are needed. ``wanted``: layer ->
    names of the estimators still to compute there (the first scorer of the search
    first). ``cached``: layer (or :data:`OUTPUT`) -> the activations already known, as
    an array or as a :class:`~zooindex.cache.CachedFile` to read. ``keep_features``:
    hand the activations back in the outcome (for ``features``, ``evaluate`` and
    ``report``). ``max_activation_bytes``: above this, a layer is reduced as it streams
    (then estimators that need the full activations are left out with a note).
    ``features_key``: the cache key of what turns the target into the model's inputs
    (an image model's preprocessing, a text model's tokenizer and pooling), under which
    the activations it produces are cached.
    """

    record: ModelRecord
    layers: tuple
    wanted: dict
    cached: dict
    options: SearchOptions
    keep_features: bool = False
    max_activation_bytes: int | None = None
    features_key: str = ""

    @property
    def estimators(self) -> dict:
        """layer -> the registered estimators still to compute there."""
        return {layer: [registry.get(name) for name in names]
                for layer, names in self.wanted.items()}

    @property
    def needs_output(self) -> bool:
        """Does an estimator still to compute need the model's class scores?"""
        return bool(self.record.output_name) and any(
            e.needs_probs for es in self.estimators.values() for e in es)


@dataclass
class LayerScores:
    """New numbers for one layer: estimator -> value, seconds, PCA components used; and,
    with the search's confidence on, estimator -> ``(B,)`` deviations of its value over
    the target's half-samples and the seconds they took (:mod:`zooindex.confidence`)."""

    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    resampled: dict = field(default_factory=dict)
    resample_timings: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What one unit of work produced.

    ``status`` is ``ok`` or ``skipped`` (``reason`` says why). ``layers``: layer ->
    :class:`LayerScores` computed now. ``activations``: layer (or :data:`OUTPUT`) ->
    arrays the model produced that are worth caching; ``damaged``: cached entries that
    were not intact; ``used``: cached entries that served. ``features``: the
    activations, with ``keep_features``. ``provider`` and ``inference_seconds``: where
    and how long the model ran (``None``/0 when nothing ran); ``seconds``: the time
    spent on this model, all stages. ``staged``: for the caller (cache files written
    from ``activations`` by an executor's hook).
    """

    model: str
    status: str = "ok"
    reason: str | None = None
    layers: dict = field(default_factory=dict)
    activations: dict = field(default_factory=dict)
    damaged: list = field(default_factory=list)
    used: list = field(default_factory=list)
    features: dict = field(default_factory=dict)
    provider: str | None = None
    inference_seconds: float = 0.0
    seconds: float = 0.0
    notes: list = field(default_factory=list)
    staged: list = field(default_factory=list)


@dataclass
class Work:
    """A task between stages: what is known so far about its model's activations."""

    task: ModelTask
    target: object
    features: dict = field(default_factory=dict)
    probs: np.ndarray | None = None
    missing: list = field(default_factory=list)
    with_output: bool = False
    loaded: object = None
    reduced: dict = field(default_factory=dict)
    outcome: Outcome = None
    busy: float = 0.0


def run(task: ModelTask, target) -> Outcome:
    """The whole unit: :func:`score` of :func:`infer` of :func:`prepare`."""
    return score(infer(prepare(task, target)))


def prepare(task: ModelTask, target) -> Work:
    """Read the cached activations; load the model with what is missing exposed."""
    started = time.perf_counter()
    work = Work(task=task, target=target, outcome=Outcome(model=task.record.name))
    for name in task.layers:
        value = _read(task.cached.get(name), name, work.outcome)
        if value is None:
            work.missing.append(name)
        else:
            work.features[name] = value
            work.outcome.used.append(name)
    if task.needs_output:
        work.probs = _read(task.cached.get(OUTPUT), OUTPUT, work.outcome)
        if work.probs is not None:
            work.outcome.used.append(OUTPUT)
        work.with_output = work.probs is None
    if work.missing or work.with_output:
        if task.record.text is not None:
            from .text.run import load_text_model as load_model
        else:
            from .runner import load_model

        try:
            work.loaded = load_model(task.record, work.missing, device=task.options.device,
                                     with_output=work.with_output)
        except (ModelError, AdaptError) as exc:
            _skip(work, str(exc))
    work.busy += time.perf_counter() - started
    return work


def _read(cached, name: str, outcome: Outcome):
    """A cached array, or ``None`` when there is none or it is not intact."""
    if cached is None or isinstance(cached, np.ndarray):
        return cached
    from .cache import DECODE_ERRORS

    try:
        return cached.read()
    except DECODE_ERRORS:
        outcome.damaged.append(name)
        return None


def infer(work: Work) -> Work:
    """Run the target through the model for the layers (and class scores) still missing."""
    if work.outcome.status != "ok" or not (work.missing or work.with_output):
        return work
    from .runner import class_probabilities, run_model

    started = time.perf_counter()
    task, record = work.task, work.task.record
    try:
        if record.text is not None:
            from .text.run import run_text_model

            out = run_text_model(record, work.target.x, work.missing,
                                 batch_size=task.options.batch_size,
                                 device=task.options.device, with_output=work.with_output,
                                 loaded=work.loaded, pooling=task.options.pooling)
        else:
            out = run_model(record, work.target.x, work.missing,
                            Preprocessing.from_dict(record.preprocessing),
                            batch_size=task.options.batch_size, device=task.options.device,
                            with_output=work.with_output,
                            reduce_to=None if task.keep_features else task.options.dim,
                            max_bytes=task.max_activation_bytes, loaded=work.loaded,
                            input_range=getattr(work.target, "input_range", None))
    except (ModelError, AdaptError) as exc:
        _skip(work, str(exc))
        return work
    finally:
        work.loaded = None  # the session's memory goes with it
        work.busy += time.perf_counter() - started
    work.outcome.provider = out.provider
    work.outcome.inference_seconds = out.inference_seconds
    work.reduced = out.reduced
    for name in work.missing:
        work.features[name] = out.features[name]
        if name not in out.reduced:
            work.outcome.activations[name] = out.features[name]
    if work.with_output and out.output is not None:
        work.probs = class_probabilities(record, out.output)
        work.outcome.activations[OUTPUT] = work.probs
    return work


def score(work: Work) -> Outcome:
    """Compute the task's missing scores on the activations gathered."""
    outcome = work.outcome
    if outcome.status != "ok":
        outcome.seconds = work.busy
        return outcome
    started = time.perf_counter()
    task, record = work.task, work.task.record
    options = task.options.estimator_options
    masks = _halves(task.options, work.target)
    for name, todo in task.estimators.items():
        feats = work.features[name]
        new = outcome.layers.setdefault(name, LayerScores())
        with shared_projections():
            _score_layer(work, name, feats, todo, new, options, masks)
    if task.keep_features:
        outcome.features = dict(work.features)
    work.features, work.probs = {}, None  # done with them: free the memory now
    outcome.seconds = work.busy + time.perf_counter() - started
    return outcome


def _halves(options: SearchOptions, target):
    """The target's half-samples when the search wants its confidence (labeled targets)."""
    labels = getattr(target, "y", None)
    if not options.confidence or labels is None or len(labels) == 0 \
            or getattr(target, "regression", False):
        return None
    from .confidence import halves

    return halves(labels, options.resamples, options.seed)


def _score_layer(work: Work, name: str, feats, todo, new: LayerScores, options: dict,
                 masks) -> None:
    """One layer's estimators, and with ``masks``, their deviations over the halves."""
    from .confidence import collecting, deviations, resampled

    outcome, record, task = work.outcome, work.task.record, work.task
    scored = []  # (estimator, what it offered), resampled once every score is in
    for e in todo:
        if e.needs_probs and work.probs is None:
            continue
        if name in work.reduced and "dim" not in e.params:
            outcome.notes.append(
                f"{record.name} [{name}]: {e.name} needs the full activations, "
                f"which exceed {_limit_mib(task)} MiB for this target "
                "(ZOOINDEX_MAX_ACTIVATION_BYTES); use --limit")
            continue
        t = time.perf_counter()
        try:
            with warnings.catch_warnings(), blas_threads(), collecting() as offered:
                warnings.simplefilter("ignore")
                if getattr(work.target, "regression", False):
                    from .estimators.regression import REGRESSION

                    value = REGRESSION[e.name](feats, work.target.y, **options)
                else:
                    value = e(feats, work.target.y, probs=work.probs, **options)
        except ZooIndexError as exc:
            outcome.notes.append(f"{record.name} [{name}] {e.name}: {exc}")
            continue
        new.scores[e.name] = value
        new.timings[e.name] = time.perf_counter() - t
        new.components[e.name] = (work.reduced.get(name) or min(options["dim"],
                                                                *feats.shape)) \
            if "dim" in e.params else None
        scored.append((e, offered))
    if masks is None:
        return
    # after the scores, so that a projection the estimators computed serves the halves
    for e, offered in scored:
        t = time.perf_counter()
        # none (an empty array, cached as such so that it is not tried again) when the
        # layer was reduced as it streamed or the halves do not allow the score
        devs = np.empty(0)
        if name not in work.reduced:
            try:
                with warnings.catch_warnings(), blas_threads():
                    warnings.simplefilter("ignore")
                    values = resampled(e, feats, work.target.y, masks, offered=offered,
                                       probs=work.probs, **options)
                if np.all(np.isfinite(values)):
                    devs = deviations(values)
            except (ZooIndexError, np.linalg.LinAlgError, ValueError):
                pass
        new.resampled[e.name] = devs
        new.resample_timings[e.name] = time.perf_counter() - t


def params_key(estimator, options: SearchOptions) -> str:
    """The options a score depends on, as the text that keys it in the index."""
    return json.dumps(estimator.cache_params(**options.estimator_options), sort_keys=True)


def resample_key(estimator, options: SearchOptions) -> str:
    """The options a score's resampled deviations depend on: the score's own, the
    number of halves and the seed that drew them."""
    return json.dumps({**estimator.cache_params(**options.estimator_options),
                       "halves": options.resamples, "seed": options.seed}, sort_keys=True)


def score_rows(task: ModelTask, outcome: Outcome) -> dict:
    """layer -> the index's score rows ``(estimator, params_json, value, components,
    seconds)`` for what ``outcome`` computed; resampled deviations as float64 bytes."""
    rows = {}
    for layer, new in outcome.layers.items():
        rows[layer] = [(name, params_key(registry.get(name), task.options), value,
                        new.components.get(name), new.timings.get(name, 0.0))
                       for name, value in new.scores.items()]
        rows[layer] += [(name, resample_key(registry.get(name), task.options),
                         np.asarray(devs, dtype="<f8").tobytes(), None,
                         new.resample_timings.get(name, 0.0))
                        for name, devs in new.resampled.items()]
    return rows


def _skip(work: Work, reason: str) -> None:
    work.outcome.status = "skipped"
    work.outcome.reason = reason
    work.loaded = None


def _limit_mib(task: ModelTask) -> str:
    from .runner import max_activation_bytes

    limit = task.max_activation_bytes or max_activation_bytes()
    return f"{limit / 2**20:.0f}"


def blas_threads():
    """Limit BLAS threads while scoring (``ZOOINDEX_BLAS_THREADS``, default 1).

    Scoring runs beside onnxruntime (see :mod:`zooindex.executor`), whose threads take
    the cores: more BLAS threads compete with them and lose (measured, PCA of ten
    5,000 x 1,024 layers during a search: 1 thread 2.0 s, 4 threads 3.1 s, all 16 cores
    5.4 s on a 16-core machine; on 2 cores, 0.13 s with 1 thread and 0.22 s with 2 per
    layer). Set ZOOINDEX_BLAS_THREADS=0 to leave BLAS alone.
    """
    threads = int(os.environ.get("ZOOINDEX_BLAS_THREADS", "1"))
    return _blas_controller().limit(limits=threads if threads > 0 else None, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """One inventory of the loaded BLAS libraries per process (taking it costs ~10 ms)."""
    import scipy.linalg  # noqa: F401  (scipy's own BLAS must be loaded to be seen)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


__all__ = ["ModelTask", "Outcome", "LayerScores", "OUTPUT", "run", "prepare", "infer",
           "score", "score_rows", "params_key"]
