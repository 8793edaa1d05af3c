"""Scores for regression targets (a real number per sample), as transformer-ranker has them.

Two estimators have a regression form; the others score class labels and are refused on
a regression target. :data:`REGRESSION` maps the estimator's name to its regression
form, so that ``--scorer logme`` and ``--scorer knn`` mean the same idea on either kind
of target.
"""

from __future__ import annotations

import numpy as np

from ..errors import EstimatorError
from .knn import NEIGHBOURS


def _checked(features, values, name: str) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if features.ndim != 2 or len(features) != len(values):
        raise EstimatorError(f"estimator '{name}' needs features (n, d) and n target values; "
                             f"got {features.shape} and {values.shape}", estimator=name)
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(values))):
        raise EstimatorError(f"estimator '{name}' got NaN or inf", estimator=name)
    if len(values) < 3 or np.ptp(values) == 0:
        raise EstimatorError(f"estimator '{name}' needs at least 3 samples and 2 distinct "
                             "target values", estimator=name)
    return features, values


def logme_regression(features, values, **_) -> float:
    r"""LogME of ``features`` ``(n, d)`` for real ``values`` ``(n,)``; higher is better.

    You et al., ICML 2021, regression form: the one target column ``y`` is modelled as
    ``y = F w + noise``, ``w ~ N(0, alpha^-1 I)``, noise ``N(0, beta^-1)``, and the score
    is the maximised log evidence divided by ``n`` (the same fixed point as the class
    form, :func:`zooindex.estimators.logme.logme`, with one column instead of one per
    class). Values are used as given, as in the paper.
    """
    from .logme import _maximise_evidence, _spectrum

    features, values = _checked(features, values, "logme")
    n, d = features.shape
    sigma, z, outside = _spectrum(features, values[:, None])
    evidence, _, _ = _maximise_evidence(sigma, z[:, 0], outside[0], n, d)
    return float(evidence)


def knn_regression(features, values, *, dim: int = 10, seed: int = 0, **_) -> float:
    r"""Pearson correlation between each sample's value and the mean value of its 5
    nearest other samples; higher is better (-1..1).

    The features are reduced by PCA to ``dim`` components (as the class form,
    :func:`zooindex.estimators.knn.knn`); neighbours are by Euclidean distance, ties by
    lower index. ``r = corr(y, yhat)``, ``yhat_i = 1/5 sum_{j in N_5(i)} y_j``. Cost
    ``O(n^2 dim)`` in chunks of rows, memory bounded. A constant prediction has no
    correlation: 0.
    """
    from ..reduce import pca

    features, values = _checked(features, values, "knn")
    points = np.asarray(pca(features, dim, seed=seed)[0], dtype=np.float64)
    n = len(points)
    k = min(NEIGHBOURS, n - 1)
    norms = np.einsum("ij,ij->i", points, points)
    predicted = np.empty(n)
    rows_per_chunk = max(1, (1 << 22) // n)
    for start in range(0, n, rows_per_chunk):
        rows = np.arange(start, min(start + rows_per_chunk, n))
        dist = norms[rows, None] + norms[None, :] - 2.0 * (points[rows] @ points.T)
        dist[np.arange(len(rows)), rows] = np.inf
        nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
        predicted[rows] = values[nearest].mean(axis=1)
    if np.ptp(predicted) == 0:
        return 0.0
    return float(np.corrcoef(values, predicted)[0, 1])


#: estimator name -> its regression form
REGRESSION = {"logme": logme_regression, "knn": knn_regression}
