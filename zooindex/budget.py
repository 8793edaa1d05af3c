"""A search on a budget: the top of a ranking for a fraction of the inference.

A full search runs every model on every image. :func:`search_on_budget` runs a
*successive halving* race instead, with the ranking's own confidence
(:mod:`zooindex.confidence`) deciding who stays:

1. every model sees a small stratified subsample of the target (``start`` images per
   class, the same images for all models);
2. the models are ranked on it, with each row's rank interval over half-samples of
   those images; a model whose interval cannot reach the top ``k`` (its best rank,
   the 5th percentile, is below ``k``) is dropped, and at most half of the models
   (never fewer than ``k + 1``) go on;
3. the survivors see ``growth`` times as many images per class (the first ones again
   plus new ones: the subsamples are nested);
4. repeat until the top ``k`` is settled (the first ``k`` rows' intervals stay within
   the top ``k`` and the next row's stays out), the target is used up, or the budget is
   spent (a round the budget cannot pay in full runs with as many images per class as
   it can still pay for, as the last).

Why successive halving: its cost is known before it starts (each round costs about the
first one, as the models halve while the images double), which is what a budget needs;
racing alone (drop only what is statistically out) can keep every model when they are
close. The rank interval makes the halving careful: a model that could still be in the
top ``k`` is kept over a worse one only while the halving cap allows.

What is counted: the images each model was run on, summed over rounds (an image seen
in two rounds counts twice: each round is its own target in the cache, so a later full
search does not reuse a round's activations; a cache of partial activations by image is
not built yet), against a full search's ``models x images``. Off unless asked for: a
search without a budget is exactly :func:`zooindex.ranking.search`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ZooIndexError
from .options import SearchOptions, TargetSelection, from_settings

#: images per class in the first round, unless given: enough for every default member
#: (k-NN needs four per class) and for half-samples of two per class
START_PER_CLASS = 8
GROWTH = 2


@dataclass
class Budgeted:
    """What a budgeted search did.

    ``ranking``: the last round's :class:`~zooindex.ranking.Ranking` (its models: the
    survivors). ``order``: every model, the survivors in the last round's order, then the
    dropped ones, the last dropped first. ``seen``: model -> images it was run on,
    summed over rounds. ``rounds``: per round, ``per_class`` images, ``images``,
    ``models`` raced, ``dropped`` (names), ``settled``. ``fraction``: images run over a
    full search's (models x images); ``budget``: the fraction allowed. ``settled``:
    whether the top ``k`` was settled when it stopped; ``reason``: why it stopped.
    """

    ranking: object
    order: list
    seen: dict
    rounds: list = field(default_factory=list)
    fraction: float = 0.0
    budget: float = 1.0
    k: int = 3
    settled: bool = False
    reason: str = ""

    @property
    def saved(self) -> float:
        """The share of a full search's inference not spent."""
        return 1.0 - self.fraction


def nested_order(labels, seed: int = 0) -> list[np.ndarray]:
    """Per class code, its sample positions in a seeded random order: a round with
    ``m`` images per class takes the first ``m`` of each (so rounds are nested)."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0D6]))
    return [rng.permutation(np.flatnonzero(codes == c))
            for c in range(int(codes.max(initial=-1)) + 1)]


def subtarget(tgt, order: list[np.ndarray], per_class: int):
    """The target restricted to the first ``per_class`` images of each class (all of a
    smaller class), in their original order, with a key of its own."""
    rows = np.sort(np.concatenate([positions[:per_class] for positions in order]))
    if len(rows) == len(tgt):
        return tgt
    digest = hashlib.sha256(f"{tgt.key}|budget|".encode() + rows.astype("<i8").tobytes())
    return replace(tgt, x=tgt.x[rows], y=tgt.y[rows], key=digest.hexdigest(),
                   source=f"{tgt.source} ({per_class} per class)")


def search_on_budget(target, budget: float = 0.3, k: int = 3,
                     options: SearchOptions | None = None, *, index=None,
                     selection: TargetSelection | None = None, models=None, filter=None,
                     executor=None, start: int = START_PER_CLASS, growth: int = GROWTH,
                     **settings) -> Budgeted:
    """Rank the indexed models for ``target`` spending at most ``budget`` (a fraction
    of a full search's inference, in (0, 1]) and aiming at a settled top ``k``; see the
    module's docstring. The other arguments are :func:`zooindex.ranking.search`'s."""
    from .ranking import search

    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or \
            not 0 < budget <= 1:
        raise ZooIndexError(f"--budget must be a fraction of the full inference in (0, 1], "
                            f"not {budget!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ZooIndexError(f"--top must be a positive whole number, not {k!r}")
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 2:
        raise ZooIndexError(f"growth must be a whole number of at least 2, not {growth!r}")
    options, selection = from_settings(options, selection, **settings)
    if options.layer == "all":
        raise ZooIndexError("a budgeted search ranks models by one layer each; drop "
                            "--layer all")
    options = replace(options, confidence=True)
    tgt = selection.load(target)
    if not tgt.labeled:
        raise ZooIndexError("a budgeted search needs a labeled target: it races models on "
                            "their ranks' confidence")
    order = nested_order(tgt.y, selection.seed)
    largest = max(len(o) for o in order)
    per_class = max(1, min(int(start), largest))
    names = models
    total_models = None
    seen: dict = {}
    dropped: list = []
    rounds: list = []
    ranking = None
    spent = 0
    settled = False
    reason = ""
    last = False
    while True:
        sub = subtarget(tgt, order, per_class)
        if total_models is not None:
            left = budget * total_models * len(tgt) - spent
            if len(names) * len(sub) > left:
                # a last round with as many images per class as the budget still pays
                affordable = int(left // (len(names) * len(order)))
                if affordable <= rounds[-1]["per_class"]:
                    reason = "the next round would exceed the budget"
                    break
                per_class, last = affordable, True
                sub = subtarget(tgt, order, per_class)
        ranking = search(sub, options, index=index, models=names,
                         filter=filter if names is None else None, executor=executor)
        rows = ranking.ranked
        if total_models is None:
            total_models = len({r.model for r in ranking.results})
        for r in rows:
            seen[r.model] = seen.get(r.model, 0) + len(sub)
        spent += len(rows) * len(sub)
        settled = _settled(rows, k)
        keep = _survivors(rows, k, growth)
        out = [r.model for r in rows if r.model not in keep]
        dropped[:0] = list(reversed(out))
        rounds.append({"per_class": per_class, "images": len(sub), "models": len(rows),
                       "dropped": out, "settled": settled})
        if settled:
            reason = f"the top {min(k, len(rows))} is settled"
            break
        if per_class >= largest:
            reason = "the target is used up"
            break
        if last:
            reason = "the budget is spent"
            break
        names = keep
        per_class = min(per_class * growth, largest)
    full = (total_models or 0) * len(tgt)
    survivors = [r.model for r in ranking.ranked]
    return Budgeted(ranking=ranking, order=survivors + [m for m in dropped
                                                        if m not in survivors],
                    seen=seen, rounds=rounds, fraction=spent / full if full else 0.0,
                    budget=float(budget), k=k, settled=settled, reason=reason)


def _settled(rows, k: int) -> bool:
    """Is the top ``k`` the same on (90% of) the half-samples: the first ``k`` rows never
    rank below ``k`` and the others never above?"""
    if len(rows) <= k:
        return all(r.rank_interval is not None for r in rows)
    if any(r.rank_interval is None for r in rows):
        return False
    return all(r.rank_interval[1] <= k for r in rows[:k]) and \
        all(r.rank_interval[0] > k for r in rows[k:])


def _survivors(rows, k: int, growth: int) -> list[str]:
    """The models that race on: those whose best rank reaches the top ``k``, at most
    ``1 / growth`` of them and at least ``k + 1``, best ranked first."""
    cap = max(k + 1, math.ceil(len(rows) / growth))
    hopeful = [r.model for r in rows
               if r.rank_interval is None or r.rank_interval[0] <= k]
    chosen = hopeful[:cap]
    for r in rows:  # never fewer than k + 1 while there are that many
        if len(chosen) >= min(k + 1, len(rows)):
            break
        if r.model not in chosen:
            chosen.append(r.model)
    return chosen


__all__ = ["search_on_budget", "Budgeted", "nested_order", "subtarget"]
