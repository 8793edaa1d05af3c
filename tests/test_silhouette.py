"""The linear-time silhouette: hand-worked cases, scikit-learn cross-checks, estimators."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from sklearn import metrics
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import cosine_distances

from zooindex.errors import EstimatorError
from zooindex.estimators import get
from zooindex.estimators import silhouette as silhouette_mod
from zooindex.estimators.silhouette import (METRICS, classwise_silhouette_score,
                                            silhouette_samples, silhouette_score)
from zooindex.reduce import pca

ROOT2 = np.sqrt(2.0)


def _random_target(seed, metric="cosine"):
    """Clustered points with 2..7 classes of uneven sizes (singletons included)."""
    rng = np.random.default_rng(seed)
    k = 2 + seed % 6
    sizes = rng.integers(1, 30, size=k)
    sizes[0] = max(sizes[0], 2)  # at least one class with two samples
    labels = np.repeat(np.arange(k), sizes)
    d = int(rng.integers(1, 9))
    x = 1.5 * rng.normal(size=(k, d))[labels] + rng.normal(size=(len(labels), d))
    if metric == "cosine":
        x[rng.random(len(x)) < 0.1] = 0.0  # a few zero vectors
    perm = rng.permutation(len(labels))
    return x[perm], labels[perm]


def _brute_force(dist, labels):
    """Rousseeuw's silhouette of every sample from a full distance matrix."""
    labels = np.asarray(labels)
    values = []
    for i in range(len(labels)):
        own = (labels == labels[i]) & (np.arange(len(labels)) != i)
        if not own.any():
            values.append(0.0)
            continue
        a = dist[i, own].mean()
        b = min(dist[i, labels == k].mean() for k in set(labels) - {labels[i]})
        values.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return np.array(values)


# -- hand-worked cases ----------------------------------------------------------------

# 1-D points 0, 1 (class a) and 4, 6 (class b).
# euclidean:   x=0: a=1, b=(4+6)/2=5,     s=(5-1)/5=0.8
#              x=1: a=1, b=(3+5)/2=4,     s=3/4
#              x=4: a=2, b=(4+3)/2=3.5,   s=1.5/3.5=3/7
#              x=6: a=2, b=(6+5)/2=5.5,   s=3.5/5.5=7/11
# sqeuclidean: x=0: a=1, b=(16+36)/2=26,  s=25/26
#              x=1: a=1, b=(9+25)/2=17,   s=16/17
#              x=4: a=4, b=(16+9)/2=12.5, s=8.5/12.5=17/25
#              x=6: a=4, b=(36+25)/2=30.5, s=26.5/30.5=53/61
LINE = np.array([[0.0], [1.0], [4.0], [6.0]])
LINE_LABELS = ["a", "a", "b", "b"]


@pytest.mark.parametrize("metric, expected", [
    ("euclidean", [0.8, 3 / 4, 3 / 7, 7 / 11]),
    ("sqeuclidean", [25 / 26, 16 / 17, 17 / 25, 53 / 61]),
])
def test_hand_worked_line(metric, expected):
    np.testing.assert_allclose(silhouette_samples(LINE, LINE_LABELS, metric), expected,
                               rtol=1e-12)
    assert silhouette_score(LINE, LINE_LABELS, metric) == pytest.approx(np.mean(expected),
                                                                        rel=1e-12)


def test_hand_worked_cosine_with_a_zero_vector():
    # p0=(1,0), p1=(2,0) in class 0; p2=(0,1), p3=(1,1), p4=(0,0) in class 1.
    # Cosine distances: d(p0,p1)=0 (same direction), d(p0,p2)=d(p1,p2)=1 (orthogonal),
    # d(p0,p3)=d(p1,p3)=d(p2,p3)=1-1/sqrt2, and the zero vector p4 is at 1 from all.
    # p0, p1: a=0, b=(1 + 1-1/sqrt2 + 1)/3 > 0           -> s=1
    # p2: a=(1-1/sqrt2 + 1)/2 = 1-1/(2 sqrt2), b=1        -> s=1-a = 1/(2 sqrt2)
    # p3: a=(1-1/sqrt2 + 1)/2 = 1-1/(2 sqrt2), b=1-1/sqrt2 -> s=(b-a)/a = -1/(2 sqrt2 - 1)
    # p4: a=(1+1)/2=1, b=(1+1)/2=1                        -> s=0
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    labels = [0, 0, 1, 1, 1]
    expected = [1.0, 1.0, 1 / (2 * ROOT2), -1 / (2 * ROOT2 - 1), 0.0]
    np.testing.assert_allclose(silhouette_samples(x, labels), expected, atol=1e-15)
    np.testing.assert_allclose(metrics.silhouette_samples(x, labels, metric="cosine"),
                               expected, atol=1e-15)


def test_zero_vectors_follow_sklearns_cosine_distances():
    # scikit-learn's cosine distance of a zero vector is 1 to every other vector (zero
    # ones included) and 0 to itself; a silhouette built from that matrix by brute force
    # must equal ours
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [2.0, 1.0], [0.0, 0.0], [-1.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    dist = cosine_distances(x)
    assert dist[0, 1] == 1.0 and dist[0, 0] == 0.0 and dist[0, 2] == 1.0
    np.testing.assert_allclose(silhouette_samples(x, labels), _brute_force(dist, labels),
                               atol=1e-15)


# -- scikit-learn cross-checks --------------------------------------------------------

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", range(8))
def test_matches_sklearn(metric, seed):
    x, labels = _random_target(seed, metric)
    ours = silhouette_samples(x, labels, metric)
    theirs = metrics.silhouette_samples(x, labels, metric=metric)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert silhouette_score(x, labels, metric) == pytest.approx(
        metrics.silhouette_score(x, labels, metric=metric), abs=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_singleton_classes_score_zero(metric):
    x, labels = _random_target(3, metric)
    x = np.vstack([x, [[5.0] * x.shape[1]], [[-3.0] * x.shape[1]]])
    labels = np.concatenate([labels, [97, 98]])
    ours = silhouette_samples(x, labels, metric)
    assert ours[-1] == 0.0 and ours[-2] == 0.0
    np.testing.assert_allclose(ours, metrics.silhouette_samples(x, labels, metric=metric),
                               atol=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_points(metric):
    x, labels = _random_target(5, metric)
    x = np.vstack([x, x[:10], x[:10]])  # each of the first ten rows three times
    labels = np.concatenate([labels, labels[:10], labels[:10]])
    np.testing.assert_allclose(silhouette_samples(x, labels, metric),
                               metrics.silhouette_samples(x, labels, metric=metric),
                               atol=1e-9)


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_tight_classes_far_from_the_origin(metric):
    # Distances of about 1e-12 (cosine) next to norms of 1e3. The centred closed form
    # keeps their relative precision; a pairwise 1 - cos(x_i, x_j), as scikit-learn
    # computes it, carries an absolute error of about 1e-16, i.e. 1e-4 relative here.
    # Reference: a brute-force silhouette on distances computed from differences.
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 40)
    centres = 1e3 + rng.normal(size=(3, 5)) * 1e-3
    x = centres[labels] + rng.normal(size=(120, 5)) * 1e-6
    if metric == "cosine":
        units = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = squareform(pdist(units, "sqeuclidean")) / 2  # 1 - cos = |u_i - u_j|^2 / 2
    else:
        dist = squareform(pdist(x, "sqeuclidean"))
    np.testing.assert_allclose(silhouette_samples(x, labels, metric),
                               _brute_force(dist, labels), atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_float32_input_is_computed_in_float64(metric):
    x, labels = _random_target(6, metric)
    x32 = x.astype(np.float32)
    ours = silhouette_samples(x32, labels, metric)
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours, silhouette_samples(x32.astype(np.float64), labels,
                                                           metric))
    np.testing.assert_allclose(
        ours, metrics.silhouette_samples(x32.astype(np.float64), labels, metric=metric),
        atol=1e-9)


@pytest.mark.parametrize("relabel", [
    lambda y: y * 7 - 3,                                 # integers not 0..k-1
    lambda y: np.array([f"class-{v}" for v in y]),       # strings
    lambda y: (9 - y).astype(np.uint8),                  # reversed order
])
def test_label_values_do_not_matter(relabel):
    x, labels = _random_target(2)
    base = silhouette_samples(x, labels)
    np.testing.assert_array_equal(silhouette_samples(x, relabel(labels)), base)


def test_cosine_ignores_the_length_of_each_row():
    x, labels = _random_target(7)
    scales = np.random.default_rng(0).uniform(0.1, 50.0, size=(len(x), 1))
    np.testing.assert_allclose(silhouette_samples(x * scales, labels),
                               silhouette_samples(x, labels), atol=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_chunks_give_the_same_values(monkeypatch, metric):
    x, labels = _random_target(4, metric)
    whole = silhouette_samples(x, labels, metric)
    monkeypatch.setattr(silhouette_mod, "_CHUNK_VALUES", 7)  # one row per chunk
    np.testing.assert_allclose(silhouette_samples(x, labels, metric), whole, atol=1e-14)


# -- class-balanced variant -----------------------------------------------------------

def test_classwise_hand_worked_imbalanced():
    # 1-D, euclidean: 0, 1, 2 in class a, 10 alone in class b.
    # x=0: a=(1+2)/2=1.5, b=10 -> s=8.5/10=0.85
    # x=1: a=(1+1)/2=1,   b=9  -> s=8/9
    # x=2: a=(2+1)/2=1.5, b=8  -> s=6.5/8=0.8125
    # x=10: alone in its class -> s=0
    # plain mean over samples: (0.85 + 8/9 + 0.8125 + 0) / 4
    # classwise: ((0.85 + 8/9 + 0.8125) / 3 + 0) / 2
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    labels = ["a", "a", "a", "b"]
    class_a = 0.85 + 8 / 9 + 0.8125
    assert silhouette_score(x, labels, "euclidean") == pytest.approx(class_a / 4, rel=1e-12)
    assert classwise_silhouette_score(x, labels, "euclidean") == pytest.approx(
        class_a / 3 / 2, rel=1e-12)


def test_classwise_equals_plain_score_for_equal_class_sizes():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(4), 25)
    x = rng.normal(size=(4, 6))[labels] + rng.normal(size=(100, 6))
    assert classwise_silhouette_score(x, labels) == pytest.approx(
        silhouette_score(x, labels), abs=1e-12)


# -- invalid input ---------------------------------------------------------------------

def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(EstimatorError, match="cosine, sqeuclidean, euclidean"):
        silhouette_score(LINE, LINE_LABELS, "manhattan")


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [0, 1, 2, 3]])
def test_one_class_or_only_singletons_is_refused(labels):
    with pytest.raises(EstimatorError, match="at least two classes"):
        silhouette_score(LINE, labels)


def test_non_finite_or_mismatched_input_is_refused():
    with pytest.raises(EstimatorError, match="NaN or inf"):
        silhouette_score(np.array([[0.0], [np.nan], [1.0], [2.0]]), LINE_LABELS)
    with pytest.raises(EstimatorError, match="labels of shape"):
        silhouette_score(LINE, LINE_LABELS[:3])
    for shapeless in (LINE.ravel(), np.ones((4, 0))):
        with pytest.raises(EstimatorError, match=r"\(n, d\)"):
            silhouette_score(shapeless, LINE_LABELS)


# -- registered estimators ----------------------------------------------------------

def test_registered_silhouette_is_the_score_of_the_pca_projection():
    x, labels = _random_target(9, metric="sqeuclidean")
    x = np.hstack([x, np.random.default_rng(1).normal(size=(len(x), 3))])
    reduced, used = pca(x, 2)
    assert used == 2
    value = get("silhouette")(x, labels, dim=2)
    assert value == silhouette_score(reduced, labels)
    # the PCA is scikit-learn's up to the sign of each axis, which cosine ignores
    assert value == pytest.approx(
        metrics.silhouette_score(PCA(2).fit_transform(x), labels, metric="cosine"), abs=1e-9)
    assert get("silhouette")(x, labels, dim=2, metric="euclidean") == pytest.approx(
        metrics.silhouette_score(reduced, labels, metric="euclidean"), abs=1e-12)
    assert get("silhouette-classwise")(x, labels, dim=2) == \
        classwise_silhouette_score(reduced, labels)


def test_registered_silhouette_refuses_an_unknown_metric():
    x, labels = _random_target(1)
    with pytest.raises(EstimatorError, match="unknown silhouette metric 'l1'"):
        get("silhouette")(x, labels, metric="l1")


@pytest.mark.parametrize("name", ["silhouette", "silhouette-classwise"])
def test_registration(name):
    estimator = get(name)
    assert estimator.params == ("dim", "metric", "seed")
    assert not estimator.needs_probs
    assert estimator.cache_params(dim=4, metric="cosine", seed=0) == \
        {"dim": 4, "metric": "cosine", "seed": 0}
