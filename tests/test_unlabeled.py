"""Unlabeled targets: inputs alone are ranked by a label-free score, said so."""

import numpy as np
import pytest

import zooindex
from zooindex.errors import EstimatorError, TargetError, ZooIndexError


@pytest.fixture
def zoo(zoo, tmp_path):
    """conftest's indexed zoo, plus its target's inputs without labels."""
    np.savez(tmp_path / "inputs.npz", x=zoo["x"])
    return {**zoo, "unlabeled": tmp_path / "inputs.npz"}


def test_an_npz_without_labels_is_an_unlabeled_target(zoo):
    tgt = zooindex.load_target(zoo["unlabeled"])
    assert not tgt.labeled and tgt.y is None and tgt.classes == () and len(tgt) == 120
    labeled = zooindex.load_target(zoo["target"])
    assert tgt.key != labeled.key
    assert zooindex.load_target(zoo["unlabeled"], limit=50, seed=1).x.shape[0] == 50
    with pytest.raises(TargetError, match="no labels"):
        zooindex.load_target(zoo["unlabeled"], classes=[0, 1])


def test_the_default_becomes_a_label_free_score_and_the_search_says_so(zoo):
    ranking = zooindex.search(zoo["unlabeled"], index=zoo["index"])
    from zooindex.estimators import UNLABELED_DEFAULT

    assert ranking.scorers == [UNLABELED_DEFAULT] == ["cluster-silhouette"]
    [note] = [n for n in ranking.notes if "has no labels" in n]
    assert "ranked by cluster-silhouette" in note and "an unlabeled ranking is weak" in note
    assert len(ranking.ranked) == 3 and all(r.score is not None for r in ranking.ranked)
    # the clustering score, the default, finds that the model seeing the clustered
    # dimensions groups them best
    assert ranking.ranked[0].model == "good"
    clusters = zooindex.search(zoo["unlabeled"], index=zoo["index"],
                               scorers=["cluster-silhouette"])
    assert clusters.ranked[0].model == "good"
    # named, the scorer is the same but the default's note is not given
    assert not any("has no labels" in n for n in clusters.notes)
    # chosen label-free scores work; labelled ones are refused in one line
    chosen = zooindex.search(zoo["unlabeled"], index=zoo["index"], scorers=["rankme"])
    assert chosen.scorers == ["rankme"] and len(chosen.ranked) == 3
    with pytest.raises(EstimatorError, match="no labels, and logme need them"):
        zooindex.search(zoo["unlabeled"], index=zoo["index"], scorers=["logme"])


def test_report_and_evaluate_need_labels(zoo, tmp_path):
    with pytest.raises(ZooIndexError, match="no labels"):
        zooindex.report(zoo["unlabeled"], out=tmp_path / "r.png", index=zoo["index"])
    with pytest.raises(TargetError, match="no labels"):
        zooindex.evaluate(target=zoo["unlabeled"], test_size=0.3, index=zoo["index"])
