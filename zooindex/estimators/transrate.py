"""TransRate: mutual information between features and labels, through coding rates.

Huang, Huang, Rong, Yang and Wei, "Frustratingly Easy Transferability Estimation", ICML
2022. The coding rate of a set of vectors (the bits needed to encode them up to a
distortion) stands in for its entropy; TransRate is the rate of all features minus the
average rate of each class: high when the classes are spread apart (completeness) and
each class is compact.
"""

from __future__ import annotations

import numpy as np

from . import register

#: distortion of the coding rate, the authors' default
EPSILON = 1e-4


def coding_rate(z: np.ndarray, eps: float = EPSILON) -> float:
    """``R(Z, eps) = 1/2 log det(I_d + Z^T Z / (n eps))`` for ``z`` ``(n, d)``.

    Computed on the smaller Gram matrix (``Z Z^T`` when ``n < d``, by Sylvester's
    determinant identity) through a Cholesky factor: ``O(n d min(n, d))``.
    """
    n, d = z.shape
    gram = z @ z.T if n < d else z.T @ z
    gram = gram / (n * eps)
    gram.flat[:: len(gram) + 1] += 1.0
    factor = np.linalg.cholesky(gram)
    return float(np.sum(np.log(np.diag(factor))))


@register("transrate", "TransRate: coding rate of all features minus that within each class "
          "(Huang et al., ICML 2022)")
def transrate(features, labels, **_):
    r"""TransRate of ``features`` ``(n, d)`` for ``labels`` ``(n,)``; higher is better.

    Huang et al., ICML 2022, in the form of the authors' reference code::

        TrR = R(Z, eps) - 1/k sum_c R(Z_c, eps),
        R(Z, eps) = 1/2 log det(I_d + Z^T Z / (n eps)),

    with ``Z`` the centred features, ``Z_c`` its rows of class ``c`` (``n_c`` of them,
    not re-centred) and ``eps = 1e-4``. Features wider than half the smallest class
    (``m = min_c n_c // 2``) are first projected on their ``m`` leading principal
    components (:func:`zooindex.reduce.within_samples`); narrower ones are used whole, as
    in the reference code. With more dimensions than a class has samples, ``R(Z_c)``
    no longer measures the volume of the class but counts its samples (the rank of
    ``Z_c`` is ``n_c`` whatever the features, and each direction adds about
    ``1/2 log(1/eps)``), and TransRate ranked pure noise above features that carry the
    classes (measured: 5 classes of 30, 2,048 wide, noise 101 against 83 for well
    separated classes). With at most ``n_c / 2`` dimensions every class spans them all
    and the rates compare volumes again. Because the
    rate grows with the scale of ``Z``, the centred features are first divided by their
    root-mean-square row norm (so the average ``|z_i|^2`` is 1): otherwise a model would
    score higher merely for having larger activations. Cost ``O(n d min(n, d))`` for the
    Gram matrices plus ``O(min(n, d)^3)`` per class, with ``d <= m`` after the PCA of a
    wider layer; memory ``O(n d)``. Minimum: one sample per class (the coding rate is
    defined for any number of rows; a class of one keeps one dimension). Depends on no
    option (a wide layer's PCA, randomised beyond 512 samples and dimensions, always uses
    seed 0).
    """
    from ..reduce import within_samples

    smallest = int(np.bincount(labels).min())
    z = within_samples(features, labels, max(1, smallest // 2))
    z = z - z.mean(axis=0)
    scale = np.sqrt(np.sum(z * z) / len(z))
    if scale > 0:
        z = z / scale
    k = int(labels.max()) + 1
    within = sum(coding_rate(z[labels == c]) for c in range(k)) / k
    return coding_rate(z) - within
