"""The label-free scores (RankMe, the clusters' silhouette, prediction entropy) against
hand-worked values or independent, straightforward implementations."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score as sklearn_silhouette
from threadpoolctl import threadpool_limits

from zooindex.errors import EstimatorError
from zooindex.estimators import get, label_free, resolve
from zooindex.estimators.clustering import MAX_CLUSTERS, best_clustering
from zooindex.estimators.rankme import EPSILON


def test_the_label_free_estimators_are_flagged_in_the_registry():
    names = {e.name for e in label_free()}
    assert {"rankme", "cluster-silhouette", "prediction-entropy", "energy"} <= names
    assert all(not e.needs_labels for e in label_free())
    assert get("logme").needs_labels and get("silhouette").needs_labels
    assert not resolve("ensemble:rankme,cluster-silhouette").needs_labels
    assert resolve("ensemble").needs_labels


# ---------------------------------------------------------------- RankMe

def rankme_by_hand(singular_values):
    p = singular_values / singular_values.sum() + EPSILON
    return np.exp(-np.sum(p * np.log(p)))


def test_rankme_of_an_isotropic_set_is_its_dimension():
    # orthogonal columns of equal length: 8 equal singular values, p_k = 1/8 + eps,
    # RankMe = exp(-8 (1/8 + eps) log(1/8 + eps)) = 8 up to eps
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(50, 8)))
    value = get("rankme")(5.0 * q)
    assert value == pytest.approx(rankme_by_hand(np.full(8, 5.0)), rel=1e-12)
    assert value == pytest.approx(8.0, rel=1e-5)


def test_rankme_of_a_rank_one_set_is_one():
    # u v^T: one non-zero singular value; p = (1 + eps, eps, ...) for min(n, d) = 6
    # values, RankMe = exp(-(1 + eps) log(1 + eps) - 5 eps log eps) = 1 + 8e-6
    rng = np.random.default_rng(1)
    features = np.outer(rng.normal(size=40), rng.normal(size=6))
    expected = np.exp(-(1 + EPSILON) * np.log1p(EPSILON) - 5 * EPSILON * np.log(EPSILON))
    assert get("rankme")(features) == pytest.approx(expected, rel=1e-9)
    assert get("rankme")(features) == pytest.approx(1.0, abs=1e-4)


def test_rankme_matches_the_eigenvalues_of_the_gram_matrix():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 12)) * np.geomspace(1, 1e-3, 12)  # decaying spectrum
    singular = np.sqrt(np.clip(np.linalg.eigvalsh(features.T @ features), 0, None))
    value = get("rankme")(features)
    assert value == pytest.approx(rankme_by_hand(singular), rel=1e-9)
    assert 1 < value < 12
    assert get("rankme")(features * 1e4) == pytest.approx(value, rel=1e-12)
    assert get("rankme")(np.zeros((5, 3))) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- cluster silhouette

def three_clusters(n_per=30, seed=0):
    """Three tight clusters at different angles around the origin, in 2-D."""
    rng = np.random.default_rng(seed)
    centres = np.array([[10.0, 0.0], [-5.0, 8.0], [-5.0, -8.0]])
    return np.repeat(centres, n_per, axis=0) + 0.3 * rng.normal(size=(3 * n_per, 2))


def test_best_clustering_finds_three_clusters_and_their_silhouette():
    points = three_clusters()
    value, k = best_clustering(points, "cosine", seed=0)
    assert k == 3
    truth = np.repeat(np.arange(3), 30)
    assert value == pytest.approx(sklearn_silhouette(points, truth, metric="cosine"),
                                  abs=1e-9)
    assert value > 0.9


def test_best_clustering_matches_a_plain_loop_over_k():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(80, 3)) + 2.0 * rng.normal(size=(4, 3))[np.arange(80) % 4]
    with threadpool_limits(1, "openmp"):  # as the estimator runs it: the same sums
        best = max(sklearn_silhouette(points, KMeans(k, n_init=4, random_state=5)
                                      .fit_predict(points), metric="sqeuclidean")
                   for k in range(2, MAX_CLUSTERS + 1))
    assert best_clustering(points, "sqeuclidean", seed=5)[0] == pytest.approx(best, abs=1e-9)


def test_cluster_silhouette_scores_clustered_features_above_a_single_blob():
    rng = np.random.default_rng(4)
    clustered = np.hstack([three_clusters(), 0.1 * rng.normal(size=(90, 6))])
    blob = rng.normal(size=(90, 8))
    assert get("cluster-silhouette")(clustered) > 0.9
    assert get("cluster-silhouette")(blob) < get("cluster-silhouette")(clustered) - 0.5
    with pytest.raises(EstimatorError, match="at least three"):
        get("cluster-silhouette")(clustered[:2])
    with pytest.raises(EstimatorError, match="single point"):
        get("cluster-silhouette")(np.ones((10, 4)))


# ---------------------------------------------------------------- prediction entropy

def test_prediction_entropy_hand_worked():
    # a certain prediction (entropy 0) and a uniform one (entropy log 2 = the maximum):
    # normalised entropies 0 and 1, mean 1/2, score -1/2
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert get("prediction-entropy")(np.zeros((2, 1)), probs=probs) == pytest.approx(-0.5)
    # four classes: [.5 .5 0 0] has entropy log 2 = half of log 4
    probs = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert get("prediction-entropy")(np.zeros((2, 1)), probs=probs) == pytest.approx(-0.75)


def test_prediction_entropy_needs_a_classifier_output_of_two_classes():
    with pytest.raises(EstimatorError, match="classifier output"):
        get("prediction-entropy")(np.zeros((3, 1)))
    with pytest.raises(EstimatorError, match="one class"):
        get("prediction-entropy")(np.zeros((3, 1)), probs=np.ones((3, 1)))
    with pytest.raises(EstimatorError, match="negative"):
        get("prediction-entropy")(np.zeros((2, 1)), probs=np.array([[-1.0, 2], [0, 1]]))
