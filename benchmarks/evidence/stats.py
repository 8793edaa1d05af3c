"""The statistics that decide: weighted tau per target, bootstrap intervals, paired
differences, and choices made with each target (or data set) left out.

Everything is numpy on small arrays; a ``None`` tau (undefined: a constant column, fewer
than two models) is carried as NaN and left out of means.

Resampling units. A mean over targets has two sources of noise: which targets were
measured (a few, from four data sets) and which test images each target holds (each
model's accuracy is a mean over them). :func:`two_level` draws both at once: targets with
replacement, and within each drawn target the test images with replacement, the same
images for every model (``zooindex.transfer.resampled_means``), so that the accuracies keep their
pairing; the scores are held fixed (recomputing every estimator per draw is not
affordable; the image bootstrap therefore covers the ground truth's noise, not the
scores'). Paired differences between two scorers use the same draws for both, so what
the targets and images share cancels.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from zooindex import transfer
from zooindex.estimators import combine


def _finite_pairs(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _nan_if_none(value) -> float:
    return float("nan") if value is None else value


def weighted_tau(x, y) -> float:
    """zooindex's weighted tau (``scipy.stats.weightedtau``: the top of both rankings
    weighs most) with pairs holding a NaN dropped; NaN where undefined."""
    return _nan_if_none(transfer.weighted_tau(*_finite_pairs(x, y)))


def kendall_tau(x, y) -> float:
    """zooindex's Kendall tau-b with pairs holding a NaN dropped; NaN where undefined."""
    return _nan_if_none(transfer.kendall_tau(*_finite_pairs(x, y)))


def mean_rank(columns: np.ndarray) -> np.ndarray:
    """zooindex's ``ensemble`` (:func:`zooindex.estimators.combine.mean_rank`) on a
    ``(members, models)`` array, NaN for a missing score and for a model with none."""
    columns = np.atleast_2d(np.asarray(columns, dtype=np.float64))
    members = [str(j) for j in range(len(columns))]
    table = {i: {m: col[i] for m, col in zip(members, columns) if np.isfinite(col[i])}
             for i in range(columns.shape[1])}
    combined = combine.mean_rank(table, members)
    return np.array([combined.get(i, np.nan) for i in range(columns.shape[1])])


def taus_over_draws(scores: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """``(draws, scorers)``: weighted tau of each scorer's row of ``scores``
    ``(scorers, models)`` against each draw's accuracies ``(draws, models)``."""
    return np.array([[weighted_tau(s, a) for s in scores] for a in accuracies])


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and (self.low > 0 or self.high < 0))

    def __str__(self) -> str:
        if not np.isfinite(self.estimate):
            return "–"
        if not np.isfinite(self.low):
            return f"{self.estimate:.3f}"
        return f"{self.estimate:.3f} [{self.low:.2f}, {self.high:.2f}]"


def percentile(estimate: float, values, level: float = 0.95) -> Interval:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(float(estimate), float("nan"), float("nan"))
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(estimate), float(low), float(high))


def target_draws(n_targets: int, draws: int, seed: int) -> np.ndarray:
    """``(draws, n_targets)`` indices of targets drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n_targets, size=(draws, n_targets))


def over_targets(per_target: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mean over the drawn targets: ``per_target`` ``(targets, k)`` -> ``(draws, k)``."""
    per_target = np.asarray(per_target, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN slices: an undefined mean
        return np.nanmean(per_target[picks], axis=1)


def two_level(image_draws: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Mean over drawn targets, each at its own image resample of that draw:
    ``image_draws`` ``(targets, draws, k)`` -> ``(draws, k)``."""
    image_draws = np.asarray(image_draws, dtype=np.float64)
    draw_index = np.arange(picks.shape[0])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.nanmean(image_draws[picks, draw_index], axis=1)


def nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


@dataclass(frozen=True)
class HeldOut:
    """One fold of a leave-out selection: the group left out, what was chosen without
    it, and that choice's value on each left-out target."""

    group: str
    chosen: str
    targets: tuple[int, ...]
    values: tuple[float, ...]


def leave_out_select(per_target: dict[str, np.ndarray], groups: Sequence[str],
                     order: Sequence[str] | None = None) -> list[HeldOut]:
    """For each group of targets: the candidate with the highest mean over the *other*
    targets (first in ``order`` on ties), and its values on the group's targets.

    ``per_target``: ``{candidate: (targets,) values}`` (NaN: undefined, left out of
    means). ``groups``: the group of each target (its own name for leave-one-target-out,
    its data set for leave-one-data-set-out).
    """
    names = list(order or per_target)
    table = np.array([np.asarray(per_target[n], dtype=np.float64) for n in names])
    groups = np.asarray(groups)
    out = []
    for group in dict.fromkeys(groups.tolist()):
        held = groups == group
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train = np.nanmean(table[:, ~held], axis=1)
        best = int(np.nanargmax(np.where(np.isfinite(train), train, -np.inf)))
        idx = tuple(int(i) for i in np.flatnonzero(held))
        out.append(HeldOut(str(group), names[best], idx,
                           tuple(float(table[best, i]) for i in idx)))
    return out


def held_out_values(folds: list[HeldOut], n_targets: int) -> np.ndarray:
    """``(targets,)``: the held-out value of each target, from the fold that left it out."""
    out = np.full(n_targets, np.nan)
    for fold in folds:
        for i, v in zip(fold.targets, fold.values):
            out[i] = v
    return out


def subsets(pool: Sequence[str], sizes=(2, 3, 4)) -> list[tuple[str, ...]]:
    """Every subset of ``pool`` of the given sizes, smallest first, in pool order."""
    return [c for k in sizes for c in itertools.combinations(pool, k)]
