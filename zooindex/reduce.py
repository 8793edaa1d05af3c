"""Dimensionality reduction of a layer's activations before scoring: all PCA lives here.

neuralRank compares models whose layers have very different widths; projecting every
layer's features on their first few principal components (``D = 10`` in the paper) puts
them on an equal footing and makes the distance-based scores cheap. :func:`pca` reduces
activations held in memory; :class:`StreamingPCA` reduces those too large to hold, batch
by batch.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import numpy as np

from .errors import EstimatorError

# Up to this many features (and at least as many samples) the exact covariance route is
# used: one d x d scatter matrix (32 MiB at d = 2,048) costs O(n d^2) in a single BLAS
# product, faster than a randomized sketch's many thin products up to about this width.
_COVARIANCE_MAX_FEATURES = 2048
# Below this many samples or features a full LAPACK SVD costs little.
_FULL_SVD_MAX_SIDE = 512
# Lanczos (ARPACK) finds a few leading eigenpairs of a wide scatter matrix several times
# faster than a dense eigensolver; below this width, or for many components, LAPACK.
_LANCZOS_MIN_FEATURES = 256
# A float32 scatter matrix carries rounding errors of about 1e-7 of its largest
# eigenvalue; components whose variance falls below this share of the largest are
# recomputed from a float64 scatter matrix instead.
_FLOAT32_MIN_SHARE = 1e-4


_shared: contextvars.ContextVar = contextvars.ContextVar("zooindex_pca", default=None)


@contextmanager
def shared_projections():
    """Within this block (in this thread), :func:`pca` of the same array object with the
    same ``dim`` and ``seed`` is computed once: the estimators that reduce a layer and
    the search's confidence (:mod:`zooindex.confidence`) share one projection. Keyed by
    identity, the array held until the block ends, so another array with equal contents
    is computed afresh; the shared result is read-only."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


def pca(features, dim: int, *, seed: int = 0) -> tuple[np.ndarray, int]:
    memo = _shared.get()
    if memo is None or not isinstance(features, np.ndarray):
        return _pca(features, dim, seed=seed)
    key = (id(features), dim, seed)
    held = memo.get(key)
    if held is not None and held[0] is features:
        return held[1]
    points, used = _pca(features, dim, seed=seed)
    points.setflags(write=False)
    memo[key] = (features, (points, used))
    return points, used


def _pca(features, dim: int, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """Project ``features`` ``(n, d)`` on their first ``dim`` principal components.

    The components are fitted on these same features, and the projections ``(n, m)``
    are returned in float64 together with ``m``, the number of components actually used::

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

    The solver is picked by shape; every route is deterministic:

    * ``d <= 2048`` and ``n >= d``: exact, from the scatter matrix ``Xc^T Xc`` of the
      centred features, ``O(n d^2)``, and its leading eigenvectors (ARPACK's Lanczos
      iteration, converged to machine precision, for a few components of a wide layer;
      LAPACK otherwise). The mean is taken in float64. float32 features (what models
      produce) keep float32 products, twice as fast, unless a wanted component's variance
      is below 1e-4 of the largest, where float32 rounding could matter: those are
      redone in float64. The scores computed from float32 and float64 products agree to
      about 1e-8;
    * ``min(n, d) <= 512``, or ``dim`` at least 80% of ``min(n, d)``: scikit-learn's
      ``full`` SVD on float64, exact;
    * otherwise scikit-learn's ``randomized`` SVD with ``random_state=seed``,
      ``O(n d dim)``: close to the exact projection when the spectrum decays, and the
      same for the same ``seed``.

    Signs follow scikit-learn's convention for components (the largest loading of each
    is positive), so that repeated runs give identical projections.

    Memory: one centred copy of ``features`` (float64 outside the float32 route) and, on
    the covariance route, one ``d x d`` matrix.
    """
    if dim < 1:
        raise EstimatorError(f"PCA needs at least 1 component, not dim={dim}; "
                             "pass a positive --dim")
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise EstimatorError(f"PCA needs features of shape (n, d) with n, d >= 1, not "
                             f"{x.shape}; pass one row of activations per sample")
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    n, d = x.shape
    k = min(dim, n, d)
    if n < 2:
        return np.zeros((n, 1)), 1
    if d <= _COVARIANCE_MAX_FEATURES and n >= d:
        return _covariance_pca(x, k, seed)
    return _svd_pca(x.astype(np.float64), k, seed)


pca.__doc__ = _pca.__doc__


def _covariance_pca(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, int]:
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    shift = mean.astype(x.dtype)
    centred = x - shift
    # what rounding the mean to float32 left in the rows, which the scatter matrix and
    # the projections are corrected for
    residual = mean - shift
    found = None
    if x.dtype == np.float32:
        found = _leading_eigen(centred, residual, k, seed)  # None: float32 overflow
        if found is not None and found[0][0] > 0 and \
                found[0][-1] < _FLOAT32_MIN_SHARE * found[0][0]:
            found = None
        if found is None:
            centred, residual = x.astype(np.float64) - mean, np.zeros(d)
    scale = 1.0
    if found is None:
        found = _leading_eigen(centred, residual, k, seed)
    if found is None:  # squares beyond float64: principal axes do not depend on scale
        scale = float(np.max(np.abs(centred)))
        centred, residual = centred / scale, residual / scale
        found = _leading_eigen(centred, residual, k, seed)
    values, vectors = found
    if values[0] <= 0:  # constant features
        return np.zeros((n, 1)), 1
    rank = int(np.count_nonzero(values > values[0] * max(n, d) * np.finfo(float).eps))
    used = max(1, min(k, rank))
    vectors = vectors[:, :used]
    # the rows of ``centred`` keep the small mean that rounding left; subtract its image
    projected = (centred @ vectors.astype(centred.dtype)).astype(np.float64)
    projected -= residual @ vectors
    if scale != 1.0:
        projected *= scale
    return projected, used


def _leading_eigen(centred: np.ndarray, residual: np.ndarray, k: int, seed: int):
    """The ``k`` largest eigenpairs of the scatter matrix of ``centred - residual``.

    ``residual`` (float64) is the mean left in ``centred``'s rows. Returns eigenvalues
    (descending) and eigenvectors ``(d, k)`` in float64 with the largest loading of each
    positive; ``None`` when the products overflow.
    """
    n, d = centred.shape
    with np.errstate(over="ignore", invalid="ignore"):
        scatter = (centred.T @ centred).astype(np.float64)
        scatter -= n * np.outer(residual, residual)
    if not np.all(np.isfinite(scatter)):
        return None
    if not np.any(scatter):  # constant features: nothing to find
        return np.zeros(k), np.eye(d, k)
    values = vectors = None
    if d >= _LANCZOS_MIN_FEATURES and k <= d // 8:
        from scipy.sparse.linalg import ArpackError, eigsh

        start = np.random.default_rng(seed).standard_normal(d)
        try:
            values, vectors = eigsh(scatter, k=k, which="LA", v0=start)
        except ArpackError:  # no convergence: the dense solver always answers
            values = None
    if values is None:
        # numpy's eigensolver releases the GIL; scipy's holds it for the whole call
        # (seconds for a 2,048-wide matrix), during which a search in another thread
        # could not even take Ctrl-C
        values, vectors = np.linalg.eigh(scatter)
        values, vectors = values[d - k:], vectors[:, d - k:]
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    largest = np.argmax(np.abs(vectors), axis=0)
    vectors *= np.sign(vectors[largest, np.arange(vectors.shape[1])])
    return values, vectors


def _svd_pca(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, int]:
    from sklearn.decomposition import PCA

    n, d = x.shape
    centred = x - x.mean(axis=0)
    if not np.any(centred):
        return np.zeros((n, 1)), 1
    solver = "full" if min(n, d) <= _FULL_SVD_MAX_SIDE or k >= 0.8 * min(n, d) \
        else "randomized"
    model = PCA(n_components=k, svd_solver=solver, copy=False,
                random_state=seed if solver == "randomized" else None)
    projected = model.fit_transform(centred)
    variance = model.explained_variance_
    rank = int(np.count_nonzero(variance > variance[0] * max(n, d) * np.finfo(float).eps))
    used = max(1, min(k, rank))
    return np.ascontiguousarray(projected[:, :used], dtype=np.float64), used


class StreamingPCA:
    """Mean and covariance accumulated batch by batch (Chan et al.'s pairwise update).

    Memory is O(d^2) whatever the number of samples: a first pass feeds every batch to
    :meth:`update`, then :meth:`components` gives the leading principal axes, and a
    second pass projects each batch on them (``(batch - mean) @ axes``), so a layer's
    full activations are never held at once.
    """

    def __init__(self):
        self.n = 0
        self.mean = None
        self.m2 = None

    def update(self, batch: np.ndarray) -> None:
        b = batch.astype(np.float64)
        nb = len(b)
        mb = b.mean(axis=0)
        centred = b - mb
        m2b = centred.T @ centred
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        delta = mb - self.mean
        total = self.n + nb
        self.m2 += m2b + np.outer(delta, delta) * (self.n * nb / total)
        self.mean += delta * (nb / total)
        self.n = total

    def components(self, k: int) -> np.ndarray:
        """The ``(d, m)`` leading principal axes, ``m <= k`` (fewer when the rank is)."""
        values, vectors = np.linalg.eigh(self.m2 / max(self.n - 1, 1))
        order = np.argsort(values)[::-1]
        rank = int(np.sum(values > values.max() * 1e-12)) if values.max() > 0 else 0
        k = max(1, min(k, rank or 1, len(values)))
        return vectors[:, order[:k]]


def within_samples(features, labels, limit: int, *, seed: int = 0) -> np.ndarray:
    """``features`` ``(n, d)`` on at most ``limit`` leading principal components.

    For estimators that estimate a ``d x d`` (within-class or total) covariance and
    invert it: once ``d`` approaches the number of samples that estimate it, the inverse
    separates any labelling perfectly and the score sits at its ceiling for every model.
    The caller says how many dimensions its samples support (``limit``, see
    :func:`fisher_limit`). Features already at most ``limit`` wide are returned as they
    are (float64), so narrow layers score exactly as before; wider ones go through
    :func:`pca` (``m <= limit`` components, fewer where the rank is lower), or, wider
    than the samples, through the exact Gram route of :func:`_gram_components`, whose
    cost is bounded by the number of samples rather than the width.
    """
    x = np.asarray(features)
    n, d = x.shape
    if d <= limit:
        return x.astype(np.float64, copy=False)
    if d > n:
        return _gram_components(x, max(1, limit))
    return pca(x, max(1, limit), seed=seed)[0]


def _gram_components(x: np.ndarray, limit: int) -> np.ndarray:
    """Principal component scores ``(n, m)`` of a layer wider than its samples, exactly,
    from the ``n x n`` Gram matrix of the centred rows: ``Xc Xc^T = U diag(s) U^T`` gives
    the scores ``U sqrt(s)``. ``O(n^2 d + n^3)`` time and ``O(n^2)`` beyond the features,
    whatever the width (a 25,088-wide conv map and 1,000 samples: one 1,000 x 1,000
    matrix), with no ``d x d`` matrix and no randomised sketch. Components whose variance
    is rounding noise (below ``max(n, d) * eps`` of the largest) are dropped, as in
    :func:`pca`; signs are arbitrary (the callers' scores do not depend on them)."""
    n, d = x.shape
    centred = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    values, vectors = np.linalg.eigh(centred @ centred.T)  # releases the GIL
    values, vectors = values[::-1][:limit], vectors[:, ::-1][:, :limit]
    keep = values > max(values[0], 0.0) * max(n, d) * np.finfo(np.float64).eps
    if not keep.any():  # constant features
        return np.zeros((n, 1))
    return vectors[:, keep] * np.sqrt(values[keep])


def fisher_limit(labels) -> int:
    """Dimensions a Fisher-type estimate supports: half the within-class degrees of
    freedom, ``(n - k) // 2`` (at least 1).

    The within-class scatter of ``n`` samples in ``k`` classes has ``n - k`` degrees of
    freedom. With ``m`` dimensions its inverse is inflated by about ``(n - k) / (n - k -
    m - 1)`` (the mean of an inverse Wishart matrix), without bound as ``m`` reaches
    ``n - k``; at ``m <= (n - k) / 2`` the inflation stays below two, and pure noise
    no longer separates its classes in the sample it was fitted on.
    """
    labels = np.asarray(labels)
    return max(1, (len(labels) - (int(labels.max()) + 1)) // 2)
