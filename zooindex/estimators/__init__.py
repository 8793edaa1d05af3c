"""Registry of transferability estimators.

An estimator takes a target's features (``(n, d)`` float array, one row per sample) and
its labels (``(n,)`` integer codes ``0..k-1``, already validated: at least two classes,
finite features) and returns one float; higher means the model suits the target better.
Estimators that use the model's own classifier output receive it as ``probs``
(``(n, c)`` softmax probabilities over the model's source classes).

Register a new estimator with :func:`register`; the CLI, the cache and the tests pick it
up from the registry::

    @register("myscore", "one line for `zooindex scorers`", params=("dim",))
    def myscore(features, labels, *, dim=10, seed=0, **_):
        ...

``params`` names the options the score depends on (``dim``, ``metric``, ``seed``); only
those enter the cache key, so changing ``--dim`` does not invalidate, for example, LogME.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import EstimatorError

OPTIONS = ("dim", "metric", "seed")


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

    def cache_params(self, **options) -> dict:
        """The options this estimator's score depends on, for cache keys."""
        return {p: options[p] for p in self.params if p in options}

    def __call__(self, features, labels, *, probs=None, **options) -> float:
        features, labels = check_inputs(features, labels, self.name,
                                        keep_float32=self.float32_ok)
        if self.needs_probs:
            if probs is None:
                raise EstimatorError(
                    f"estimator '{self.name}' needs the model's classifier output; "
                    "the model has none", estimator=self.name)
            probs = check_probs(probs, len(labels), self.name)
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
)


def register(name: str, description: str, *, params: tuple[str, ...] = (),
             needs_probs: bool = False, float32_ok: bool = False):
    """Decorator that registers ``func`` as estimator ``name``.

    ``float32_ok``: ``func`` handles float32 features itself (it reduces them with
    :func:`zooindex.reduce.pca` first), so they are not copied to float64 beforehand.
    """

    def wrap(func):
        if name in _REGISTRY:
            raise ValueError(f"estimator '{name}' registered twice")
        _REGISTRY[name] = Estimator(name=name, func=func, description=description,
                                    params=tuple(params), needs_probs=needs_probs,
                                    float32_ok=float32_ok)
        return func

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


def available() -> list[Estimator]:
    """Every registered estimator, in registration order."""
    _load_all()
    return list(_REGISTRY.values())


def get(name: str) -> Estimator:
    """The estimator called ``name``; a clear error listing the valid names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(_REGISTRY)
        raise EstimatorError(f"unknown estimator '{name}'; choose from: {names}. "
                             "See `zooindex scorers`.", estimator=name) from None


def check_inputs(features, labels, name: str = "estimator", *, keep_float32: bool = False):
    """Validate once: 2-D finite float64 features, integer labels 0..k-1, k >= 2.

    With ``keep_float32``, float32 features stay float32 (for callers that handle them).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        features = features.reshape(len(features), -1)
    if features.dtype.kind not in "fiub":
        raise EstimatorError(f"{name}: features must be numeric, not {features.dtype}",
                             estimator=name)
    if not (keep_float32 and features.dtype == np.float32):
        features = features.astype(np.float64, copy=False)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(features):
        raise EstimatorError(f"{name}: {len(features)} feature rows but labels of shape "
                             f"{labels.shape}", estimator=name)
    if not np.all(np.isfinite(features)):
        raise EstimatorError(f"{name}: features contain NaN or inf", estimator=name)
    _, codes = np.unique(labels, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise EstimatorError(f"{name}: need at least two classes", estimator=name)
    return features, codes.astype(np.int64)


def check_probs(probs, n: int, name: str):
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs.reshape(len(probs), -1)
    if len(probs) != n:
        raise EstimatorError(f"{name}: {len(probs)} classifier outputs for {n} samples",
                             estimator=name)
    if not np.all(np.isfinite(probs)):
        raise EstimatorError(f"{name}: classifier outputs contain NaN or inf", estimator=name)
    return probs
