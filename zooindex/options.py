"""The options shared by search, evaluate, report and features, each defined once.

:class:`TargetSelection` says which samples of a target take part (classes, a
stratified subsample, a split); :class:`SearchOptions` says how each model is run and
scored (layer, D, metric, estimators, batch size, device). Both validate themselves on
construction, so everything downstream trusts them, and both are frozen and picklable:
they travel with each per-model unit of work. The CLI's choices and defaults are
defined once in :mod:`zooindex.choices` and re-exported here. Nothing heavy is imported.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace

from .choices import (CROPS, DEFAULT_BATCH_SIZE, DEFAULT_DIM, DEFAULT_METRIC,  # noqa: F401
                      DEFAULT_RESAMPLES, DEFAULT_SCORER, DEFAULT_SEED, DEVICES,
                      EXECUTORS, INPUT_RANGES, INTERPOLATIONS, LAYER_AGGREGATIONS, METRICS,
                      POOLINGS, PRESETS, PROTOCOLS, SPLITS)
from .errors import ZooIndexError


def _positive(value, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ZooIndexError(f"{flag} must be a positive whole number, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class TargetSelection:
    """Which samples of a target take part.

    ``classes``: keep only these label values (ints, strings, or text such as
    ``"0-4"``); ``limit``: a stratified subsample of that many samples, drawn with
    ``seed``; ``split``: ``train`` or ``test`` for data sets that have splits;
    ``input_range``: what the stored numbers are, ``"0-1"`` or ``"0-255"`` (pixels);
    ``None`` decides from the data (see :func:`zooindex.target.detect_input_range`);
    ``text_column``, ``label_column``, ``text_pair_column``: the columns of a text file
    (see :mod:`zooindex.readers.text`).
    """

    classes: tuple | None = None
    limit: int | None = None
    seed: int = DEFAULT_SEED
    split: str | None = None
    input_range: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    text_pair_column: str | None = None

    def __post_init__(self):
        if self.classes is not None and not isinstance(self.classes, tuple):
            classes = self.classes
            if isinstance(classes, str):
                from .target import parse_classes

                classes = parse_classes(classes)
            object.__setattr__(self, "classes", tuple(classes))
        if self.split is not None and self.split not in SPLITS:
            raise ZooIndexError(f"unknown split '{self.split}'; choose from: "
                                f"{', '.join(SPLITS)}")
        if self.input_range is not None and self.input_range not in INPUT_RANGES:
            raise ZooIndexError(f"unknown input range '{self.input_range}'; choose from: "
                                f"{', '.join(INPUT_RANGES)}")

    def load(self, source):
        """The :class:`~zooindex.target.Target` these options select from ``source``
        (a path, a :class:`~zooindex.readers.Dataset`, or a Target already loaded)."""
        from .target import Target, load_target

        if isinstance(source, Target):
            return source
        return load_target(source, split=self.split,
                           classes=list(self.classes) if self.classes is not None else None,
                           limit=self.limit, seed=self.seed, input_range=self.input_range,
                           text_column=self.text_column, label_column=self.label_column,
                           text_pair_column=self.text_pair_column)


@dataclass(frozen=True)
class SearchOptions:
    """How every model is run and scored.

    ``layer``: ``None``/``"default"`` (the representation that enters the model's
    classifier), a tensor name, or ``"all"`` (a layer sweep). ``dim``: D, the PCA
    components before the distance-based scores. ``metric``: the silhouette's distance.
    ``scorers``: scorer names, ranked by the first: estimators (``"silhouette"``, the
    paper's), combinations (``"ensemble:logme,knn"``), ``"all"`` for every estimator;
    by default ``"recommended"``, the scorer the evidence bases support (LogME; see
    :data:`zooindex.estimators.RECOMMENDED`).
    ``seed``: for PCA's and the estimators' randomness. ``batch_size`` and ``device``:
    how onnxruntime runs the models (``batch_size`` ``None``: chosen per model so that
    its intermediate tensors fit a memory budget, see
    :func:`zooindex.runner.auto_batch_size`). ``confidence``: also score ``resamples``
    stratified half-samples of a labeled target (drawn with ``seed``) for each row's
    rank interval and probability of being first (see :mod:`zooindex.confidence`);
    it never changes the ranking.
    For text models (see :mod:`zooindex.text`): ``pooling``, ``"mean"`` over the real
    tokens or the ``"first"`` token, turns a hidden state into one row per text;
    ``layer_aggregation`` ``"last"`` scores the default layer (the classifier's input,
    else the last hidden state), ``"mean"`` the mean of every block's hidden state,
    ``"best"`` every hidden state, the best one ranking the model.
    """

    layer: str | None = None
    dim: int = DEFAULT_DIM
    metric: str = DEFAULT_METRIC
    scorers: tuple = (DEFAULT_SCORER,)
    seed: int = DEFAULT_SEED
    batch_size: int | None = DEFAULT_BATCH_SIZE
    device: str = "auto"
    confidence: bool = True
    resamples: int = DEFAULT_RESAMPLES
    pooling: str = "mean"
    layer_aggregation: str = "last"

    def __post_init__(self):
        scorers = self.scorers
        if isinstance(scorers, str):
            scorers = (scorers,)
        scorers = tuple(scorers or (DEFAULT_SCORER,))
        object.__setattr__(self, "scorers", scorers)
        if self.metric not in METRICS:
            raise ZooIndexError(f"unknown metric '{self.metric}'; choose from: "
                                f"{', '.join(METRICS)}")
        if self.pooling not in POOLINGS:
            raise ZooIndexError(f"unknown pooling '{self.pooling}'; choose from: "
                                f"{', '.join(POOLINGS)}")
        if self.layer_aggregation not in LAYER_AGGREGATIONS:
            raise ZooIndexError(f"unknown layer aggregation '{self.layer_aggregation}'; "
                                f"choose from: {', '.join(LAYER_AGGREGATIONS)}")
        if self.device not in DEVICES:
            raise ZooIndexError(f"unknown device '{self.device}'; choose from: "
                                f"{', '.join(DEVICES)}")
        object.__setattr__(self, "dim", _positive(self.dim, "--dim"))
        object.__setattr__(self, "confidence", bool(self.confidence))
        resamples = _positive(self.resamples, "--resamples")
        if resamples < 2:
            raise ZooIndexError(f"--resamples must be at least 2, not {resamples}")
        object.__setattr__(self, "resamples", resamples)
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", _positive(self.batch_size, "--batch-size"))

    @property
    def estimator_options(self) -> dict:
        """What the estimators receive besides features and labels."""
        return {"dim": self.dim, "metric": self.metric, "seed": self.seed}


_SEARCH_FIELDS = {f.name for f in fields(SearchOptions)}
_SELECTION_FIELDS = {f.name for f in fields(TargetSelection)}


def from_settings(options: SearchOptions | None = None,
                  selection: TargetSelection | None = None, /, **settings):
    """``(SearchOptions, TargetSelection)`` with keyword ``settings`` overriding fields of
    either (``seed`` sets both), so the Python API can take ``dim=5, classes="0-4"``."""
    unknown = sorted(set(settings) - _SEARCH_FIELDS - _SELECTION_FIELDS)
    if unknown:
        valid = ", ".join(sorted(_SEARCH_FIELDS | _SELECTION_FIELDS))
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; valid: {valid}")
    options = options or SearchOptions()
    selection = selection or TargetSelection()
    search = {k: v for k, v in settings.items() if k in _SEARCH_FIELDS}
    select = {k: v for k, v in settings.items() if k in _SELECTION_FIELDS}
    if search:
        options = replace(options, **search)
    if select:
        selection = replace(selection, **select)
    return options, selection


__all__ = ["SearchOptions", "TargetSelection", "from_settings", "METRICS", "DEVICES",
           "EXECUTORS", "PROTOCOLS", "SPLITS", "INPUT_RANGES", "INTERPOLATIONS", "CROPS",
           "PRESETS", "DEFAULT_DIM", "DEFAULT_METRIC", "DEFAULT_SCORER"]
