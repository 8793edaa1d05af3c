"""N-LEEP: LEEP with a Gaussian mixture on the features in place of the classifier.

Li, Jia, Sang, Zhu, Green, Wang and Gong, "Ranking Neural Checkpoints", CVPR 2021. A
model without a usable classifier (or whose classifier knows nothing of the target) can
still be scored: a Gaussian mixture fitted on its reduced features plays the source
classifier, and LEEP measures how well its components map to the target labels.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import EstimatorError
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
    full covariances and ``5 k`` components (``k`` target classes; 5 per class as
    in the paper) is fitted by EM (``sklearn.mixture.GaussianMixture``, k-means
    initialisation seeded by ``seed``), and its posteriors ``theta(x)`` replace the source
    classifier in LEEP::

        N-LEEP = 1/n sum_i log sum_v P(y_i | v) theta(x_i)_v.

    The projection is divided by its root-mean-square coordinate first, so that the
    mixture's fixed covariance regulariser (1e-6) is relative to the data's scale; this
    changes nothing else. Samples are put in a canonical order before fitting, so the
    score does not depend on their order. The k-means initialisation runs on one OpenMP
    thread: on the few reduced dimensions more threads only wait for each other
    (measured on 2 busy cores, 1,000 x 256 features: 2.3 s on one thread, 11.4 s on
    two, the same score), and one thread gives the same sums on every machine. Cost: the PCA plus ``O(iterations n v dim^2)``
    for EM with ``v`` components. Minimum: ``v (m + 1)`` samples, ``m`` the PCA
    components used, so that each full covariance can be estimated: 5 (m + 1) per class
    on average, 55 at the default ``dim = 10``. With fewer, the mixture spends a
    component on a handful of samples and the score drifts towards its maximum 0
    whatever the features; it is refused, naming the largest ``dim`` that would do.
    Depends on ``dim`` and ``seed``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from ..reduce import pca

    order = canonical_order(features, labels)
    features, labels = features[order], labels[order]
    reduced, used = pca(features, dim, seed=seed)
    scale = np.sqrt(np.mean(reduced * reduced))
    if scale > 0:
        reduced = reduced / scale
    k = int(labels.max()) + 1
    components = COMPONENTS_PER_CLASS * k
    if len(labels) < components * (used + 1):
        largest = len(labels) // components - 1
        advice = (f"Use --dim {largest} or lower, or" if largest >= 1 else
                  "Add samples, or use")
        raise EstimatorError(
            f"nleep: fits {components} Gaussians with full covariances in {used} "
            f"dimensions, which needs at least {components * (used + 1)} samples "
            f"({used + 1} per component); the target has {len(labels)}. {advice} "
            "another estimator (knn, logme)", estimator="nleep")
    mixture = GaussianMixture(n_components=components, covariance_type="full",
                              random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        # EM stopped at its iteration cap still gives valid posteriors
        warnings.simplefilter("ignore", ConvergenceWarning)
        theta = mixture.fit(reduced).predict_proba(reduced)
    return leep_from_posteriors(theta, labels)
