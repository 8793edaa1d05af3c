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
    (300, 20, 5),    # d <= 512, n >= d: covariance route
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
    (5000, 512, 10, "covariance_eigh"),
    (5000, 300, 300, "covariance_eigh"),
    (400, 2000, 10, "full"),
    (2000, 1000, 900, "full"),
    (5000, 1024, 10, "randomized"),
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
    pca(np.random.default_rng(0).normal(size=(n, d)), dim, seed=7)
    assert chosen == [(solver, 7 if solver == "randomized" else None)]


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
    _assert_equal_up_to_sign(projected, PCA(3).fit_transform(x.astype(np.float64)), 1e-9)


@pytest.mark.parametrize("dim", [0, -2])
def test_non_positive_dim_is_refused(dim):
    with pytest.raises(EstimatorError, match="at least 1 component"):
        pca(np.ones((4, 2)), dim)


def test_non_matrix_features_are_refused():
    with pytest.raises(EstimatorError, match=r"shape \(n, d\)"):
        pca(np.ones(6), 2)
