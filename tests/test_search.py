"""Search end to end on small models built in code."""

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

import zooindex
from support.data import clustered, selector
from support.onnx_factory import cnn_no_dense, labels_only, linear_features, mlp, save
from zooindex import runner
from zooindex.errors import TargetError, ZooIndexError
from zooindex.executor import Sequential
from zooindex.index import Index


def test_informative_model_ranks_first(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    assert [r.model for r in ranking.ranked] == ["good", "mixed", "noise"]
    assert [r.rank for r in ranking.ranked] == [1, 2, 3]
    # the default is LogME, an evidence on its own scale (not the ensemble's 0..1 mean
    # rank, which this test once bounded by 0.5): the scores strictly fall with the rank
    scores = [r.score for r in ranking.ranked]
    assert scores[0] > scores[1] > scores[2]
    assert all(r.scores["logme"] == r.score for r in ranking.ranked)


def test_score_is_pca_silhouette_of_the_default_layer(zoo):
    # the default layer of 'good' is relu(x @ W): inputs are positive, so it is x[:, :2]
    ranking = zooindex.search(zoo["target"], index=zoo["index"], dim=2,
                              scorers=["silhouette"])
    good = next(r for r in ranking.ranked if r.model == "good")
    feats = zoo["x"][:, :2].astype(np.float64)
    expected = silhouette_score(PCA(2).fit_transform(feats), zoo["y"], metric="cosine")
    assert good.score == pytest.approx(expected, abs=1e-6)
    assert good.width == 2 and good.components == 2


def test_repeat_runs_no_model_and_other_dim_reuses_activations(zoo, monkeypatch):
    # the ensemble reduces to D components (its knn member does); LogME, the default,
    # reads the full features, so another D would not change its score at all
    first = zooindex.search(zoo["target"], index=zoo["index"], scorers="ensemble")
    assert not any(r.cached for r in first.ranked)

    def fail(*a, **k):
        raise AssertionError("a model ran although everything was cached")

    monkeypatch.setattr(runner, "run_model", fail)
    again = zooindex.search(zoo["target"], index=zoo["index"], scorers="ensemble")
    assert all(r.cached for r in again.ranked)
    assert [(r.model, r.score) for r in again.ranked] == \
        [(r.model, r.score) for r in first.ranked]
    # another D and metric: new scores, from the cached activations
    other = zooindex.search(zoo["target"], index=zoo["index"], dim=3, metric="euclidean",
                            scorers="ensemble")
    assert not any(r.cached for r in other.ranked)
    assert other.ranked[0].model == "good"


def test_dim_larger_than_features_uses_what_exists_and_says_so(zoo):
    # a scorer that reduces to D components (LogME, the default, does not reduce)
    ranking = zooindex.search(zoo["target"], index=zoo["index"], dim=50, scorers="ensemble")
    good = next(r for r in ranking.ranked if r.model == "good")
    assert good.components == 2
    assert any("D=50" in n for n in ranking.notes)


def test_classes_and_limit(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"], classes=[0, 2], limit=30)
    assert ranking.n == 30 and ranking.classes == [0, 2]


def test_layer_all_scores_every_candidate_including_input(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"], layer="all",
                              models=["good"])
    layers = {r.layer for r in ranking.ranked}
    candidates = zooindex.layers("good", index=zoo["index"])
    assert layers == {c.name for c in candidates}
    # the model input itself (the paper's L0) is one of them
    assert zooindex.show("good", index=zoo["index"])["input_name"] in layers


def test_unfit_and_layerless_models_are_skipped_with_reasons(zoo, tmp_path):
    save(mlp(input_dim=5, hidden=(4,), classes=2), tmp_path / "five.onnx")
    save(labels_only(cnn_no_dense()), tmp_path / "nodense.onnx")
    zooindex.add([tmp_path / "five.onnx", tmp_path / "nodense.onnx"], index=zoo["index"])
    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    assert {r.model for r in ranking.ranked} == {"good", "mixed", "noise"}
    reasons = {r.model: r.reason for r in ranking.skipped}
    assert "5" in reasons["five"] and "8" in reasons["five"]
    assert "--layer" in reasons["nodense"]


def test_deleted_and_changed_files_are_skipped(zoo):
    (zoo["folder"] / "noise.onnx").unlink()
    mixed = zoo["folder"] / "mixed.onnx"
    save(linear_features(selector([1, 2]), classes=3), mixed)
    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    reasons = {r.model: r.reason for r in ranking.skipped}
    assert "missing" in reasons["noise"]
    assert "changed" in reasons["mixed"]
    assert [r.model for r in ranking.ranked] == ["good"]
    status = {m["name"]: m["status"] for m in zooindex.ls(index=zoo["index"])}
    assert status == {"good": "ok", "mixed": "changed", "noise": "missing"}


def test_add_twice_is_a_no_op_and_other_content_needs_replace(zoo, tmp_path):
    again = zooindex.add(zoo["folder"] / "good.onnx", index=zoo["index"])
    assert again[0].status == "unchanged"
    other = tmp_path / "good.onnx"
    save(linear_features(selector([2, 3]), classes=3), other)
    with pytest.raises(ZooIndexError, match="--replace"):
        zooindex.add(other, index=zoo["index"])
    assert zooindex.show("good", index=zoo["index"])["path"] == \
        str((zoo["folder"] / "good.onnx").resolve())
    replaced = zooindex.add(other, index=zoo["index"], replace=True)
    assert replaced[0].status == "replaced"


def test_replaced_content_never_reuses_old_scores(zoo, tmp_path):
    before = zooindex.search(zoo["target"], index=zoo["index"], models=["good"],
                             scorers=["silhouette"])
    other = tmp_path / "good.onnx"
    save(linear_features(selector([4, 5]), classes=3), other)
    zooindex.add(other, index=zoo["index"], replace=True)
    after = zooindex.search(zoo["target"], index=zoo["index"], models=["good"],
                            scorers=["silhouette"])
    assert not after.ranked[0].cached
    assert after.ranked[0].score < before.ranked[0].score


def test_bad_targets_raise_target_errors(zoo, tmp_path):
    x, y = zoo["x"], zoo["y"]
    cases = {
        "lengths.npz": dict(x=x, y=y[:-3]),
        "nan.npz": dict(x=np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y=y),
        "oneclass.npz": dict(x=x, y=np.zeros_like(y)),
    }
    for name, arrays in cases.items():
        path = tmp_path / name
        np.savez(path, **arrays)
        with pytest.raises(TargetError):
            zooindex.search(path, index=zoo["index"])


def test_empty_index_is_a_clear_error(tmp_path, zoo):
    with pytest.raises(ZooIndexError, match="zooindex add"):
        zooindex.search(zoo["target"], index=tmp_path / "empty.db")


def test_rm_and_cache_clear(zoo):
    zooindex.search(zoo["target"], index=zoo["index"], scorers=["silhouette"])
    zooindex.rm("noise", index=zoo["index"])
    assert [m["name"] for m in zooindex.ls(index=zoo["index"])] == ["good", "mixed"]
    stats = zooindex.cache_clear(index=zoo["index"])
    assert stats["scores"] == 2 and stats["activations"] == 2


def test_scorer_columns_ranked_by_the_first(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"],
                              scorers=["silhouette", "silhouette-classwise"])
    assert ranking.scorers == ["silhouette", "silhouette-classwise"]
    for r in ranking.ranked:
        assert set(r.scores) == {"silhouette", "silhouette-classwise"}
        assert r.score == r.scores["silhouette"]
    json.dumps(ranking.to_records())  # serialisable


def test_model_with_two_inputs_needs_input_and_then_runs(tmp_path):
    from support.onnx_factory import mlp, two_inputs

    save(two_inputs(input_dim=8, hidden=(6, 4), classes=3), tmp_path / "two.onnx")
    save(mlp(input_dim=8, hidden=(6, 4), classes=3), tmp_path / "one.onnx")
    x, y = clustered()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    index = tmp_path / "i.db"
    with pytest.raises(ZooIndexError, match="--input"):
        zooindex.add(tmp_path / "two.onnx", index=index)
    assert not index.exists()
    zooindex.add(tmp_path / "two.onnx", index=index, input="x")
    zooindex.add(tmp_path / "one.onnx", index=index)
    ranking = zooindex.search(tmp_path / "t.npz", index=index)
    # with aux fed zeros the two-input model computes exactly the one-input model
    scores = {r.model: r.score for r in ranking.ranked}
    assert scores["two"] == pytest.approx(scores["one"], abs=1e-9)


def test_streamed_reduction_gives_the_same_scores(zoo, tmp_path, monkeypatch):
    """Activations too large to hold are reduced as they stream, to the same score."""
    held = zooindex.search(zoo["target"], index=zoo["index"], dim=2, batch_size=16,
                           scorers=["silhouette"])
    monkeypatch.setenv("ZOOINDEX_MAX_ACTIVATION_BYTES", "1")  # every layer streams
    zooindex.add(zoo["folder"], index=tmp_path / "other.db")
    streamed = zooindex.search(zoo["target"], index=tmp_path / "other.db", batch_size=16,
                               dim=2, scorers=["silhouette", "logme"])
    assert [r.model for r in streamed.ranked] == [r.model for r in held.ranked]
    for a, b in zip(held.ranked, streamed.ranked):
        # held float32 activations are reduced from float32 products, streamed ones
        # from a float64 covariance: the same score up to float32 rounding
        assert b.score == pytest.approx(a.score, abs=1e-7)
        assert "logme" not in b.scores  # needs full activations: left out, with a note
    assert any("logme needs the full activations" in n for n in streamed.notes)


def test_streaming_pca_matches_sklearn():
    from zooindex.reduce import StreamingPCA

    rng = np.random.default_rng(3)
    data = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) + 5
    acc = StreamingPCA()
    for start in range(0, 500, 37):
        acc.update(data[start:start + 37])
    assert acc.n == 500
    np.testing.assert_allclose(acc.mean, data.mean(0), atol=1e-10)
    np.testing.assert_allclose(acc.m2 / 499, np.cov(data, rowvar=False), atol=1e-9)
    proj = (data - acc.mean) @ acc.components(4)
    ref = PCA(4).fit_transform(data)
    np.testing.assert_allclose(np.abs(proj), np.abs(ref), atol=1e-8)


def test_the_pipeline_changes_no_number(zoo, tmp_path):
    """Loading and scoring beside the running model give a sequential search's numbers."""
    overlapped = zooindex.search(zoo["target"], index=zoo["index"], layer="all",
                                 scorers=["silhouette", "logme", "leep"], executor="pipeline")
    zooindex.add(zoo["folder"], index=tmp_path / "other.db")
    sequential = zooindex.search(zoo["target"], index=tmp_path / "other.db", layer="all",
                                 scorers=["silhouette", "logme", "leep"],
                                 executor=Sequential())
    assert not any(r.cached for r in overlapped.ranked + sequential.ranked)
    assert [(r.model, r.layer, r.scores) for r in overlapped.results] == \
        [(r.model, r.layer, r.scores) for r in sequential.results]
    with Index(zoo["index"]) as a, Index(tmp_path / "other.db") as b:
        assert a.cache.stats()["activations"] == b.cache.stats()["activations"] > 0


def test_a_cache_entry_lost_after_planning_loads_the_model_again(zoo, tmp_path,
                                                                 monkeypatch):
    """A cached entry found damaged when it is read is computed again: the model is
    loaded once, with every layer the cache could not give."""
    # the ensemble reduces to D components, so another D scores every layer again (LogME,
    # the default, does not reduce: its cached score of the default layer would be reused)
    first = zooindex.search(zoo["target"], index=zoo["index"], models=["good"],
                            scorers="ensemble")
    default = first.ranked[0].layer
    with Index(zoo["index"]) as idx:
        (cached,) = [idx.cache.folder / r[0] for r in idx.db.execute(
            "SELECT file FROM activations")]
    cached.write_bytes(cached.read_bytes()[:-8])  # the default layer's entry, damaged
    loads = []
    real_load = runner.load_model

    def load_model(record, layers, **kw):
        loads.append(list(layers))
        return real_load(record, layers, **kw)

    monkeypatch.setattr(runner, "load_model", load_model)
    # another D: every layer's score is computed, the default's from its cached entry
    swept = zooindex.search(zoo["target"], index=zoo["index"], models=["good"], layer="all",
                            dim=3, scorers="ensemble")
    assert len(loads) == 1 and default in loads[0]
    monkeypatch.undo()
    zooindex.add(zoo["folder"], index=tmp_path / "fresh.db")
    fresh = zooindex.search(zoo["target"], index=tmp_path / "fresh.db", models=["good"],
                            layer="all", dim=3, scorers="ensemble")
    assert {r.layer: r.score for r in swept.ranked} == {r.layer: r.score for r in fresh.ranked}
    assert default in {r.layer for r in swept.ranked} and len(swept.ranked) > 1


# -- the default scorer (LogME) and the ensemble, named -------------------------------


def test_the_default_scorer_is_logme_alone(zoo):
    from zooindex.estimators import RECOMMENDED

    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    assert RECOMMENDED == "logme"
    assert ranking.scorers == ["logme"] and ranking.members == {}
    assert all(r.score == r.scores["logme"] for r in ranking.ranked)
    named = zooindex.search(zoo["target"], index=zoo["index"], scorers=["recommended"])
    assert named.scorers == ["logme"]
    assert [(r.model, r.score) for r in named.ranked] == \
        [(r.model, r.score) for r in ranking.ranked]


def test_the_ensemble_carries_its_members_beside_it(zoo):
    from zooindex.estimators.combine import ENSEMBLE_MEMBERS, mean_rank

    live = []
    ranking = zooindex.search(zoo["target"], index=zoo["index"], scorers="ensemble",
                              on_result=lambda r: live.append((r.score, set(r.scores))))
    assert ranking.scorers == ["ensemble"]
    assert ranking.members == {"ensemble": ENSEMBLE_MEMBERS}
    # while the search runs no member's value passes for the combined score
    assert live == [(None, set(ENSEMBLE_MEMBERS))] * 3
    assert ranking.columns == ["ensemble", *ENSEMBLE_MEMBERS]
    table = {r.model: {m: r.scores[m] for m in ENSEMBLE_MEMBERS} for r in ranking.ranked}
    assert {r.model: r.score for r in ranking.ranked} == mean_rank(table, ENSEMBLE_MEMBERS)
    # each member is the estimator's own score, as a search of it alone gives
    alone = zooindex.search(zoo["target"], index=zoo["index"], scorers=["logme"])
    assert {r.model: r.scores["logme"] for r in ranking.ranked} == \
        {r.model: r.score for r in alone.ranked}
    # the components a row reports are those of the first member that reduces (knn)
    good = next(r for r in ranking.ranked if r.model == "good")
    assert good.width == 2 and good.components == 2
    # the paper's score stays available by name, exact
    paper = zooindex.search(zoo["target"], index=zoo["index"], scorers=["silhouette"])
    assert paper.scorers == ["silhouette"] and paper.members == {}


def test_a_lone_model_scores_one_half_and_the_note_gives_its_members(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"], models=["good"],
                              scorers="ensemble")
    [row] = ranking.ranked
    assert row.score == 0.5
    [note] = [n for n in ranking.notes if n.startswith("one row ranked")]
    assert f"logme {row.scores['logme']:.4g}" in note and "other models" in note
    # --top 1 of a whole zoo is not a lone model
    top = zooindex.search(zoo["target"], index=zoo["index"], top=1, scorers="ensemble")
    assert not any(n.startswith("one row ranked") for n in top.notes)


def test_a_member_the_target_is_too_small_for_is_left_out_once(zoo, tmp_path):
    x, y = zoo["x"], zoo["y"]
    keep = np.concatenate([np.flatnonzero(y == c)[:3] for c in np.unique(y)])  # 3 per class
    np.savez(tmp_path / "small.npz", x=x[keep], y=y[keep])
    ranking = zooindex.search(tmp_path / "small.npz", index=zoo["index"], scorers="ensemble")
    assert ranking.members == {"ensemble": ("logme", "sfda", "ncti-sei")}
    assert len(ranking.ranked) == 3 and not ranking.skipped
    assert all("knn" not in r.scores for r in ranking.ranked)
    [note] = [n for n in ranking.notes if "left out" in n]
    assert "left out knn (it needs 4)" in note and "smallest class has 3 samples" in note
    # named alone, knn cannot rank anything: one error, before any model runs
    with pytest.raises(zooindex.EstimatorError, match="knn: needs at least 4 samples per"):
        zooindex.search(tmp_path / "small.npz", index=zoo["index"], scorers=["knn"])
    # as a further column, it is left out with a note
    both = zooindex.search(tmp_path / "small.npz", index=zoo["index"],
                           scorers=["logme", "knn"])
    assert both.scorers == ["logme"] and len(both.ranked) == 3
    assert any(n.startswith("column left out: knn") for n in both.notes)


def test_streamed_activations_rank_on_the_members_that_read_reduced_features(
        zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOINDEX_MAX_ACTIVATION_BYTES", "1")  # every layer streams
    zooindex.add(zoo["folder"], index=tmp_path / "other.db")
    ranking = zooindex.search(zoo["target"], index=tmp_path / "other.db", dim=2,
                              scorers="ensemble")
    assert [r.model for r in ranking.ranked][0] == "good"
    for r in ranking.ranked:
        assert set(r.scores) == {"ensemble", "knn", "ncti-sei"}
    # said once for every model, not once per model
    [note] = [n for n in ranking.notes if "logme needs the full activations" in n]
    assert note.startswith("logme needs") and note.endswith("(3 models: good, mixed, noise)")
    assert len([n for n in ranking.notes if "needs the full activations" in n]) == 2
