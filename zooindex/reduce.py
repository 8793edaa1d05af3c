"""Dimensionality reduction of a layer's activations before scoring.

neuralRank compares models whose layers have very different widths; projecting every
layer's features on their first few principal components (``D = 10`` in the paper) puts
them on an equal footing and makes the distance-based scores cheap.
"""

from __future__ import annotations

import numpy as np

from .errors import EstimatorError

# Up to this many features the covariance route is exact and cheap: O(n d^2 + d^3)
# stays around 0.2 s at n = 5,000, d = 512, where a randomized sketch is already slower.
_COVARIANCE_MAX_FEATURES = 512
# Below this many samples or features a full LAPACK SVD costs little.
_FULL_SVD_MAX_SIDE = 512


def pca(features, dim: int, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """Project ``features`` ``(n, d)`` on their first ``dim`` principal components.

    The components are fitted on these same features (centred in float64), and the
    projections ``(n, m)`` are returned in float64 together with ``m``, the number of
    components actually used::

        m = min(dim, n, d, rank of the centred features)

    When the data allow fewer than ``dim`` components (few samples, a narrow layer, or
    activations confined to a subspace) the available ones are used and the caller can
    report ``m``. The rank counts a component only if its variance exceeds
    ``max(n, d) * eps`` times the largest (float64 ``eps``), the tolerance
    ``numpy.linalg.matrix_rank`` applies to a covariance matrix; smaller ones are rounding
    noise. Constant features (rank 0) give one all-zero column, so that callers always
    receive a 2-D array with at least one column. With ``dim >= d`` the features are still
    projected: a rotation onto the principal axes, which preserves distances and angles
    around the mean.

    The solver is picked by shape so that results are reproducible and fast (scikit-learn's
    ``PCA``, signs fixed by its ``svd_flip``):

    * ``d <= 512`` and ``n >= d``: ``covariance_eigh``, exact, ``O(n d^2 + d^3)``; the data
      are centred first so the covariance carries no cancellation from a large mean;
    * ``min(n, d) <= 512``, or ``dim`` at least 80% of ``min(n, d)``: ``full`` SVD, exact;
    * otherwise ``randomized`` with ``random_state=seed``, ``O(n d dim)``: within about
      1e-10 of the exact projection on features with a decaying spectrum, and the same
      for the same ``seed``.

    Memory: one centred float64 copy of ``features``.
    """
    if dim < 1:
        raise EstimatorError(f"PCA needs at least 1 component, not dim={dim}; "
                             "pass a positive --dim")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise EstimatorError(f"PCA needs features of shape (n, d) with n, d >= 1, not "
                             f"{x.shape}; pass one row of activations per sample")
    n, d = x.shape
    k = min(dim, n, d)
    centred = x - x.mean(axis=0)
    if n < 2 or not np.any(centred):
        return np.zeros((n, 1)), 1

    from sklearn.decomposition import PCA

    if d <= _COVARIANCE_MAX_FEATURES and n >= d:
        solver = "covariance_eigh"
    elif min(n, d) <= _FULL_SVD_MAX_SIDE or k >= 0.8 * min(n, d):
        solver = "full"
    else:
        solver = "randomized"
    model = PCA(n_components=k, svd_solver=solver, copy=False,
                random_state=seed if solver == "randomized" else None)
    projected = model.fit_transform(centred)
    variance = model.explained_variance_
    rank = int(np.count_nonzero(variance > variance[0] * max(n, d) * np.finfo(float).eps))
    used = max(1, min(k, rank))
    return np.ascontiguousarray(projected[:, :used], dtype=np.float64), used
