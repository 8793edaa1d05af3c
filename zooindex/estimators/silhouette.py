"""Silhouette coefficient of labelled features, in time linear in the number of samples.

neuralRank (Desai et al.) scores a pre-trained model for a target by how well the
target's classes separate in the model's feature space: the silhouette (Rousseeuw 1987)
of the features after PCA to ``D = 10``, under cosine distance, with the target's labels
as the clusters. The textbook silhouette needs all ``N^2`` pairwise distances; for the
cosine and squared Euclidean distances the sum of distances from a sample to a whole
class has a closed form in the class's centroid and scatter, so every sample's
silhouette costs ``O(K D)`` and the whole score ``O(N K D)``, equal to the pairwise
definition (and to scikit-learn's ``silhouette_score``) up to rounding.
"""

from __future__ import annotations

import numpy as np

from ..errors import EstimatorError
from . import register

METRICS = ("cosine", "sqeuclidean", "euclidean")
# float64 values held at once per chunk: rows x classes, or rows x features
_CHUNK_VALUES = 1 << 20


def silhouette_samples(X, labels, metric: str = "cosine") -> np.ndarray:
    r"""Silhouette ``s(i)`` of every row of ``X`` ``(n, d)`` for ``labels`` ``(n,)``.

    Rousseeuw 1987, as ``sklearn.metrics.silhouette_samples``::

        a(i) = mean distance from i to the other members of its class
        b(i) = min over the other classes k of the mean distance from i to k's members
        s(i) = (b(i) - a(i)) / max(a(i), b(i))     in [-1, 1], higher is better

    with ``s(i) = 0`` for the member of a one-sample class (and where ``a = b = 0``).
    Labels may be any hashable values (integers in any range, strings).

    ``metric``:

    * ``"cosine"``: ``1 - x_i.x_j / (|x_i| |x_j|)``. For unit vectors ``u`` this is
      ``|u_i - u_j|^2 / 2``, so the sum over a class is
      ``(m_k |u_i - c_k|^2 + W_k) / 2`` with ``c_k`` the mean of the class's ``m_k`` unit
      vectors and ``W_k`` their scatter around it; this form has no cancellation even
      for tight classes. A zero vector is at distance 1 from every other sample, zero
      vectors included, and 0 from itself, as in ``sklearn.metrics.pairwise
      .cosine_distances(X)``. (scikit-learn's silhouette agrees while all distances fit
      in one chunk, about 11,000 samples; beyond that its chunks count a zero vector's
      distance to itself as 1.)
    * ``"sqeuclidean"``: ``|x_i - x_j|^2``, summed over class k as
      ``n_k |x_i - c_k|^2 + W_k``.
    * ``"euclidean"``: no closed form; scikit-learn's chunked pairwise computation,
      ``O(N^2 D)`` time.

    Cost ``O(N K D)`` for the closed forms; memory ``O(chunk (K + D) + K D)`` beyond the
    float64 copy of ``X`` (and its unit rows for cosine), never ``N x N``.
    """
    x, codes, sizes = _validate(X, labels, metric)
    if metric == "euclidean":
        from sklearn.metrics import silhouette_samples as pairwise_silhouette

        return pairwise_silhouette(x, codes, metric="euclidean")

    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        member = norms > 0  # zero vectors: at distance 1 from all, added by count below
        points = np.divide(x, norms[:, None], out=np.zeros_like(x), where=member[:, None])
    else:
        member = np.ones(len(x), dtype=bool)
        points = x
    num_classes = len(sizes)
    counts = np.bincount(codes[member], minlength=num_classes).astype(np.float64)
    centroids = _class_sums(points, codes, member, num_classes)
    centroids /= np.maximum(counts, 1.0)[:, None]

    # W_k: scatter of class k's member points around their centroid
    scatter = np.zeros(num_classes)
    chunk = max(1, _CHUNK_VALUES // x.shape[1])
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        offsets = points[rows] - centroids[codes[rows]]
        own = np.einsum("ij,ij->i", offsets, offsets)
        scatter += np.bincount(codes[rows], weights=own * member[rows], minlength=num_classes)

    from scipy.spatial.distance import cdist

    zeros_per_class = sizes - counts
    silhouettes = np.empty(len(x))
    chunk = max(1, _CHUNK_VALUES // num_classes)
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        own = codes[rows]
        line = np.arange(len(own))
        # totals[i, k]: sum of distances from sample i to the members of class k
        totals = counts * cdist(points[rows], centroids, "sqeuclidean") + scatter
        if metric == "cosine":
            totals = totals / 2.0 + zeros_per_class
            zero = ~member[rows]
            totals[zero] = sizes
            totals[line[zero], own[zero]] -= 1.0  # not the zero vector itself
        intra = totals[line, own]
        means = totals / sizes
        means[line, own] = np.inf
        nearest = means.min(axis=1)
        silhouettes[rows] = _ratio(intra, sizes[own] - 1.0, nearest)
    return silhouettes


def silhouette_score(X, labels, metric: str = "cosine") -> float:
    """Mean silhouette over all samples of ``X`` ``(n, d)``; in [-1, 1], higher is better.

    The same value as ``sklearn.metrics.silhouette_score(X, labels, metric=metric)`` in
    ``O(N K D)`` instead of ``O(N^2 D)`` for ``cosine`` and ``sqeuclidean``; see
    :func:`silhouette_samples`.
    """
    return float(np.mean(silhouette_samples(X, labels, metric)))


def classwise_silhouette_score(X, labels, metric: str = "cosine") -> float:
    """Mean over classes of each class's mean silhouette; in [-1, 1], higher is better.

    ``1/K sum_k mean_{i in k} s(i)``: every class weighs the same, so a large class that
    separates well cannot hide small classes that do not. Equal to
    :func:`silhouette_score` when the classes have equal sizes. Same cost.
    """
    samples = silhouette_samples(X, labels, metric)
    _, codes, sizes = _encode(labels, len(samples))
    return float(np.mean(np.bincount(codes, weights=samples) / sizes))


@register("silhouette", "neuralRank (Desai et al.): silhouette of PCA-reduced features, "
          "cosine by default", params=("dim", "metric", "seed"),
          float32_ok=True)
def silhouette(features, labels, *, dim: int = 10, metric: str = "cosine", seed: int = 0,
               **_) -> float:
    """neuralRank's score: silhouette of the features after PCA; higher is better.

    Desai et al.: ``features`` ``(n, d)`` are projected on their first ``dim`` principal
    components (:func:`zooindex.reduce.pca`, fewer when the data allow fewer), then
    scored by :func:`silhouette_score` with ``labels`` ``(n,)`` as the clusters::

        s(i) = (b(i) - a(i)) / max(a(i), b(i)),   score = mean_i s(i)   in [-1, 1]

    ``a(i)``: mean cosine distance to the own class, ``b(i)``: to the nearest other class.
    Cost: the PCA plus ``O(n K dim)``. ``seed`` matters only for the randomized PCA used
    on large, wide features. Minimum: one class with two samples (a sample alone in its
    class scores 0, as in scikit-learn).
    """
    _check_metric(metric)
    from ..reduce import pca

    from ..confidence import mean_over, offer

    reduced, _ = pca(features, dim, seed=seed)
    values = silhouette_samples(reduced, labels, metric)
    offer(lambda masks: mean_over(masks, values))  # a mean of per-sample terms
    return float(np.mean(values))


@register("silhouette-classwise", "silhouette of PCA-reduced features averaged per class "
          "(robust to class imbalance)", params=("dim", "metric", "seed"),
          float32_ok=True)
def silhouette_classwise(features, labels, *, dim: int = 10, metric: str = "cosine",
                         seed: int = 0, **_) -> float:
    """Class-balanced neuralRank score; higher is better.

    As :func:`silhouette` (PCA of ``features`` ``(n, d)`` to ``dim``, cosine silhouette
    against ``labels`` ``(n,)``), but averaged per class first,
    ``1/K sum_k mean_{i in k} s(i)``, so that each class counts equally however many
    samples it has. Cost: the PCA plus ``O(n K dim)``. Minimum: as :func:`silhouette`.
    """
    _check_metric(metric)
    from ..reduce import pca

    reduced, _ = pca(features, dim, seed=seed)
    return classwise_silhouette_score(reduced, labels, metric)


def _ratio(intra_sum, others, nearest):
    """``(b - a) / max(a, b)`` with ``a = intra_sum / others``; 0 for singletons and 0/0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = intra_sum / others
        values = (nearest - intra) / np.maximum(intra, nearest)
    return np.where((others > 0) & np.isfinite(values), values, 0.0)


def _class_sums(points, codes, member, num_classes):
    """Sum of the member rows of each class, ``(K, D)``, without copying ``points``."""
    from scipy.sparse import csr_matrix

    indicator = csr_matrix((member.astype(np.float64), (codes, np.arange(len(codes)))),
                           shape=(num_classes, len(codes)))
    return np.asarray(indicator @ points, dtype=np.float64)


def _check_metric(metric):
    if metric not in METRICS:
        raise EstimatorError(f"unknown silhouette metric {metric!r}; choose from: "
                             f"{', '.join(METRICS)}. Pass one with --metric.",
                             estimator="silhouette")


def _encode(labels, n):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise EstimatorError(f"silhouette: {n} feature rows but labels of shape "
                             f"{labels.shape}; pass one label per row", estimator="silhouette")
    classes, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return classes, codes, np.bincount(codes, minlength=len(classes)).astype(np.float64)


def _validate(X, labels, metric):
    _check_metric(metric)
    x = np.asarray(X)
    if x.ndim != 2 or x.shape[1] < 1 or x.dtype.kind not in "fiub":
        raise EstimatorError(f"silhouette: features must be a numeric (n, d) array, not "
                             f"{x.dtype} of shape {x.shape}", estimator="silhouette")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise EstimatorError("silhouette: features contain NaN or inf; drop or fix those "
                             "rows", estimator="silhouette")
    classes, codes, sizes = _encode(labels, len(x))
    if not 2 <= len(classes) < len(x):
        raise EstimatorError(f"silhouette: {len(classes)} classes in {len(x)} samples; "
                             "need at least two classes and one with two samples",
                             estimator="silhouette")
    return x, codes, sizes
