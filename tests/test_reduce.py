"""PCA before scoring: components used, agreement with scikit-learn, solver choice."""

import numpy as np
import pytest
import sklearn.decomposition
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA

from zooindex.errors import EstimatorError
from zooindex.reduce import pca


def _low_rank(n, d, rank, seed=0, noise=0.0, offset=5.0):
    """n samples in R^d spanning ``rank`` directions around a non-zero mean."""
    rng = np.random.default_rng(seed)
    scales = 2.0 ** -np.arange(rank)  # a decaying spectrum, as in real activations
    x = (rng.normal(size=(n, rank)) * scales) @ rng.normal(size=(rank, d)) + offset
    return x + noise * rng.normal(size=(n, d))


def _assert_equal_up_to_sign(ours, reference, atol):
    assert ours.shape == reference.shape
    signs = np.sign(np.sum(ours * reference, axis=0))
    np.testing.assert_allclose(ours * signs, reference, atol=atol)


@pytest.mark.parametrize("n, d, dim", [
    (300, 20, 5),    # covariance route, LAPACK eigensolver
    (2000, 300, 10),  # covariance route, wide: Lanczos
    (60, 530, 7),    # few samples, wide layer: full SVD
    (40, 30, 25),    # dim close to min(n, d): full SVD
])
def test_projections_match_sklearn_up_to_sign(n, d, dim):
    x = _low_rank(n, d, rank=min(n, d, 12), noise=0.01)
    ours, used = pca(x, dim)
    reference = PCA(dim, svd_solver="full").fit_transform(x)
    assert used == dim
    assert ours.dtype == np.float64
    _assert_equal_up_to_sign(ours, reference, atol=1e-8)


@pytest.mark.parametrize("n, d", [(300, 20), (2000, 300)])
def test_covariance_route_signs_follow_sklearn(n, d):
    # the largest loading of each component is positive, as scikit-learn's svd_flip makes it
    x = _low_rank(n, d, rank=12, noise=0.01)
    ours, _ = pca(x, 6)
    np.testing.assert_allclose(ours, PCA(6, svd_solver="full").fit_transform(x), atol=1e-8)
    assert np.array_equal(ours, pca(x, 6)[0])


def test_float32_features_keep_float32_products_when_components_are_strong():
    # a spectrum far from float32 rounding: the float32 route agrees with float64 PCA
    x = _low_rank(3000, 400, rank=20, noise=0.05).astype(np.float32)
    x[:, ::3] = np.maximum(x[:, ::3], 0)  # some ReLU-like zeros
    ours, used = pca(x, 10)
    reference = PCA(10, svd_solver="full").fit_transform(x.astype(np.float64))
    assert used == 10 and ours.dtype == np.float64
    _assert_equal_up_to_sign(ours, reference, atol=1e-4 * np.abs(reference).max())


def test_float32_features_with_weak_components_are_redone_in_float64():
    # variances 4^-i: the 10th is 4e-6 of the first, below float32's safe share
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(300, 10)))[0].T
    x = ((rng.normal(size=(2000, 10)) * 2.0 ** -np.arange(10)) @ basis + 3.0)
    x = x.astype(np.float32)
    ours, used = pca(x, 10)
    reference = PCA(10, svd_solver="full").fit_transform(x.astype(np.float64))
    assert used == 10
    _assert_equal_up_to_sign(ours, reference, atol=1e-9)


def test_randomized_route_matches_exact_pca_and_repeats_for_a_seed():
    # min(n, d) > 512 takes the randomized route. The centred data lie in an
    # 8-dimensional subspace; an orthonormal basis of it maps them isometrically to R^8,
    # where an exact PCA is cheap and gives the same projections.
    x = _low_rank(600, 700, rank=8)
    centred = x - x.mean(axis=0)
    basis = np.linalg.svd(centred[:40], full_matrices=False)[2][:8].T  # (700, 8)
    reference = PCA(5, svd_solver="full").fit_transform(centred @ basis)
    ours, used = pca(x, 5, seed=3)
    assert used == 5
    _assert_equal_up_to_sign(ours, reference, atol=1e-8)
    again, _ = pca(x, 5, seed=3)
    assert np.array_equal(ours, again)


@pytest.mark.parametrize("n, d, dim, solver", [
    (5000, 512, 10, "covariance"),
    (5000, 300, 300, "covariance"),
    (5000, 1024, 10, "covariance"),
    (400, 2000, 10, "full"),
    (2000, 1000, 900, "covariance"),
    (1000, 2000, 900, "full"),
    (2500, 2100, 10, "randomized"),
])
def test_solver_is_chosen_by_shape(monkeypatch, n, d, dim, solver):
    chosen = []

    class Spy(PCA):
        def fit_transform(self, x, y=None):
            chosen.append((self.svd_solver, self.random_state))
            return np.ones((len(x), self.n_components))

    monkeypatch.setattr(sklearn.decomposition, "PCA", Spy)
    # the projections are faked; only the solver and its seed are under test
    monkeypatch.setattr(Spy, "explained_variance_", np.ones(min(dim, n, d)), raising=False)
    pca(np.random.default_rng(0).normal(size=(n, d)).astype(np.float32), dim, seed=7)
    # the covariance route is zooindex's own; scikit-learn's PCA serves the others
    expected = [] if solver == "covariance" else [(solver, 7 if solver == "randomized"
                                                         else None)]
    assert chosen == expected


def test_more_components_than_samples_uses_what_exists():
    # 5 centred samples span at most 4 directions, whatever d is
    x = np.random.default_rng(1).normal(size=(5, 20))
    projected, used = pca(x, 10)
    assert used == 4 and projected.shape == (5, 4)
    # the 4 components keep every distance between the samples
    np.testing.assert_allclose(pdist(projected), pdist(x), rtol=1e-10)


def test_more_components_than_features_is_a_rotation():
    x = np.random.default_rng(2).normal(size=(100, 3)) * [3.0, 1.0, 0.5] + 7.0
    projected, used = pca(x, 10)
    assert used == 3 and projected.shape == (100, 3)
    np.testing.assert_allclose(pdist(projected), pdist(x), rtol=1e-10)
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-12)


def test_rank_limits_the_components():
    x = _low_rank(200, 6, rank=2)
    projected, used = pca(x, 5)
    assert used == 2 and projected.shape == (200, 2)
    np.testing.assert_allclose(pdist(projected), pdist(x), rtol=1e-9)


def test_constant_features_give_one_zero_column():
    projected, used = pca(np.full((30, 4), 2.5), 10)
    assert used == 1
    assert projected.shape == (30, 1) and not np.any(projected)


def test_float32_input_gives_float64_output():
    x = _low_rank(50, 8, rank=8, noise=0.1).astype(np.float32)
    projected, used = pca(x, 3)
    assert projected.dtype == np.float64 and used == 3
    # float32 products: agreement to float32 rounding, not to float64's
    reference = PCA(3).fit_transform(x.astype(np.float64))
    _assert_equal_up_to_sign(projected, reference, 1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("dim", [0, -2])
def test_non_positive_dim_is_refused(dim):
    with pytest.raises(EstimatorError, match="at least 1 component"):
        pca(np.ones((4, 2)), dim)


def test_non_matrix_features_are_refused():
    with pytest.raises(EstimatorError, match=r"shape \(n, d\)"):
        pca(np.ones(6), 2)


@pytest.mark.parametrize("dtype, magnitude", [(np.float32, 1e30), (np.float64, 1e200)])
def test_features_whose_squares_overflow_are_still_projected(dtype, magnitude):
    # float32 squares overflow above ~1e19, float64 ones above ~1e154
    x = _low_rank(400, 30, rank=6, noise=0.01)
    projected, used = pca((x * magnitude).astype(dtype), 4)
    reference = PCA(4, svd_solver="full").fit_transform(x)
    assert used == 4 and np.all(np.isfinite(projected))
    _assert_equal_up_to_sign(projected / magnitude, reference,
                             atol=1e-5 * np.abs(reference).max())


def test_within_samples_keeps_narrow_layers_and_reduces_wide_ones_exactly():
    from zooindex.reduce import fisher_limit, within_samples

    rng = np.random.default_rng(0)
    labels = np.arange(60) % 5
    # (60 - 5) // 2 = 27 dimensions: half the within-class degrees of freedom
    assert fisher_limit(labels) == 27
    narrow = rng.normal(size=(60, 20))
    assert np.array_equal(within_samples(narrow, labels, 27), narrow)
    # wider than the samples: the exact Gram route, equal to the PCA up to each
    # component's sign (distinct, decaying variances: the axes are well defined)
    wide = rng.normal(size=(60, 300)) * np.linspace(3.0, 0.1, 300)
    gram = within_samples(wide, labels, 27)
    direct, used = pca(wide, 27)
    assert gram.shape == direct.shape == (60, 27) and used == 27
    np.testing.assert_allclose(np.abs(gram), np.abs(direct), atol=1e-9 * np.abs(direct).max())
