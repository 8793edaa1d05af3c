"""How firm a ranking is: half-samples, their cheap scores, the figures, the output."""

import json

import numpy as np
import pytest

import zooindex
from support.data import clustered, selector
from support.onnx_factory import linear_features, save
from zooindex import confidence, estimators
from zooindex.estimators.logme import logme, resampled as logme_resampled
from zooindex.reduce import pca


# ---- half-samples --------------------------------------------------------------------

def test_halves_keep_half_of_every_class_and_follow_the_seed():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 2)
    masks = confidence.halves(labels, resamples=50, seed=3)
    assert masks.shape == (50, 19) and masks.dtype == bool
    # 10 -> 5, 7 -> 3, and a class of two keeps both (an estimator needs two)
    for c, keep in ((0, 5), (1, 3), (2, 2)):
        assert (masks[:, labels == c].sum(axis=1) == keep).all()
    assert (masks == confidence.halves(labels, resamples=50, seed=3)).all()
    assert (masks != confidence.halves(labels, resamples=50, seed=4)).any()
    assert len({m.tobytes() for m in masks}) > 40  # the halves differ from each other


def test_halves_depend_on_the_labels_not_their_values():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert (confidence.halves(labels, 20, 0) ==
            confidence.halves(labels * 2 + 10, 20, 0)).all()


def test_mean_over_hand_worked():
    terms = np.array([1.0, 0.0, 1.0, 0.0])
    masks = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    assert confidence.mean_over(masks, terms) == pytest.approx([0.5, 1.0, 0.0])
    assert confidence.deviations([1.0, 2.0, 3.0]) == pytest.approx([-1.0, 0.0, 1.0])


# ---- from resampled scores to figures -------------------------------------------------

def test_ranks_first_and_flip_hand_worked():
    # three rows, four resamples; columns: (a > b > c), (b > a > c), (a = b > c), (c > a > b)
    scores = np.array([[3.0, 2.0, 2.0, 2.0],
                       [2.0, 3.0, 2.0, 1.0],
                       [1.0, 1.0, 1.0, 3.0]])
    assert confidence.ranks(scores).tolist() == [[1, 2, 1, 2],
                                                 [2, 1, 1, 3],
                                                 [3, 3, 3, 1]]
    # a: first in columns 1 and (half of) 3 -> (1 + 0.5) / 4; b: (1 + 0.5) / 4; c: 1 / 4
    assert confidence.first_share(scores) == pytest.approx([0.375, 0.375, 0.25])
    # b beats a in column 2 only, ties with it in column 3 (half): 1.5 / 4
    assert confidence.flip_share(scores[0], scores[1]) == pytest.approx(0.375)
    fig = confidence.summarise(["a", "b", "c"], scores)
    assert fig["flip"] == {"models": ["a", "b"], "probability": pytest.approx(0.375)}
    assert fig["intervals"][2] == (1, 3)


def test_identical_rows_flip_half_the_time_and_separated_rows_never():
    rng = np.random.default_rng(0)
    same = rng.normal(size=200)
    tied = confidence.summarise(["a", "b"], np.vstack([same, same]))
    assert tied["flip"]["probability"] == 0.5
    assert tied["first"] == [0.5, 0.5]
    apart = confidence.summarise(["a", "b"], np.vstack([10 + same, same]))
    assert apart["flip"]["probability"] == 0.0 and apart["first"] == [1.0, 0.0]
    assert apart["intervals"] == [(1, 1), (2, 2)]


def test_sentence_only_when_the_top_is_not_settled():
    assert confidence.sentence(None) is None
    assert confidence.sentence({"models": ["a", "b"], "probability": 0.01}) is None
    assert confidence.sentence({"models": ["fashion-0-4", "fashion-all"],
                                "probability": 0.38}) == (
        "fashion-0-4 and fashion-all swap in 38% of resamples: add images or accept either")


# ---- the estimators' cheap forms -------------------------------------------------------

@pytest.mark.parametrize("name", ["knn", "sfda", "ncti-sei", "silhouette"])
def test_offered_terms_on_all_samples_give_the_score(name):
    # the statistic an estimator offers, evaluated on every sample, is its own score:
    # the terms are the score's, not an approximation of it
    x, y = clustered(n_per_class=30, classes=3, seed=1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))  # arrival order is not the canonical order
    x, y = x[order], y[order]
    e = estimators.get(name)
    with confidence.collecting() as offered:
        value = e(x, y, dim=5, seed=0, metric="cosine")
    assert len(offered) == 1
    everything = np.ones((1, len(y)), dtype=bool)
    assert offered[0](everything)[0] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_estimators_offer_nothing_when_nobody_collects():
    x, y = clustered(n_per_class=20, classes=2)
    assert estimators.get("knn")(x, y) == estimators.get("knn")(x, y)  # no error, no box


def test_logme_on_all_samples_at_its_optimum_is_logme_of_the_projection():
    # alpha and beta held at the optimum of all samples: on all samples that is LogME
    x, y = clustered(n_per_class=30, classes=3, seed=2)
    points, _ = pca(x, 5)
    everything = np.ones((2, len(y)), dtype=bool)
    assert logme_resampled(points, y, everything) == pytest.approx(
        [logme(points, y)] * 2, rel=1e-9)


def test_resampled_falls_back_to_the_estimator_on_the_projection():
    x, y = clustered(n_per_class=20, classes=2, seed=3)
    masks = confidence.halves(y, 5, 0)
    e = estimators.get("hscore")
    got = confidence.resampled(e, x, y, masks, dim=4, seed=0, metric="cosine")
    points, _ = pca(x, 4)
    assert got == pytest.approx([e(points[m], y[m]) for m in masks])


# ---- a search ------------------------------------------------------------------------

@pytest.fixture
def twins(tmp_path):
    """good and its twin (identical features, another classifier head), noise, a target."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    save(linear_features(selector([0, 1]), classes=3, seed=0), folder / "good.onnx")
    save(linear_features(selector([0, 1]), classes=3, seed=1), folder / "twin.onnx")
    save(linear_features(selector([4, 5, 6, 7]), classes=3), folder / "noise.onnx")
    x, y = clustered(spread=1.2)
    target = tmp_path / "target.npz"
    np.savez(target, x=x, y=y)
    index = tmp_path / "index.db"
    zooindex.add(folder, index=index)
    return {"target": target, "index": index}


def test_identical_models_swap_half_the_time_and_noise_is_never_first(twins):
    ranking = zooindex.search(twins["target"], index=twins["index"])
    first, second, third = ranking.ranked
    assert {first.model, second.model} == {"good", "twin"} and third.model == "noise"
    flip = ranking.confidence["flip"]
    assert flip["models"] == [first.model, second.model]
    # the twins score the same on every half-sample: every resample is a tie, half a flip
    assert flip["probability"] == 0.5
    assert first.p_first == second.p_first == 0.5 and third.p_first == 0.0
    assert first.rank_interval == second.rank_interval == (1, 1)
    assert third.rank_interval == (3, 3)
    assert ranking.confidence["sentence"].startswith(f"{first.model} and {second.model} "
                                                     "swap in 50% of resamples")


def test_separated_models_never_swap(zoo):
    ranking = zooindex.search(zoo["target"], index=zoo["index"], scorers=["knn"])
    good = ranking.ranked[0]
    assert good.model == "good" and good.rank_interval == (1, 1) and good.p_first == 1.0
    assert ranking.confidence["flip"]["probability"] == 0.0
    assert ranking.confidence["sentence"] is None


def test_confidence_never_changes_the_ranking_and_follows_the_seed(twins):
    on = zooindex.search(twins["target"], index=twins["index"], seed=5)
    plain = zooindex.search(twins["target"], index=twins["index"], confidence=False, seed=5)
    assert [(r.model, r.scores) for r in plain.ranked] == \
        [(r.model, r.scores) for r in on.ranked]
    assert plain.confidence is None and all(r.rank_interval is None for r in plain.ranked)
    again = zooindex.search(twins["target"], index=twins["index"], seed=5)
    assert again.confidence == on.confidence
    for a, b in zip(on.ranked, again.ranked):
        assert a.resampled.keys() == b.resampled.keys()
        for name in a.resampled:
            assert np.array_equal(a.resampled[name], b.resampled[name])
    other = zooindex.search(twins["target"], index=twins["index"], seed=6)
    noise = [r for r in other.ranked if r.model == "noise"][0]
    noise5 = [r for r in on.ranked if r.model == "noise"][0]
    assert not np.array_equal(noise.resampled["logme"], noise5.resampled["logme"])


def test_a_warm_search_reads_the_confidence_from_the_cache(zoo, monkeypatch):
    cold = zooindex.search(zoo["target"], index=zoo["index"])
    from zooindex import unit

    def fail(*a, **k):
        raise AssertionError("a model was scored again although everything was cached")

    monkeypatch.setattr(unit, "score", fail)
    warm = zooindex.search(zoo["target"], index=zoo["index"])
    assert warm.stats["from_scores"] == 3
    assert warm.confidence == cold.confidence
    assert [(r.rank_interval, r.p_first) for r in warm.ranked] == \
        [(r.rank_interval, r.p_first) for r in cold.ranked]


def test_scores_cached_without_confidence_get_it_from_the_activations(zoo):
    zooindex.search(zoo["target"], index=zoo["index"], confidence=False)
    later = zooindex.search(zoo["target"], index=zoo["index"])
    assert later.confidence is not None and later.stats["run"] == 0
    assert all(r.rank_interval is not None for r in later.ranked)


def test_json_csv_and_the_sentence(twins, run):
    code, out, err = run("search", twins["target"], "--index", twins["index"], "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["confidence"]["flip"]["probability"] == 0.5
    assert doc["confidence"]["resamples"] == 100 and doc["confidence"]["seed"] == 0
    top = doc["results"][0]
    assert (top["rank_low"], top["rank_high"], top["p_first"]) == (1, 1, 0.5)
    code, out, err = run("search", twins["target"], "--index", twins["index"], "--csv")
    header = out.splitlines()[0].split(",")
    assert {"rank_low", "rank_high", "p_first"} <= set(header)
    code, out, err = run("search", twins["target"], "--index", twins["index"])
    assert "ranks" in out.splitlines()[0] and "first" in out.splitlines()[0]
    assert "swap in 50% of resamples: add images or accept either" in err
    code, out, err = run("search", twins["target"], "--index", twins["index"],
                         "--no-confidence")
    assert "ranks" not in out.splitlines()[0] and "swap" not in err


def test_unlabeled_targets_have_no_confidence(zoo, tmp_path):
    x = np.load(zoo["target"])["x"]
    target = tmp_path / "unlabeled.npz"
    np.savez(target, x=x)
    ranking = zooindex.search(target, index=zoo["index"])
    assert ranking.confidence is None


def test_mean_rank_of_every_resample_at_once_is_the_ensembles():
    from zooindex.estimators.combine import resolve

    rng = np.random.default_rng(1)
    # ties within a member (rounded values) must count half, as the ensemble counts them
    columns = {m: np.round(rng.normal(size=(7, 30)), 1) for m in ("logme", "knn", "sfda")}
    got = confidence.mean_rank_columns(list(columns.values()))
    scorer = resolve("ensemble:logme,knn,sfda")
    for b in range(30):
        table = {i: {m: columns[m][i, b] for m in columns} for i in range(7)}
        expected = scorer.combine(table)
        assert got[:, b] == pytest.approx([expected[i] for i in range(7)], abs=1e-12)
