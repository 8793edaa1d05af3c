"""The newer estimators (ETran, NCTI's terms) against hand-worked values or independent,
straightforward implementations written here from the formulas in their docstrings."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from zooindex.errors import EstimatorError
from zooindex.estimators import get, resolve
from zooindex.estimators.ncti import TERMS, ncti
from zooindex.reduce import pca


def blobs(n=60, d=6, k=3, spread=1.0, seed=0):
    """Seeded Gaussian classes: class means 3 apart on average, unit noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    centres = rng.normal(scale=3.0, size=(k, d))
    return centres[labels] + spread * rng.normal(size=(n, d)), labels


LINE = np.array([[0.0], [2.0], [4.0], [6.0]])
TWO = np.array([0, 0, 1, 1])


# ---------------------------------------------------------------- ETran

def test_energy_hand_worked():
    # rows (0, 0) and (log 3, 0): log(1 + 1) = log 2, log(3 + 1) = log 4; mean 1.5 log 2
    features = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    assert get("energy")(features) == pytest.approx(1.5 * np.log(2.0), rel=1e-12)
    # no overflow for large activations: log sum exp(1000 + 0, 1000 + 0) = 1000 + log 2
    assert get("energy")(features + 1000.0) == pytest.approx(1000 + 1.5 * np.log(2.0))


def test_etran_is_energy_plus_the_mean_lda_posterior_of_sklearn():
    # the LDA term with the same shrinkage, computed by scikit-learn's shrunk LDA, whose
    # covariance is the class-weighted average of the shrunk class covariances, which is
    # (1 - lambda) S_w + lambda tr(S_w) / d I
    features, labels = blobs(n=90, d=7, spread=2.0, seed=10)
    features *= 0.1  # scatter small enough that lambda is well above its floor
    n, d = features.shape
    means = np.array([features[labels == c].mean(axis=0) for c in range(3)])
    within = features - means[labels]
    s_w = within.T @ within / n
    lam = max(np.exp(-5 * np.linalg.eigvalsh(s_w).max()), 1e-10)
    assert 1e-3 < lam < 1
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=lam).fit(features, labels)
    s_lda = lda.predict_proba(features)[np.arange(n), labels].mean()
    s_en = np.mean(np.log(np.exp(features).sum(axis=1)))
    assert 0.34 < s_lda < 1
    assert get("etran")(features, labels) == pytest.approx(s_en + s_lda, rel=1e-9)


# ---------------------------------------------------------------- NCTI

def test_ncti_terms_hand_worked_one_dimension():
    # f = 0, 2, 4, 6 with classes {0, 2}, {4, 6}: means 1 and 5, global mean 3.
    # Sigma_W = (1 + 1 + 1 + 1) / 4 = 1;  Sigma_B = ((-2)^2 + 2^2) / 2 = 4
    # NC1 = 1/2 * 1 / 4 = 1/8, so ncti-vc = log 8
    assert get("ncti-vc")(LINE, TWO, dim=1) == pytest.approx(np.log(8.0), rel=1e-12)
    # NCC with s^2 = tr(Sigma_W) / 1 = 1: logits -|f - mu|^2 / 2.
    # f = 0: distances 1, 25 -> p(own) = 1 / (1 + e^-12); f = 2: 1, 9 -> 1 / (1 + e^-4);
    # f = 4 and 6 mirror them
    expected = -(np.log1p(np.exp(-12.0)) + np.log1p(np.exp(-4.0))) / 2
    assert get("ncti-ncc")(LINE, TWO, dim=1) == pytest.approx(expected, rel=1e-12)
    # SELI: nuclear norm of those posteriors over that of the labels, sqrt 2 + sqrt 2
    a, b = 1 / (1 + np.exp(-12.0)), 1 / (1 + np.exp(-4.0))
    posteriors = np.array([[a, 1 - a], [b, 1 - b], [1 - b, b], [1 - a, a]])
    expected = np.linalg.norm(posteriors, "nuc") / (2 * np.sqrt(2))
    assert get("ncti-sei")(LINE, TWO, dim=1) == pytest.approx(expected, rel=1e-12)


def test_ncti_terms_match_explicit_covariances_and_distances():
    features, labels = blobs(n=90, d=12, k=3, spread=3.0, seed=4)
    reduced, _ = pca(features, 5, seed=0)
    k, n = 3, len(labels)
    means = np.array([reduced[labels == c].mean(axis=0) for c in range(k)])
    s_w = sum(np.outer(r - means[c], r - means[c]) for r, c in zip(reduced, labels)) / n
    centred = means - reduced.mean(axis=0)
    s_b = sum(np.outer(m, m) for m in centred) / k
    nc1 = np.trace(s_w @ np.linalg.pinv(s_b)) / k
    assert get("ncti-vc")(features, labels, dim=5) == pytest.approx(-np.log(nc1), rel=1e-9)
    s2 = np.trace(s_w) / 5
    dist = np.array([[np.sum((r - m) ** 2) for m in means] for r in reduced])
    posteriors = softmax(-dist / (2 * s2), axis=1)
    ncc = np.mean(np.log(posteriors[np.arange(n), labels]))
    assert -np.log(3) < ncc < -0.01  # overlapping classes: neither trivial nor hopeless
    assert get("ncti-ncc")(features, labels, dim=5) == pytest.approx(ncc, rel=1e-9)
    sei = np.linalg.norm(posteriors, "nuc") / (3 * np.sqrt(30))
    assert get("ncti-sei")(features, labels, dim=5) == pytest.approx(sei, rel=1e-9)


def test_ncti_terms_do_not_depend_on_the_scale_of_the_features():
    features, labels = blobs(seed=6)
    for term in TERMS:
        assert get(term)(features * 1e3, labels) == pytest.approx(
            get(term)(features, labels), rel=1e-7)


def test_ncti_vc_refuses_coinciding_class_means():
    features = np.array([[0.0], [2.0], [0.0], [2.0]])  # both classes have mean 1
    with pytest.raises(EstimatorError, match="class means coincide"):
        get("ncti-vc")(features, TWO, dim=1)


def test_ncti_combines_its_terms_by_min_max_over_the_models():
    # three models; each term rescaled to [0, 1] over them, then added
    table = {"a": {"ncti-vc": 1.0, "ncti-sei": 0.5, "ncti-ncc": -2.0},
             "b": {"ncti-vc": 3.0, "ncti-sei": 0.7, "ncti-ncc": -1.0},
             "c": {"ncti-vc": 2.0, "ncti-sei": 0.9, "ncti-ncc": -1.0}}
    # vc: 0, 1, .5;  sei: 0, .5, 1;  ncc: 0, 1, 1
    expected = {"a": 0.0, "b": 2.5, "c": 2.5}
    assert resolve("ncti").combine(table) == pytest.approx(expected, rel=1e-12)
    assert ncti(table) == pytest.approx(expected, rel=1e-12)
    # a model without one of the terms cannot be put on the common scale
    table["d"] = {"ncti-vc": 5.0, "ncti-sei": 1.0}
    assert set(resolve("ncti").combine(table)) == {"a", "b", "c"}
    with pytest.raises(EstimatorError, match="fixed members"):
        resolve("ncti:ncti-vc,ncti-ncc")
