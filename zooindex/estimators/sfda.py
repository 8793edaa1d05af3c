"""SFDA: self-challenging Fisher discriminant analysis.

Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a
Self-challenging Fisher Space", ECCV 2022. Features are projected into a regularised
Fisher space where classes separate; the score is how confidently a Gaussian classifier
there recognises each sample's class, measured after the hard samples have been pushed
towards the other classes, so that models whose classes only just separate are penalised.
"""

from __future__ import annotations

import numpy as np

from . import register

#: the ``a`` of the adaptive shrinkage ``lambda = exp(-a sigma_max(S_w))``
SHRINKAGE_RATE = 5.0
#: lower bound on that shrinkage
SHRINKAGE_FLOOR = 1e-10
# rows per step where a product of the features would otherwise be a whole extra copy
_CHUNK = 4096


def _fisher_posteriors(features, labels, shrinkage=None):
    """Class posteriors ``(n, k)`` in the regularised Fisher space, the shrinkage used,
    and the class means ``(k, d)``.

    The Fisher projection ``U`` (generalised eigenvectors of ``(S_b, S_w^lambda)``, all of
    them, normalised by ``U^T S_w^lambda U = I``) gives ``U U^T = (S_w^lambda)^-1``, so the
    class scores in the projected space, ``x~^T mu~_c - 1/2 mu~_c^T mu~_c + log pi_c``,
    equal the shrunk-LDA discriminant computed here with one Cholesky solve.
    """
    from scipy.linalg import LinAlgError, cho_solve, pinvh
    from scipy.special import softmax

    n, d = features.shape
    counts = np.bincount(labels).astype(np.float64)
    means = np.zeros((len(counts), d))
    np.add.at(means, labels, features)
    means /= counts[:, None]
    within = means[labels]  # one (n, d) buffer: x_i - mu_{y_i}, made in place
    np.subtract(features, within, out=within)
    scatter = within.T @ within / n  # S_w = sum_c pi_c cov_c (1/n_c normalisation)
    del within
    if shrinkage is None:
        largest = _largest_eigenvalue(scatter)
        shrinkage = max(float(np.exp(-SHRINKAGE_RATE * largest)), SHRINKAGE_FLOOR)
    shrunk = (1.0 - shrinkage) * scatter
    shrunk.flat[:: d + 1] += shrinkage * np.trace(scatter) / d
    try:
        # numpy's factorisation releases the GIL (scipy's cho_factor holds it)
        factor = np.linalg.cholesky(shrunk)
        weights = cho_solve((factor, True), means.T)  # (S_w^lambda)^-1 mu_c, (d, k)
    except LinAlgError:
        weights = pinvh(shrunk) @ means.T
    logits = (features @ weights - 0.5 * np.einsum("kd,dk->k", means, weights)
              + np.log(counts / n))
    return softmax(logits, axis=1), shrinkage, means


def _largest_eigenvalue(matrix: np.ndarray) -> float:
    """The largest eigenvalue of a symmetric matrix: by Lanczos (ARPACK, to machine
    precision) for wide layers, where a full eigendecomposition cost 0.1-1 s of a
    1,024- to 2,048-wide scatter matrix for one number; densely for narrow ones."""
    from ..reduce import _LANCZOS_MIN_FEATURES

    d = len(matrix)
    if d >= _LANCZOS_MIN_FEATURES:
        from scipy.sparse.linalg import ArpackError, eigsh

        start = np.random.default_rng(0).standard_normal(d)
        try:
            return float(eigsh(matrix, k=1, which="LA", v0=start,
                               return_eigenvectors=False)[0])
        except ArpackError:  # no convergence: the dense solver always answers
            pass
    return float(np.linalg.eigvalsh(matrix)[-1])


@register("sfda", "SFDA: class posteriors in a self-challenging Fisher space "
          "(Shao et al., ECCV 2022)", min_per_class=2)
def sfda(features, labels, **_):
    r"""SFDA of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better (in (0, 1]).

    Shao et al., ECCV 2022, following the authors' reference implementation after a
    reduction of wide layers (step 0):

    0. Features wider than ``m = (n - k) // 2`` (half the within-class degrees of
       freedom, :func:`zooindex.reduce.fisher_limit`) are first projected on their
       ``m`` leading principal components. The reference code keeps every dimension; with
       a 512- to 2,048-wide layer and a few hundred samples the within-class scatter is
       then estimated from fewer samples than it has entries, its adaptive shrinkage is
       negligible (``lambda = exp(-5 sigma_max)`` vanishes for activations of unit scale
       or more), and the Fisher discriminant separates the fitted samples whatever the
       labels: SFDA was exactly 1 for every such model, pure noise included. Keeping
       fewer dimensions than half the within-class degrees of freedom bounds the
       inflation of the inverse scatter (see ``fisher_limit``) so that the score again
       measures class signal. Layers no wider than ``m`` (the usual case with hundreds
       of samples per class) are scored exactly as the reference does.

    1. Regularised FDA. ``S_w = sum_c pi_c cov_c`` is shrunk to
       ``S_w^lambda = (1 - lambda) S_w + lambda (tr S_w / d) I`` with the adaptive
       ``lambda = max(exp(-5 sigma_max(S_w)), 1e-10)`` (``sigma_max`` the largest
       eigenvalue, computed to machine precision here, by Lanczos for wide layers; the
       reference code approximates it by three power-iteration steps). Samples are projected on the Fisher directions and scored
       against the projected class means, ``h_c(x) = x~^T mu~_c - 1/2 |mu~_c|^2 +
       log pi_c``; ``p(c | x) = softmax_c h_c(x)``. With every Fisher direction kept, as
       the reference code does, this is the shrunk-LDA discriminant
       ``x^T W mu_c - 1/2 mu_c^T W mu_c + log pi_c`` with ``W = (S_w^lambda)^-1``, which is
       how it is computed.
    2. Self-challenge (ConfMix). The first-pass posteriors are softened by a second
       softmax, ``w_i = softmax(p(. | x_i))_{y_i}``, and each sample is mixed towards the
       average of the other classes' means, ``x_i <- w_i x_i + (1 - w_i) mean_{c != y_i}
       mu_c``: the less confidently a sample is recognised, the harder it is made.
    3. The FDA of step 1 is refitted on the mixed samples with the same ``lambda``, and

           SFDA = 1/n sum_i p(y_i | x_i)   (no logarithm, as in the paper).

    Cost ``O(n d^2 + d^3)`` with ``d <= m`` after step 0 (two scatter matrices, one
    symmetric eigenvalue problem, two Cholesky factorisations), plus the PCA of a wider
    layer; memory ``O(n d + d^2)``. Minimum: two samples per class (a class of one has no
    within-class scatter). Depends on no option (a wide layer's PCA, randomised beyond
    512 samples and dimensions, always uses seed 0).
    """
    from scipy.special import softmax

    from ..reduce import fisher_limit, within_samples

    features = within_samples(features, labels, fisher_limit(labels))
    first, shrinkage, means = _fisher_posteriors(features, labels)
    confidence = softmax(first, axis=1)[np.arange(len(labels)), labels][:, None]
    others = (means.sum(axis=0) - means) / (len(means) - 1)  # mean of the other classes' means
    # w x + (1 - w) o in one (n, d) buffer beside the features: a wide layer's float64
    # copies, not its products, set the peak memory of a search
    mixed = others[labels]
    mixed *= 1.0 - confidence
    for start in range(0, len(mixed), _CHUNK):
        rows = slice(start, start + _CHUNK)
        mixed[rows] += confidence[rows] * features[rows]
    from ..confidence import mean_over, offer

    second, _, _ = _fisher_posteriors(mixed, labels, shrinkage)
    truth = second[np.arange(len(labels)), labels]
    # a mean of per-sample posteriors, the Fisher space fitted on all samples held fixed
    offer(lambda masks: mean_over(masks, truth))
    return float(np.mean(truth))
