"""A search on a budget: the top of a ranking for a fraction of the inference.

A full search runs every model on every image. :func:`search_on_budget` races the
models on growing, nested, stratified subsamples of the target instead, with the
ranking's own confidence (:mod:`zooindex.confidence`) deciding who stays:

1. every model sees a small stratified subsample (``start`` images per class, the same
   images for all models);
2. the models are ranked on it, each row with its rank interval over half-samples of
   those images (its 5th to 95th percentile rank). A model is dropped when even its
   best plausible rank, the interval's low end, is worse than ``k + margin``
   (:data:`MARGIN`): it cannot plausibly reach the top ``k``, even allowing for the
   bias of small subsamples below. The others race on, however many they are. With a
   scorer that reads a layer's whole width (LogME, H-score) two more rules hold, for
   such a score moves with the number of images by the layer's width (below): a
   model is dropped only if its rank by the score *projected* to the whole target
   (:func:`projected`, from this round and the one before) is out of reach too, and
   never while its layer is at least as wide as the images it saw; the projection also
   orders who goes on to the last round;
3. the survivors see ``growth`` times as many images per class: the images they saw
   already (kept in the cache, see :mod:`zooindex.cache.partial`, never run again) plus
   new ones, as long as the budget pays for that round;
4. then a last round with what is left: the best racers the budget can bring to the
   whole target see every image, if they are at least ``k`` (their scores are then the
   full search's own, so the top ``k`` is the full search's whenever the race kept its
   members); otherwise the best ``k + 1`` see as many images as it still pays for. The
   automatic mode (``budget="auto"``) grows until the top ``k`` is settled (the first
   ``k`` rows' intervals stay within the top ``k`` and the others' stay out) or the
   target is used up.

**Racing, not successive halving.** Successive halving keeps a fixed share of the
models each round, whatever the evidence: among close models it drops one that was
third by chance (on the demo zoo it kept the full search's top 3 in only half of the
searches). Racing drops only what the confidence intervals rule out, and the budget,
not a halving schedule, bounds the cost: a model's earlier images never run again, so
a racer costs its last subsample once. Keeping budget back for a last round on the whole
target instead (cutting the race early to the few it could carry there) was tried and
did worse on the evidence base (benchmarks/RESULTS.md): a cut on 8 images per class
drops models that rank well only with more images. Such models exist: a score such as
LogME moves with the number of images differently for a narrow and a wide layer, a bias
of small subsamples that no resampling of them shows, so a race on small subsamples can
rule out the wrong model with confidence. Its evidence per image carries an Occam term
of order ``width / images``; over fewer images than its width a layer fits the one-hot
labels exactly, and the score there says little of the whole target's. Hence the
projection along ``a + b / images`` and the rule on wide layers, for full-width scorers
only: a score on ``dim`` principal components has the same width for every model, and
projecting it only added noise (benchmarks/RESULTS.md, *budget-choices*). The answer is
what was measured: the last round's survivors in its ranking's order.

**What is counted.** ``seen``: the images each model's ranking used (nested rounds:
its last round's subsample). ``fraction``: the images run for the race, summed over the
models, over a full search's ``models x images``; on a cold cache this is the inference
spent. ``ran``: the images actually run now (fewer when earlier searches left
activations of this target in the cache). A later full search runs only the images no
model saw yet. Off unless asked for: a search without a budget is exactly
:func:`zooindex.ranking.search`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ZooIndexError
from .options import SearchOptions, TargetSelection, from_settings
from .partial import gather, rows_of

#: images per class in the first round, unless given: enough for every default member
#: (k-NN needs four per class) and for half-samples of two per class
START_PER_CLASS = 8
GROWTH = 2
#: a model is dropped when its best plausible rank is worse than ``k + MARGIN``: 3
#: kept the full search's top 3 in 8 of 8 searches with the silhouette and 1 of 8 with
#: LogME on the evidence base's development zoo at a 30% budget, against 7 and 0 with
#: no margin (benchmarks/bench_budget.py --margin, 2026-12-06)
MARGIN = 3
#: with a full-width scorer (LogME, H-score), race on each model's score projected to
#: the whole target from its last two rounds (:func:`projected`) as well as on its rank
#: interval, and never drop a model over fewer images than its layer's width (there such
#: a score fits the labels exactly, whatever the layer). LogME on the development zoo,
#: same top 3 at 30% / 50% / auto: neither rule 1/8, 2/8, 2/8; the projection alone 2/8,
#: 2/8, 2/8; the width rule alone 1/8, 8/8, 8/8; both 4/8, 8/8, 8/8. Checked on the zoo
#: with the held-out networks: 6/8, 6/8, 5/8 without them, 8/8, 8/8, 8/8 with both
#: (bench_budget.py --project/--wide, benchmarks/RESULTS.md, 2026-12-06)
PROJECT = True
WIDE = True
#: the projection's form: ``"inverse"`` (``a + b / n``, the evidence's Occam term) or
#: ``"log"`` (``a + b log n``); on the development zoo 4/8, 8/8, 8/8 against 3/8, 7/8,
#: 8/8 (--trend)
TREND = "inverse"


@dataclass(frozen=True)
class Budget:
    """How much a search may spend: a ``fraction`` of a full search's inference, a
    number of ``seconds``, or ``auto`` (until the top is settled; at most everything)."""

    fraction: float | None = None
    seconds: float | None = None
    auto: bool = False

    def __str__(self) -> str:
        if self.auto:
            return "auto"
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return f"{self.fraction:.0%}"


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(value) -> Budget:
    """A :class:`Budget` from ``0.3``, ``"0.3"``, ``"30%"``, ``"90s"``, ``"5m"``,
    ``"1.5h"`` or ``"auto"``; a :class:`Budget` passes through."""
    if isinstance(value, Budget):
        return value
    bad = ZooIndexError(f"--budget must be a fraction of the full inference in (0, 1] "
                        f"(0.3 or 30%), a time (90s, 5m, 1h) or auto, not {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        if not 0 < value <= 1:
            raise bad
        return Budget(fraction=float(value))
    if not isinstance(value, str):
        raise bad
    text = value.strip().lower()
    if text == "auto":
        return Budget(auto=True)
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(%|s|m|h)?", text)
    if match is None:
        raise bad
    number, unit = float(match.group(1)), match.group(2)
    if unit in _UNITS:
        if number <= 0:
            raise bad
        return Budget(seconds=number * _UNITS[unit])
    fraction = number / 100 if unit == "%" else number
    if not 0 < fraction <= 1:
        raise bad
    return Budget(fraction=fraction)


@dataclass
class Budgeted:
    """What a budgeted search did.

    ``ranking``: the last round's :class:`~zooindex.ranking.Ranking` (its models: the
    survivors; then, skipped with their reasons, the models no round could rank).
    ``order``: every model ranked, the survivors in the last round's order, then the
    dropped ones, the last dropped first. ``seen``: model -> images its ranking used.
    ``ran``: model -> images run for it now (the others came from the cache).
    ``rounds``: per round, ``per_class`` images, ``images``, ``models`` raced,
    ``dropped`` (names), ``settled``, ``top`` (the first ``k`` of the order then) and
    ``seconds``. ``fraction``: the images seen, summed over models, over a full search's
    (models x images); ``budget``: what was allowed. ``settled``: whether the top ``k``
    was settled when it stopped; ``reason``: why it stopped. ``seconds``: wall time;
    ``seconds_per_image``: measured inference per image and model (``None`` when nothing
    ran), which prices what was saved (:attr:`saved_seconds`).
    """

    ranking: object
    order: list
    seen: dict
    rounds: list = field(default_factory=list)
    fraction: float = 0.0
    budget: Budget = field(default_factory=lambda: Budget(fraction=1.0))
    k: int = 3
    settled: bool = False
    reason: str = ""
    ran: dict = field(default_factory=dict)
    full_images: int = 0
    seconds: float = 0.0
    seconds_per_image: float | None = None
    samples: str = "images"  # what the target holds: "images" or "texts"
    seed: int = 0            # drew the nested subsamples (the selection's seed)

    @property
    def saved(self) -> float:
        """The share of a full search's inference not spent."""
        return 1.0 - self.fraction

    @property
    def saved_seconds(self) -> float | None:
        """The inference not spent, priced at the measured seconds per image."""
        if self.seconds_per_image is None:
            return None
        return self.seconds_per_image * self.full_images * self.saved

    @property
    def summary(self) -> str:
        """What it spent and saved, its rounds, and why it stopped, in a sentence."""
        steps = ", ".join(f"{r['models']} models x {r['per_class']} per class"
                          for r in self.rounds)
        saved = self.saved_seconds
        return (f"budget {self.budget}: spent {self.fraction:.1%} of a full search's "
                f"inference (saved {self.saved:.1%}"
                f"{f', about {saved:.1f} s' if saved is not None else ''}) in "
                f"{len(self.rounds)} round{'s' * (len(self.rounds) != 1)} ({steps}) and "
                f"{self.seconds:.1f} s, {sum(self.ran.values())} {self.samples} run; "
                f"stopped: {self.reason}")

    @property
    def dropped(self) -> list[dict]:
        """The models dropped from the race, in :attr:`order`'s order: each with the
        ``round`` (1-based) after which it was dropped and the ``images`` it saw."""
        when = {m: i for i, r in enumerate(self.rounds, 1) for m in r["dropped"]}
        survivors = {r.model for r in self.ranking.ranked} if self.ranking else set()
        return [{"model": m, "round": when.get(m), "images": self.seen.get(m)}
                for m in self.order if m not in survivors and m in when]

    def seen_target(self, tgt):
        """The subsample of ``tgt`` (the whole target searched) that the last round
        ranked on: the images every survivor saw, with the key its activations are
        cached under, so that anything drawn from it runs no model again."""
        if not self.rounds:
            return tgt
        return subtarget(tgt, nested_order(tgt.y, self.seed), self.rounds[-1]["per_class"])

    @property
    def stable_after(self) -> int | None:
        """Images per class after which the top ``k`` (in order) no longer changed over
        the later rounds; ``None`` when it changed in the last round (or there was one)."""
        tops = [tuple(r["top"]) for r in self.rounds]
        if len(tops) < 2 or tops[-1] != tops[-2]:
            return None
        first = len(tops) - 1
        while first > 0 and tops[first - 1] == tops[-1]:
            first -= 1
        return self.rounds[first]["per_class"]

    @property
    def advice(self) -> str:
        """How many images (texts) per class were enough for this target, in a sentence."""
        k = min(self.k, len(self.order))
        last = self.rounds[-1]["per_class"] if self.rounds else 0
        after = self.stable_after
        if after is None:
            return (f"the top {k} was still changing at {last} {self.samples} per class: "
                    f"more {self.samples} may change it")
        return (f"the top {k} stopped changing after {after} {self.samples} per class (the same "
                f"up to {last} per class)")

    def to_dict(self) -> dict:
        return {"budget": str(self.budget), "spent": round(self.fraction, 4),
                "saved": round(self.saved, 4),
                "saved_seconds": None if self.saved_seconds is None
                else round(self.saved_seconds, 2),
                "seconds": round(self.seconds, 2), "k": self.k, "settled": self.settled,
                "reason": self.reason, "stable_after": self.stable_after,
                "advice": self.advice, "rounds": self.rounds, "seen": self.seen,
                "ran": self.ran, "order": self.order}


def nested_order(labels, seed: int = 0) -> list[np.ndarray]:
    """Per class code, its sample positions in a seeded random order: a round with
    ``m`` images per class takes the first ``m`` of each (so rounds are nested)."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0D6]))
    return [rng.permutation(np.flatnonzero(codes == c))
            for c in range(int(codes.max(initial=-1)) + 1)]


def first_rows(order: list[np.ndarray], per_class: int) -> np.ndarray:
    """The sorted positions of the first ``per_class`` images of each class."""
    return np.sort(np.concatenate([positions[:per_class] for positions in order]))


def subtarget(tgt, order: list[np.ndarray], per_class: int):
    """The target restricted to the first ``per_class`` images of each class (all of a
    smaller class), in their original order, with a key of its own."""
    return rows_of(tgt, first_rows(order, per_class))


# ---- the race ----------------------------------------------------------------------------

def search_on_budget(target, budget=0.3, k: int = 3,
                     options: SearchOptions | None = None, *, index=None,
                     selection: TargetSelection | None = None, models=None, filter=None,
                     executor=None, start: int = START_PER_CLASS, growth: int = GROWTH,
                     margin: int = MARGIN, project: bool = PROJECT, wide: bool = WIDE,
                     on_round=None, **settings) -> Budgeted:
    """Rank the indexed models for ``target`` spending at most ``budget`` (a fraction
    of a full search's inference in (0, 1], a time such as ``"90s"``, or ``"auto"``)
    and aiming at a settled top ``k``; see the module's docstring. ``on_round(row)``,
    when given, is called with each round's row (as in :attr:`Budgeted.rounds`) once
    that round is over, e.g. for live progress. ``project`` and ``wide`` switch the two
    rules for full-width scorers (:data:`PROJECT`), ``margin`` is :data:`MARGIN`,
    ``start`` and ``growth`` the first round's images per class and how much each round
    multiplies them. The other arguments are
    :func:`zooindex.ranking.search`'s."""
    from .index import opened
    from .ranking import _records, search

    started = time.perf_counter()
    plan = parse_budget(budget)
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
    full_width = _full_width(options)
    largest = max(len(o) for o in order)
    per_class = max(1, min(int(start), largest))
    with opened(index, create=False) as idx:
        records = {r.name: r for r in _records(idx, models, filter)}
        alive = list(records)
        total_models = None
        seen: dict = {}
        ran: dict = {}
        dropped: list = []
        rounds: list = []
        skipped: dict = {}  # model -> its skipped row, from the round that skipped it
        ranking = None
        settled, reason, last = False, "", False
        meter = {"inference_seconds": 0.0}
        before: dict = {}  # model -> (images, score) of the round before
        copies: list = []  # the rounds' activation entries, dropped at the end
        while True:
            t = time.perf_counter()
            rows = first_rows(order, per_class)
            sub = rows_of(tgt, rows)
            got = gather(idx, tgt, [records[m] for m in alive], rows, options, executor, meter)
            copies += _cache_round(idx, sub, records, got, options)
            ranking = search(sub, options, index=idx, models=alive, executor=executor)
            ranked = ranking.ranked
            for r in ranking.skipped:  # out of the race, but said as a full search says it
                skipped.setdefault(r.model, r)
            if total_models is None:
                total_models = max(len(ranked), 1)
            for r in ranked:
                seen[r.model] = len(sub)
                ran[r.model] = ran.get(r.model, 0) + (got[r.model][1] if r.model in got
                                                      else len(sub))
            ahead = None
            if project and full_width:
                if not before:  # the first round: its first half, scored alone
                    before = _half_scores(idx, tgt, order, per_class, rows, got, records,
                                          [r.model for r in ranked], options, executor,
                                          copies)
                ahead = projected(ranked, before, len(sub), len(tgt))
                before = {r.model: (len(sub), r.score) for r in ranked}
            settled = _settled(ranked, k, ahead,
                               len(sub) if wide and full_width else None)
            out = _out_of_reach(ranked, k, margin, ahead,
                                len(sub) if wide and full_width else None)
            alive = [r.model for r in (ranked if ahead is None else
                                       sorted(ranked, key=lambda r: ahead[r.model]))
                     if r.model not in out]
            rounds.append({"per_class": per_class, "images": len(sub),
                           "models": len(ranked), "dropped": out, "settled": settled,
                           "seconds": 0.0})
            if settled and plan.auto:
                reason = f"the top {min(k, len(ranked))} is settled"
            elif per_class >= largest:
                reason = "the target is used up"
            elif last:
                reason = "the budget is spent"
            else:
                left = _left(plan, started, total_models * len(tgt), sum(seen.values()),
                             sum(ran.values()))
                step = _next_round(order, alive, len(sub), len(tgt), left, k, per_class,
                                   growth, plan.auto)
                if step is None:
                    reason = "the budget is spent"
                else:
                    per_class, keep, last = step
                    out += [m for m in alive if m not in keep]
                    alive = keep
            if reason:  # the answer is what was measured: the survivors in the ranking's order
                racing = set(alive)
                alive = [r.model for r in ranked if r.model in racing]
            dropped[:0] = out
            rounds[-1].update(top=(alive + dropped)[:k],
                              seconds=round(time.perf_counter() - t, 3))
            if on_round is not None:
                on_round(rounds[-1])
            if reason:
                _forget_rounds(idx, copies, sub.key)
                break
    if ranking is not None:  # models no round could rank stay in the answer, skipped
        shown = {r.model for r in ranking.results}
        ranking.results += [r for m, r in skipped.items() if m not in shown]
    full = (total_models or 0) * len(tgt)
    spent = sum(seen.values())
    runs = sum(ran.values())
    return Budgeted(ranking=ranking, order=alive + [m for m in dropped if m not in alive],
                    seen=seen, ran=ran, rounds=rounds, fraction=spent / full if full else 0.0,
                    budget=plan, k=k, settled=settled, reason=reason, full_images=full,
                    seconds=time.perf_counter() - started,
                    seconds_per_image=meter["inference_seconds"] / runs if runs else None,
                    samples="texts" if getattr(tgt, "kind", "image") == "text" else "images",
                    seed=selection.seed)


def _left(plan: Budget, started: float, full: int, spent: int, runs: int) -> float:
    """Images (summed over models) the budget still pays for."""
    if plan.seconds is not None:
        elapsed = time.perf_counter() - started
        per_image = elapsed / max(runs or spent, 1)   # everything a round costs, per image
        return (plan.seconds - elapsed) / per_image
    fraction = 1.0 if plan.auto else plan.fraction
    return fraction * full - spent


def _next_round(order, alive: list, seen: int, n: int, left: float, k: int, per_class: int,
                growth: int, auto: bool):
    """``(per_class, models, last)`` of the next round, or ``None`` when the budget pays
    for nothing more. ``alive``: the racing models, best first, each having seen
    ``seen`` of the target's ``n`` images; ``left``: images the budget still pays for.

    The race keeps the models it cannot rule out and grows their subsample while the
    budget pays for that. When it no longer does, the last round: the best racers the
    budget can bring to the whole target, if that is at least ``k`` (their scores are
    then the full search's own); else the best ``k + 1`` on as many images as it pays
    for. ``auto`` only grows (its budget is the whole target).
    """
    largest = max(len(o) for o in order)
    grown = min(per_class * growth, largest)
    if auto:
        return grown, alive, False
    if len(alive) * (n - seen) <= left:  # every racer can see everything: the last round
        return largest, alive, True
    finalists = min(k + 1, len(alive))
    if len(alive) * (len(first_rows(order, grown)) - seen) <= left and grown < largest:
        return grown, alive, False
    carried = min(int(left // max(n - seen, 1)), len(alive))
    if carried >= min(k, len(alive)):
        return largest, alive[:carried], True
    keep = alive[:finalists]
    lo, hi = per_class, largest - 1
    while lo < hi:  # the cost grows with per_class: the largest affordable one
        mid = (lo + hi + 1) // 2
        if len(keep) * (len(first_rows(order, mid)) - seen) <= left:
            lo = mid
        else:
            hi = mid - 1
    return (lo, keep, True) if lo > per_class else None


def _cache_round(idx, sub, records, got: dict, options: SearchOptions) -> list[tuple]:
    """Put each model's activations of this round's subsample where the search looks
    for them (under the subsample's key and the model's own features key: an image
    model's preprocessing, a text model's tokenizer and pooling), so that it runs no
    model. Returns the ``(model sha256, layer, key, features key)`` of each entry, for
    :func:`_forget_rounds`."""
    from .cache import Entry
    from .partial import layer_and_key

    target = (sub.key, sub.source, len(sub), list(sub.classes))
    entries = []
    for name, (array, _) in got.items():
        record = records[name]
        found = layer_and_key(record, sub, options)
        if found is None:
            continue
        layer, prep = found
        entries.append((record.sha256, layer, sub.key, prep))
        if layer in idx.cache.cached_files(record.sha256, sub.key, prep):
            continue
        staged = idx.cache.stage_activations(record.sha256, layer, sub.key, prep, array)
        if staged is not None:
            idx.cache.absorb(Entry(model_sha=record.sha256, target=sub.key, prep=prep,
                                   staged=[staged]), target)
    return entries


def _forget_rounds(idx, entries: list, keep: str) -> None:
    """Drop the activation entries the earlier rounds' rankings read (copies of what
    the models saw, which the partial entries of the whole target keep once): all but
    those of the subsample ``keep``, the last round's, which the report's and the web
    page's figures read. Their scores stay cached."""
    for sha, layer, key, prep in entries:
        if key != keep:
            idx.cache.drop_entry(sha, layer, key, prep)


def _settled(rows, k: int, ahead: dict | None = None, images: int | None = None) -> bool:
    """Is the top ``k`` the same on (90% of) the half-samples: the first ``k`` rows never
    rank below ``k`` and the others never above? And, given ``ahead`` (model ->
    projected rank), the same ``k`` as the projection's; given ``images``, is none of
    the others' layers at least as wide as that (as :func:`_out_of_reach`, such a model
    is not ruled out yet)?"""
    if ahead is not None and {r.model for r in rows[:k]} != \
            {m for m, rank in ahead.items() if rank <= k}:
        return False
    if images is not None and any(r.width is not None and r.width >= images
                                  for r in rows[k:]):
        return False
    if len(rows) <= k:
        return all(r.rank_interval is not None for r in rows)
    if any(r.rank_interval is None for r in rows):
        return False
    return all(r.rank_interval[1] <= k for r in rows[:k]) and \
        all(r.rank_interval[0] > k for r in rows[k:])


def _out_of_reach(rows, k: int, margin: int, ahead: dict | None = None,
                  images: int | None = None) -> list[str]:
    """The models whose best plausible rank (the low end of their rank interval) is worse
    than ``k + margin`` and, given ``ahead`` (model -> projected rank), whose projected
    rank is too; given ``images`` (the subsample's size, for a scorer that reads the
    layer's full width), not those whose layer is at least as wide as that (their score
    fits the labels exactly there: it says little of what more images will give). Never
    so many that fewer than ``k + 1`` would race on."""
    out = [r.model for r in rows
           if r.rank_interval is not None and r.rank_interval[0] > k + margin
           and (ahead is None or ahead[r.model] > k + margin)
           and (images is None or r.width is None or r.width < images)]
    room = max(len(rows) - (k + 1), 0)
    return out[len(out) - room:] if len(out) > room else out


def _full_width(options: SearchOptions) -> bool:
    """Does the ranking's scorer read a layer's whole width (LogME, H-score, ...), rather
    than its first ``dim`` principal components (the silhouette, k-NN, ...) or the
    model's classifier output (LEEP)?"""
    from .estimators import resolve

    scorer = resolve(options.scorers[0])
    return any("dim" not in e.params and not e.needs_probs for e in scorer.estimators)


def projected(rows, before: dict, n: int, total: int) -> dict:
    """Model -> its rank by the score projected to the whole target (``total`` images)
    from this round's (``n`` images) and the round before's (``before``: model ->
    ``(images, score)``), as ``s(m) = a + b / m`` extrapolates: ``s(N) = s(n) + (s(n) -
    s(h)) h (N - n) / (N (n - h))``. Rows without two finite scores keep their own
    score. ``rows`` are in the ranking's order (best first, whichever way its score
    runs)."""
    scores = [r.score for r in rows]
    finite = [v for v in scores if v is not None and np.isfinite(v)]
    sign = 1.0 if len(finite) < 2 or finite[0] >= finite[-1] else -1.0
    values = {}
    for position, r in enumerate(rows):
        h, old = before.get(r.model, (None, None))
        now = r.score
        if now is None or not np.isfinite(now):
            values[r.model] = (-np.inf, position)
            continue
        value = now
        if old is not None and np.isfinite(old) and h is not None and 0 < h < n:
            if TREND == "log":
                value = now + (now - old) * np.log(total / n) / np.log(n / h)
            else:
                value = now + (now - old) * h * (total - n) / (total * (n - h))
        values[r.model] = (sign * value, -position)
    best = sorted(values, key=lambda m: values[m], reverse=True)
    return {m: i + 1 for i, m in enumerate(best)}


def _half_scores(idx, tgt, order, per_class, rows, got, records, models, options,
                 executor, copies: list) -> dict:
    """Model -> ``(images, score)`` on the first half of the first round's subsample
    (nested in it: its activations are a slice of what the round ran); the activation
    entries it caches are added to ``copies``."""
    from .ranking import search

    half = first_rows(order, max(per_class // 2, 1))
    if len(half) >= len(rows):
        return {}
    sub = rows_of(tgt, half)
    where = np.searchsorted(rows, half)
    copies += _cache_round(idx, sub, records,
                           {m: (array[where], 0) for m, (array, _) in got.items()}, options)
    try:
        ranking = search(sub, replace(options, confidence=False), index=idx,
                         models=models, executor=executor)
    except ZooIndexError:  # too few images per class for the scorer: no trend yet
        return {}
    return {r.model: (len(sub), r.score) for r in ranking.ranked}


__all__ = ["search_on_budget", "Budgeted", "Budget", "parse_budget", "nested_order",
           "subtarget"]
