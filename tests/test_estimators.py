"""Each transferability estimator against hand-worked values or an independent,
straightforward implementation written here from the paper's formulas."""

import numpy as np
import pytest
from scipy.linalg import eigh
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from zooindex.errors import EstimatorError
from zooindex.estimators import get
from zooindex.estimators._order import canonical_order
from zooindex.estimators.knn import knn_loo_predictions
from zooindex.estimators.logme import class_evidences
from zooindex.reduce import pca


def blobs(n=60, d=6, k=3, spread=1.0, seed=0):
    """Seeded Gaussian classes: class means 3 apart on average, unit noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    centres = rng.normal(scale=3.0, size=(k, d))
    return centres[labels] + spread * rng.normal(size=(n, d)), labels


def class_mean_rows(features, labels):
    """Each row replaced by its class mean (the E[f | y] of the H-score)."""
    means = np.array([features[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return means[labels]


def test_canonical_order_sorts_rows_then_labels():
    features = np.array([[1.0, 2.0], [0.0, 5.0], [1.0, -1.0], [0.0, 5.0], [-0.0, 5.0]])
    labels = np.array([0, 2, 1, 1, 0])
    # by column 0, then column 1, then label; -0.0 and 0.0 are the same key
    assert canonical_order(features, labels).tolist() == [4, 3, 1, 2, 0]
    perm = np.random.default_rng(0).permutation(60)
    x, y = blobs(seed=15)
    x[::7] = x[0]  # duplicated rows with different labels
    a, b = canonical_order(x, y), canonical_order(x[perm], y[perm])
    assert np.array_equal(x[a], x[perm][b]) and np.array_equal(y[a], y[perm][b])


# ---------------------------------------------------------------- LogME

def explicit_evidence(features, y, alpha, beta):
    """LogME's L(alpha, beta) / n with explicit d x d matrices (You et al., eq. 2)."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ y)
    residual = features @ m - y
    _, logdet = np.linalg.slogdet(a)
    value = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
             - beta / 2 * residual @ residual - alpha / 2 * m @ m - logdet / 2)
    return value / n, m, residual


@pytest.mark.parametrize("n, d", [(40, 6), (20, 30)], ids=["n>d", "n<d"])
def test_logme_is_the_evidence_at_its_stationary_alpha_beta(n, d):
    features, labels = blobs(n=n, d=d, k=3, seed=1)
    evidence, alphas, betas = class_evidences(features, labels)
    eig = np.linalg.eigvalsh(features.T @ features)  # all d eigenvalues, zeros included
    for c in range(3):
        y = (labels == c).astype(float)
        alpha, beta = alphas[c], betas[c]
        value, m, residual = explicit_evidence(features, y, alpha, beta)
        assert evidence[c] == pytest.approx(value, rel=1e-9)
        # the fixed point's equations hold at the returned (alpha, beta)
        gamma = np.sum(beta * eig / (alpha + beta * eig))
        assert alpha == pytest.approx(gamma / (m @ m), rel=1e-8)
        assert beta == pytest.approx((n - gamma) / (residual @ residual), rel=1e-8)
        # and it is a maximum: moving alpha or beta by 5% lowers the evidence
        for da, db in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)]:
            assert explicit_evidence(features, y, alpha * da, beta * db)[0] < value
    assert get("logme")(features, labels) == pytest.approx(evidence.mean(), rel=1e-12)


def test_logme_interpolated_labels_reach_the_noise_free_limit():
    # n < d and well-separated classes: each one-hot column lies in the span of the
    # features, the evidence keeps growing as the noise precision beta -> infinity, and
    # alpha / beta stops at its floor, 1e-10 times the largest eigenvalue of F^T F. The
    # value is checked against the marginal likelihood log N(y; 0, F F^T / alpha + I / beta),
    # the same evidence written in the n x n sample space.
    from scipy.stats import multivariate_normal

    features, labels = blobs(n=12, d=30, k=3, seed=3)
    evidence, alphas, betas = class_evidences(features, labels)
    top = np.linalg.svd(features, compute_uv=False)[0] ** 2
    assert np.allclose(alphas / betas, 1e-10 * top, rtol=1e-12)
    gram = features @ features.T
    for c in range(3):
        y = (labels == c).astype(float)
        cov = gram / alphas[c] + np.eye(12) / betas[c]
        expected = multivariate_normal(np.zeros(12), cov).logpdf(y) / 12
        assert evidence[c] == pytest.approx(expected, rel=1e-7)


# ---------------------------------------------------------------- H-score

def test_hscore_hand_worked_one_dimension():
    # f = 0, 2, 4, 6 with labels 0, 0, 1, 1: mean 3, cov(f) = (9+1+1+9)/3 = 20/3;
    # class means 1, 1, 5, 5 deviate by 2 each: cov(E[f|y]) = 4*4/3 = 16/3; H = 16/20
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert get("hscore")(features, [0, 0, 1, 1]) == pytest.approx(0.8, rel=1e-12)


def test_hscore_matches_explicit_covariances():
    features, labels = blobs(n=50, d=5, seed=2)
    expected = np.trace(np.linalg.pinv(np.cov(features, rowvar=False))
                        @ np.cov(class_mean_rows(features, labels), rowvar=False))
    assert get("hscore")(features, labels) == pytest.approx(expected, rel=1e-10)


def test_hscore_accepts_rank_deficient_features():
    # a duplicated column makes cov(f) singular; the pseudo-inverse ignores the null
    # direction, so the score equals that of the features without the copy
    features, labels = blobs(n=50, d=4, seed=3)
    doubled = np.hstack([features, features[:, :1]])
    assert get("hscore")(doubled, labels) == pytest.approx(get("hscore")(features, labels),
                                                          rel=1e-6)


def test_hscore_shrinkage_matches_explicit_ledoit_wolf_formula():
    features, labels = blobs(n=30, d=20, seed=4)  # few samples per dimension: a > 0
    n, d = features.shape
    a = LedoitWolf().fit(features).shrinkage_
    assert 0 < a < 1
    emp = np.cov(features, rowvar=False, bias=True)
    shrunk = (1 - a) * emp + a * np.trace(emp) / d * np.eye(d)
    between = np.cov(class_mean_rows(features, labels), rowvar=False, bias=True)
    expected = np.trace(np.linalg.inv(shrunk) @ ((1 - a) * between))
    assert get("hscore-shrinkage")(features, labels) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- LEEP and NCE

# Two target classes, two source classes, four samples:
#   theta = [.8 .2], [.6 .4] (y = 0),  [.3 .7], [.1 .9] (y = 1)
# P(y, z) = 1/4 * column sums per class:  y=0: [1.4, .6]/4 = [.35, .15]
#                                         y=1: [ .4, 1.6]/4 = [.10, .40]
# P(z) = [.45, .55];  P(y=0|z) = [7/9, 3/11],  P(y=1|z) = [2/9, 8/11]
# EEP_1 = .8*7/9 + .2*3/11 = 28/45 + 3/55 = 67/99;   EEP_2 = .6*7/9 + .4*3/11 = 19/33
# EEP_3 = .3*2/9 + .7*8/11 = 19/33;                  EEP_4 = .1*2/9 + .9*8/11 = 67/99
# LEEP = mean log EEP = (log(67/99) + log(19/33)) / 2
THETA = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
TARGET = np.array([0, 0, 1, 1])
NO_FEATURES = np.zeros((4, 1))


def test_leep_hand_worked():
    expected = (np.log(67 / 99) + np.log(19 / 33)) / 2
    assert get("leep")(NO_FEATURES, TARGET, probs=THETA) == pytest.approx(expected, rel=1e-12)


def test_leep_renormalises_rows_and_refuses_logits():
    expected = get("leep")(NO_FEATURES, TARGET, probs=THETA)
    assert get("leep")(NO_FEATURES, TARGET, probs=THETA * 3) == pytest.approx(expected)
    with pytest.raises(EstimatorError, match="negative"):
        get("leep")(NO_FEATURES, TARGET, probs=np.log(THETA))
    with pytest.raises(EstimatorError, match="classifier output"):
        get("leep")(NO_FEATURES, TARGET)  # no probs at all


def test_nce_hand_worked():
    # predicted source classes z = argmax = 0, 0, 0, 1 for target y = 0, 0, 1, 1:
    # P(y,z): (0,0) = 1/2, (1,0) = 1/4, (1,1) = 1/4;  P(z) = [3/4, 1/4]
    # NCE = 1/2 log(2/3) + 1/4 log(1/3) + 1/4 log(1)
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    expected = 0.5 * np.log(2 / 3) + 0.25 * np.log(1 / 3)
    assert get("nce")(NO_FEATURES, TARGET, probs=probs) == pytest.approx(expected, rel=1e-12)
    # a prediction that determines the label leaves no uncertainty: NCE = 0
    assert get("nce")(NO_FEATURES, TARGET, probs=THETA) == 0.0


# ---------------------------------------------------------------- N-LEEP

def test_nleep_is_leep_of_the_seeded_mixture_posteriors():
    from sklearn.mixture import GaussianMixture

    features, labels = blobs(n=90, d=12, seed=5)
    order = canonical_order(features, labels)
    reduced, _ = pca(features[order], 4, seed=7)
    reduced /= np.sqrt(np.mean(reduced ** 2))
    theta = GaussianMixture(15, covariance_type="full", random_state=7).fit(reduced) \
        .predict_proba(reduced)
    expected = get("leep")(features[order], labels[order], probs=theta)
    assert get("nleep")(features, labels, dim=4, seed=7) == pytest.approx(expected, rel=1e-9)
    assert -np.log(3) < expected <= 0


# ---------------------------------------------------------------- GBC

def test_gbc_hand_worked_one_dimension():
    # classes {0, 2} and {4, 6}: means 1 and 5, variances 1 and 1 (1/n_c), pooled S = 1
    # D_B = 1/8 * 4^2 / 1 + 1/2 ln(1 / sqrt(1 * 1)) = 2;  BC = e^-2 for each ordered pair
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert get("gbc")(features, [0, 0, 1, 1], dim=1) == pytest.approx(-2 * np.exp(-2), rel=1e-9)


def test_gbc_matches_explicit_gaussian_formulas():
    features, labels = blobs(n=60, d=8, spread=3.0, seed=6)
    reduced, _ = pca(features, 3, seed=0)
    gaussians = []
    for c in range(3):
        rows = reduced[labels == c]
        gaussians.append((rows.mean(axis=0), np.diag(rows.var(axis=0))))
    total = 0.0
    for i, (mu_i, s_i) in enumerate(gaussians):
        for j, (mu_j, s_j) in enumerate(gaussians):
            if i != j:
                s = (s_i + s_j) / 2
                delta = mu_i - mu_j
                d_b = (delta @ np.linalg.inv(s) @ delta / 8 + 0.5 * np.log(
                    np.linalg.det(s) / np.sqrt(np.linalg.det(s_i) * np.linalg.det(s_j))))
                total += np.exp(-d_b)
    assert total > 1e-3  # overlapping enough that the comparison means something
    assert get("gbc")(features, labels, dim=3, seed=0) == pytest.approx(-total, rel=1e-8)


# ---------------------------------------------------------------- TransRate

def test_transrate_matches_explicit_log_determinants():
    # every class (100 samples) is at least twice as wide as d = 25: the features are
    # used whole; the rates here come from the d x d matrices
    features, labels = blobs(n=300, d=25, seed=8)
    eps = 1e-4
    z = features - features.mean(axis=0)
    z /= np.sqrt(np.mean(np.sum(z ** 2, axis=1)))

    def rate(rows):
        return 0.5 * np.linalg.slogdet(np.eye(25) + rows.T @ rows / (len(rows) * eps))[1]

    expected = rate(z) - np.mean([rate(z[labels == c]) for c in range(3)])
    assert get("transrate")(features, labels) == pytest.approx(expected, rel=1e-10)


def test_the_coding_rate_of_fewer_rows_than_columns_uses_the_gram_matrix():
    from zooindex.estimators.transrate import coding_rate

    z = np.random.default_rng(8).normal(size=(20, 25))
    explicit = 0.5 * np.linalg.slogdet(np.eye(25) + z.T @ z / (20 * 1e-4))[1]
    assert coding_rate(z) == pytest.approx(explicit, rel=1e-10)


def test_transrate_reduces_a_layer_wider_than_half_its_smallest_class():
    # classes of 20, 25 dimensions: projected on the 10 leading principal components
    from zooindex.reduce import pca

    features, labels = blobs(n=60, d=25, seed=8)
    reduced, _ = pca(features, 10)
    assert get("transrate")(features, labels) == pytest.approx(
        get("transrate")(reduced, labels), rel=1e-9)


def test_transrate_ignores_feature_scale():
    features, labels = blobs(seed=9)
    assert get("transrate")(features * 1e3, labels) == pytest.approx(
        get("transrate")(features, labels), rel=1e-9)


# ---------------------------------------------------------------- SFDA

def explicit_sfda(features, labels):
    """The reference formulation: generalised eigenvectors of (S_b, S_w^lambda), class
    scores from the projected means, ConfMix, refit with the same lambda."""
    from scipy.special import softmax

    n, d = features.shape
    k = labels.max() + 1
    priors = np.bincount(labels) / n

    def shrink(cov, lam):
        return (1 - lam) * cov + lam * np.trace(cov) / d * np.eye(d)

    def posteriors(x, lam):
        means = np.array([x[labels == c].mean(axis=0) for c in range(k)])
        s_w = sum(priors[c] * np.cov(x[labels == c], rowvar=False, bias=True)
                  for c in range(k))
        if lam is None:
            lam = max(np.exp(-5 * np.linalg.eigvalsh(s_w).max()), 1e-10)
        s_t = np.cov(x, rowvar=False, bias=True)
        _, u = eigh(shrink(s_t, lam) - shrink(s_w, lam), shrink(s_w, lam))
        projected, projected_means = x @ u, means @ u
        scores = (projected @ projected_means.T
                  - 0.5 * np.sum(projected_means ** 2, axis=1) + np.log(priors))
        return softmax(scores, axis=1), lam

    first, lam = posteriors(features, None)
    w = softmax(first, axis=1)[np.arange(n), labels][:, None]
    means = np.array([features[labels == c].mean(axis=0) for c in range(k)])
    others = np.array([np.delete(means, c, axis=0).mean(axis=0) for c in range(k)])
    second, _ = posteriors(w * features + (1 - w) * others[labels], lam)
    return np.mean(second[np.arange(n), labels]), lam


def test_sfda_matches_the_eigenvector_formulation():
    features, labels = blobs(n=90, d=7, spread=2.0, seed=10)
    features *= 0.1  # small enough scatter that lambda is well above its floor
    expected, lam = explicit_sfda(features, labels)
    assert 1e-3 < lam < 1
    assert get("sfda")(features, labels) == pytest.approx(expected, rel=1e-8)


# ---------------------------------------------------------------- k-NN

def test_knn_matches_sklearn_brute_force_leave_one_out():
    # two classes: 5 voters can never tie, so sklearn's tie rule does not matter
    features, labels = blobs(n=70, d=9, k=2, spread=4.0, seed=11)
    reduced, _ = pca(features, 4, seed=0)
    correct = 0
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        model = KNeighborsClassifier(5, algorithm="brute").fit(reduced[rest], labels[rest])
        correct += model.predict(reduced[i:i + 1])[0] == labels[i]
    expected = correct / len(labels)
    assert 0.5 < expected < 1  # neither trivial nor hopeless
    assert get("knn")(features, labels, dim=4, seed=0) == expected


def test_knn_tie_rules_hand_worked():
    # six points on a line, k = 5, so every point's neighbours are the five others.
    # classes A = {0, 1}, B = {2, 3}, C = {10, 11}: every point sees 2 votes from each
    # other class and 1 from its own, and the nearer of the two tied classes wins:
    #   0, 1 -> B (2 is nearer than 10);  2, 3 -> A (1 is nearer than 10);
    #   10, 11 -> B (3 is nearer than 1), where "lower class code" would say A
    points = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert knn_loo_predictions(points, labels, k=5).tolist() == [1, 1, 0, 0, 1, 1]
    # equal distances for the last slot: point 0 at distance 1 from points 1 (class 1)
    # and 2 (class 2); with k = 1 the lower index, point 1, is the neighbour
    points = np.array([[0.0], [1.0], [-1.0]])
    assert knn_loo_predictions(points, np.array([0, 1, 2]), k=1)[0] == 1


def test_knn_chunking_does_not_change_predictions():
    features, labels = blobs(n=50, d=3, spread=3.0, seed=12)
    whole = knn_loo_predictions(features, labels)
    assert np.array_equal(knn_loo_predictions(features, labels, chunk_rows=7), whole)
    assert np.array_equal(knn_loo_predictions(features, labels, chunk_rows=1), whole)


# ---------------------------------------------------------------- linear probe

def test_linear_matches_sklearn_cross_val_score():
    features, labels = blobs(n=60, d=10, spread=5.0, seed=13)
    order = canonical_order(features, labels)
    expected = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)),
        features[order], labels[order],
        cv=StratifiedKFold(5, shuffle=True, random_state=3)).mean()
    assert 0.4 < expected < 1
    assert get("linear")(features, labels, seed=3) == pytest.approx(expected, abs=1e-12)


def test_linear_uses_fewer_folds_for_small_classes_and_refuses_singletons():
    features, labels = blobs(n=9, d=3, seed=14)  # three per class: 3 folds
    assert 0 <= get("linear")(features, labels) <= 1
    assert 0 <= get("linear")(features[:7], labels[:7]) <= 1  # sizes 3, 2, 2: 2 folds
    with pytest.raises(EstimatorError, match="single sample"):
        get("linear")(features[:4], labels[:4])  # sizes 2, 1, 1
