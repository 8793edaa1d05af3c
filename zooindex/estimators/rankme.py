"""RankMe: the effective rank of the features, a label-free measure of their richness.

Garrido, Balestriero, Najman and LeCun, "RankMe: Assessing the Downstream Performance of
Pretrained Self-Supervised Representations by Their Rank", ICML 2023, after Roy and
Vetterli's effective rank (2007). Features that spread over many directions keep more
of the input's information for a downstream task than features squeezed into a few;
no labels are needed.
"""

from __future__ import annotations

import numpy as np

from . import register

#: the paper's epsilon added to each normalised singular value
EPSILON = 1e-7


def effective_rank(features: np.ndarray, eps: float = EPSILON) -> float:
    """``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum_j sigma_j + eps``, of ``(n, d)``."""
    singular = np.linalg.svd(features, compute_uv=False)
    total = float(singular.sum())
    shares = (singular / total if total > 0 else np.zeros_like(singular)) + eps
    return float(np.exp(-np.sum(shares * np.log(shares))))


@register("rankme", "RankMe (Garrido et al., ICML 2023): effective rank of the features, "
          "no labels needed", needs_labels=False, experimental=True)
def rankme(features, labels=None, **_):
    r"""Effective rank of ``features`` ``(n, d)``; higher is better, in [1, min(n, d)].

    Garrido et al., ICML 2023 (Roy and Vetterli's effective rank), with ``sigma_k`` the
    ``min(n, d)`` singular values of the feature matrix as it is (not centred, as in the
    paper)::

        p_k = sigma_k / sum_j sigma_j + eps,     RankMe = exp(-sum_k p_k log p_k),

    ``eps = 1e-7``. ``r`` equal singular values give ``r`` (up to ``eps``), a rank-one
    matrix 1. It does not depend on the scale of the features nor on the order of the
    samples; ``labels`` are not used. The paper links a higher rank to better downstream
    accuracy of self-supervised features; it measures how many directions the features
    use, not whether they separate the target's classes, and wider layers can reach a
    higher rank. All-zero features score 1. Cost ``O(n d min(n, d))`` (singular values
    only), memory ``O(n d)``. Minimum: two samples. Depends on no option.
    """
    return effective_rank(features)
