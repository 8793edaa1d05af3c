"""Confidence of the model's own classifier on the target, from its predictions' entropy.

A label-free baseline: a model whose source classifier is sure about the target's
images has seen similar images before. It needs the classifier output, not the labels.
"""

from __future__ import annotations

import numpy as np

from ..errors import EstimatorError
from . import register
from .leep import source_posteriors


@register("prediction-entropy", "minus the mean normalised entropy of the model's own "
          "predictions (confidence), no labels needed",
          needs_probs=True, needs_labels=False, experimental=True)
def prediction_entropy(features, labels=None, *, probs, **_):
    r"""Minus the mean normalised entropy of ``probs`` ``(n, c)``; higher is better, in [-1, 0].

    With ``p_i`` the model's softmax over its ``c`` source classes for sample ``i`` (rows
    renormalised to sum to 1; logits refused)::

        H(p_i) = -sum_z p_iz log p_iz,        score = -1/n sum_i H(p_i) / log c.

    0 when every prediction is certain, -1 when every prediction is uniform: lower
    entropy, higher confidence, higher score. Dividing by ``log c``, the entropy of the
    uniform prediction, keeps a model with many source classes from scoring lower only
    for having them. ``features`` and ``labels`` are not used. Confidence is not
    accuracy: a model can be sure and wrong about a target unlike its source data, so
    treat this as a baseline. Cost ``O(n c)``. Minimum: two samples, two source classes.
    Depends on no option.
    """
    from scipy.special import entr

    posteriors = source_posteriors(probs, "prediction-entropy")
    c = posteriors.shape[1]
    if c < 2:
        raise EstimatorError("prediction-entropy: the classifier output has one class, "
                             "whose prediction is always certain; expose a softmax over "
                             "at least two classes", estimator="prediction-entropy")
    return -float(np.mean(entr(posteriors).sum(axis=1))) / np.log(c)
