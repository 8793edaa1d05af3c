"""neuralRank end to end: rank every indexed model for a labeled target.

For each model: fit the target's inputs to the model, run the model once with the chosen
layers exposed as extra outputs, flatten their activations, and score them with the
chosen estimators (the silhouette of PCA-reduced features by default). Activations and
scores are cached in the index under the model's content hash, the target's content
hash and the model's preprocessing, so a repeated search runs no model at all, and a
search with another D or metric reuses the activations.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from . import estimators as est_registry
from .adapt import Preprocessing, adapt, check_fit
from .errors import AdaptError, LayerError, ModelError, ZooIndexError
from .index import Index, ModelRecord, opened
from .target import Target, load_target

OUTPUT = "::output"  # cache key of the model's own classifier output
# Held activations cost several times their size while scored (float64 copies, PCA,
# cache encoding): above this, a layer is reduced as it streams instead.
DEFAULT_MAX_ACTIVATION_BYTES = 128 * 1024**2
# Streaming keeps a features x features covariance: wider layers (conv outputs in a layer
# sweep) are held in memory instead, where it would cost more than the activations.
MAX_STREAMED_FEATURES = 4096
METRICS = ("cosine", "euclidean", "sqeuclidean")


@dataclass
class Result:
    """One ranked (model, layer) row, or a skipped model with its reason."""

    model: str
    layer: str | None = None
    score: float | None = None
    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # estimator -> seconds it took to compute
    dim: int | None = None          # features per sample at the layer
    components: int | None = None   # PCA components actually used
    seconds: float = 0.0
    inference_seconds: float = 0.0
    cached: bool = False
    provider: str | None = None
    status: str = "ok"
    reason: str | None = None
    rank: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Ranking:
    """The outcome of a search: ranked results first, skipped models after them."""

    target: str
    n: int
    classes: list
    scorers: list
    dim: int
    metric: str
    results: list
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ranked(self) -> list[Result]:
        return [r for r in self.results if r.status == "ok"]

    @property
    def skipped(self) -> list[Result]:
        return [r for r in self.results if r.status != "ok"]

    def to_records(self) -> list[dict]:
        return [r.to_dict() for r in self.results]


@dataclass
class _Job:
    """One model's work in a search: what is cached, what is left to compute."""

    record: ModelRecord
    results: dict                    # layer -> Result, cached scores filled in
    wanted: dict                     # layer -> estimators still to compute
    prep: Preprocessing
    prep_key: str
    started: float = 0.0
    busy_s: float = 0.0              # time spent on this model, overlaps left out
    features: dict = field(default_factory=dict)
    probs: np.ndarray | None = None
    reduced: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)    # layer -> new score rows for the index
    notes: list = field(default_factory=list)
    to_cache: list = field(default_factory=list)  # (layer, array) the model produced
    staged: list = field(default_factory=list)    # their cache files, rows not yet stored
    loading: object = None           # future of the Loaded model, started ahead

    @property
    def wants_probs(self) -> bool:
        """Does an estimator still to compute need the model's classifier output?"""
        return bool(self.record.output_name) and any(
            e.needs_probs for es in self.wanted.values() for e in es)


def resolve_scorers(scorers) -> list:
    names = [scorers] if isinstance(scorers, str) else list(scorers or ["silhouette"])
    if "all" in names:
        names = [e.name for e in est_registry.available()]
    out = []
    for name in names:
        e = est_registry.get(name)
        if e not in out:
            out.append(e)
    return out


def _layers_for(record: ModelRecord, layer: str | None) -> list[dict]:
    """The layer rows to score: the default, one named layer, or ``all`` candidates."""
    by_name = {l["name"]: l for l in record.layers}
    listing = ", ".join(f"{l['name']} ({l['dim']})" for l in record.layers)
    if layer in (None, "default"):
        if record.default_layer is None:
            raise LayerError(
                f"model '{record.name}' has no hidden dense layer to use by default; pass "
                f"--layer with one of: {listing}. See `zooindex layers {record.name}`.",
                model=record.name, candidates=list(by_name))
        return [by_name[record.default_layer]]
    if layer == "all":
        return list(record.layers)
    if layer not in by_name:
        raise LayerError(f"layer '{layer}' not in model '{record.name}'; candidates: "
                         f"{listing}. See `zooindex layers {record.name}`.",
                         layer=layer, model=record.name, candidates=list(by_name))
    return [by_name[layer]]


def search(target, *, index=None, layer: str | None = None, dim: int = 10,
           metric: str = "cosine", scorers=("silhouette",), classes=None,
           limit: int | None = None, seed: int = 0, split: str | None = None,
           top: int | None = None, batch_size: int = 256, device: str = "auto",
           models=None, filter=None, progress: bool | None = False,
           refresh: bool = False) -> Ranking:
    """Rank every indexed model (or those named in ``models``) for ``target``.

    A model whose file changed since it was added is skipped with a reason, or with
    ``refresh`` re-inspected, updated in the index and ranked (its old cached numbers
    are keyed by the old content and never used for the new).

    ``target`` is a path in any supported format or a :class:`~zooindex.target.Target`.
    ``filter`` (a :class:`zooindex.zoo.Filter`) narrows the models by tag, source, size
    or name pattern. The first scorer ranks; the others add columns. Models the target
    cannot fit, whose file is gone or changed, or that lack the layer, are listed as
    skipped with a reason.

    Models run one after the other, in a pipeline: while one runs, the next is loaded
    and the previous one scored (PCA, estimators, cache files), each in its own thread.
    Up to three models are in memory at once.
    """
    started = time.perf_counter()
    if metric not in METRICS:
        raise ZooIndexError(f"unknown metric '{metric}'; choose from: {', '.join(METRICS)}")
    if dim < 1:
        raise ZooIndexError(f"--dim must be at least 1, not {dim}")
    if batch_size < 1:
        raise ZooIndexError(f"--batch-size must be at least 1, not {batch_size}")
    ests = resolve_scorers(scorers)
    if device != "auto":  # a device that cannot work is an error even if all is cached
        from . import runtime

        runtime.providers(device)
    tgt = target if isinstance(target, Target) else load_target(
        target, split=split, classes=classes, limit=limit, seed=seed)
    options = {"dim": dim, "metric": metric, "seed": seed}
    notes: list[str] = []
    with opened(index) as idx:
        records = idx.models()
        if models is not None:
            wanted = set(models)
            records = [r for r in records if r.name in wanted]
        if filter is not None:
            records = [r for r in records if filter(r)]
        if not records:
            if models is not None or filter is not None:
                raise ZooIndexError("no indexed model matches the filters; see `zooindex ls`")
            raise ZooIndexError(f"no models to rank in the index {idx.path}; add some with "
                                "`zooindex add MODEL.onnx`")
        idx.put_target(tgt.key, tgt.source, len(tgt.y), list(tgt.classes))
        per_model: list[list[Result]] = []
        bar = _progress(len(records), progress)
        # A pipeline of three threads: while model i runs, model i+1 is loaded (graph
        # edit, session start) and model i-1 scored (PCA, estimators, cache files), so
        # that work overlaps inference. Only the main thread touches the index.
        pending = None
        upcoming = iter(records)

        def plan_next(loader):
            record = next(upcoming, None)
            if record is None:
                return None
            slot: list[Result] = []
            per_model.append(slot)
            job = _plan(idx, record, tgt, layer, ests, options, notes, refresh)
            if isinstance(job, _Job) and job.wanted:
                job.loading = _start_loading(idx, loader, job, tgt, ests, device)
            return record, slot, job

        try:
            with ThreadPoolExecutor(max_workers=1) as scorer, \
                    ThreadPoolExecutor(max_workers=1) as loader:
                following = plan_next(loader)
                while following is not None:
                    record, slot, job = following
                    if bar is not None:
                        bar.set_postfix_str(record.name[:30])
                    following = plan_next(loader)
                    if isinstance(job, _Job) and job.wanted:
                        job = _gather(idx, job, tgt, ests, options, batch_size, device)
                    if pending is not None:
                        _finish_pending(idx, tgt, ests, notes, pending, bar)
                        pending = None
                    if isinstance(job, _Job) and job.wanted:
                        pending = (job, slot, scorer.submit(_score, idx, job, tgt, ests, options))
                        continue
                    slot.extend(job if isinstance(job, list) else _finish(idx, tgt, ests, job))
                    if bar is not None:
                        bar.update(1)
                if pending is not None:
                    _finish_pending(idx, tgt, ests, notes, pending, bar)
                    pending = None
        finally:
            if bar is not None:
                bar.close()
        results = [r for slot in per_model for r in slot]
        notes.extend(idx.warnings)  # cache writes that failed: the ranking stands
    ranked = sorted((r for r in results if r.status == "ok"),
                    key=lambda r: (-r.score, r.model, r.layer or ""))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    if top is not None:
        ranked = ranked[:top]
    skipped = [r for r in results if r.status != "ok"]
    comps = {r.components for r in ranked if r.components is not None and r.components < dim}
    if comps and any(e.name.startswith("silhouette") for e in ests):
        notes.append(f"D={dim} is more than some layers allow; used "
                     f"{', '.join(map(str, sorted(comps)))} components where needed")
    return Ranking(target=tgt.source, n=len(tgt.y), classes=list(tgt.classes),
                   scorers=[e.name for e in ests], dim=dim, metric=metric,
                   results=ranked + skipped, notes=notes,
                   seconds=time.perf_counter() - started)


def _blas_threads():
    """Limit BLAS threads while scoring (``ZOOINDEX_BLAS_THREADS``, default 1).

    Scoring runs beside onnxruntime (see :func:`search`), whose threads take the cores:
    more BLAS threads compete with them and lose (measured, PCA of ten 5,000 x 1,024
    layers during a search: 1 thread 2.0 s, 4 threads 3.1 s, all 16 cores 5.4 s on a
    16-core machine; on 2 cores, 0.13 s with 1 thread and 0.22 s with 2 per layer). Set
    ZOOINDEX_BLAS_THREADS=0 to leave BLAS alone.
    """
    threads = int(os.environ.get("ZOOINDEX_BLAS_THREADS", "1"))
    return _blas_controller().limit(limits=threads if threads > 0 else None, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """One inventory of the loaded BLAS libraries per process (taking it costs ~10 ms)."""
    import scipy.linalg  # noqa: F401  (scipy's own BLAS must be loaded to be seen)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _progress(total: int, progress):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="model", disable=None if progress is None else not progress,
                leave=False, dynamic_ncols=True)


def _skip(record: ModelRecord, reason: str, layer: str | None = None) -> Result:
    return Result(model=record.name, layer=layer, status="skipped", reason=reason)


def _refresh(idx: Index, record: ModelRecord) -> ModelRecord:
    """Re-inspect a model whose file changed and store the new record, in one transaction.

    The user's settings (name, tags, source, preprocessing, data input, and the default
    layer when the new graph still has it) carry over. If another process replaced or
    removed the record meanwhile, that newer state wins and this search skips the model.
    """
    from .errors import StoreError
    from .zoo import inspect_file

    prep = Preprocessing.from_dict(record.preprocessing)
    common = dict(name=record.name, tags=record.tags, preprocessing=prep,
                  source=record.source, input_name=record.input_name)
    try:
        fresh = inspect_file(record.path, layer=record.default_layer, **common)
    except LayerError:  # the chosen layer is gone: fall back to the new default
        fresh = inspect_file(record.path, **common)
    fresh.added_at = record.added_at
    if not idx.replace_model(record.sha256, fresh):
        raise StoreError(f"model '{record.name}' was changed in the index by another "
                         "process meanwhile; search again", path=str(idx.path))
    return fresh


def _plan(idx: Index, record: ModelRecord, tgt: Target, layer, ests, options, notes,
          refresh: bool = False) -> "_Job | list[Result]":
    """What is left to do for one model: a :class:`_Job`, or its results (skipped)."""
    started = time.perf_counter()
    status = idx.model_status(record)
    if status == "missing":
        return [_skip(record, f"model file {record.path} is missing; re-add it or "
                              f"`zooindex rm {record.name}`")]
    if status == "changed" and refresh:
        try:
            record = _refresh(idx, record)
        except ZooIndexError as exc:
            return [_skip(record, f"model file {record.path} changed since it was added "
                                  f"and could not be re-indexed: {exc}")]
    elif status == "changed":
        return [_skip(record, f"model file {record.path} changed since it was added; "
                              "search with --refresh to re-index it, or `zooindex add "
                              f"--replace {record.path}`")]
    try:
        rows = _layers_for(record, layer)
    except LayerError as exc:
        return [_skip(record, str(exc))]
    prep = Preprocessing.from_dict(record.preprocessing)
    try:
        check_fit(tgt.x.shape[1:], record.input_shape, prep)
    except AdaptError as exc:
        return [_skip(record, str(exc))]
    prep_key = prep.key()
    needs_probs = any(e.needs_probs for e in ests)
    if needs_probs and not record.output_name:
        notes.append(f"{record.name}: no classifier output; estimators that need one "
                     "are left out")

    # what is cached already?
    wanted: dict[str, list] = {}  # layer -> estimators still to compute
    results: dict[str, Result] = {}
    for row in rows:
        cached = idx.get_scores(record.sha256, row["name"], tgt.key, prep_key)
        res = Result(model=record.name, layer=row["name"], dim=row["dim"], cached=True)
        for e in ests:
            key = (e.name, json.dumps(e.cache_params(**options), sort_keys=True))
            if key in cached:
                value, comps, secs = cached[key]
                res.scores[e.name] = value
                res.timings[e.name] = secs
                if e is ests[0]:
                    res.components = comps
            else:
                wanted.setdefault(row["name"], []).append(e)
        results[row["name"]] = res
    return _Job(record=record, results=results, wanted=wanted, prep=prep, prep_key=prep_key,
                started=started)


def _gather(idx: Index, job: _Job, tgt: Target, ests, options, batch_size,
            device) -> "_Job | list[Result]":
    """The activations the job's missing scores need: from the cache, or by running it."""
    record = job.record
    try:
        job.features, job.probs, provider, infer_s, job.reduced = _activations(
            idx, record, tgt, list(job.wanted), job.prep, job.prep_key, batch_size, device,
            job.wants_probs, reduce_to=options["dim"], to_cache=job.to_cache,
            loading=job.loading)
        job.loading = None
    except (ModelError, AdaptError) as exc:
        return [_skip(record, str(exc))]
    for name in job.wanted:
        res = job.results[name]
        res.cached = False
        res.provider = provider
        res.inference_seconds = infer_s / max(len(job.wanted), 1)
    job.busy_s = time.perf_counter() - job.started
    return job


def _start_loading(idx: Index, loader, job: _Job, tgt: Target, ests, device):
    """Start loading the job's model in ``loader`` with the layers the cache lacks."""
    record = job.record
    cached = idx.cached_layers(record.sha256, tgt.key, job.prep_key)
    missing = [name for name in job.wanted if name not in cached]
    with_output = job.wants_probs and OUTPUT not in cached
    if not missing and not with_output:
        return None
    return loader.submit(load_model, record, missing, device=device, with_output=with_output)


def _score(idx: Index, job: _Job, tgt: Target, ests, options) -> _Job:
    """Compute the job's missing scores and write its cache files.

    This runs in a worker thread: it uses no database access, only
    :meth:`Index.stage_activations`, which writes files.
    """
    started = time.perf_counter()
    record = job.record
    for name, todo in job.wanted.items():
        res = job.results[name]
        new_rows = job.rows.setdefault(name, [])
        feats = job.features[name]
        for e in todo:
            if e.needs_probs and job.probs is None:
                continue
            if name in job.reduced and "dim" not in e.params:
                job.notes.append(
                    f"{record.name} [{name}]: {e.name} needs the full activations, "
                    f"which exceed {max_activation_bytes() / 2**20:.0f} MiB for this "
                    "target (ZOOINDEX_MAX_ACTIVATION_BYTES); use --limit")
                continue
            t = time.perf_counter()
            try:
                with warnings.catch_warnings(), _blas_threads():
                    warnings.simplefilter("ignore")
                    value = e(feats, tgt.y, probs=job.probs, **options)
            except ZooIndexError as exc:
                job.notes.append(f"{record.name} [{name}] {e.name}: {exc}")
                continue
            comps = job.reduced.get(name) or min(options["dim"], *feats.shape) \
                if "dim" in e.params else None
            secs = time.perf_counter() - t
            res.scores[e.name] = value
            res.timings[e.name] = secs
            if e is ests[0]:
                res.components = comps
            new_rows.append((e.name, json.dumps(e.cache_params(**options), sort_keys=True),
                             value, comps, secs))
    for name, array in job.to_cache:
        staged = idx.stage_activations(record.sha256, name, tgt.key, job.prep_key, array)
        if staged is not None:
            job.staged.append(staged)
    job.features = job.probs = None  # done with them: free the memory now
    job.to_cache = []
    job.busy_s += time.perf_counter() - started
    return job


def _finish_pending(idx: Index, tgt: Target, ests, notes, pending, bar) -> None:
    job, slot, future = pending
    job = future.result()
    notes.extend(job.notes)
    slot.extend(_finish(idx, tgt, ests, job))
    if bar is not None:
        bar.update(1)


def _finish(idx: Index, tgt: Target, ests, job: _Job) -> list[Result]:
    """Store the job's new scores and return its results (a layer without a score: skipped)."""
    started = time.perf_counter()
    for staged in job.staged:
        idx.commit_activations(staged)
    for name, rows in job.rows.items():
        idx.put_scores(job.record.sha256, name, tgt.key, job.prep_key, rows)
    out = []
    # a model that ran: its own time, not the next model's inference that overlapped
    elapsed = job.busy_s + time.perf_counter() - started if job.busy_s else \
        time.perf_counter() - job.started
    for res in job.results.values():
        res.seconds = elapsed / len(job.results)
        first = ests[0].name
        if first not in res.scores:
            res.status = "skipped"
            res.reason = (f"{first} needs the model's classifier output, which it lacks"
                          if ests[0].needs_probs else f"{first} could not be computed")
            continue
        res.score = res.scores[first]
        out.append(res)
    return out


def _activations(idx: Index, record: ModelRecord, tgt: Target, layers: list[str],
                 prep: Preprocessing, prep_key: str, batch_size: int, device: str,
                 with_probs: bool, reduce_to: int | None = None, to_cache: list | None = None,
                 loading=None):
    """Features of each layer (n, dim) float32, and softmax outputs when asked.

    Read from the cache where possible; otherwise the model runs once for all layers
    still missing, batch by batch, and what it produced is cached (or, given a
    ``to_cache`` list, appended to it as ``(layer, array)`` for the caller to cache).
    With ``reduce_to``, layers too large to hold come back as their PCA projection (see
    :func:`run_model`); the returned ``reduced`` dict names them. Those are not cached.
    ``loading``: a future of the :class:`Loaded` model, started ahead of time.
    """
    def cache(name, array):
        if to_cache is None:
            idx.put_activations(record.sha256, name, tgt.key, prep_key, array)
        else:
            to_cache.append((name, array))

    features = {}
    for name in layers:
        cached = idx.get_activations(record.sha256, name, tgt.key, prep_key)
        if cached is not None:
            features[name] = cached
    probs = idx.get_activations(record.sha256, OUTPUT, tgt.key, prep_key) \
        if with_probs else None
    missing = [n for n in layers if n not in features]
    provider, infer_s, reduced = None, 0.0, {}
    if missing or (with_probs and probs is None):
        run = run_model(record, tgt.x, missing, prep, batch_size=batch_size, device=device,
                        with_output=with_probs and probs is None, reduce_to=reduce_to,
                        loaded=None if loading is None else loading.result())
        provider, infer_s, reduced = run.provider, run.inference_seconds, run.reduced
        for name in missing:
            features[name] = run.features[name]
            if name not in reduced:
                cache(name, run.features[name])
        if with_probs and probs is None and run.output is not None:
            probs = run.output if record.output_is_probs else _softmax(run.output)
            cache(OUTPUT, probs)
    return features, probs, provider, infer_s, reduced


def features(target, model: str, *, index=None, layer: str | None = None,
             batch_size: int = 256, device: str = "auto", **target_options) -> np.ndarray:
    """Activations (n, dim) of one indexed model's layer for a target, cached like search's.

    ``target`` is a path or a :class:`Target`; ``target_options`` (classes, limit, seed,
    split) are passed to :func:`~zooindex.target.load_target`.
    """
    tgt = target if isinstance(target, Target) else load_target(target, **target_options)
    with opened(index, create=False) as idx:
        record = idx.get_model(model)
        row = _layers_for(record, layer)[0]
        prep = Preprocessing.from_dict(record.preprocessing)
        check_fit(tgt.x.shape[1:], record.input_shape, prep)
        feats, *_ = _activations(idx, record, tgt, [row["name"]], prep, prep.key(),
                                 batch_size, device, False)
    return feats[row["name"]]


def _softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return softmax(logits.astype(np.float64), axis=1).astype(np.float32)


@dataclass
class RunOutput:
    features: dict           # layer -> (n, dim) float32, or (n, k) float64 PCA projection
    output: np.ndarray | None
    provider: str
    inference_seconds: float
    reduced: dict = field(default_factory=dict)   # layer -> components, for streamed layers


def max_activation_bytes() -> int:
    """Above this many bytes of one layer's activations, they are reduced as they stream."""
    env = os.environ.get("ZOOINDEX_MAX_ACTIVATION_BYTES")
    return int(float(env)) if env else DEFAULT_MAX_ACTIVATION_BYTES


class _StreamingPCA:
    """Mean and covariance accumulated batch by batch (Chan et al.'s pairwise update).

    Memory is O(dim^2) whatever the number of samples; the second pass projects each
    batch on the top components, so a layer's full activations are never held at once.
    """

    def __init__(self):
        self.n = 0
        self.mean = None
        self.m2 = None

    def update(self, batch: np.ndarray) -> None:
        b = batch.astype(np.float64)
        nb = len(b)
        mb = b.mean(axis=0)
        centred = b - mb
        m2b = centred.T @ centred
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        delta = mb - self.mean
        total = self.n + nb
        self.m2 += m2b + np.outer(delta, delta) * (self.n * nb / total)
        self.mean += delta * (nb / total)
        self.n = total

    def components(self, k: int) -> np.ndarray:
        values, vectors = np.linalg.eigh(self.m2 / max(self.n - 1, 1))
        order = np.argsort(values)[::-1]
        rank = int(np.sum(values > values.max() * 1e-12)) if values.max() > 0 else 0
        k = max(1, min(k, rank or 1, len(values)))
        return vectors[:, order[:k]]


@dataclass
class Loaded:
    """A model's session with ``outputs`` exposed, ready to run (see :func:`load_model`)."""

    session: object       # zooindex.runtime.Session
    outputs: list


def load_model(record: ModelRecord, layers: list[str], *, device: str = "auto",
               with_output: bool = False) -> Loaded:
    """Load ``record``'s model with ``layers`` (and its output) exposed, in a session.

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
    outputs = [n for n in layers if n != record.input_name]
    if with_output and record.output_name and record.output_name not in outputs:
        outputs.append(record.output_name)
    model_bytes = graph.exposed_bytes(proto, outputs, serialized)
    del proto, serialized
    session = runtime.create_session(model_bytes, device=device, model=record.name,
                                     input_name=record.input_name, extra=extra)
    return Loaded(session=session, outputs=outputs)


def run_model(record: ModelRecord, x: np.ndarray, layers: list[str], prep: Preprocessing,
              *, batch_size: int = 256, device: str = "auto", with_output: bool = False,
              reduce_to: int | None = None, max_bytes: int | None = None,
              loaded: Loaded | None = None) -> RunOutput:
    """Run ``x`` through the model with ``layers`` exposed; flatten each to (n, dim).

    The model is loaded by :func:`load_model`, unless ``loaded`` (a :class:`Loaded`
    that exposes at least what is needed) is given. The model's input itself is a valid
    layer: its features are the adapted inputs. A layer whose activations would exceed
    ``max_bytes`` is reduced as it streams: a first pass accumulates its covariance, a
    second projects every batch on the top ``reduce_to`` principal components, so peak
    memory stays bounded whatever the target's size.
    """
    from . import runtime

    exposed = [n for n in layers if n != record.input_name]
    outputs = list(exposed)
    if with_output and record.output_name and record.output_name not in outputs:
        outputs.append(record.output_name)
    if loaded is None or not set(outputs) <= set(loaded.outputs):
        loaded = load_model(record, layers, device=device, with_output=with_output)
    session = loaded.session
    n = len(x)
    limit = max_activation_bytes() if max_bytes is None else max_bytes
    infer = [0.0]

    def batches(wanted: list[str]):
        """(start, {layer: (b, dim) array}) for every batch of the target."""
        for start in range(0, n, batch_size):
            batch = adapt(x[start:start + batch_size], record.input_shape,
                          record.input_dtype, prep)
            t = time.perf_counter()
            try:
                values = session.run(wanted, batch) if wanted else []
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
    streams: dict[str, _StreamingPCA] = {}
    out_arr = None
    for start, got in batches(outputs):
        for name in layers:
            v = got[name]
            if name not in feats and name not in streams:
                if (reduce_to is not None and n * v.shape[1] * 4 > limit
                        and v.shape[1] <= MAX_STREAMED_FEATURES):
                    streams[name] = _StreamingPCA()
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
        for start, got in batches([o for o in exposed if o in streams]):
            for name, (mean, comps) in basis.items():
                v = got[name]
                feats[name][start:start + len(v)] = (v.astype(np.float64) - mean) @ comps
    return RunOutput(features=feats, output=out_arr, provider=session.provider,
                     inference_seconds=infer[0], reduced=reduced)


__all__ = ["search", "features", "Ranking", "Result", "run_model", "resolve_scorers"]
