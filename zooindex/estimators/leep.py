"""LEEP: log expected empirical prediction from a model's own source-class posteriors.

Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability
of Learned Representations", ICML 2020. The model's classifier is reused as is: its
source classes are mapped to the target classes by the empirical conditional P(y | z),
and LEEP is the average log-likelihood of that "dummy" target classifier.
"""

from __future__ import annotations

import numpy as np

from ..errors import EstimatorError
from . import register


def leep_from_posteriors(theta: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of source posteriors ``theta`` ``(n, c)`` (rows sum to 1) for ``labels``.

    Shared with N-LEEP, whose ``theta`` comes from a Gaussian mixture instead of the
    model's classifier. A source class that no sample uses (column of zeros) gets
    ``P(y | z) = 0``; it contributes nothing either way.
    """
    n = len(labels)
    k = int(labels.max()) + 1
    onehot = (labels[:, None] == np.arange(k)).astype(np.float64)
    joint = onehot.T @ theta / n  # P(y, z), (k, c)
    marginal = joint.sum(axis=0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("nk,nk->n", theta @ conditional.T, onehot)  # sum_z P(y_i|z) theta_iz
    # expected > 0 mathematically (theta_i itself puts mass on some z with P(y_i|z) > 0);
    # the floor only guards an underflow
    return float(np.mean(np.log(np.maximum(expected, np.finfo(np.float64).tiny))))


def source_posteriors(probs: np.ndarray, name: str) -> np.ndarray:
    """Rows of ``probs`` as distributions: non-negative, renormalised to sum to 1.

    Softmax outputs stored in float32 sum to 1 only up to rounding; logits (negative
    values) are not probabilities and are refused.
    """
    if np.any(probs < 0):
        raise EstimatorError(
            f"{name}: classifier output has negative values, so it is not a probability "
            "distribution; expose the softmax output of the model, not its logits",
            estimator=name)
    totals = probs.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise EstimatorError(f"{name}: classifier output has a row of zeros; expected "
                             "softmax probabilities", estimator=name)
    return probs / totals


@register("leep", "LEEP: log-likelihood of the model's classifier mapped to the target labels "
          "(Nguyen et al., ICML 2020)", needs_probs=True)
def leep(features, labels, *, probs, **_):
    r"""LEEP of the source-class probabilities ``probs`` ``(n, c)``; higher is better.

    Nguyen et al., ICML 2020. With ``theta(x_i)`` the model's softmax over its ``c``
    source classes::

        P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z,     P(y | z) = P(y, z) / P(z),
        LEEP    = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z.

    ``features`` are not used. Rows of ``probs`` are renormalised to sum to 1. The score
    is a log-probability, at most 0. Cost ``O(n c k)``, memory ``O(n (c + k))``.
    Minimum: one sample per class. Depends on no option.
    """
    return leep_from_posteriors(source_posteriors(probs, "leep"), labels)
