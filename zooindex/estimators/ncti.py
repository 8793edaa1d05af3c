"""NCTI: how far a model's features on the target are from neural collapse.

Wang, Luo, Zheng, Huang and Baktashmotlagh, "How Far Pre-trained Models Are from Neural
Collapse on the Target Dataset Informs their Transferability", ICCV 2023. Fine-tuning a
classifier to its terminal phase collapses each class onto its mean (Papyan, Han and
Donoho, PNAS 2020), arranges the class means and classifier in the simplex-encoded label
interpolation (SELI) geometry (Thrampoulidis et al., NeurIPS 2022), and makes the
nearest class centre the best classifier. NCTI scores a pre-trained model by how close
its target features already are to that end state, with one term per property:

* ``ncti-vc``: within-class variability collapse, ``-log NC1``;
* ``ncti-sei``: the nuclear norm of the class-posterior matrix (the SELI term);
* ``ncti-ncc``: the nearest-class-centre classifier's log-likelihood of the labels.

The terms live on unrelated scales, and the paper normalises each over the candidate
models before adding them; that step needs every model's terms, so NCTI is registered
as a combiner, ``ncti``, over the three per-model terms (each cached on its own).

Written from the paper's description, not checked against the authors' code. Taken from
the paper: the three properties, one term each, normalised across models and summed
with equal weights. Reconstructed here, each an assumption: features reduced by PCA to
the shared ``dim`` option; ``-log`` of NC1; the class posteriors of the SELI and NCC
terms taken from an isotropic Gaussian around each class mean; the SELI nuclear norm
divided by that of the one-hot label matrix; min-max normalisation. Experimental until
benchmarks/ESTIMATORS.md has measured it.
"""

from __future__ import annotations

import numpy as np

from ..errors import EstimatorError
from . import register
from .combine import minmax_sum, register_combiner

#: the per-model terms that the ``ncti`` combiner normalises and adds
TERMS = ("ncti-vc", "ncti-sei", "ncti-ncc")


def collapse_statistics(points: np.ndarray, labels: np.ndarray):
    """Class means ``(k, m)``, counts ``(k,)``, within-class covariance ``Sigma_W`` and
    between-class covariance ``Sigma_B`` (both ``(m, m)``) of ``points`` ``(n, m)``.

    ``Sigma_W = 1/n sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` and
    ``Sigma_B = 1/k sum_c (mu_c - mu_G)(mu_c - mu_G)^T`` with ``mu_G`` the mean of all
    samples, as in Papyan et al.
    """
    n = len(points)
    counts = np.bincount(labels).astype(np.float64)
    means = np.zeros((len(counts), points.shape[1]))
    np.add.at(means, labels, points)
    means /= counts[:, None]
    within = points - means[labels]
    between = means - points.mean(axis=0)
    return means, counts, within.T @ within / n, between.T @ between / len(counts)


def ncc_log_posteriors(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p(c | h_i)`` ``(n, k)`` of the nearest-class-centre classifier.

    Each class is an isotropic Gaussian around its mean with the pooled within-class
    variance per coordinate, ``s^2 = tr(Sigma_W) / m``, and classes are equally likely::

        log p(c | h) = -|h - mu_c|^2 / (2 s^2) - log sum_c' exp(-|h - mu_c'|^2 / (2 s^2)).

    Its most probable class is the nearest class mean, and dividing by ``s^2`` makes it
    independent of the scale of the features. ``s^2`` is floored at 1e-12 of the mean
    squared coordinate, so a fully collapsed target stays finite.
    """
    from scipy.spatial.distance import cdist
    from scipy.special import logsumexp

    means, _, within, _ = collapse_statistics(points, labels)
    spread = np.trace(within) / points.shape[1]
    floor = 1e-12 * max(float(np.mean(points * points)), np.finfo(np.float64).tiny)
    logits = -cdist(points, means, "sqeuclidean") / (2.0 * max(spread, floor))
    return logits - logsumexp(logits, axis=1, keepdims=True)


def _reduce(features, dim, seed):
    from ..reduce import pca

    return pca(features, dim, seed=seed)[0]


@register("ncti-vc", "NCTI's collapse term (Wang et al., ICCV 2023): -log NC1, the "
          "within-class variance relative to the between-class one, on PCA-reduced features",
          params=("dim", "seed"), float32_ok=True, min_per_class=2)
def ncti_vc(features, labels, *, dim=10, seed=0, **_):
    r"""Within-class variability collapse of ``features`` ``(n, d)``; higher is better.

    NCTI's first term (Wang et al., ICCV 2023), the NC1 statistic of Papyan et al. on the
    features reduced by PCA to ``dim`` components::

        NC1 = 1/k tr(Sigma_W Sigma_B^+),        ncti-vc = -log NC1,

    (:func:`collapse_statistics`; ``^+`` the pseudo-inverse, ``scipy.linalg.pinvh``).
    NC1 is 0 when every class has collapsed onto its mean and grows as the classes
    spread relative to the distances between their means; it does not depend on the
    scale of the features. NC1 is floored at machine epsilon (collapse beyond rounding
    counts as complete). Class means that coincide leave ``Sigma_B = 0``: refused.
    Reconstructed detail: the logarithm (the paper's exact transform was not checked).
    Cost: the PCA plus ``O(n dim^2 + dim^3)``. Minimum: two samples per class. Depends on
    ``dim`` and ``seed`` (through the PCA).
    """
    from scipy.linalg import pinvh

    points = _reduce(features, dim, seed)
    _, _, within, between = collapse_statistics(points, labels)
    k = int(labels.max()) + 1
    if np.trace(between) <= np.finfo(np.float64).eps * max(np.trace(within), 0.0):
        raise EstimatorError("ncti-vc: the class means coincide in these features, so the "
                             "between-class covariance is zero and NC1 is undefined",
                             estimator="ncti-vc")
    nc1 = float(np.trace(within @ pinvh(between))) / k
    return -np.log(max(nc1, np.finfo(np.float64).eps))


@register("ncti-sei", "NCTI's SELI term (Wang et al., ICCV 2023): nuclear norm of the "
          "nearest-class-centre posteriors over that of the one-hot labels",
          params=("dim", "seed"), float32_ok=True, min_per_class=2)
def ncti_sei(features, labels, *, dim=10, seed=0, **_):
    r"""Simplex-encoded-label-interpolation term of ``features`` ``(n, d)``; higher is better.

    NCTI's second term (Wang et al., ICCV 2023). At the SELI end state a model's class
    predictions reproduce the label matrix; the nuclear norm of the ``(n, k)`` matrix of
    predicted class probabilities rewards predictions that are both confident and spread
    over all classes (as in batch nuclear-norm maximisation, Cui et al., CVPR 2020)::

        ncti-sei = || P ||_* / || Y ||_*,       P_ic = p(c | h_i),   || Y ||_* = sum_c sqrt(n_c),

    with ``p`` the nearest-class-centre posteriors of :func:`ncc_log_posteriors` on the
    features reduced by PCA to ``dim``, and ``Y`` the one-hot labels (whose nuclear norm
    is the sum of the square roots of the class sizes), so that predictions equal to the
    labels score 1 and uniform ones ``sqrt(n) / || Y ||_*`` (``1/sqrt(k)`` of the
    balanced maximum). Reconstructed details: the posterior used for ``P`` and the
    normalisation. Cost: the PCA plus ``O(n k dim + n k^2)``. Minimum: two samples per
    class. Depends on ``dim`` and ``seed``.
    """
    points = _reduce(features, dim, seed)
    from ..confidence import offer

    probabilities = np.exp(ncc_log_posteriors(points, labels))
    singular = np.linalg.svd(probabilities, compute_uv=False)
    offer(lambda masks: _sei_on_halves(probabilities, labels, masks))
    return float(np.sum(singular) / np.sum(np.sqrt(np.bincount(labels))))


def _sei_on_halves(probabilities, labels, masks):
    """The SELI term over each half's rows of ``probabilities`` (class centres fitted on
    all samples held fixed): ``||P_b||_*`` from the eigenvalues of the ``k x k`` matrix
    ``P_b^T P_b``, ``O(n k^2)`` per half."""
    k = probabilities.shape[1]
    if k <= 16:  # all halves in one product over the n x k^2 outer products
        outer = (probabilities[:, :, None] * probabilities[:, None, :]).reshape(len(labels),
                                                                              -1)
        grams = (masks.astype(np.float64) @ outer).reshape(len(masks), k, k)
    else:  # many classes: one k x k product per half keeps memory O(n k)
        grams = np.stack([probabilities[m].T @ probabilities[m] for m in masks])
    nuclear = np.sqrt(np.maximum(np.linalg.eigvalsh(grams), 0.0)).sum(axis=1)
    counts = np.stack([np.bincount(labels[m], minlength=k) for m in masks])
    return nuclear / np.sqrt(counts).sum(axis=1)


@register("ncti-ncc", "NCTI's classifier term (Wang et al., ICCV 2023): log-likelihood of "
          "the labels under the nearest-class-centre classifier, PCA-reduced features",
          params=("dim", "seed"), float32_ok=True, min_per_class=2)
def ncti_ncc(features, labels, *, dim=10, seed=0, **_):
    r"""Nearest-class-centre log-likelihood of ``labels``; higher is better (at most 0).

    NCTI's third term (Wang et al., ICCV 2023): at the end of training the nearest class
    mean classifies the training data as well as the trained classifier does. On the
    features reduced by PCA to ``dim``::

        ncti-ncc = 1/n sum_i log p(y_i | h_i),

    with the isotropic-Gaussian class posteriors of :func:`ncc_log_posteriors`
    (``-|h - mu_c|^2 / (2 s^2)``, softmax over classes). Reconstructed detail: a
    log-likelihood rather than an accuracy, with the pooled within-class variance as
    the temperature. Cost: the PCA plus ``O(n k dim)``. Minimum: two samples per class.
    Depends on ``dim`` and ``seed``.
    """
    points = _reduce(features, dim, seed)
    log_posteriors = ncc_log_posteriors(points, labels)
    return float(np.mean(log_posteriors[np.arange(len(labels)), labels]))


@register_combiner("ncti", "NCTI (Wang et al., ICCV 2023): its three neural-collapse terms, "
                   "each min-max normalised over the searched models, added",
                   members=TERMS, choosable=False)
def ncti(table, members=TERMS):
    r"""NCTI of every model in ``table`` (``{key: {term: score}}``); higher is better.

    ``NCTI = sum_{t in TERMS} (t(model) - min_t) / (max_t - min_t)``, min and max over
    the searched models (:func:`zooindex.estimators.combine.minmax_sum`), in [0, 3]. A
    term equal for every model adds 0; a model lacking a term (its estimator refused its
    features) is left out. The cost is that of the three terms (one PCA each, which the
    search may share) plus ``O(m)``.
    """
    return minmax_sum(table, members)
