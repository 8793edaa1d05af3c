"""Label-free cluster structure: the best silhouette of a k-means clustering.

neuralRank's silhouette (Desai et al.) measures how well the target's classes separate
in a model's reduced feature space. Without labels, the clusters the features form on
their own take the classes' place: k-means over a small range of cluster counts, and
the silhouette of the best one. A model whose features group the target into
well-separated clusters is likely to separate its classes too.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import EstimatorError
from . import register
from ._order import canonical_order
from .silhouette import _check_metric, silhouette_score

#: cluster counts tried: 2 .. MAX_CLUSTERS (fewer for fewer samples)
MAX_CLUSTERS = 10
#: k-means restarts per cluster count
RESTARTS = 4


def best_clustering(points: np.ndarray, metric: str = "cosine", seed: int = 0,
                    max_clusters: int = MAX_CLUSTERS):
    """The best silhouette of k-means clusterings of ``points`` ``(n, m)``, with its K.

    For ``K = 2 .. min(max_clusters, n - 1)``: ``sklearn.cluster.KMeans`` (k-means++,
    ``RESTARTS`` restarts, ``random_state=seed``), on the rows scaled to unit length for
    the cosine metric (spherical k-means, whose clusters are the cosine ones), then
    :func:`zooindex.estimators.silhouette.silhouette_score` of ``points`` with the
    clusters as labels. Returns ``(silhouette, K)``; clusterings that collapse to one
    cluster are skipped. k-means runs on one OpenMP thread: on these few reduced
    dimensions threads cost more than they save (measured on 2 busy cores, 1,000 x 10
    points, K = 10: 0.02 s on one thread, 0.5 s on two), and one thread makes its sums,
    and so the clusters, the same on every machine. Cost
    ``O(max_clusters (RESTARTS iterations + 1) n K m)``.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    fitted = points
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", points, points))
        fitted = np.divide(points, norms[:, None], out=np.zeros_like(points),
                           where=norms[:, None] > 0)
    best, best_k = -np.inf, 0
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        # fewer distinct points than clusters: k-means says so and returns fewer
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(2, min(max_clusters, len(points) - 1) + 1):
            clusters = KMeans(n_clusters=k, n_init=RESTARTS, random_state=seed) \
                .fit_predict(fitted)
            if len(np.unique(clusters)) < 2:
                continue
            value = silhouette_score(points, clusters, metric)
            if value > best:
                best, best_k = value, k
    return best, best_k


@register("cluster-silhouette", "silhouette of the best k-means clustering (K = 2..10) of "
          "the PCA-reduced features, no labels needed",
          params=("dim", "metric", "seed"), float32_ok=True, needs_labels=False,
          experimental=True)
def cluster_silhouette(features, labels=None, *, dim: int = 10, metric: str = "cosine",
                       seed: int = 0, **_) -> float:
    r"""Label-free neuralRank: silhouette of the features' own clusters; higher is better.

    The features ``(n, d)`` are reduced by PCA to ``dim`` components, clustered by
    k-means for every ``K`` from 2 to ``min(10, n - 1)`` (:func:`best_clustering`), and
    the score is the best silhouette (``metric``, cosine by default as in neuralRank)::

        score = max_K  silhouette(PCA(features), kmeans_K(PCA(features)))   in [-1, 1].

    The number of clusters is chosen by the data, not by the target's classes, which
    are not used; a target with more than 10 classes is seen through at most 10
    clusters. Samples are put in a canonical order first, so the seeded k-means, and the
    score, do not depend on the order of the samples. Cost: the PCA plus about
    ``O(9 * 4 * iterations * n * 10 * dim)`` for the clusterings. Minimum: three samples.
    Depends on ``dim``, ``metric`` and ``seed``.
    """
    _check_metric(metric)
    from ..reduce import pca

    if len(features) < 3:
        raise EstimatorError(f"cluster-silhouette: {len(features)} samples; need at least "
                             "three to compare two clusters", estimator="cluster-silhouette")
    order = canonical_order(features, np.zeros(len(features)))
    reduced, _ = pca(features[order], dim, seed=seed)
    best, _ = best_clustering(reduced, metric, seed)
    if not np.isfinite(best):
        raise EstimatorError("cluster-silhouette: the features form a single point after "
                             "PCA, so no two clusters can be told apart",
                             estimator="cluster-silhouette")
    return float(best)
