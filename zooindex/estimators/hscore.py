"""H-score and its shrinkage-regularised form.

H-score (Bao et al., ICIP 2019) measures how far apart the class means lie in the metric
of the features' own covariance: the more of the features' variance is between classes,
the easier a classifier on them. With many dimensions the sample covariance is badly
conditioned and its inverse dominates the score; Ibrahim et al. (ICLR 2022) replace it by
the Ledoit-Wolf shrunk estimate.
"""

from __future__ import annotations

import numpy as np

from . import register


def _class_offsets(features: np.ndarray, labels: np.ndarray):
    """Class means minus the overall mean ``(k, d)`` and class sizes ``(k,)``."""
    counts = np.bincount(labels).astype(np.float64)
    sums = np.zeros((len(counts), features.shape[1]))
    np.add.at(sums, labels, features)
    return sums / counts[:, None] - features.mean(axis=0), counts


@register("hscore", "H-score: between-class variance in the features' own metric "
          "(Bao et al., ICIP 2019)")
def hscore(features, labels, **_):
    r"""H-score of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better.

    Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", ICIP 2019::

        H = tr( cov(f)^+ cov(E[f | y]) )

    ``cov(E[f|y]) = sum_c n_c (mu_c - mu)(mu_c - mu)^T / (n - 1)`` is the covariance of
    each sample replaced by its class mean, so ``H = sum_c n_c/(n-1) delta_c^T cov(f)^+
    delta_c`` with ``delta_c = mu_c - mu``. ``^+`` is the pseudo-inverse through the
    eigendecomposition ``cov(f) = V diag(w) V^T``, dropping eigenvalues below ``d * eps``
    times the largest (``scipy.linalg.pinvh``'s default cut-off), so rank-deficient
    features are allowed.

    Features wider than ``m = (n - k) // 2`` are first projected on their ``m`` leading
    principal components (:func:`zooindex.reduce.fisher_limit`). Without it the score
    carries no information once the centred features span all ``n - 1`` sample
    directions (``n <= d + 1`` for generic features: a 512-wide layer and 100 samples per
    class of five): the class means then lie in that span and ``H = k - 1``, its
    ceiling, for *any* features, pure noise included. With at most half as many
    dimensions as within-class degrees of freedom the inverse covariance is inflated by
    less than two (an inverse Wishart mean), and ``H`` again grows with the share of
    variance between classes. Layers no wider than ``m`` are scored as the paper does.
    (``hscore-shrinkage`` regularises the covariance instead.)
    Cost ``O(n d^2 + d^3)`` with ``d <= m``, plus the PCA of a wider layer; memory
    ``O(n d + d^2)``. Minimum: one sample per class. Depends on no option (a wide
    layer's PCA, randomised beyond 512 samples and dimensions, always uses seed 0).
    """
    from ..reduce import fisher_limit, within_samples

    features = within_samples(features, labels, fisher_limit(labels))
    n, d = features.shape
    offsets, counts = _class_offsets(features, labels)
    centred = features - features.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / (n - 1))
    kept = eigenvalues > d * np.finfo(np.float64).eps * eigenvalues.max(initial=0.0)
    rotated = offsets @ eigenvectors[:, kept]  # delta_c in the eigenbasis
    quad = np.sum(rotated * rotated / eigenvalues[kept], axis=1)
    return float(np.sum(counts / (n - 1) * quad))


@register("hscore-shrinkage", "H-score with the Ledoit-Wolf shrunk covariance "
          "(Ibrahim et al., ICLR 2022)")
def hscore_shrinkage(features, labels, **_):
    r"""Shrinkage-regularised H-score of ``features`` ``(n, d)``; higher is better.

    Ibrahim, Ponomareva and Mazumder, "Newer is not always better: Rethinking
    transferability metrics, their peculiarities, stability and performance", ICLR 2022::

        H_a = tr( cov_a(f)^-1 (1 - a) cov(E[f | y]) ),
        cov_a(f) = (1 - a) cov(f) + a (tr cov(f) / d) I,

    with ``a`` the Ledoit-Wolf optimal shrinkage (``sklearn.covariance.LedoitWolf``); the
    factor ``1 - a`` shrinks the between-class covariance alike. Both covariances use the
    ``1/n`` normalisation of the Ledoit-Wolf estimate. ``cov_a`` is well conditioned, so it
    is inverted through a Cholesky factorisation (the pseudo-inverse only if ``a = 0`` and
    the features are rank-deficient). Cost ``O(n d^2 + d^3)``, memory ``O(d^2)``. Minimum:
    one sample per class; with fewer samples than dimensions the shrinkage grows and the
    score moves towards ``k - 1``, but it still ranks. Depends on no option.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, pinvh
    from sklearn.covariance import LedoitWolf

    n = len(features)
    fit = LedoitWolf(store_precision=False).fit(features)
    shrinkage = float(fit.shrinkage_)
    offsets, counts = _class_offsets(features, labels)
    try:
        solved = cho_solve(cho_factor(fit.covariance_), offsets.T).T
    except LinAlgError:
        solved = offsets @ pinvh(fit.covariance_)
    quad = np.einsum("cd,cd->c", offsets, solved)
    return float((1.0 - shrinkage) * np.sum(counts / n * quad))
