"""The history: past targets and their rankings, read back from the index."""

import numpy as np
import pytest

import zooindex
from support.data import selector
from support.onnx_factory import linear_features, save
from zooindex import history


def test_no_search_no_history(zoo):
    assert history.targets(index=zoo["index"]) == []
    assert history.model_scores("good", index=zoo["index"]) == []


def test_a_search_comes_back_as_its_ranking(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"], scorers=["silhouette", "knn"])
    [past] = history.targets(index=zoo["index"])
    assert past.source == str(zoo["target"]) and past.n == 120
    assert past.classes == ["0", "1", "2"] and past.models == 3
    assert past.estimators == ["knn", "silhouette"]
    # equally complete rankings by name; each with the options it depended on
    knn, silhouette = past.rankings
    assert silhouette.estimator == "silhouette"
    assert silhouette.params == {"dim": 10, "metric": "cosine", "seed": 0}
    assert silhouette.label == "silhouette (D=10, cosine, seed=0)"
    assert knn.estimator == "knn" and knn.label.startswith("knn")
    assert [(r.rank, r.model, r.score) for r in silhouette.rows] == \
        [(r.rank, r.model, r.score) for r in ranking.ranked]
    assert {r.model: r.width for r in silhouette.rows} == {"good": 2, "noise": 4, "mixed": 4}
    assert all(r.default for r in silhouette.rows)
    knn_scores = {r.model: r.scores["knn"] for r in ranking.ranked}
    assert {r.model: r.score for r in knn.rows} == knn_scores
    assert [r.score for r in knn.rows] == sorted(knn_scores.values(), reverse=True)


def test_one_target_by_key_or_prefix(zoo):
    zooindex.search(zoo["target"], index=zoo["index"])
    [past] = history.targets(index=zoo["index"])
    assert history.target(past.key, index=zoo["index"]).to_dict() == past.to_dict()
    assert history.target(past.key[:8].upper(), index=zoo["index"]).key == past.key
    with pytest.raises(history.TargetNotFound, match="not in the index") as caught:
        history.target("0" * 64, index=zoo["index"])
    assert isinstance(caught.value, LookupError)
    with pytest.raises(history.TargetNotFound):
        history.target(past.key[:4], index=zoo["index"])  # too short to be a prefix


def test_a_combined_default_comes_back_from_its_members(zoo, monkeypatch):
    # the history recombines the default scorer's members where the default is a
    # combination; it is LogME alone now, so the ensemble is made the default here
    import zooindex.estimators as registry

    monkeypatch.setattr(registry, "RECOMMENDED", "ensemble")
    ranking = zooindex.search(zoo["target"], index=zoo["index"], scorers="ensemble")
    assert ranking.scorers == ["ensemble"]
    [past] = history.targets(index=zoo["index"])
    assert past.estimators == sorted(["ensemble", *ranking.members["ensemble"]])
    first = past.rankings[0]  # the searched scorer first
    assert first.label == "ensemble (D=10, seed=0)"
    assert [(r.rank, r.model, r.score, r.components) for r in first.rows] == \
        [(r.rank, r.model, r.score, r.components) for r in ranking.ranked]
    # another D is another combination; a search of logme alone adds no ensemble
    zooindex.search(zoo["target"], index=zoo["index"], dim=2, scorers="ensemble")
    [past] = history.targets(index=zoo["index"])
    assert [r.label for r in past.rankings if r.estimator == "ensemble"] == [
        "ensemble (D=10, seed=0)", "ensemble (D=2, seed=0)"]
    zooindex.search(zoo["target"], index=zoo["index"], scorers=["logme"], classes="0-1")
    subset = next(t for t in history.targets(index=zoo["index"]) if t.n == 80)
    assert subset.estimators == ["logme"]


def test_other_options_are_another_ranking_and_a_subset_is_another_target(zoo):
    zooindex.search(zoo["target"], index=zoo["index"], scorers=["silhouette"])
    zooindex.search(zoo["target"], index=zoo["index"], dim=2, scorers=["silhouette"])
    zooindex.search(zoo["target"], index=zoo["index"], classes="0-1", scorers=["silhouette"])
    targets = history.targets(index=zoo["index"])
    assert sorted(t.n for t in targets) == [80, 120]
    whole = next(t for t in targets if t.n == 120)
    assert sorted(r.label for r in whole.rankings) == [
        "silhouette (D=10, cosine, seed=0)", "silhouette (D=2, cosine, seed=0)"]


def test_model_scores_name_each_target_and_the_model_s_rank(zoo):
    whole = zooindex.search(zoo["target"], index=zoo["index"])  # the default, LogME
    subset = zooindex.search(zoo["target"], index=zoo["index"], classes="0-1")
    rows = [r for r in history.model_scores("good", index=zoo["index"])
            if r["estimator"] == "logme"]
    assert len(rows) == 2 and {r["n"] for r in rows} == {80, 120}
    # the rank each search gave: LogME ranks good first on all three classes, but second
    # on classes 0-1, where mixed (which sees dimension 0) separates them better (the
    # ensemble, the default this test was written for, ranked good first on both)
    rank = {r.n: next(x.rank for x in r.ranked if x.model == "good")
            for r in (whole, subset)}
    assert rank == {120: 1, 80: 2}
    assert all(r["rank"] == rank[r["n"]] and r["of"] == 3 and r["default"] for r in rows)
    with pytest.raises(zooindex.NotIndexedError):
        history.model_scores("nope", index=zoo["index"])


def test_every_layer_of_a_sweep_is_a_row(zoo):
    zooindex.search(zoo["target"], index=zoo["index"], layer="all")
    [past] = history.targets(index=zoo["index"])
    rows = past.rankings[0].rows
    assert len({(r.model, r.layer) for r in rows}) == len(rows) > 3
    assert sum(r.default for r in rows) == 3


def test_removed_or_replaced_models_leave_the_history(zoo, tmp_path):
    zooindex.search(zoo["target"], index=zoo["index"])
    zooindex.rm("noise", index=zoo["index"])
    [past] = history.targets(index=zoo["index"])
    assert {r.model for r in past.rankings[0].rows} == {"good", "mixed"}
    # other content under the same name: the old scores are not the new model's
    save(linear_features(selector([2, 3]), classes=3, seed=5), tmp_path / "other.onnx")
    zooindex.add(tmp_path / "other.onnx", name="mixed", replace=True, index=zoo["index"])
    [past] = history.targets(index=zoo["index"])
    assert {r.model for r in past.rankings[0].rows} == {"good"}


def test_scores_of_another_preprocessing_are_not_the_model_s(zoo):
    zooindex.search(zoo["target"], index=zoo["index"])
    folder = zoo["folder"]
    zooindex.add(folder / "good.onnx", scale=2.0, replace=True, index=zoo["index"])
    [past] = history.targets(index=zoo["index"])
    assert "good" not in {r.model for r in past.rankings[0].rows}
    assert np.isfinite([r.score for r in past.rankings[0].rows]).all()
