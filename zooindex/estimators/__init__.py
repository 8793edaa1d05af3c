"""Registry of transferability estimators.

An estimator takes a target's features (``(n, d)`` float array, one row per sample) and
its labels (``(n,)`` integer codes ``0..k-1``, already validated: at least two classes,
finite features) and returns one float; higher means the model suits the target better.
Estimators that use the model's own classifier output receive it as ``probs``
(``(n, c)`` softmax probabilities over the model's source classes). Label-free
estimators (``needs_labels=False``) score an unlabeled target: they receive
``labels=None`` whatever the caller passed.

Register a new estimator with :func:`register`; the CLI, the cache and the tests pick it
up from the registry::

    @register("myscore", "one line for `zooindex scorers`", params=("dim",))
    def myscore(features, labels, *, dim=10, seed=0, **_):
        ...

``params`` names the options the score depends on (``dim``, ``metric``, ``seed``); only
those enter the cache key, so changing ``--dim`` does not invalidate, for example, LogME.

What a ``--scorer NAME`` may name is wider than an estimator: a *combiner* such as
``ensemble`` (or ``ensemble:logme,nce,knn``) aggregates several estimators' scores over
all the models of a search, and ``recommended`` names :data:`RECOMMENDED`. See
:mod:`zooindex.estimators.combine` for :func:`resolve`, which turns any such name into a
:class:`Scorer`: the estimators to compute per model, and the step that combines them.

``experimental`` estimators are registered, tested by the property loop and reachable by
name, but are left out of :func:`available`'s default list, and so out of ``all``, until
``benchmarks/ESTIMATORS.md`` has measured them and ``tests/golden`` records their numbers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import EstimatorError

OPTIONS = ("dim", "metric", "seed")

#: what ``--scorer recommended`` selects: a registered estimator or combiner name, with
#: members where the combiner accepts them ("ensemble", "ensemble:knn,logme", "knn").
#: One constant to change when the evidence moves. From benchmarks/REAL.md (18 networks,
#: 12 of them pretrained by other authors, at 10 and 30 labeled images per class): LogME
#: reaches a mean weighted tau of 0.578 against the probe accuracy, the earlier ensemble
#: (logme, sfda, knn, ncti-sei) 0.554 at 3.6 times LogME's cost, the silhouette 0.259;
#: on the networks no choice saw, LogME 0.668, the ensemble 0.639. The rule fixed in
#: advance picked a combination with the parameter count that ranked last of the
#: labeled candidates on those networks (ESTIMATORS.md says why it was not adopted).
RECOMMENDED = "logme"
#: the scorer a search of an unlabeled target uses when none is named. From
#: benchmarks/REAL.md: with whole families of networks by other authors left out,
#: cluster-silhouette is the one label-free score above the parameter count (mean
#: weighted tau 0.495 against 0.333, difference 0.161 [0.04, 0.29]); RankMe, the earlier
#: default, is below it (0.041). On the project's own small networks (ESTIMATORS.md)
#: cluster-silhouette ranked worse than chance (-0.09): the search says how weak an
#: unlabeled ranking is (UNLABELED_NOTE).
UNLABELED_DEFAULT = "cluster-silhouette"
#: said under every unlabeled search that ranks by the default label-free score
UNLABELED_NOTE = ("an unlabeled ranking is weak: on 18 networks by other authors and this "
                  "project, the label-free default agreed with the transfer accuracy at a "
                  "mean weighted tau of 0.49 (LogME with 30 labeled images per class: 0.67), "
                  "and on small self-trained networks it ranked worse than chance (-0.09); "
                  "label a few images per class if you can")


@dataclass(frozen=True)
class Estimator:
    name: str
    func: Callable[..., float]
    description: str
    params: tuple[str, ...] = ()
    needs_probs: bool = False
    uses: tuple[str, ...] = field(default=("features",))
    # starts with reduce.pca, which treats float32 features at full accuracy: spare the
    # float64 copy of a wide layer's activations
    float32_ok: bool = False
    # False: scores an unlabeled target; the function receives labels=None
    needs_labels: bool = True
    # samples every class needs before the score means anything (checked in __call__);
    # estimators whose minimum depends on options (N-LEEP) check the rest themselves
    min_per_class: int = 1
    # registered and tested, but not in available()'s default list nor in `all`
    experimental: bool = False
    module: str = ""

    def cache_params(self, **options) -> dict:
        """The options this estimator's score depends on, for cache keys."""
        return {p: options[p] for p in self.params if p in options}

    @property
    def recommended(self) -> bool:
        """Is this the estimator that ``--scorer recommended`` selects?"""
        from . import RECOMMENDED  # read when asked, so that changing it takes effect

        return RECOMMENDED.partition(":")[0].strip() == self.name

    def __call__(self, features, labels=None, *, probs=None, **options) -> float:
        if self.needs_labels:
            if labels is None:
                free = ", ".join(e.name for e in label_free())
                raise EstimatorError(
                    f"estimator '{self.name}' needs the target's labels; for an unlabeled "
                    f"target choose a label-free one: {free}. See `zooindex scorers`.",
                    estimator=self.name)
            raw = labels
            features, labels = check_inputs(features, labels, self.name,
                                            keep_float32=self.float32_ok)
            _check_class_sizes(labels, self.min_per_class, self.name, raw)
        else:
            features = check_features(features, self.name, keep_float32=self.float32_ok)
            labels = None
        if self.needs_probs:
            if probs is None:
                raise EstimatorError(
                    f"estimator '{self.name}' needs the model's classifier output; "
                    "the model has none", estimator=self.name)
            probs = check_probs(probs, len(features), self.name)
            value = self.func(features, labels, probs=probs, **options)
        else:
            value = self.func(features, labels, **options)
        value = float(value)
        if not np.isfinite(value):
            raise EstimatorError(f"estimator '{self.name}' gave {value} on these features",
                                 estimator=self.name)
        return value


_REGISTRY: dict[str, Estimator] = {}

# modules that register estimators when imported; loaded lazily so that importing
# zooindex stays cheap
_MODULES = (
    "silhouette",
    "logme",
    "hscore",
    "leep",
    "nce",
    "nleep",
    "gbc",
    "transrate",
    "sfda",
    "knn",
    "linear",
    # experimental: newer estimators and label-free scores, not yet in `all`
    "etran",
    "ncti",
    "rankme",
    "clustering",
    "entropy",
)


def register(name: str, description: str, *, params: tuple[str, ...] = (),
             needs_probs: bool = False, float32_ok: bool = False, needs_labels: bool = True,
             min_per_class: int = 1, experimental: bool = False):
    """Decorator that registers ``func`` as estimator ``name``.

    ``float32_ok``: ``func`` handles float32 features itself (it reduces them with
    :func:`zooindex.reduce.pca` first), so they are not copied to float64 beforehand.
    ``needs_labels=False``: a label-free score; ``func`` is called with ``labels=None``.
    ``min_per_class``: fewer samples in any class raise an :class:`EstimatorError`.
    ``experimental``: reachable by name, left out of :func:`available` and ``all``.
    """

    def wrap(func):
        if name in _REGISTRY or name in _RESERVED:
            raise ValueError(f"estimator '{name}' registered twice or reserved")
        _REGISTRY[name] = Estimator(name=name, func=func, description=description,
                                    params=tuple(params), needs_probs=needs_probs,
                                    float32_ok=float32_ok, needs_labels=needs_labels,
                                    min_per_class=int(min_per_class),
                                    experimental=experimental,
                                    module=func.__module__.rpartition(".")[2])
        return func

    return wrap


# names a --scorer may use that are no estimator's
_RESERVED = ("all", "recommended")


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


def _in_module_order(estimators):
    # registration order follows import order, which a caller importing one estimator's
    # module first would change; the order of _MODULES is the one that holds
    rank = {module: i for i, module in enumerate(_MODULES)}
    return sorted(estimators, key=lambda e: rank.get(e.module, len(rank)))


def available(*, experimental: bool = False) -> list[Estimator]:
    """The registered estimators that ``all`` means, in the order of ``_MODULES``.

    With ``experimental=True``, every registered estimator (what ``zooindex scorers``
    should list, marking the experimental ones).
    """
    _load_all()
    return _in_module_order(e for e in _REGISTRY.values() if experimental or not e.experimental)


def label_free() -> list[Estimator]:
    """Every registered estimator that scores an unlabeled target (``needs_labels=False``)."""
    return [e for e in available(experimental=True) if not e.needs_labels]


def get(name: str) -> Estimator:
    """The estimator called ``name``; a clear error listing the valid names otherwise.

    Combiners (``ensemble``) and ``recommended`` are no single estimator: resolve those
    with :func:`resolve`.
    """
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(e.name for e in available(experimental=True))
        hint = ""
        if name.partition(":")[0] in _COMBINERS or name == "recommended":
            hint = (f" '{name}' combines several estimators over all the models of a "
                    "search: resolve it with zooindex.estimators.resolve.")
        raise EstimatorError(f"unknown estimator '{name}'; choose from: {names}.{hint} "
                             "See `zooindex scorers`.", estimator=name) from None


def check_inputs(features, labels, name: str = "estimator", *, keep_float32: bool = False):
    """Validate once: 2-D finite float64 features, integer labels 0..k-1, k >= 2.

    With ``keep_float32``, float32 features stay float32 (for callers that handle them).
    """
    features = _numeric_rows(features, name, keep_float32)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(features):
        raise EstimatorError(f"{name}: {len(features)} feature rows but labels of shape "
                             f"{labels.shape}", estimator=name)
    _check_finite(features, name)
    _, codes = np.unique(labels, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise EstimatorError(f"{name}: need at least two classes", estimator=name)
    return features, codes.astype(np.int64)


def check_features(features, name: str = "estimator", *, keep_float32: bool = False):
    """Validate the features of an unlabeled target: 2-D, numeric, finite, two rows."""
    features = _numeric_rows(features, name, keep_float32)
    if len(features) < 2:
        raise EstimatorError(f"{name}: {len(features)} samples; need at least two",
                             estimator=name)
    _check_finite(features, name)
    return features


def _numeric_rows(features, name, keep_float32):
    features = np.asarray(features)
    if features.ndim != 2:
        features = features.reshape(len(features), -1)
    if features.dtype.kind not in "fiub":
        raise EstimatorError(f"{name}: features must be numeric, not {features.dtype}",
                             estimator=name)
    if not (keep_float32 and features.dtype == np.float32):
        features = features.astype(np.float64, copy=False)
    return features


def _check_finite(features, name):
    if not np.all(np.isfinite(features)):
        raise EstimatorError(f"{name}: features contain NaN or inf", estimator=name)


def _check_class_sizes(codes: np.ndarray, minimum: int, name: str, labels) -> None:
    """Every class of ``codes`` has ``minimum`` samples; else name the smallest class."""
    if minimum <= 1:
        return
    sizes = np.bincount(codes)
    if sizes.min() < minimum:
        small = int(np.argmin(sizes))
        label = np.unique(np.asarray(labels))[small].item()
        have = "a single sample" if sizes[small] == 1 else f"{sizes[small]} samples"
        raise EstimatorError(
            f"{name}: needs at least {minimum} samples per class, and class {label!r} "
            f"has {have}; add samples to the small classes or use an estimator with a "
            "lower minimum (e.g. logme). See `zooindex scorers`.", estimator=name)


def check_probs(probs, n: int, name: str):
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs.reshape(len(probs), -1)
    if len(probs) != n:
        raise EstimatorError(f"{name}: {len(probs)} classifier outputs for {n} samples",
                             estimator=name)
    if not np.all(np.isfinite(probs)):
        raise EstimatorError(f"{name}: classifier outputs contain NaN or inf", estimator=name)
    return probs


# the scorer names: combiners and resolution (imported last: it uses the registry above)
from .combine import (Combiner, Scorer, check_label_free, combiners, listing,  # noqa: E402
                      member_estimators, parse, register_combiner, resolve, resolve_many)
from .combine import _COMBINERS  # noqa: E402
