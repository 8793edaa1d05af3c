"""How firm a ranking is: the search's scores recomputed on resamples of the target.

A ranking comes from one sample of the target's images; another sample of the same kind
could order the models differently. This module measures how much, without running any
model again: it resamples the activations already in hand.

**Resamples.** ``B`` (:data:`RESAMPLES`) stratified *half-samples*: in each, every class
keeps a random half of its images (``n_c // 2``, at least two where it has them), drawn
without replacement from the search's seed. Every model sees the same ``B`` halves, so
two models are compared on the same images (a paired design): what moves them both, a
hard half, cancels in their difference. Half-samples rather than a bootstrap because a
bootstrap repeats images, and a repeated image is its own nearest neighbour (k-NN) and
shrinks a class's scatter (Fisher-type scores): half-sampling without replacement gives
a mean of per-image terms the same variance as the bootstrap, ``sigma^2 / n`` (the finite
population correction ``1 - 1/2`` cancels the halved size), without duplicates.

**Scores on a half, cheaply** (:func:`resampled`). Recomputing LogME or SFDA (``O(n d^2)``
on the full layer) ``B`` times would cost ``B`` searches. Instead each estimator gives one
of:

* *per-image terms* when it is a mean over images (k-NN's leave-one-out hits, SFDA's
  posterior of the true class) or a cheap statistic of per-image rows (NCTI's
  nearest-centre posteriors): the mean or statistic over each half, with what was fitted
  on the whole target (neighbours, Fisher space, class centres) held fixed. The
  estimator offers them while it computes its score (:func:`offer`), so they cost no
  second pass;
* otherwise its *reduced form on the D-component PCA projection* the search computes
  anyway (shared with the estimators that reduce, see
  :func:`zooindex.reduce.shared_projections`): LogME with its per-class ``alpha, beta``
  held at their values on the whole target (:func:`zooindex.estimators.logme.resampled`),
  any other estimator recomputed on the projection of each half (exact but ``B`` times
  its cost on ``n/2 x D``).

Both approximations describe the *spread* of a score over halves, not its level (a half
has half the images; a fixed fit or a projection changes the level): each model's
resampled values enter as deviations from their mean over the halves, added to the
score the search computed on the whole target (:func:`deviations`). So the search ranks
exactly as it did, and a resample moves a model by how much its score varies with the
images. For a combined scorer (the ensemble) each resample's member scores are combined
again, exactly as the search combines them.

**Figures** (:func:`summarise`): each row's rank interval (the 5th and 95th percentile of
its rank over the resamples), its probability of being first, and for the top two rows
the probability that their order flips; ties count half.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import numpy as np

from .choices import DEFAULT_RESAMPLES

#: resamples per search: the Monte Carlo error of a probability p is sqrt(p(1-p)/B),
#: at most 0.05 at B = 100
RESAMPLES = DEFAULT_RESAMPLES
#: the rank interval's percentiles
LEVELS = (5.0, 95.0)
#: a top is "not settled" when its first two swap in at least this share of resamples
UNSETTLED = 0.05


def halves(labels, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, n)`` boolean masks: stratified half-samples of ``labels`` ``(n,)``.

    In each row every class keeps ``max(n_c // 2, min(n_c, 2))`` of its ``n_c`` samples,
    drawn without replacement. A function of the labels' order, ``resamples`` and
    ``seed`` alone, so every model of a search gets the same halves.
    """
    labels = np.asarray(labels)
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(resamples), 0x4A1F]))
    masks = np.zeros((resamples, len(codes)), dtype=bool)
    for c in range(int(codes.max(initial=-1)) + 1):
        members = np.flatnonzero(codes == c)
        keep = max(len(members) // 2, min(len(members), 2))
        picks = rng.permuted(np.tile(np.arange(len(members)), (resamples, 1)), axis=1)
        rows = np.repeat(np.arange(resamples), keep)
        masks[rows, members[picks[:, :keep]].ravel()] = True
    return masks


def mean_over(masks: np.ndarray, terms) -> np.ndarray:
    """``(B,)`` mean of per-sample ``terms`` ``(n,)`` over each mask's samples."""
    weights = masks.astype(np.float64)
    return weights @ np.asarray(terms, dtype=np.float64) / weights.sum(axis=1)


def deviations(values) -> np.ndarray:
    """A score's resampled ``values`` ``(B,)`` as deviations from their mean."""
    values = np.asarray(values, dtype=np.float64)
    return values - values.mean()


# ---- per-image terms offered by estimators while they compute their score ----------

_offered: contextvars.ContextVar = contextvars.ContextVar("zooindex_offered", default=None)


@contextmanager
def collecting():
    """Collect what estimators :func:`offer` while they run in this block (this thread)."""
    box: list = []
    token = _offered.set(box)
    try:
        yield box
    finally:
        _offered.reset(token)


def offer(statistic) -> None:
    """Offer ``statistic(masks) -> (B,) values``: the estimator's score on each half,
    from what it computed on the whole target. A no-op unless a caller is
    :func:`collecting` (so an estimator costs nothing more when nobody asks)."""
    box = _offered.get()
    if box is not None:
        box.append(statistic)


def resampled(estimator, features, labels, masks, *, offered=(), probs=None,
              **options) -> np.ndarray:
    """``(B,)`` values of ``estimator`` on each half (``masks``), cheaply.

    ``offered``: the statistics the estimator offered while scoring these ``features``
    (see :func:`collecting`); without one, :func:`zooindex.estimators.logme.resampled` for
    LogME, else the estimator itself on the D-component projection of each half.
    """
    if offered:
        return np.asarray(offered[-1](masks), dtype=np.float64)
    from .estimators import check_inputs
    from .reduce import pca

    feats, codes = check_inputs(features, labels, estimator.name, keep_float32=True)
    points, _ = pca(feats, options.get("dim", 10), seed=options.get("seed", 0))
    if estimator.name == "logme":
        from .estimators.logme import resampled as logme_resampled

        return logme_resampled(points, codes, masks)
    out = np.empty(len(masks))
    for b, mask in enumerate(masks):
        out[b] = estimator(points[mask], codes[mask],
                           probs=None if probs is None else probs[mask], **options)
    return out


# ---- from resampled scores to figures ----------------------------------------------

def ranks(scores: np.ndarray) -> np.ndarray:
    """Competition ranks (1 = highest) of each column of ``scores`` ``(R, B)``: one plus
    the number of rows strictly above (rows that tie share the better rank).
    ``O(B R log R)`` time, ``O(R B)`` memory."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.empty(scores.shape, dtype=np.int64)
    for b in range(scores.shape[1]):
        column = np.sort(scores[:, b])
        out[:, b] = len(column) - np.searchsorted(column, scores[:, b], side="right") + 1
    return out


def mean_rank_columns(columns) -> np.ndarray:
    """The ensemble's mean normalised rank (:func:`zooindex.estimators.combine.mean_rank`)
    of every resample at once: ``columns`` are the members' ``(R, B)`` scores, all
    finite; each value's share of the other rows strictly below it, ties counting half,
    averaged over members. Pairwise comparisons in blocks of resamples, about 16 M at a
    time."""
    first = np.asarray(columns[0])
    rows, resamples = first.shape
    if rows == 1:
        return np.full((1, resamples), 0.5)
    out = np.zeros((rows, resamples))
    step = max(1, (1 << 24) // (rows * rows))
    for column in columns:
        column = np.asarray(column, dtype=np.float64)
        for start in range(0, resamples, step):
            block = column[:, start:start + step]
            below = (block[None, :, :] < block[:, None, :]).sum(axis=1)
            ties = (block[None, :, :] == block[:, None, :]).sum(axis=1) - 1
            out[:, start:start + step] += (below + 0.5 * ties) / (rows - 1)
    return out / len(columns)


def first_share(scores: np.ndarray) -> np.ndarray:
    """``(R,)`` probability of each row being first over the columns of ``scores``
    ``(R, B)``; rows tied for first share it equally."""
    top = scores.max(axis=0)
    at_top = scores == top[None, :]
    return (at_top / at_top.sum(axis=0)[None, :]).mean(axis=1)


def flip_share(better: np.ndarray, worse: np.ndarray) -> float:
    """Share of resamples in which ``worse`` ``(B,)`` beats ``better``; ties count half."""
    return float(np.mean((worse > better) + 0.5 * (worse == better)))


def summarise(names, scores: np.ndarray) -> dict:
    """Figures for rows ranked in order ``names`` with resampled ``scores`` ``(R, B)``:
    ``intervals`` (low, high) ranks, ``first`` probabilities, and ``flip``, the top two's
    names and the share of resamples that swaps them (``None`` with one row)."""
    scores = np.asarray(scores, dtype=np.float64)
    r = ranks(scores)
    low, high = np.percentile(r, LEVELS, axis=1, method="nearest")
    flip = None
    if len(names) >= 2:
        flip = {"models": [names[0], names[1]],
                "probability": flip_share(scores[0], scores[1])}
    return {"intervals": [(int(a), int(b)) for a, b in zip(low, high)],
            "first": [float(p) for p in first_share(scores)], "flip": flip}


def sentence(flip: dict | None, samples: str = "images") -> str | None:
    """What to say under the table when the top two swap often enough to matter
    (``samples``: what the target holds, ``images`` or ``texts``)."""
    if flip is None or flip["probability"] < UNSETTLED:
        return None
    a, b = flip["models"]
    return (f"{a} and {b} swap in {flip['probability']:.0%} of resamples: add {samples} or "
            "accept either")


__all__ = ["RESAMPLES", "halves", "mean_over", "deviations", "collecting", "offer",
           "resampled", "ranks", "first_share", "flip_share", "summarise", "sentence"]
