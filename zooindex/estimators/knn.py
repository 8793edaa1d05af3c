"""Leave-one-out k-nearest-neighbour accuracy on the reduced features.

A direct, assumption-free proxy: if a sample's nearest neighbours in the model's reduced
feature space mostly share its label, a classifier trained on those features will do
well. Exact (no approximate search), with memory bounded by processing rows in chunks.
"""

from __future__ import annotations

import numpy as np

from . import register
from ._order import canonical_order

#: neighbours that vote
NEIGHBOURS = 5
#: samples per class below which a class can never win its own members' vote: with 5
#: voters a sample needs 3 of its own class among its neighbours, so 4 in the class
MIN_PER_CLASS = NEIGHBOURS // 2 + 2
# distance rows kept in memory at once: chunk_rows * n float64 values
_CHUNK_VALUES = 1 << 22


def knn_loo_predictions(points: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS,
                        chunk_rows: int | None = None) -> np.ndarray:
    """Leave-one-out k-NN prediction for every row of ``points`` ``(n, m)``.

    Each sample's ``k`` nearest other samples (Euclidean) vote with equal weight. Ties are
    broken deterministically: between equally distant candidates for the last neighbour
    slot, the lower row index wins; between classes with equal votes, the class of the
    nearest neighbour among them wins (then the lower row index). Rows are processed
    ``chunk_rows`` at a time (default: about 4M distances per chunk), so memory is
    ``O(chunk_rows n)``, never ``n x n``. Cost ``O(n^2 m)``.
    """
    n = len(points)
    k = min(k, n - 1)
    num_classes = int(labels.max()) + 1
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_VALUES // n)
    norms = np.einsum("ij,ij->i", points, points)
    predictions = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, n))
        dist = norms[rows, None] + norms[None, :] - 2.0 * (points[rows] @ points.T)
        dist[np.arange(len(rows)), rows] = np.inf  # leave the sample itself out
        nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(dist, nearest, axis=1).max(axis=1)
        # argpartition picks arbitrarily among candidates tied with the k-th distance;
        # redo those (rare) rows with a stable sort so that lower indices win
        for r in np.flatnonzero(np.count_nonzero(dist <= kth[:, None], axis=1) > k):
            nearest[r] = np.argsort(dist[r], kind="stable")[:k]
        near_dist = np.take_along_axis(dist, nearest, axis=1)
        ranked = np.take_along_axis(nearest, np.lexsort((nearest, near_dist), axis=1), axis=1)
        votes_for = labels[ranked]  # (rows, k), nearest first
        line = np.arange(len(rows))[:, None]
        votes = np.zeros((len(rows), num_classes))
        np.add.at(votes, (line, votes_for), 1.0)
        first_seen = np.full((len(rows), num_classes), float(k))
        for position in range(k - 1, -1, -1):  # earliest position written last
            first_seen[line[:, 0], votes_for[:, position]] = position
        predictions[rows] = np.argmax(votes * (k + 1) - first_seen, axis=1)
    return predictions


@register("knn", "k-NN: leave-one-out 5-nearest-neighbour accuracy on the PCA-reduced "
          "features",
          params=("dim", "seed"), float32_ok=True, min_per_class=MIN_PER_CLASS)
def knn(features, labels, *, dim=10, seed=0, **_):
    r"""Leave-one-out 5-NN accuracy of ``features`` ``(n, d)``; higher is better (0..1).

    The features are reduced by PCA to ``dim`` components; each sample is classified by
    the majority label of its 5 nearest other samples (Euclidean distance, equal votes;
    ties as in :func:`knn_loo_predictions`), and the score is the fraction classified
    correctly::

        kNN = 1/n sum_i [ majority(y_j : j in N_5(i), j != i) = y_i ].

    Samples are put in a canonical order first, so that tie-breaking by index does not
    depend on the order in which they arrive. Cost: the PCA plus ``O(n^2 dim)``; memory
    ``O(n dim)`` plus one chunk of about 4M distances. Minimum: four samples per class
    (with fewer, a sample's own class cannot hold the majority of its five neighbours,
    and even perfectly separated classes score below 1). Depends on ``dim`` and ``seed``
    (through the PCA).
    """
    from ..reduce import pca

    order = canonical_order(features, labels)
    features, labels = features[order], labels[order]
    from ..confidence import mean_over, offer

    reduced, _ = pca(features, dim, seed=seed)
    hits = knn_loo_predictions(reduced, labels) == labels
    # a mean of per-sample hits, the neighbours found among all samples held fixed
    in_arrival = np.empty(len(hits))
    in_arrival[order] = hits
    offer(lambda masks: mean_over(masks, in_arrival))
    return float(np.mean(hits))
