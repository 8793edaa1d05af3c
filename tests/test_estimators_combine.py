"""Scorer names (parse, resolve, recommended) and the rank-aggregating ``ensemble``."""

import numpy as np
import pytest

from zooindex.errors import EstimatorError
from zooindex.estimators import (RECOMMENDED, UNLABELED_DEFAULT, available, check_label_free,
                                 combiners, get, listing, parse, resolve, resolve_many)
from zooindex.estimators.combine import ENSEMBLE_MEMBERS, member_estimators, mean_rank


def test_parse_splits_base_and_members():
    assert parse("logme") == ("logme", None)
    assert parse("ensemble") == ("ensemble", None)
    assert parse(" ensemble:logme, nce ,knn ") == ("ensemble", ("logme", "nce", "knn"))
    for bad in ("ensemble:", "ensemble:logme,,knn", "ensemble: "):
        with pytest.raises(EstimatorError, match="list the members"):
            parse(bad)


def test_resolve_estimators_combiners_and_recommended():
    silhouette = resolve("silhouette")  # unchanged: the very estimator of the registry
    assert silhouette.name == "silhouette" and silhouette.combiner is None
    assert silhouette.estimators == (get("silhouette"),)
    ensemble = resolve("ensemble")
    assert ensemble.name == "ensemble" and ensemble.members == ENSEMBLE_MEMBERS
    chosen = resolve("ensemble:logme,nce,knn")
    assert chosen.name == "ensemble:logme,nce,knn"
    assert chosen.members == ("logme", "nce", "knn") and chosen.needs_probs
    assert not ensemble.needs_probs  # the default members need the features only
    assert resolve("recommended") == resolve(RECOMMENDED)
    marked = [c.name for c in combiners() if c.recommended] + \
        [e.name for e in available(experimental=True) if e.recommended]
    assert marked == [parse(RECOMMENDED)[0]]


@pytest.mark.parametrize("name, message", [
    ("nope", "unknown scorer 'nope'; choose an estimator"),
    ("logme:knn,nce", "takes no members"),
    ("ensemble:logme,nope", "unknown estimator 'nope'"),
    ("ensemble:logme,ensemble", "not an estimator"),
    ("ensemble:logme,recommended", "not an estimator"),
    ("ensemble:logme,logme", "twice"),
    ("ensemble:logme", "use --scorer logme"),
])
def test_resolve_refuses_bad_names_and_says_what_would_do(name, message):
    with pytest.raises(EstimatorError, match=message):
        resolve(name)


def test_get_points_combined_names_to_resolve():
    with pytest.raises(EstimatorError, match="resolve"):
        get("ensemble")
    with pytest.raises(EstimatorError, match="resolve"):
        get("recommended")


def test_resolve_many_expands_all_drops_repeats_and_defaults_to_the_recommended():
    assert [s.name for s in resolve_many(None)] == ["logme"]  # what recommended names
    assert [s.name for s in resolve_many(None, "silhouette")] == ["silhouette"]
    assert [s.name for s in resolve_many("logme")] == ["logme"]
    everything = resolve_many(["all"])
    assert [s.name for s in everything] == [e.name for e in available()]
    assert not any(s.experimental for s in everything)
    scorers = resolve_many(["ensemble", "logme", "ensemble", "ensemble:nce,logme"])
    assert [s.name for s in scorers] == ["ensemble", "logme", "ensemble:nce,logme"]
    assert [e.name for e in member_estimators(scorers)] == [*ENSEMBLE_MEMBERS, "nce"]


def test_mean_rank_hand_worked_with_a_tie_and_a_missing_member():
    # logme: a 1, b 3, c 2, d 2   -> ranks a 1, c 2.5, d 2.5, b 4 -> (r - 1) / 3:
    #                                a 0, b 1, c 1/2, d 1/2
    # knn:   a .9, b .8, c .7 (d has none) -> ranks c 1, b 2, a 3 -> (r - 1) / 2:
    #                                a 1, b 1/2, c 0
    # mean over the members each has: a 1/2, b 3/4, c 1/4, d 1/2
    table = {"a": {"logme": 1.0, "knn": 0.9}, "b": {"logme": 3.0, "knn": 0.8},
             "c": {"logme": 2.0, "knn": 0.7}, "d": {"logme": 2.0, "knn": float("nan")}}
    expected = {"a": 0.5, "b": 0.75, "c": 0.25, "d": 0.5}
    assert mean_rank(table, ("logme", "knn")) == expected
    assert resolve("ensemble:logme,knn").combine(table) == expected
    # a model with no member at all is left out; one model alone sits in the middle
    assert mean_rank({"a": {"logme": 1.0}, "e": {}}, ("logme", "knn")) == {"a": 0.5}
    # a plain estimator's "combination" is its own column, rows without it dropped
    assert resolve("knn").combine(table) == {"a": 0.9, "b": 0.8, "c": 0.7}


def test_mean_rank_equals_scipy_average_ranks_with_many_ties():
    from scipy.stats import rankdata

    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, size=40).astype(float)  # many ties
    table = {i: {"logme": v} for i, v in enumerate(values)}
    got = mean_rank(table, ("logme",))
    np.testing.assert_allclose([got[i] for i in range(40)],
                               (rankdata(values, method="average") - 1) / 39, atol=1e-15)


def test_mean_rank_ignores_the_scale_of_each_member():
    rng = np.random.default_rng(0)
    table = {f"m{i}": {"logme": float(rng.normal()), "knn": float(rng.random())}
             for i in range(7)}
    squashed = {m: {"logme": 1e6 * s["logme"] - 3, "knn": np.exp(s["knn"])}
                for m, s in table.items()}
    assert mean_rank(table, ("logme", "knn")) == mean_rank(squashed, ("logme", "knn"))


def test_the_search_flow_ranks_models_by_their_signal():
    # what the search does: every member estimator per model (cached one by one), then
    # one combine step. Four "models" see the same classes with more and more noise.
    # (the ensemble, named: the recommended default is LogME alone, no combination)
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 3
    centres = rng.normal(size=(3, 12))
    scorer = resolve("ensemble")
    table = {}
    for noise in (0.5, 1.0, 2.0, 4.0):
        features = centres[labels] + noise * rng.normal(size=(300, 12))
        table[f"noise {noise}"] = {e.name: e(features, labels, dim=5, seed=0)
                                   for e in member_estimators([scorer])}
    combined = scorer.combine(table)
    assert list(combined) == list(table)
    assert sorted(combined, key=combined.get, reverse=True) == list(table)
    assert combined["noise 0.5"] == 1.0 and combined["noise 4.0"] == 0.0


def test_recommended_is_read_when_resolved(monkeypatch):
    import zooindex.estimators as registry

    monkeypatch.setattr(registry, "RECOMMENDED", "knn")
    assert resolve("recommended").name == "knn"
    assert get("knn").recommended and not resolve("ensemble").combiner.recommended


def test_unlabeled_targets_accept_only_label_free_scorers():
    check_label_free(resolve_many(["rankme", "ensemble:rankme,cluster-silhouette",
                                   UNLABELED_DEFAULT]))
    with pytest.raises(EstimatorError, match="logme, ensemble need them.*rankme"):
        check_label_free(resolve_many(["rankme", "logme", "ensemble"]))


def test_the_listing_has_a_row_for_every_name_and_marks_the_recommended_one():
    rows = {row["name"]: row for row in listing()}
    assert set(rows) == {e.name for e in available(experimental=True)} | \
        {c.name for c in combiners()}
    assert [name for name, row in rows.items() if row["recommended"]] == \
        [parse(RECOMMENDED)[0]]
    assert rows["ensemble"]["kind"] == "combiner"
    assert rows["ensemble"]["members"] == ",".join(ENSEMBLE_MEMBERS)
    # the strictest member's minimum
    assert rows["ensemble"]["min_per_class"] == max(get(m).min_per_class
                                                    for m in ENSEMBLE_MEMBERS)
    assert rows["nce"]["needs"] == "labels, classifier output"
    assert rows["rankme"]["needs"] == "features" and rows["rankme"]["experimental"]
    assert rows["silhouette"]["options"] == "dim,metric,seed"
    assert not rows["silhouette"]["experimental"]
