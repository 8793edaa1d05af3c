"""GBC: Gaussian Bhattacharyya coefficient between the target classes.

Pandy, Agostinelli, Uijlings, Ferrari and Mensink, "Transferability Estimation using
Bhattacharyya Class Separability", CVPR 2022. Each class is summarised by a Gaussian in
the reduced feature space; the less the class Gaussians overlap, the easier the target
task is on these features.
"""

from __future__ import annotations

import numpy as np

from . import register

# Variance floor, relative to the average variance of the projection: keeps log det
# finite for a class whose samples coincide in some direction (e.g. a single sample).
_VARIANCE_FLOOR = 1e-12


def class_gaussians(points: np.ndarray, labels: np.ndarray):
    """Per-class means and diagonal variances (``1/n_c``, floored) of ``points`` (n, m)."""
    counts = np.bincount(labels).astype(np.float64)
    k, m = len(counts), points.shape[1]
    means = np.zeros((k, m))
    np.add.at(means, labels, points)
    means /= counts[:, None]
    variances = np.zeros((k, m))
    np.add.at(variances, labels, (points - means[labels]) ** 2)
    variances /= counts[:, None]
    floor = _VARIANCE_FLOOR * max(float(np.mean(points.var(axis=0))), np.finfo(float).tiny)
    return means, variances + floor


@register("gbc", "GBC: minus the Bhattacharyya overlap of per-class Gaussians on the "
          "PCA-reduced features (Pandy et al., CVPR 2022)",
          params=("dim", "seed"), float32_ok=True, min_per_class=2)
def gbc(features, labels, *, dim=10, seed=0, **_):
    r"""GBC of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better (<= 0).

    Pandy et al., CVPR 2022, diagonal-covariance variant. The features are reduced by PCA
    to ``dim`` components; class ``c`` becomes ``N(mu_c, diag(s_c))`` with its sample mean
    and per-dimension variance. For classes ``i != j``, with ``S = (S_i + S_j) / 2``::

        D_B = 1/8 (mu_i - mu_j)^T S^-1 (mu_i - mu_j) + 1/2 ln( det S / sqrt(det S_i det S_j) )
        BC  = exp(-D_B),        GBC = - sum_i sum_{j != i} BC(c_i, c_j).

    0 for perfectly separated classes; each overlapping ordered pair costs up to 1.
    Cost: the PCA plus ``O(k^2 dim)``; memory ``O(k dim)``. Minimum: two samples per
    class (a single sample has no variance, and its class would overlap no other).
    Depends on ``dim`` and ``seed`` (through the PCA).
    """
    from ..reduce import pca

    reduced, _ = pca(features, dim, seed=seed)
    means, variances = class_gaussians(reduced, labels)
    log_var = np.log(variances)
    total = 0.0
    for i in range(len(means) - 1):  # unordered pairs i < j, counted twice below
        pooled = (variances[i] + variances[i + 1:]) / 2
        distance = (np.sum((means[i] - means[i + 1:]) ** 2 / pooled, axis=1) / 8
                    + 0.5 * np.sum(np.log(pooled) - (log_var[i] + log_var[i + 1:]) / 2, axis=1))
        total += float(np.sum(np.exp(-distance)))
    return -2.0 * total
