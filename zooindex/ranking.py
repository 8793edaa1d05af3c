"""neuralRank end to end: rank every indexed model for a labeled target.

The search reads the index before and writes it after; in between, each model is one
unit of work (:mod:`zooindex.unit`) scheduled by an executor (:mod:`zooindex.executor`):

1. **plan** (here, the only code that reads the index): for each model, is its file
   still the one indexed, which layers (:func:`zooindex.layer.choose`), does the target
   fit its input, which scores are cached already, which activations are cached;
2. **run** the units that have something left to compute (load, infer, score);
3. **absorb** each outcome as it comes (here, the only code that writes the index): its
   scores, its new activation files and the target they belong to, in one transaction.

Everything is keyed by the model's content hash, the target's content hash and the
model's preprocessing, so a repeated search runs no model at all, and a search with
another D or metric reuses the activations. :func:`activations` is the same door for
callers that need the features themselves (``features``, ``evaluate``, ``report``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .adapt import Preprocessing, describe_fit
from .cache import Entry
from .catalogue import ModelRecord
from .errors import AdaptError, LayerError, ZooIndexError
from .index import Index, opened
from .options import SearchOptions, TargetSelection, from_settings
from .target import Target
from .unit import OUTPUT, ModelTask, Outcome, params_key, resample_key, score_rows


@dataclass
class Result:
    """One ranked (model, layer) row, or a skipped model with its reason.

    ``width``: the layer's features per sample; ``components``: the PCA components the
    first scorer used (D, or fewer where the layer allows fewer).
    """

    model: str
    layer: str | None = None
    score: float | None = None
    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # estimator -> seconds it took to compute
    width: int | None = None
    components: int | None = None
    seconds: float = 0.0
    inference_seconds: float = 0.0
    cached: bool = False
    provider: str | None = None
    status: str = "ok"
    reason: str | None = None
    rank: int | None = None
    #: the 5th and 95th percentile of the row's rank over the target's half-samples,
    #: and its probability of being first (see :mod:`zooindex.confidence`); ``None``
    #: without confidence
    rank_interval: tuple | None = None
    p_first: float | None = None
    #: seconds its scores' resampled deviations took to compute (when they were)
    resample_seconds: float = 0.0
    #: estimator -> ``(B,)`` deviations of its score over the half-samples
    resampled: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("resampled")
        return out


@dataclass
class Ranking:
    """The outcome of a search: ranked results first, skipped models after them.

    ``stats`` counts the whole search, whatever ``top`` kept: ``models`` considered,
    ``ranked`` and ``skipped`` models, ``run`` (a model ran), ``from_activations``
    (scored from cached activations, no model ran), ``from_scores`` (every score
    cached), ``pairs`` (model x layer rows scored), ``confidence_seconds`` (combining
    the rows' resampled scores into :attr:`confidence`, at the end).
    """

    target: str
    n: int
    classes: list
    scorers: list
    dim: int
    metric: str
    results: list
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    options: SearchOptions | None = None
    #: ``{scorer: members it combined}`` for each combined scorer (``ensemble``): the
    #: members the target allowed, which may be fewer than the scorer's defaults
    members: dict = field(default_factory=dict)
    #: how firm the ranking is (:mod:`zooindex.confidence`), ``None`` when off or not
    #: computable: ``resamples`` and ``seed`` of the half-samples, ``levels`` (the rank
    #: interval's percentiles), ``flip`` (``{"models": [first, second], "probability":
    #: share of resamples that swaps them}``, ``None`` with one row) and ``sentence``
    #: (what to say when the top is not settled, else ``None``)
    confidence: dict | None = None
    #: ``classification``, or ``regression`` for a target of real-valued labels
    task: str = "classification"

    @property
    def columns(self) -> list[str]:
        """The score columns of a row: the scorers, then the members of combined ones."""
        names = list(self.scorers)
        for members in self.members.values():
            names += [m for m in members if m not in names]
        return names

    @property
    def ranked(self) -> list[Result]:
        return [r for r in self.results if r.status == "ok"]

    @property
    def skipped(self) -> list[Result]:
        return [r for r in self.results if r.status != "ok"]

    def to_records(self) -> list[dict]:
        return [r.to_dict() for r in self.results]


@dataclass
class _Planned:
    """One model's place in a search: its results so far, and the task still to run."""

    record: ModelRecord
    results: dict = field(default_factory=dict)   # layer -> Result (cached scores in)
    task: ModelTask | None = None
    skipped: Result | None = None
    prep_key: str = ""
    outcome: Outcome | None = None

    def skip(self, reason: str) -> None:
        self.skipped = Result(model=self.record.name, status="skipped", reason=reason)
        self.results = {}
        self.task = None

    def rows(self) -> list[Result]:
        """The model's results: one per layer, or one skipped row."""
        return [self.skipped] if self.skipped is not None else list(self.results.values())


def search(target, options: SearchOptions | None = None, *, index=None,
           selection: TargetSelection | None = None, models=None, filter=None,
           top: int | None = None, progress: bool | None = False, refresh: bool = False,
           executor=None, on_result=None, **settings) -> Ranking:
    """Rank every indexed model (or those named in ``models``) for ``target``.

    ``target`` is a path in any supported format or a :class:`~zooindex.target.Target`.
    ``options`` (:class:`~zooindex.options.SearchOptions`) and ``selection``
    (:class:`~zooindex.options.TargetSelection`) say how to score and which samples;
    their fields can also be given as keywords (``dim=5, classes="0-4"``). ``filter``
    (a :class:`zooindex.zoo.Filter`) narrows the models by tag, source, size or name.
    The first scorer ranks; the others add columns. ``top`` keeps the best K rows
    (the counts in :attr:`Ranking.stats` are of the whole search).

    Models the target cannot fit, whose file is gone or changed, or that lack the
    layer, are listed as skipped with a reason; with ``refresh``, a model whose file
    changed is re-inspected, updated in the index and ranked (its old cached numbers are
    keyed by the old content and never used for the new).

    ``executor``: ``"pipeline"`` (default: one model runs while the next loads and the
    previous is scored), ``"sequential"``, ``"ray"`` (a Ray cluster, see
    :mod:`zooindex.distributed`), or an executor object (see :mod:`zooindex.executor`).
    ``on_result(result)`` is called with each model's results as soon as they are known,
    e.g. for live progress; when the first scorer is a combination, ``result.score`` is
    ``None`` there (a rank among all the models exists only once all are scored) and
    ``result.scores`` holds the members' values.
    """
    started = time.perf_counter()
    options, selection = from_settings(options, selection, **settings)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ZooIndexError(f"--top must be a positive whole number, not {top!r}")
    tgt = selection.load(target)
    scorers, notes = _scorers_for(tgt, options)
    from .estimators.combine import member_estimators

    ests = member_estimators(scorers)
    # the value a row shows before the search ends: its first scorer's own, if it is one
    lead = scorers[0].estimators[0].name if scorers[0].combiner is None else None
    _check_device(options.device, executor)
    with opened(index, create=False) as idx:
        planned = [_Planned(record=r)
                   for r in _same_modality(_records(idx, models, filter), tgt, notes)]
        if not refresh:  # models that saw part of the target run only the rest of it
            from .partial import reuse_partial

            completed = reuse_partial(idx, tgt, [p.record for p in planned], options,
                                      executor)
            if completed:
                notes.append(f"{completed} {'texts' if tgt.kind == 'text' else 'images'} "
                             "not seen by a search on a budget before were run, the "
                             "others read from the cache")
        bar = _progress(len(planned), progress)

        def settle(plan: _Planned) -> None:
            if bar is not None:
                bar.update(1)
            if on_result is not None:
                for r in plan.rows():
                    on_result(r)

        def plans():
            for plan in planned:
                _plan(idx, plan, tgt, options, ests, lead, notes, refresh)
                if plan.task is None:
                    settle(plan)
                else:
                    yield plan

        try:
            _execute(idx, tgt, plans(), executor, settle=settle,
                     absorb=lambda plan, outcome: _absorb(idx, tgt, plan, outcome, ests,
                                                          lead))
        finally:
            if bar is not None:
                bar.close()
        notes.extend(_grouped_notes(planned))
        notes.extend(idx.warnings)  # cache writes that failed: the ranking stands
    notes[:0] = _input_notes(tgt, planned)
    return _ranking(tgt, planned, scorers, options, notes, top, started)


def _same_modality(records, tgt: Target, notes: list) -> list:
    """The models that read the target's kind of data (text or images); the others are
    left out with one note: a zoo may hold both."""
    kind = getattr(tgt, "kind", "image")
    same = [r for r in records if r.modality == kind]
    other = [r for r in records if r.modality != kind]
    if other:
        names = ", ".join(r.name for r in other[:5]) + (
            f" and {len(other) - 5} more" if len(other) > 5 else "")
        what = "texts" if kind == "text" else "images or numbers"
        notes.append(f"{len(other)} {other[0].modality} model{'s' * (len(other) != 1)} left "
                     f"out: the target holds {what} ({names})")
    return same


def _grouped_notes(planned) -> list[str]:
    """The models' own notes ("MODEL [LAYER] ...: ..."), one line per distinct message:
    what many models share (an estimator that cannot read any model's streamed layer)
    is said once, naming the models, instead of once per model."""
    groups: dict[str, list] = {}
    for plan in planned:
        if plan.outcome is None:
            continue
        name = plan.record.name
        for note in plan.outcome.notes:
            head = f"{name} ["
            end = note.find("]", len(head)) if note.startswith(head) else -1
            text = note[end + 1:].lstrip(": ").strip() if end > 0 else note
            groups.setdefault(text, []).append((name, note))
    out = []
    for text, seen in groups.items():
        models = list(dict.fromkeys(name for name, _ in seen))
        if len(seen) == 1 or text == seen[0][1]:
            out.extend(dict.fromkeys(note for _, note in seen))
            continue
        shown = ", ".join(models[:5]) + (f" and {len(models) - 5} more"
                                         if len(models) > 5 else "")
        out.append(f"{text} ({len(models)} model{'s' * (len(models) != 1)}: {shown})")
    return out


def _input_notes(tgt: Target, planned) -> list[str]:
    """What was assumed about the target's numbers, and what fitting it to the models
    did (converted channels, resized, flattened), once per kind of fit."""
    notes = [tgt.input_note] if getattr(tgt, "input_note", None) else []
    fits: dict[str, list[str]] = {}
    for plan in planned:
        if plan.skipped is not None or plan.record.text is not None:
            continue
        record = plan.record
        text = describe_fit(tgt.x.shape[1:], record.input_shape,
                            Preprocessing.from_dict(record.preprocessing))
        if text:
            fits.setdefault(text, []).append(record.name)
    for text, names in fits.items():
        which = "every model" if len(names) == len(planned) else \
            ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        notes.append(f"target fitted to {which}: {text}")
    return notes


def _scorers_for(tgt: Target, options: SearchOptions):
    """The search's scorers, and a note when an unlabeled target changes the default."""
    from .estimators import UNLABELED_DEFAULT, UNLABELED_NOTE
    from .estimators.combine import check_label_free, resolve_many

    if getattr(tgt, "regression", False):
        return _regression_scorers(resolve_many(options.scorers), options)
    if tgt.labeled:
        notes: list[str] = []
        return _fit_class_sizes(resolve_many(options.scorers), tgt, notes), notes
    notes = []
    names = options.scorers
    if tuple(names) == SearchOptions().scorers:
        names = (UNLABELED_DEFAULT,)
        notes.append(f"target {tgt.source} has no labels: ranked by {UNLABELED_DEFAULT}, a "
                     "label-free score (see `zooindex scorers --experimental`); "
                     + UNLABELED_NOTE)
    scorers = resolve_many(names)
    check_label_free(scorers)
    return scorers, notes


def _regression_scorers(scorers, options: SearchOptions):
    """The scorers that have a regression form (:mod:`zooindex.estimators.regression`),
    and a note naming those left out of ``all``; asking for another is an error."""
    from .estimators.combine import resolve_many
    from .estimators.regression import REGRESSION

    supported = ", ".join(REGRESSION)
    asked_all = "all" in options.scorers
    default = tuple(options.scorers) == SearchOptions().scorers
    kept, dropped = [], []
    for scorer in scorers:
        if scorer.combiner is None and scorer.estimators[0].name in REGRESSION:
            kept.append(scorer)
        elif (asked_all and scorer.combiner is None) or default:
            dropped.append(scorer.name)
        else:
            raise ZooIndexError(f"scorer '{scorer.name}' needs class labels; the target's "
                                f"labels are real numbers (regression), scored by: "
                                f"{supported}. Pass --scorer {' or '.join(REGRESSION)}")
    notes = [f"regression target: {', '.join(dropped)} left out (they need class labels); "
             f"scored by {', '.join(s.name for s in kept)}"] if dropped else []
    return (kept or resolve_many(["logme"])), notes


def _fit_class_sizes(scorers, tgt: Target, notes: list) -> list:
    """The scorers as the target's smallest class allows, said once in ``notes`` rather
    than once per model: a combination loses the members whose fewest samples per class
    it does not reach (the others rank); a further column that cannot be computed is left
    out; a ranking estimator that cannot be is an error (nothing could be ranked)."""
    from .estimators import _check_class_sizes
    from .estimators.combine import Scorer

    codes = np.unique(np.asarray(tgt.y), return_inverse=True)[1]
    smallest = int(np.bincount(codes).min()) if len(codes) else 0
    kept = []
    for i, scorer in enumerate(scorers):
        if scorer.combiner is not None:
            members = tuple(e for e in scorer.estimators if e.min_per_class <= smallest)
            if members and len(members) < len(scorer.estimators):
                left = ", ".join(f"{e.name} (it needs {e.min_per_class})"
                                 for e in scorer.estimators if e not in members)
                notes.append(f"{scorer.name}: left out {left}: the target's smallest class "
                             f"has {smallest} samples; ranked by "
                             f"{', '.join(e.name for e in members)}")
                scorer = Scorer(name=scorer.name, estimators=members,
                                combiner=scorer.combiner)
            kept.append(scorer)
            continue
        estimator = scorer.estimators[0]
        try:
            _check_class_sizes(codes, estimator.min_per_class, estimator.name, tgt.y)
        except ZooIndexError as exc:
            if i == 0:
                raise
            notes.append(f"column left out: {exc}")
            continue
        kept.append(scorer)
    return kept


def _check_device(device: str, executor=None) -> None:
    """A device that cannot work is an error even if everything is cached. (An executor
    that runs the models on other machines checks theirs when it has a model to run.)"""
    from . import executor as executors

    if device != "auto" and not executors.is_remote(executor):
        from . import runtime

        runtime.providers(device)


def _records(idx: Index, models, filter) -> list[ModelRecord]:
    records = idx.catalogue.models()
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
    return records


def _execute(idx: Index, tgt: Target, plans, executor, *, absorb, settle=None) -> None:
    """Run the tasks of ``plans`` (an iterable of :class:`_Planned`, read lazily) on the
    executor and ``absorb`` each outcome, in task order, in this thread."""
    from collections import deque

    from . import executor as executors

    handed: deque = deque()

    def tasks():
        for plan in plans:
            handed.append(plan)
            yield plan.task

    sweep_limit = sweep_entry_bytes()

    def stage(task: ModelTask, outcome: Outcome) -> None:
        """Write the outcome's cache files; no database (it runs in a worker thread).

        The default layer and the class scores are always cached; other layers (a
        sweep's) only up to :func:`sweep_entry_bytes` each: their scores are cached
        anyway, and wide conv maps would fill the cache for little.
        """
        prep = task.features_key or Preprocessing.from_dict(task.record.preprocessing).key()
        for layer, array in outcome.activations.items():
            if layer not in (task.record.default_layer, OUTPUT) and \
                    array.nbytes > sweep_limit:
                continue
            staged = idx.cache.stage_activations(task.record.sha256, layer, tgt.key, prep,
                                                 array)
            if staged is not None:
                outcome.staged.append(staged)
        outcome.activations = {}

    for outcome in executors.get(executor).run(
            tasks(), tgt, after=stage, discard=lambda o: idx.cache.discard(o.staged)):
        plan = handed.popleft()
        plan.outcome = outcome
        absorb(plan, outcome)
        if settle is not None:
            settle(plan)


DEFAULT_SWEEP_ENTRY_BYTES = 4 * 1024**2


def sweep_entry_bytes() -> int:
    """The largest activations of a layer other than the default that are cached
    (``$ZOOINDEX_CACHE_SWEEP_BYTES``, default 4 MiB)."""
    import os

    env = os.environ.get("ZOOINDEX_CACHE_SWEEP_BYTES")
    return int(float(env)) if env else DEFAULT_SWEEP_ENTRY_BYTES


def _short_layer_reason(exc: LayerError, record: ModelRecord) -> str:
    """A skipped model's reason for a layer problem, without the candidate list."""
    see = f"see `zooindex layers {record.name}`"
    if exc.layer in (None, "default"):
        return f"no default layer; pass --layer ({see})"
    return f"no layer '{exc.layer}' ({see})"


def _plan(idx: Index, plan: _Planned, tgt: Target, options: SearchOptions, ests, lead,
          notes, refresh: bool = False) -> None:
    """What is cached and what is left to do for one model: fills ``plan``."""
    record = plan.record
    status = idx.catalogue.model_status(record)
    if status == "missing":
        plan.skip(f"model file {record.path} is missing; re-add it or "
                  f"`zooindex rm {record.name}`")
        return
    if status == "changed" and refresh:
        try:
            record = plan.record = _refresh(idx, record)
        except ZooIndexError as exc:
            plan.skip(f"model file {record.path} changed since it was added and could not "
                      f"be re-indexed: {exc}")
            return
    elif status == "changed":
        plan.skip(f"model file {record.path} changed since it was added; search with "
                  f"--refresh to re-index it, or `zooindex add --replace {record.path}`")
        return
    kind = getattr(tgt, "kind", "image")
    if record.modality != kind:
        plan.skip(f"a {record.modality} model; the target holds "
                  f"{'texts' if kind == 'text' else 'images or numbers'}")
        return
    from .partial import layers_and_key

    try:
        layers, plan.prep_key = layers_and_key(record, tgt, options)
    except LayerError as exc:
        plan.skip(_short_layer_reason(exc, record))
        return
    except AdaptError as exc:
        plan.skip(str(exc))
        return
    if any(e.needs_probs for e in ests) and not record.output_name:
        notes.append(f"{record.name}: no classifier output; estimators that need one "
                     "are left out")
    wanted: dict[str, tuple] = {}
    confident = options.confidence and tgt.labeled
    for layer in layers:
        cached = idx.cache.get_scores(record.sha256, layer.name, tgt.key, plan.prep_key)
        res = Result(model=record.name, layer=layer.name, width=layer.width, cached=True)
        for e in ests:
            key = (e.name, params_key(e, options))
            devs = _cached_deviations(cached.get((e.name, resample_key(e, options))),
                                      options) if confident else None
            if key in cached and (devs is not None or not confident):
                value, comps, secs = cached[key]
                res.scores[e.name] = value
                res.timings[e.name] = secs
                if e is _reducing(ests):
                    res.components = comps
                if devs is not None and len(devs):
                    res.resampled[e.name] = devs
                    res.resample_seconds += cached[(e.name, resample_key(e, options))][2]
            else:
                wanted[layer.name] = wanted.get(layer.name, ()) + (e.name,)
        plan.results[layer.name] = res
    if wanted:
        plan.task = _task(idx, record, tgt, plan.prep_key, tuple(wanted), wanted, options)
    else:
        _provisional_scores(plan, lead)


def _cached_deviations(row, options: SearchOptions):
    """A cached row of resampled deviations as an array (empty: none could be computed),
    or ``None`` when there is none or it is not what these options ask for."""
    if row is None or not isinstance(row[0], bytes) or len(row[0]) % 8:
        return None
    devs = np.frombuffer(row[0], dtype="<f8")
    return devs if len(devs) in (0, options.resamples) else None


def _task(idx: Index, record: ModelRecord, tgt: Target, prep_key: str, layers, wanted,
          options: SearchOptions, keep: bool = False) -> ModelTask:
    files = idx.cache.cached_files(record.sha256, tgt.key, prep_key)
    cached = {name: files[name] for name in (*layers, OUTPUT) if name in files}
    return ModelTask(record=record, layers=tuple(layers), wanted=dict(wanted), cached=cached,
                     options=options, keep_features=keep, features_key=prep_key)


def _absorb(idx: Index, tgt: Target, plan: _Planned, outcome: Outcome, ests,
            lead: str | None) -> None:
    """Store what a model's unit of work computed, and fold it into its results."""
    _store(idx, tgt, plan, outcome)
    if outcome.status != "ok":
        plan.skip(outcome.reason)
        return
    reducing = _reducing(ests)
    for name, res in plan.results.items():
        new = outcome.layers.get(name)
        if new is not None:
            res.cached = False
            res.provider = outcome.provider
            res.inference_seconds = outcome.inference_seconds / max(len(plan.task.wanted), 1)
            res.scores.update(new.scores)
            res.timings.update(new.timings)
            res.resampled.update({k: v for k, v in new.resampled.items() if len(v)})
            res.resample_seconds += sum(new.resample_timings.values())
            if reducing is not None and reducing.name in new.scores:
                res.components = new.components.get(reducing.name)
        res.seconds = outcome.seconds / len(plan.results)
    _provisional_scores(plan, lead)


def _reducing(ests):
    """The first estimator that reduces the features to D components: the one whose
    number of components a row reports (``None`` when none does)."""
    return next((e for e in ests if "dim" in e.params), None)


def _provisional_scores(plan: _Planned, lead: str | None) -> None:
    """Each layer's score as far as it is known before the whole search is: the first
    scorer's value when it is an estimator; ``None`` for a combination, whose score
    :func:`_combine` sets at the end (a member's value would pass for it)."""
    for res in plan.results.values():
        res.score = res.scores.get(lead) if lead is not None else None


def _combine(planned, scorers) -> None:
    """The scorers' columns over every scored row, then each row's score: its first
    scorer's. A row without one is skipped, saying why."""
    rows = {(i, name): res for i, plan in enumerate(planned)
            for name, res in plan.results.items()}
    table = {key: res.scores for key, res in rows.items()}
    for scorer in scorers:
        if scorer.combiner is not None:
            for key, value in scorer.combine(table).items():
                rows[key].scores[scorer.name] = value
    first = scorers[0]
    for res in rows.values():
        if first.name in res.scores:
            res.score = res.scores[first.name]
            continue
        res.status, res.score = "skipped", None
        if first.combiner is not None:
            res.reason = f"none of {first.name}'s members could be computed"
        elif first.needs_probs:
            res.reason = f"{first.name} needs the model's classifier output, which it lacks"
        else:
            res.reason = f"{first.name} could not be computed"


def _store(idx: Index, tgt: Target, plan: _Planned, outcome: Outcome) -> None:
    entry = Entry(model_sha=plan.record.sha256, target=tgt.key, prep=plan.prep_key,
                  scores=score_rows(plan.task, outcome), staged=list(outcome.staged),
                  damaged=list(outcome.damaged), used=list(outcome.used))
    idx.cache.absorb(entry, (tgt.key, tgt.source, len(tgt), list(tgt.classes)))


def _refresh(idx: Index, record: ModelRecord) -> ModelRecord:
    """Re-inspect a model whose file changed and store the new record, in one transaction.

    The user's settings (name, tags, source, preprocessing, data input, and the default
    layer when the new graph still has it) carry over. If another process replaced or
    removed the record meanwhile, that newer state wins and this search skips the model.
    """
    from .catalogue import inspect_file
    from .errors import StoreError

    prep = Preprocessing.from_dict(record.preprocessing)
    common = dict(name=record.name, tags=record.tags, preprocessing=prep,
                  source=record.source, input_name=record.input_name,
                  output_name=record.output_name)
    try:
        fresh = inspect_file(record.path, layer=record.default_layer, **common)
    except LayerError:  # the chosen layer is gone: fall back to the new default
        fresh = inspect_file(record.path, **common)
    fresh.added_at = record.added_at
    if not idx.replace_model(record.sha256, fresh):
        raise StoreError(f"model '{record.name}' was changed in the index by another "
                         "process meanwhile; search again", path=str(idx.path))
    return fresh


def _best_layers(results: list) -> list:
    """``--layer-aggregation best``: each model's best-scoring row (its best hidden
    state, transformer-ranker's ``bestlayer``); skipped rows stay."""
    best: dict[str, Result] = {}
    for r in results:
        if r.status == "ok" and r.score is not None and (
                r.model not in best or r.score > best[r.model].score):
            best[r.model] = r
    return [r for r in results if r.status != "ok" or best.get(r.model) is r]


def _ranking(tgt: Target, planned, scorers, options: SearchOptions, notes, top,
             started) -> Ranking:
    _combine(planned, scorers)
    results = [r for plan in planned for r in plan.rows()]
    if options.layer_aggregation == "best" and options.layer in (None, "default"):
        results = _best_layers(results)
    ranked = sorted((r for r in results if r.status == "ok"),
                    key=lambda r: (-r.score, r.model, r.layer or ""))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    skipped = [r for r in results if r.status != "ok"]
    ran = [p for p in planned if p.outcome is not None and p.outcome.status == "ok"]
    stats = {
        "models": len(planned),
        "ranked": len({r.model for r in ranked}),
        "skipped": len({p.record.name for p in planned if not any(
            r.status == "ok" for r in p.rows())}),
        "run": sum(1 for p in ran if p.outcome.provider is not None),
        "from_activations": sum(1 for p in ran if p.outcome.provider is None),
        "from_scores": sum(1 for p in planned if p.task is None and p.skipped is None),
        "pairs": len(ranked),
        "providers": sorted({p.outcome.provider for p in ran if p.outcome.provider}),
    }
    t = time.perf_counter()
    confidence = _confidence(ranked, scorers[0], options,
                             "texts" if getattr(tgt, "kind", "image") == "text" else "images") \
        if options.confidence and tgt.labeled else None
    stats["confidence_seconds"] = round(time.perf_counter() - t, 4)
    if top is not None:
        ranked = ranked[:top]
    dim = options.dim
    comps = {r.components for r in ranked if r.components is not None and r.components < dim}
    if comps and any("dim" in e.params for s in scorers for e in s.estimators):
        notes.append(f"D={dim} is more than some layers allow; used "
                     f"{', '.join(map(str, sorted(comps)))} components where needed")
    lead = scorers[0]
    if lead.combiner is not None and stats["pairs"] == 1:
        member_scores = ", ".join(f"{m} {ranked[0].scores[m]:.4g}" for m in lead.members
                                  if m in ranked[0].scores)
        notes.append(f"one row ranked: {lead.name} places each model among the others "
                     f"searched with it, so alone it scores 0.5 whatever it is; its "
                     f"members' scores: {member_scores}. Search it with other models to "
                     "compare them")
    return Ranking(target=tgt.source, n=len(tgt), classes=list(tgt.classes),
                   scorers=[s.name for s in scorers], dim=dim, metric=options.metric,
                   results=ranked + skipped, notes=notes,
                   seconds=time.perf_counter() - started, stats=stats, options=options,
                   members={s.name: s.members for s in scorers if s.combiner is not None},
                   confidence=confidence, task=getattr(tgt, "task", "classification"))


def _confidence(ranked: list, scorer, options: SearchOptions,
                samples: str = "images") -> dict | None:
    """Each ranked row's rank interval and probability of being first, from its
    scores' deviations over the half-samples (:mod:`zooindex.confidence`); a combined
    scorer is combined again on each resample. ``None`` when a row lacks deviations
    for a score it has (e.g. a layer reduced as it streamed)."""
    from .confidence import LEVELS, sentence, summarise

    if not ranked:
        return None
    resamples = options.resamples
    members = scorer.members
    columns = {}
    for m in members:
        column = np.full((len(ranked), resamples), np.nan)
        for i, r in enumerate(ranked):
            value = r.scores.get(m)
            if value is None or not np.isfinite(value):
                continue
            devs = r.resampled.get(m)
            if devs is None or len(devs) != resamples:
                return None
            column[i] = value + devs
        columns[m] = column
    from .estimators.combine import mean_rank

    if scorer.combiner is None:
        scores = columns[members[0]]
    elif scorer.combiner.aggregate is mean_rank and \
            all(np.isfinite(c).all() for c in columns.values()):
        from .confidence import mean_rank_columns

        scores = mean_rank_columns([columns[m] for m in members])  # every resample at once
    else:
        scores = np.empty((len(ranked), resamples))
        for b in range(resamples):
            table = {i: {m: columns[m][i, b] for m in members} for i in range(len(ranked))}
            combined = scorer.combine(table)
            scores[:, b] = [combined.get(i, np.nan) for i in range(len(ranked))]
        if not np.all(np.isfinite(scores)):
            return None
    names = [r.model for r in ranked]
    if len(set(names)) < len(names):  # a layer sweep: name the rows by layer too
        names = [f"{r.model} [{r.layer}]" for r in ranked]
    figures = summarise(names, scores)
    for r, interval, first in zip(ranked, figures["intervals"], figures["first"]):
        r.rank_interval, r.p_first = interval, first
    return {"resamples": resamples, "seed": options.seed, "levels": list(LEVELS),
            "flip": figures["flip"], "sentence": sentence(figures["flip"], samples)}


def activations(target, models, *, index=None, layer: str | None = None,
                options: SearchOptions | None = None, executor=None) -> dict:
    """``{model: (n, width) float32 activations}`` of each named model's layer for
    ``target`` (a :class:`~zooindex.target.Target`), from the cache or by running the
    models, whose new activations are then cached: the door ``features``, ``evaluate``
    and ``report`` go through. ``layer``: ``None``/``"default"`` or a tensor name,
    per model."""
    from .partial import layers_and_key

    options = options or SearchOptions()
    out: dict = {}
    with opened(index, create=False) as idx:
        plans = []
        for name in models:
            record = idx.catalogue.get_model(name)
            if record.modality != getattr(target, "kind", "image"):
                raise AdaptError(f"model '{name}' is a {record.modality} model; the target "
                                 f"holds {'texts' if record.modality == 'image' else 'numbers'}",
                                 model=name)
            layers, prep_key = layers_and_key(record, target, replace(options, layer=layer))
            chosen = layers[0]
            plan = _Planned(record=record, prep_key=prep_key)
            plan.task = _task(idx, record, target, plan.prep_key, (chosen.name,), {},
                              options, keep=True)
            plans.append(plan)

        def absorb(plan: _Planned, outcome: Outcome) -> None:
            _store(idx, target, plan, outcome)
            if outcome.status != "ok":
                from .errors import ModelError

                raise ModelError(outcome.reason, model=plan.record.name)
            out[plan.record.name] = outcome.features[plan.task.layers[0]]

        _execute(idx, target, iter(plans), executor, absorb=absorb)
    return out


def features(target, model: str, options: SearchOptions | None = None, *, index=None,
             selection: TargetSelection | None = None, executor=None,
             **settings) -> np.ndarray:
    """Activations ``(n, width)`` of one indexed model's layer for a target, cached like
    a search's. ``target`` is a path or a :class:`~zooindex.target.Target`; the layer
    (``layer=``, default: the model's default layer), batch size, device and the target
    selection (``classes=``, ``limit=``, ``seed=``, ``split=``) are options as for
    :func:`search`."""
    options, selection = from_settings(options, selection, **settings)
    _check_device(options.device, executor)
    tgt = selection.load(target)
    return activations(tgt, [model], index=index, layer=options.layer, options=options,
                       executor=executor)[model]


def _progress(total: int, progress):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="model", disable=None if progress is None else not progress,
                leave=False, dynamic_ncols=True)


__all__ = ["search", "features", "activations", "Ranking", "Result"]
