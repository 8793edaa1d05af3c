"""N-LEEP: LEEP with a Gaussian mixture on the features in place of the classifier.

Li, Jia, Sang, Zhu, Green, Wang and Gong, "Ranking Neural Checkpoints", CVPR 2021. A
model without a usable classifier (or whose classifier knows nothing of the target) can
still be scored: a Gaussian mixture fitted on its reduced features plays the source
classifier, and LEEP measures how well its components map to the target labels.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import register
from ._order import canonical_order
from .leep import leep_from_posteriors

#: mixture components per target class, as in the paper
COMPONENTS_PER_CLASS = 5


@register("nleep", "N-LEEP: LEEP of a Gaussian mixture on the PCA-reduced features "
          "(Li et al., CVPR 2021)",
          params=("dim", "seed"), float32_ok=True)
def nleep(features, labels, *, dim=10, seed=0, **_):
    r"""N-LEEP of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better.

    Li et al., CVPR 2021. The features are reduced by PCA to ``dim`` components (the paper
    keeps 80% of the variance; here the shared ``dim`` option decides, so every reduced
    estimator sees the same projection and the cache keys on it). A Gaussian mixture with
    full covariances and ``min(5 k, n)`` components (``k`` target classes; 5 per class as
    in the paper) is fitted by EM (``sklearn.mixture.GaussianMixture``, k-means
    initialisation seeded by ``seed``), and its posteriors ``theta(x)`` replace the source
    classifier in LEEP::

        N-LEEP = 1/n sum_i log sum_v P(y_i | v) theta(x_i)_v.

    The projection is divided by its root-mean-square coordinate first, so that the
    mixture's fixed covariance regulariser (1e-6) is relative to the data's scale; this
    changes nothing else. Samples are put in a canonical order before fitting, so the
    score does not depend on their order. Cost: the PCA plus ``O(iterations n v dim^2)``
    for EM with ``v`` components. Depends on ``dim`` and ``seed``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from ..reduce import pca

    order = canonical_order(features, labels)
    features, labels = features[order], labels[order]
    reduced, _ = pca(features, dim, seed=seed)
    scale = np.sqrt(np.mean(reduced * reduced))
    if scale > 0:
        reduced = reduced / scale
    k = int(labels.max()) + 1
    mixture = GaussianMixture(n_components=min(COMPONENTS_PER_CLASS * k, len(labels)),
                              covariance_type="full", random_state=seed)
    with warnings.catch_warnings():
        # EM stopped at its iteration cap still gives valid posteriors
        warnings.simplefilter("ignore", ConvergenceWarning)
        theta = mixture.fit(reduced).predict_proba(reduced)
    return leep_from_posteriors(theta, labels)
