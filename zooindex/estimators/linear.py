"""Cross-validated accuracy of a linear classifier on the full features.

The expensive proxy closest to the ground truth of transfer learning with a frozen
backbone (a linear probe): it trains, where the other estimators only measure. Use it to
check the cheaper estimators on a small target, not to rank a large zoo.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import EstimatorError
from . import register
from ._order import canonical_order

#: folds of the cross-validation (fewer when the smallest class is smaller)
FOLDS = 5
#: cap on L-BFGS iterations per fit: a budget, not a convergence guarantee
MAX_ITER = 200


@register("linear", "linear probe: 5-fold cross-validated accuracy of logistic regression "
          "on the full features (slow)", params=("seed",), min_per_class=2)
def linear(features, labels, *, seed=0, **_):
    r"""Cross-validated linear-probe accuracy of ``features`` ``(n, d)``; higher is better.

    Stratified ``min(5, smallest class size)``-fold cross-validation (folds shuffled with
    ``seed``); in each fold the training features are standardised and a multinomial
    logistic regression (``sklearn.linear_model.LogisticRegression``, L2, ``C = 1``,
    L-BFGS, at most 200 iterations) is fitted; the score is the mean of the folds' test
    accuracies::

        linear = 1/F sum_f accuracy(LR_f, held-out fold f)    (in [0, 1]).

    Samples are put in a canonical order before splitting, so the folds, and the score,
    do not depend on the order in which samples arrive. Iteration-cap warnings are
    silenced: the cap is part of the definition. Cost ``O(F * iterations * n d k)``;
    memory ``O(n d)``. Minimum: two samples per class (one in each of two folds).
    Depends on ``seed``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min())
    if smallest < 2:
        raise EstimatorError(
            "linear: a class has a single sample, and cross-validation needs at least two "
            "per class; add samples to that class or use another estimator (e.g. logme)",
            estimator="linear")
    order = canonical_order(features, labels)
    features, labels = features[order], labels[order]
    splitter = StratifiedKFold(n_splits=min(FOLDS, smallest), shuffle=True, random_state=seed)
    accuracies = []
    for train, test in splitter.split(features, labels):
        scaler = StandardScaler().fit(features[train])
        model = LogisticRegression(max_iter=MAX_ITER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(scaler.transform(features[train]), labels[train])
        predicted = model.predict(scaler.transform(features[test]))
        accuracies.append(np.mean(predicted == labels[test]))
    return float(np.mean(accuracies))
