"""The evidence base's statistics (benchmarks/evidence/stats.py), on hand-worked cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from evidence import stats  # noqa: E402


def test_weighted_tau_matches_scipy_and_is_nan_when_undefined():
    x, y = [0.1, 0.4, 0.3, 0.9], [1.0, 2.0, 4.0, 3.0]
    assert stats.weighted_tau(x, y) == pytest.approx(sps.weightedtau(x, y).statistic)
    assert stats.weighted_tau(x, x) == pytest.approx(1.0)
    assert np.isnan(stats.weighted_tau([1, 1, 1], [1, 2, 3]))     # a constant score
    assert np.isnan(stats.weighted_tau([1.0], [2.0]))               # one model
    # a NaN score drops that model only: the other three are in the same order
    assert stats.weighted_tau([np.nan, 1, 2, 3], [9, 1, 2, 3]) == pytest.approx(1.0)


def test_mean_rank_is_zooindex_ensemble():
    from zooindex.estimators import resolve

    a = np.array([0.3, 0.1, 0.2, 0.2])
    b = np.array([5.0, 7.0, np.nan, 6.0])
    # a's normalised ranks: 1, 0, 0.5, 0.5 (ties share 2.5 -> 1.5/3); b's over three
    # models: 0, 1, -, 0.5 -> means 0.5, 0.5, 0.5, 0.5
    np.testing.assert_allclose(stats.mean_rank([a, b]), [0.5, 0.5, 0.5, 0.5])
    table = {m: {k: v for k, v in (("knn", a[m]), ("logme", b[m])) if np.isfinite(v)}
             for m in range(4)}
    ours = resolve("ensemble:knn,logme").combine(table)
    np.testing.assert_allclose(stats.mean_rank([a, b]), [ours[m] for m in range(4)])


def test_two_level_uses_each_draws_own_image_resample():
    # two targets, three draws, one scorer; picks choose targets per draw
    image = np.array([[[1.0], [2.0], [3.0]], [[10.0], [20.0], [30.0]]])
    picks = np.array([[0, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(stats.two_level(image, picks)[:, 0], [1.0, 11.0, 30.0])
    per_target = np.array([[1.0], [3.0]])
    np.testing.assert_allclose(stats.over_targets(per_target, picks)[:, 0], [1.0, 2.0, 3.0])


def test_percentile_interval_and_paired_difference_of_a_scorer_with_itself():
    iv = stats.percentile(0.0, np.linspace(-1, 1, 101))
    assert (iv.low, iv.high) == pytest.approx((-0.95, 0.95))
    assert not iv.excludes_zero()
    same = stats.percentile(0.0, np.zeros(50))
    assert (same.low, same.high) == (0.0, 0.0)
    assert stats.percentile(0.3, np.full(10, 0.3)).excludes_zero()
    assert str(stats.percentile(float("nan"), [])) == "–"


def test_leave_out_selection_never_sees_the_held_out_target():
    # A wins on targets 0-2 by a little; B wins target 3 by a lot, enough to lead the
    # mean over all four. Left out, target 3 is scored by what the other three prefer.
    per_target = {"A": np.array([0.8, 0.8, 0.8, 0.0]), "B": np.array([0.7, 0.7, 0.7, 1.0])}
    folds = stats.leave_out_select(per_target, ["t0", "t1", "t2", "t3"])
    assert [f.chosen for f in folds] == ["B", "B", "B", "A"]
    np.testing.assert_allclose(stats.held_out_values(folds, 4), [0.7, 0.7, 0.7, 0.0])
    # grouped: t0+t1 form one data set, left out together
    folds = stats.leave_out_select(per_target, ["d0", "d0", "d1", "d1"])
    assert [(f.group, f.chosen, f.targets) for f in folds] == [("d0", "B", (0, 1)),
                                                               ("d1", "A", (2, 3))]


def test_leave_out_ties_go_to_the_first_in_order_and_nan_is_skipped():
    per_target = {"simple": np.array([0.5, np.nan, 0.5]),
                  "complex": np.array([0.5, 0.9, 0.5])}
    folds = stats.leave_out_select(per_target, ["a", "b", "c"], order=["simple", "complex"])
    # leaving out b: both have mean 0.5 on a and c -> the first in order
    assert folds[1].chosen == "simple"
    assert np.isnan(folds[1].values[0])


def test_subsets_smallest_first():
    assert stats.subsets(["a", "b", "c"], sizes=(2, 3)) == [
        ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
