"""Transfer accuracy on frozen features, and how far a ranking can be trusted against it.

Ground truth for a ranking is how well each model does on the target once adapted to it.
Two protocols adapt a model through the activations of its last hidden dense layer,
computed once and frozen (arrays in, predictions or an accuracy out; no model is run here):

``logits``
    The neuralRank paper's (Desai et al., section 4.3): "freezing weights on all layers
    except the logits layer", then retraining the logits layer for the target's classes.
    Here: a fresh dense layer from the features to the target's classes (Glorot-uniform
    weights, zero biases), the model's dropout active on its input while training,
    softmax cross-entropy, minibatch gradient descent with learning rate 0.001. The paper
    states only the learning rate, the loss and the dropout rate; batch size 100, plain
    SGD, the initialisation and the inverted dropout are those of TensorFlow's
    ``cnn_mnist.py`` tutorial, whose network and learning rate the paper's match exactly
    (an inference, not the paper's word), and so is the default length: 67 epochs, the
    tutorial's 20,000 steps on the paper's 30,000-image targets. Plain SGD at this
    learning rate is far from converged after that (on frozen features it is slow where
    the activations are small), so this protocol's accuracies also reflect how fast the
    layer learns, not only how separable the features are.
``probe``
    A linear probe: features standardised, then multinomial logistic regression (L2,
    C = 1) fitted by L-BFGS for up to 300 iterations (scikit-learn), as
    :func:`zooindex.evaluation.transfer_accuracy` computes it. Not the paper's protocol:
    a regularised fit on standardised features run (nearly) to convergence, which lifts
    weak features more than SGD at learning rate 0.001 does.

Each protocol is registered in :data:`PROTOCOLS` with its parameters, so that a cache can
key its results on ``(protocol, parameters)``.

The second half measures agreement between a score and the accuracies, with its
uncertainty: Kendall's tau (tau-b) and the weighted tau of ``scipy.stats.weightedtau``,
with percentile intervals from resampling the test images (each model's accuracy is
recomputed from its per-image correctness, the same resample for every model) and from
drawing one of several training seeds per model.

Everything here is numpy and scikit-learn, in float64; no deep-learning framework.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import TargetError
from .options import PROTOCOLS as _NAMES

# The logits protocol's defaults; the module docstring says where each comes from. 67
# epochs: the tutorial's 20,000 steps of 100 images on a 30,000-image training split
# (the paper's targets: five classes of MNIST or Fashion-MNIST).
LOGITS_DEFAULTS = {"epochs": 67, "lr": 1e-3, "dropout": 0.4, "batch_size": 100,
                   "optimizer": "sgd", "seed": 0}
PROBE_DEFAULTS = {"max_iter": 300, "seed": 0}
OPTIMIZERS = ("sgd", "adam")
_ADAM = (0.9, 0.999, 1e-8)  # beta1, beta2, epsilon: the usual (and TensorFlow's) defaults


# -- validation ---------------------------------------------------------------------


def _check(train_features, train_labels, test_features=None, test_labels=None):
    """Validated float arrays and label codes ``0..k-1`` with the class values in order."""
    train_x = _features(train_features, "train")
    train_y = np.asarray(train_labels)
    if train_y.ndim != 1 or len(train_y) != len(train_x):
        raise TargetError(f"need one train label per train row: {len(train_x)} rows, "
                          f"labels of shape {train_y.shape}")
    classes, codes = np.unique(train_y, return_inverse=True)
    if len(classes) < 2:
        raise TargetError(f"need at least two classes to train on, got {len(classes)}")
    test_x = None
    if test_features is not None:
        test_x = _features(test_features, "test")
        if test_x.shape[1] != train_x.shape[1]:
            raise TargetError(f"train and test features differ in width: "
                              f"{train_x.shape[1]} vs {test_x.shape[1]}")
        if test_labels is not None and np.shape(test_labels) != (len(test_x),):
            raise TargetError(f"need one test label per test row: {len(test_x)} rows, "
                              f"labels of shape {np.shape(test_labels)}")
    return train_x, codes, classes, test_x


def _features(features, which: str) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise TargetError(f"{which} features must be a non-empty (samples, width) array, "
                          f"got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise TargetError(f"{which} features must be finite numbers (NaN or inf found, or "
                          "not numeric)")
    return x


# -- the logits protocol ------------------------------------------------------------


@dataclass(frozen=True)
class LinearLayer:
    """A trained dense layer: ``logits = features @ weights + bias``, one column per class."""

    weights: np.ndarray          # (width, classes) float64
    bias: np.ndarray             # (classes,) float64
    classes: np.ndarray          # the class value of each column

    def predict(self, features) -> np.ndarray:
        """The class of the highest logit for each row of ``features``."""
        x = np.asarray(features)
        out = np.empty(len(x), dtype=np.int64)
        for start in range(0, len(x), 4096):  # bounded float64 copies of wide features
            block = x[start:start + 4096].astype(np.float64)
            out[start:start + 4096] = np.argmax(block @ self.weights + self.bias, axis=1)
        return self.classes[out]


def glorot_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Weights drawn from U(-l, l), ``l = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def train_logits(features: np.ndarray, codes: np.ndarray, weights: np.ndarray,
                 bias: np.ndarray, *, epochs: int, lr: float, dropout: float,
                 batch_size: int, rng: np.random.Generator,
                 optimizer: str = "sgd") -> tuple[np.ndarray, np.ndarray]:
    r"""Minibatch training of a dense softmax layer from given initial ``weights``, ``bias``.

    ``features`` ``(n, d)``, ``codes`` ``(n,)`` in ``0..k-1``, ``weights`` ``(d, k)``,
    ``bias`` ``(k,)``; returns the trained copies. Each epoch visits the rows in a fresh
    random order in batches of ``batch_size`` (the last one smaller). For a batch ``X``
    with one-hot labels ``Y`` (``b`` rows)::

        M      = Bernoulli(1 - dropout) mask, X~ = X * M / (1 - dropout)   (inverted dropout)
        P      = softmax(X~ W + c)
        loss   = -sum(Y * log P) / b                                       (cross-entropy)
        dW     = X~^T (P - Y) / b,    dc = sum_rows(P - Y) / b

    then ``W -= lr * dW`` (``sgd``) or Adam's update (``adam``, Kingma & Ba 2015, with
    beta1 0.9, beta2 0.999, epsilon 1e-8). ``rng`` draws the orders and the masks, in
    that sequence per epoch: the order, then one mask per batch.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}'; choose from: {', '.join(OPTIMIZERS)}")
    if not 0 <= dropout < 1 or epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need 0 <= dropout < 1, epochs >= 0, batch_size >= 1, lr > 0; got "
                         f"{dropout}, {epochs}, {batch_size}, {lr}")
    w = np.array(weights, dtype=np.float64)
    c = np.array(bias, dtype=np.float64)
    n, k = len(features), w.shape[1]
    keep = 1.0 - dropout
    moments = [np.zeros_like(w), np.zeros_like(c), np.zeros_like(w), np.zeros_like(c)]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            x = features[rows].astype(np.float64)
            if dropout:
                x *= (rng.random(x.shape) < keep) / keep
            z = x @ w + c
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(rows)), codes[rows]] -= 1.0
            p /= len(rows)
            grads = (x.T @ p, p.sum(axis=0))
            step += 1
            if optimizer == "sgd":
                w -= lr * grads[0]
                c -= lr * grads[1]
            else:
                beta1, beta2, eps = _ADAM
                for param, grad, m, v in ((w, grads[0], *moments[0::2]),
                                          (c, grads[1], *moments[1::2])):
                    m *= beta1
                    m += (1 - beta1) * grad
                    v *= beta2
                    v += (1 - beta2) * grad * grad
                    m_hat = m / (1 - beta1 ** step)
                    v_hat = v / (1 - beta2 ** step)
                    param -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, c


def fit_logits(train_features, train_labels, *, epochs: int = LOGITS_DEFAULTS["epochs"],
               lr: float = LOGITS_DEFAULTS["lr"], dropout: float = LOGITS_DEFAULTS["dropout"],
               batch_size: int = LOGITS_DEFAULTS["batch_size"],
               optimizer: str = LOGITS_DEFAULTS["optimizer"],
               seed: int = LOGITS_DEFAULTS["seed"]) -> LinearLayer:
    """A fresh logits layer trained on frozen features the paper's way (see the module doc).

    ``seed`` fixes the initial weights, the order of the rows and the dropout masks.
    Labels may be any values; the layer predicts them back.
    """
    return _fit_logits(*_check(train_features, train_labels)[:3], epochs=epochs, lr=lr,
                       dropout=dropout, batch_size=batch_size, optimizer=optimizer, seed=seed)


def _fit_logits(x, codes, classes, *, epochs, lr, dropout, batch_size, optimizer,
                seed) -> LinearLayer:
    rng = np.random.default_rng(seed)
    weights = glorot_uniform(x.shape[1], len(classes), rng)
    w, c = train_logits(x, codes, weights, np.zeros(len(classes)), epochs=epochs, lr=lr,
                        dropout=dropout, batch_size=batch_size, rng=rng, optimizer=optimizer)
    return LinearLayer(w, c, classes)


def logits_predict(train_features, train_labels, test_features, *,
                   epochs: int = LOGITS_DEFAULTS["epochs"], lr: float = LOGITS_DEFAULTS["lr"],
                   dropout: float = LOGITS_DEFAULTS["dropout"],
                   batch_size: int = LOGITS_DEFAULTS["batch_size"],
                   optimizer: str = LOGITS_DEFAULTS["optimizer"],
                   seed: int = LOGITS_DEFAULTS["seed"]) -> np.ndarray:
    """Predicted test labels of a logits layer retrained on frozen features (see
    :func:`fit_logits`)."""
    x, codes, classes, test_x = _check(train_features, train_labels, test_features)
    layer = _fit_logits(x, codes, classes, epochs=epochs, lr=lr, dropout=dropout,
                        batch_size=batch_size, optimizer=optimizer, seed=seed)
    return layer.predict(test_x)


def logits_accuracy(train_features, train_labels, test_features, test_labels, *,
                    epochs: int = LOGITS_DEFAULTS["epochs"], lr: float = LOGITS_DEFAULTS["lr"],
                    dropout: float = LOGITS_DEFAULTS["dropout"],
                    batch_size: int = LOGITS_DEFAULTS["batch_size"],
                    optimizer: str = LOGITS_DEFAULTS["optimizer"],
                    seed: int = LOGITS_DEFAULTS["seed"]) -> float:
    """Test accuracy of a logits layer retrained on frozen features: the paper's protocol."""
    _check(train_features, train_labels, test_features, test_labels)
    predicted = logits_predict(train_features, train_labels, test_features, epochs=epochs,
                               lr=lr, dropout=dropout, batch_size=batch_size,
                               optimizer=optimizer, seed=seed)
    return float(np.mean(predicted == np.asarray(test_labels)))


# -- the probe protocol -------------------------------------------------------------


def probe_predict(train_features, train_labels, test_features, *,
                  max_iter: int = PROBE_DEFAULTS["max_iter"],
                  seed: int = PROBE_DEFAULTS["seed"]) -> np.ndarray:
    """Predicted test labels of standardised features + logistic regression (L-BFGS)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check(train_features, train_labels, test_features)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter,
                                                             random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: accuracy still valid
        clf.fit(train_features, train_labels)
    return clf.predict(test_features)


def probe_accuracy(train_features, train_labels, test_features, test_labels, *,
                   max_iter: int = PROBE_DEFAULTS["max_iter"],
                   seed: int = PROBE_DEFAULTS["seed"]) -> float:
    """Test accuracy of the linear probe (what ``zooindex evaluate`` has measured so far)."""
    _check(train_features, train_labels, test_features, test_labels)
    predicted = probe_predict(train_features, train_labels, test_features,
                              max_iter=max_iter, seed=seed)
    return float(np.mean(predicted == np.asarray(test_labels)))


# -- the registry -------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """A way to adapt frozen features to a target: its predictor and default parameters."""

    name: str
    predict: Callable[..., np.ndarray]   # (train_x, train_y, test_x, **params) -> labels
    params: dict = field(default_factory=dict)
    description: str = ""

    def resolve(self, **overrides) -> dict:
        """The defaults with ``overrides`` applied: the full parameters, for cache keys."""
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(f"protocol '{self.name}' has no parameter "
                             f"{', '.join(unknown)}; it takes: {', '.join(self.params)}")
        return {**self.params, **overrides}

    def predictions(self, train_features, train_labels, test_features, **overrides):
        """Predicted label of every test row."""
        return self.predict(train_features, train_labels, test_features,
                            **self.resolve(**overrides))

    def correct(self, train_features, train_labels, test_features, test_labels,
                **overrides) -> np.ndarray:
        """Whether each test row is predicted right (bool ``(n_test,)``): what bootstraps need."""
        _check(train_features, train_labels, test_features, test_labels)
        return self.predictions(train_features, train_labels, test_features,
                                **overrides) == np.asarray(test_labels)

    def accuracy(self, train_features, train_labels, test_features, test_labels,
                 **overrides) -> float:
        return float(np.mean(self.correct(train_features, train_labels, test_features,
                                          test_labels, **overrides)))


PROTOCOLS: dict[str, Protocol] = {
    "logits": Protocol(
        "logits", logits_predict, dict(LOGITS_DEFAULTS),
        "the paper's: a fresh logits layer on frozen features, dropout on its input, "
        "cross-entropy, SGD lr 0.001, batch 100, 67 epochs"),
    "probe": Protocol(
        "probe", probe_predict, dict(PROBE_DEFAULTS),
        "standardised features + logistic regression fitted to convergence (L-BFGS)"),
}

assert tuple(PROTOCOLS) == _NAMES  # the CLI's choices, defined in zooindex.options


# -- agreement and its uncertainty --------------------------------------------------


def kendall_tau(x, y) -> float | None:
    """Kendall's tau-b of two score vectors; ``None`` when undefined (a constant vector)."""
    from scipy import stats

    return _defined(stats.kendalltau, x, y)


def weighted_tau(x, y) -> float | None:
    """``scipy.stats.weightedtau`` (hyperbolic weights, top of both rankings weighed most)."""
    from scipy import stats

    return _defined(stats.weightedtau, x, y)


def _defined(func, x, y) -> float | None:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two vectors of one value per model, got {x.shape}, {y.shape}")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(func(x, y).statistic)
    return None if np.isnan(value) else value


STATISTICS: dict[str, Callable[..., float | None]] = {"tau": kendall_tau,
                                                      "tau_w": weighted_tau}


@dataclass(frozen=True)
class Interval:
    """A statistic's point estimate and percentile interval over ``draws`` resamples.

    ``low``/``high`` are ``None`` when the statistic was undefined in most resamples.
    """

    estimate: float | None
    low: float | None
    high: float | None
    level: float
    draws: int

    def excludes(self, value: float) -> bool:
        """True when the whole interval lies strictly above or below ``value``."""
        return self.low is not None and (self.low > value or self.high < value)

    def __str__(self) -> str:
        est = "–" if self.estimate is None else f"{self.estimate:.2f}"
        if self.low is None:
            return est
        return f"{est} [{self.low:.2f}, {self.high:.2f}]"


def resampled_means(per_image: np.ndarray, *, draws: int, seed: int = 0,
                    chunk: int = 256) -> np.ndarray:
    """Means of each row of ``per_image`` ``(m, n)`` over bootstrap resamples of its columns.

    Every resample draws ``n`` columns (test images) with replacement, the same columns for
    every row (model), so differences between models keep their pairing. Returns
    ``(draws, m)``. Drawn as multinomial counts: ``counts @ per_image.T / n``.
    """
    values = np.asarray(per_image, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"need per-image values of shape (models, images), got {values.shape}")
    n = values.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((draws, len(values)))
    uniform = np.full(n, 1.0 / n)
    for start in range(0, draws, chunk):
        counts = rng.multinomial(n, uniform, size=min(chunk, draws - start))
        out[start:start + len(counts)] = counts @ values.T / n
    return out


def _interval(estimate, values, level: float) -> Interval:
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(defined) * 2 < len(values):
        return Interval(estimate, None, None, level, len(values))
    low, high = np.quantile(defined, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(estimate, float(low), float(high), level, len(values))


def bootstrap_tau(scores, correct, *, statistic: str = "tau", draws: int = 2000,
                  level: float = 0.95, seed: int = 0, score_samples=None) -> Interval:
    """Agreement of ``scores`` with accuracies, with a bootstrap interval over test images.

    ``scores`` ``(m,)``: one score per model. ``correct`` ``(m, n)``: whether model i got
    test image j right; its row means are the accuracies. The estimate is the statistic
    (``tau`` or ``tau_w``) of the scores against those accuracies; each resample recomputes
    every accuracy on the same resampled images and the statistic again.

    ``score_samples`` ``(m, n)``, optional: per-image contributions whose row means are the
    scores (a silhouette's ``s(i)``), resampled with the same images. This treats each
    ``s(i)`` as fixed, ignoring that it depends on the other images (and the PCA fitted on
    them): an approximation of the score's own sampling noise.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim != 2 or scores.shape != (len(correct),):
        raise ValueError(f"need scores (m,) and correctness (m, n); got {scores.shape}, "
                         f"{correct.shape}")
    func = STATISTICS[statistic]
    estimate = func(scores, correct.mean(axis=1))
    accs = resampled_means(correct, draws=draws, seed=seed)
    if score_samples is None:
        draws_scores = np.broadcast_to(scores, accs.shape)
    else:
        samples = np.asarray(score_samples, dtype=np.float64)
        if samples.shape != correct.shape:
            raise ValueError(f"score_samples must have correct's shape {correct.shape}, "
                             f"got {samples.shape}")
        draws_scores = resampled_means(samples, draws=draws, seed=seed)  # same images
    values = [func(s, a) for s, a in zip(draws_scores, accs)]
    return _interval(estimate, values, level)


def seed_tau(scores, accuracies, *, statistic: str = "tau", draws: int = 2000,
             level: float = 0.95, seed: int = 0) -> Interval:
    """Agreement over training seeds: each resample takes one seed's run per model.

    ``accuracies`` ``(m, s)``: model i trained (or its logits retrained) with seed j.
    ``scores`` ``(m,)`` when the score does not depend on the seed (seeds of the logits
    retraining), or ``(m, s)`` when it does (the model itself trained with seed j: its
    score and accuracy come from the same network). The estimate is the statistic of the
    per-model means over seeds; the interval is over zoos assembled by drawing one seed
    per model at random.
    """
    accs = np.asarray(accuracies, dtype=np.float64)
    if accs.ndim != 2:
        raise ValueError(f"need accuracies of shape (models, seeds), got {accs.shape}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = np.repeat(scores[:, None], accs.shape[1], axis=1)
    if scores.shape != accs.shape:
        raise ValueError(f"scores {scores.shape} and accuracies {accs.shape} differ in shape")
    func = STATISTICS[statistic]
    estimate = func(scores.mean(axis=1), accs.mean(axis=1))
    rng = np.random.default_rng(seed)
    rows = np.arange(len(accs))
    picks = rng.integers(0, accs.shape[1], size=(draws, len(accs)))
    values = [func(scores[rows, p], accs[rows, p]) for p in picks]
    return _interval(estimate, values, level)


def seed_bootstrap_tau(scores, correct, *, statistic: str = "tau", draws: int = 2000,
                       level: float = 0.95, seed: int = 0) -> Interval:
    """Both sources at once: one seed per model at random, and resampled test images.

    ``scores`` ``(m, s)`` (or ``(m,)``), ``correct`` ``(m, s, n)``. The estimate is the
    statistic of the per-model mean scores against the per-model mean accuracies.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim != 3:
        raise ValueError(f"need correctness of shape (models, seeds, images), got "
                         f"{correct.shape}")
    m, s, n = correct.shape
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = np.repeat(scores[:, None], s, axis=1)
    if scores.shape != (m, s):
        raise ValueError(f"scores must be ({m}, {s}), got {scores.shape}")
    func = STATISTICS[statistic]
    estimate = func(scores.mean(axis=1), correct.mean(axis=2).mean(axis=1))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, s, size=(draws, m))
    accs = resampled_means(correct.reshape(m * s, n), draws=draws, seed=seed + 1)
    accs = accs.reshape(draws, m, s)
    rows = np.arange(m)
    values = [func(scores[rows, p], a[rows, p]) for p, a in zip(picks, accs)]
    return _interval(estimate, values, level)


__all__ = ["PROTOCOLS", "Protocol", "LinearLayer", "Interval", "LOGITS_DEFAULTS",
           "PROBE_DEFAULTS", "fit_logits", "train_logits", "glorot_uniform",
           "logits_predict", "logits_accuracy", "probe_predict", "probe_accuracy",
           "kendall_tau", "weighted_tau", "STATISTICS", "resampled_means",
           "bootstrap_tau", "seed_tau", "seed_bootstrap_tau"]
