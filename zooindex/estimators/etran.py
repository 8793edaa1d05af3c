"""ETran: energy-based transferability, an out-of-distribution term plus an LDA term.

Gholami, Akbari, Wang, Kamranian and Zhang, "ETran: Energy-Based Transferability
Estimation", ICCV 2023. A target that looks in-distribution to a model (low energy of its
features) should transfer well; so should one whose classes a linear discriminant
separates confidently. The energy term needs no labels and is registered on its own as
a label-free score.

Written from the paper's description, not checked against the authors' code: the
energy over all samples with temperature 1, the LDA term as the first stage of SFDA (the
same regularised LDA), and the SVD term the paper adds for regression and detection
left out. Registered as experimental until benchmarks/ESTIMATORS.md has measured it.
"""

from __future__ import annotations

import numpy as np

from . import register
from .sfda import _fisher_posteriors


def energy_score(features: np.ndarray) -> float:
    """Mean negative energy ``1/n sum_i log sum_j exp(f_ij)`` of ``features`` ``(n, d)``."""
    from scipy.special import logsumexp

    return float(np.mean(logsumexp(features, axis=1)))


@register("energy", "ETran's energy term (Gholami et al., ICCV 2023): mean log-sum-exp of "
          "the features, no labels needed", needs_labels=False, experimental=True)
def energy(features, labels=None, **_):
    r"""Negative free energy of the features, averaged over samples; higher is better.

    Gholami et al., ICCV 2023, after Liu et al.'s energy score for out-of-distribution
    detection (NeurIPS 2020), with the model's features ``f(x)`` ``(n, d)`` standing in
    for logits and temperature 1::

        E(x) = -log sum_{j=1}^{d} exp(f_j(x)),        S_en = -1/n sum_i E(x_i).

    Lower energy (higher ``S_en``) means the target looks in-distribution to the model,
    which the paper links to better transfer. ``labels`` are not used. The value grows
    with the scale of the activations and, by ``log d``, with the width of the layer:
    compare models whose features are on similar scales. Cost ``O(n d)``, memory
    ``O(n d)``. Minimum: two samples. Depends on no option.
    """
    return energy_score(features)


@register("etran", "ETran (Gholami et al., ICCV 2023): energy of the features plus the "
          "mean LDA posterior of the true class", min_per_class=2, experimental=True)
def etran(features, labels, **_):
    r"""ETran of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better.

    Gholami et al., ICCV 2023, classification form::

        ETran = S_en + S_lda,
        S_en  = 1/n sum_i log sum_j exp(f_ij)                      (see ``energy``),
        S_lda = 1/n sum_i p(y_i | x_i),

    where ``p(c | x) = softmax_c(x^T W mu_c - 1/2 mu_c^T W mu_c + log pi_c)`` is the
    posterior of a linear discriminant with the regularised within-class scatter
    ``W^-1 = (1 - lambda) S_w + lambda (tr S_w / d) I``, ``lambda = max(exp(-5
    sigma_max(S_w)), 1e-10)``: the first stage of :func:`zooindex.estimators.sfda.sfda`,
    without its self-challenging second stage. ``S_lda`` lies in (0, 1]; ``S_en`` is on
    the scale of the activations and usually dominates the sum, as in the paper, where
    the terms are added without weights. As in SFDA, features wider than ``(n - k) // 2``
    are projected on that many leading principal components before the LDA, which
    otherwise separates any labelling of fewer samples than dimensions (``S_lda = 1``
    for every wide model); the energy term reads the features as they are.

    Not verified against the reference code: whether the energy is averaged over all
    samples (done here) or a selected share of them, and the exact LDA regulariser (here
    SFDA's, which the ETran paper builds on). The paper's SVD term is left out.
    Cost ``O(n d^2 + d^3)`` with ``d <= (n - k) // 2`` (scatter matrix, one symmetric
    eigenvalue problem, one Cholesky factorisation), plus the PCA of a wider layer;
    memory ``O(n d + d^2)``. Minimum: two samples per class.
    Depends on no option.
    """
    from ..reduce import fisher_limit, within_samples

    reduced = within_samples(features, labels, fisher_limit(labels))
    posteriors, _, _ = _fisher_posteriors(reduced, labels)
    s_lda = float(np.mean(posteriors[np.arange(len(labels)), labels]))
    return energy_score(features) + s_lda
