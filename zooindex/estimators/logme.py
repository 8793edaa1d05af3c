"""LogME: the log marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021. A model whose features let a linear map explain the labels, with
little weight and little noise, has high evidence; no training, no hyper-parameters.
"""

from __future__ import annotations

import numpy as np

from . import register

# The fixed-point iteration for (alpha, beta) usually settles in a handful of steps; a
# tight tolerance costs nothing (each step is O(min(n, d)) per class after the SVD).
_MAX_ITER = 1000
_RTOL = 1e-12
# Range of t = alpha / beta, relative to the largest eigenvalue of F^T F. Outside it the
# evidence no longer changes in float64: below, the fit is a noise-free interpolation
# (when n <= d the labels lie in the features' span and the iteration drives beta to
# infinity); above, the weights are zero and the labels pure noise.
_T_RANGE = (1e-10, 1e10)


def class_evidences(features: np.ndarray, labels: np.ndarray):
    """Per-class LogME evidence and its maximising ``(alpha, beta)``.

    ``features`` ``(n, d)`` float64, ``labels`` ``(n,)`` codes ``0..k-1``. Returns three
    ``(k,)`` arrays: the evidence of each one-hot label column divided by ``n``, and the
    prior precision ``alpha`` and noise precision ``beta`` at which it was evaluated.
    One eigendecomposition of the smaller Gram matrix serves every class
    (:func:`_spectrum`).
    """
    n, d = features.shape
    k = int(labels.max()) + 1
    onehot = (labels[:, None] == np.arange(k)).astype(np.float64)
    sigma, z, outside = _spectrum(features, onehot)
    evidence, alpha, beta = np.empty(k), np.empty(k), np.empty(k)
    for c in range(k):
        evidence[c], alpha[c], beta[c] = _maximise_evidence(sigma, z[:, c], outside[c], n, d)
    return evidence, alpha, beta


def _spectrum(features: np.ndarray, targets: np.ndarray):
    """``sigma`` ``(r,)``, the eigenvalues of ``F^T F`` that can be non-zero; ``z = U^T Y``
    ``(r, k)``, the targets in the matching left singular basis, as an economy SVD of
    ``F`` gives them; and ``outside`` ``(k,)``, the squared norm of each target column
    outside that basis, which no weight vector can explain. From the smaller Gram matrix
    (two to four times faster than an SVD: a BLAS product and a symmetric eigensolver,
    against a bidiagonalisation).

    ``n <= d``: ``F F^T = U diag(sigma) U^T`` gives ``U`` itself, a complete basis of the
    sample space, so nothing is outside it (exactly zero, not ``|y|^2 - |z|^2`` rounded:
    with interpolated labels that rounding would be the whole residual). ``n > d``: ``F^T F = V
    diag(sigma) V^T``, and ``z_i = v_i^T F^T y / sqrt(sigma_i)``. Eigenvalues of a Gram
    matrix are exact to about ``eps * sigma_max``; those below ``max(n, d) * eps *
    sigma_max`` are zero here, and their directions fall into the part of ``y`` that no
    weight vector explains. (With an SVD such directions have ``sigma`` of 1e-30 or so;
    they enter the evidence only through terms ``sigma / (t + sigma)``, negligible for
    any ``t`` the iteration reaches with more samples than features.)
    """
    n, d = features.shape
    if n <= d:
        sigma, u = np.linalg.eigh(features @ features.T)
        return np.maximum(sigma, 0.0), u.T @ targets, np.zeros(targets.shape[1])
    sigma, v = np.linalg.eigh(features.T @ features)
    keep = sigma > max(n, d) * np.finfo(np.float64).eps * max(float(sigma[-1]), 0.0)
    sigma, v = sigma[keep], v[:, keep]
    z = (v.T @ (features.T @ targets)) / np.sqrt(sigma)[:, None]
    outside = np.maximum((targets * targets).sum(axis=0) - (z * z).sum(axis=0), 0.0)
    return sigma, z, outside


def _maximise_evidence(sigma, z, outside, n, d):
    """MacKay's fixed point for one target column, then the evidence divided by n.

    In the right singular basis the posterior mean is ``m_i = s_i z_i / (t + sigma_i)``
    with ``t = alpha / beta``, so ``|m|^2`` and the residual ``|F m - y|^2`` are sums over
    the ``r`` singular values; the ``d - r`` zero eigenvalues of ``F^T F`` add
    ``(d - r) log alpha`` to ``log |A|``. If the iteration leaves the range of ``t`` where
    the evidence still changes (a maximum at the boundary), ``t`` is clamped to that range
    and ``beta`` set to its optimum for that ``t``, ``n / (|y|^2 - sum_i z_i^2 sigma_i /
    (t + sigma_i))``.
    """
    z2 = z * z
    # all-zero features leave alpha undetermined (its terms cancel): any scale will do
    top = float(sigma.max(initial=0.0)) or 1.0
    t_low, t_high = _T_RANGE[0] * top, _T_RANGE[1] * top
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_ITER):
        t = alpha / beta
        gamma = float(np.sum(sigma / (t + sigma)))  # effective number of parameters
        m2 = float(np.sum(sigma * z2 / (t + sigma) ** 2))
        res2 = float(np.sum(z2 * (t / (t + sigma)) ** 2)) + outside
        if m2 <= 0 or gamma <= 0:  # no signal along the features: weights -> 0
            new_t = np.inf
        elif res2 <= 0 or n - gamma <= 0:  # labels fitted exactly: noise -> 0
            new_t = 0.0
        else:
            alpha, beta = gamma / m2, (n - gamma) / res2
            new_t = alpha / beta
        if not t_low <= new_t <= t_high:
            t = min(max(new_t, t_low), t_high)
            beta = n / (float(np.sum(z2 * t / (t + sigma))) + outside)
            alpha = t * beta
            break
        if abs(new_t - t) <= _RTOL * t:
            break
    t = alpha / beta
    m2 = float(np.sum(sigma * z2 / (t + sigma) ** 2))
    res2 = float(np.sum(z2 * (t / (t + sigma)) ** 2)) + outside
    r = len(sigma)
    logdet_a = float(np.sum(np.log(alpha + beta * sigma))) + (d - r) * np.log(alpha)
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * res2 - alpha / 2 * m2 - logdet_a / 2)
    return evidence / n, alpha, beta


@register("logme", "LogME: linear-model evidence of the one-hot labels (You et al., ICML 2021)")
def logme(features, labels, **_):
    r"""LogME of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better.

    You et al., ICML 2021. For each class ``c`` the one-hot column ``y`` is modelled as
    ``y = F w + noise`` with prior ``w ~ N(0, alpha^-1 I)`` and noise ``N(0, beta^-1)``;
    the log evidence

        L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2 pi
                         - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log |A|,
        A = alpha I + beta F^T F,   m = beta A^-1 F^T y,

    is maximised by the fixed-point iteration ``gamma = sum beta sigma_i / (alpha + beta
    sigma_i)``, ``alpha = gamma / |m|^2``, ``beta = (n - gamma) / |F m - y|^2`` (from
    ``alpha = beta = 1``). The score is the mean over classes of ``L / n``. Features are
    used as given (not centred), as in the paper. When the maximum lies at a boundary
    (typically ``n <= d``: the labels are interpolated exactly and ``beta`` grows without
    bound), ``alpha / beta`` is clamped where the evidence has reached its limit in
    float64 (``1e-10`` times the largest eigenvalue of ``F^T F``). Cost: the smaller Gram
    matrix and its eigendecomposition, ``O(n d min(n, d) + min(n, d)^3)``, then
    ``O(k min(n, d))`` per iteration; memory ``O(min(n, d)^2)``.
    Minimum: one sample per class (the evidence is defined for any ``n``; with ``n <= d``
    it is the noise-free limit above). Depends on no option.
    """
    evidence, _, _ = class_evidences(features, labels)
    return float(np.mean(evidence))


def resampled(points: np.ndarray, labels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """LogME's reduced form on half-samples, for :mod:`zooindex.confidence`: ``(B,)``.

    ``points`` ``(n, D)`` are the layer's PCA projection, ``labels`` ``(n,)`` codes,
    ``masks`` ``(B, n)`` the halves. Each class's ``alpha, beta`` are maximised once, on
    all of ``points``; on each half the evidence is evaluated at them (no fixed-point
    iteration), from the half's ``D x D`` Gram matrix: ``O(n D^2)`` for all halves
    together plus ``O(D^3)`` per half. An approximation of LogME's spread over halves
    (the full score uses the whole layer and re-maximises), not of its value.
    """
    n, d = points.shape
    k = int(labels.max()) + 1
    _, alpha, beta = class_evidences(points, labels)
    onehot = (labels[:, None] == np.arange(k)).astype(np.float64)
    weights = masks.astype(np.float64)
    # every half's F^T F and F^T Y in two products over per-sample outer products
    grams = (weights @ (points[:, :, None] * points[:, None, :]).reshape(n, -1)
             ).reshape(len(masks), d, d)
    crosses = (weights @ (points[:, :, None] * onehot[:, None, :]).reshape(n, -1)
               ).reshape(len(masks), d, k)
    counts = weights @ onehot
    out = np.empty(len(masks))
    for b in range(len(masks)):
        m = float(counts[b].sum())
        sigma, v = np.linalg.eigh(grams[b])
        keep = sigma > max(m, d) * np.finfo(np.float64).eps * max(float(sigma[-1]), 0.0)
        sigma, v = sigma[keep], v[:, keep]
        z = (v.T @ crosses[b]) / np.sqrt(sigma)[:, None]
        z2 = z * z
        outside = np.maximum(counts[b] - z2.sum(axis=0), 0.0)
        t = (alpha / beta)[None, :]
        s = sigma[:, None]
        m2 = np.sum(s * z2 / (t + s) ** 2, axis=0)
        res2 = np.sum(z2 * (t / (t + s)) ** 2, axis=0) + outside
        logdet = np.sum(np.log(alpha[None, :] + beta[None, :] * s), axis=0) \
            + (d - len(sigma)) * np.log(alpha)
        evidence = (m / 2 * np.log(beta) + d / 2 * np.log(alpha) - m / 2 * np.log(2 * np.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)
        out[b] = float(np.mean(evidence / m))
    return out
