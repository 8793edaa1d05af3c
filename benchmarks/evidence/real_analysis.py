"""The analysis of the real-network base: candidates, weighted tau against the probe,
the choice with whole families left out, the label-free question, the held-out networks.

Input is the raw JSON that ``bench_real.py`` writes (``benchmarks/real-scores.json``), so
the analysis can be re-run without any measurement.

Scores are compared over the networks of one target at a time, at one regime (labeled
images per class) and one draw of those images: one *ranking*. A candidate's value on a
set of networks is the weighted tau (``stats.weighted_tau``) between its scores and the
networks' probe accuracies, averaged over the draws of a regime, then over the
(target, regime) cells asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import stats

SIZE = "size prior"                 # log parameter count: bigger ranks higher
SOURCE = "source accuracy"          # the network's accuracy on its own task, where known
RECOMMENDED = ("logme", "sfda", "knn", "ncti-sei")  # the default ensemble this base replaced
SMALL = ("10", "30")
POOL = 8            # ensembles are built from the fold's POOL best single estimators
BUDGET = 2.0        # times the silhouette's seconds on the benchmark shape
PRICE = 0.02        # weighted tau a candidate must gain per silhouette-multiple over BUDGET
LABEL_FREE_BASELINES = (SIZE, SOURCE)
COVERAGE = 0.9      # a candidate must score this share of the fold's (network, ranking)s

RULE = f"""\
Written before any result was read, and applied by the script:

1. The base for every choice: all networks except the held-out ones (the fixed rule of
   `real_measure.holdout`: a network is held out when sha256("{'zooindex-real-holdout/'}" +
   name) mod 4 = 0, at most one per family and four in all); the ground truth is the probe
   accuracy; the criterion of a candidate is its mean weighted tau over the targets at 10
   and 30 labeled images per class (every draw), i.e. the small-sample regime.
2. Candidates: every labeled estimator alone; the target-blind baselines ({SIZE},
   {SOURCE}); mean-rank ensembles (`zooindex.estimators.combine.mean_rank`) of 2-4
   members drawn from the {POOL} single estimators best by the criterion (on the fold's
   networks); size-aware candidates: each single estimator and each such ensemble with the
   {SIZE} added as one more member.
3. Cost: a candidate costs the sum of its members' seconds on the benchmark shape (5,000 x
   1,024, 10 classes; the size prior costs nothing). One costing at most {BUDGET:g}x the
   silhouette is within budget. The best candidate over budget replaces the best within
   budget only if its criterion is higher by at least {PRICE} per silhouette-multiple
   above {BUDGET:g}x (e.g. a candidate at 5x must gain {PRICE * 3:.2f}).
4. Families left out (a family is the architecture the manifest names, before any
   bracketed detail: "MobileNet (MediaPipe Iris)" and "MobileNet (MobileNetV3-small)"
   are one family): for each family, the choice of steps 2-3 is made on the networks
   of the other families only, and evaluated on the rankings of all networks (the left-out
   family included). The default is the candidate chosen in the most folds (ties: the
   higher mean held-out value over its folds, then the lower cost); its held-out value is
   the mean over folds of the fold's choice (the value of the procedure, not of one pick).
5. A candidate competes only where it scores at least {COVERAGE:.0%} of the fold's
   (network, ranking) pairs (an estimator refusing most networks, or the {SOURCE}
   known for a few, is reported but not chosen). Ties in the criterion go to the earlier candidate in the order of step 2 (singles, then
   smaller ensembles): the simpler one.
6. The held-out networks are read only at the end, for the report's last section.
"""


@dataclass(frozen=True)
class Cell:
    target: str
    regime: str


class Base:
    """The raw measurements as arrays: one column of scores per (scorer, ranking)."""

    def __init__(self, raw: dict, protocol: str = "probe"):
        self.raw = raw
        self.nets = list(raw["nets"])
        self.targets = list(raw["targets"])
        self.regimes = [r for r in ("10", "30", "100")]
        # families as real_measure.family_of groups them (idempotent on grouped names)
        self.family = {n: raw["nets"][n]["family"].split(" (")[0] for n in self.nets}
        self.held_out = [n for n in self.nets if raw["nets"][n].get("held_out")]
        self.estimators = list(raw["estimators"])
        self.labeled = [e for e in self.estimators if raw["estimators"][e]["needs_labels"]]
        self.label_free = [e for e in self.estimators
                           if not raw["estimators"][e]["needs_labels"]]
        self.cost = {e: raw["cost"].get(e, {}).get("seconds", np.nan) for e in self.estimators}
        self.cost[SIZE] = self.cost[SOURCE] = 0.0
        n = len(self.nets)
        size = np.array([np.log(raw["nets"][m]["size"]) for m in self.nets])
        src = np.array([raw["nets"][m].get("source_accuracy") or np.nan for m in self.nets],
                       dtype=np.float64)
        self.truth = {t: np.array([raw["truth"].get(m, {}).get(t, {}).get(protocol, np.nan)
                                   for m in self.nets]) for t in self.targets}
        # columns[(target, regime, draw)][scorer] -> (nets,) array
        self.memo: dict = {}  # taus() by (candidate, networks, regimes, truth)
        self.columns: dict[tuple, dict[str, np.ndarray]] = {}
        for t in self.targets:
            for r in self.regimes:
                draws = max((len(raw["scores"].get(m, {}).get(t, {}).get(r, []))
                             for m in self.nets), default=0)
                for d in range(draws):
                    col = {e: np.full(n, np.nan) for e in self.estimators}
                    for i, m in enumerate(self.nets):
                        row = raw["scores"].get(m, {}).get(t, {}).get(r, [])
                        if d < len(row):
                            for e, v in row[d].items():
                                if e in col and v is not None:
                                    col[e][i] = v
                    col[SIZE], col[SOURCE] = size, src
                    self.columns[t, r, str(d)] = col

    def keys(self, regimes) -> list[tuple]:
        return [k for k in self.columns if k[1] in regimes]

    def mask(self, exclude=(), families_out=()) -> np.ndarray:
        return np.array([m not in exclude and self.family[m] not in families_out
                         for m in self.nets])

    def has(self, cand: tuple) -> bool:
        """Were all of ``cand``'s members measured?"""
        return all(e in self.estimators or e in (SIZE, SOURCE) for e in cand)

    def cost_of(self, cand: tuple) -> float:
        return float(sum(self.cost.get(e, np.nan) for e in cand))


def wins(values: np.ndarray) -> np.ndarray:
    """Each finite value's normalised rank among the finite ones (share of the others
    strictly below, ties half; 0.5 for a lone value), NaN elsewhere: the per-member step
    of ``combine.mean_rank``, on a vector."""
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    v = values[ok]
    if len(v) == 1:
        out[ok] = 0.5
    elif len(v) > 1:
        below = np.searchsorted(np.sort(v), v, side="left")
        ties = np.searchsorted(np.sort(v), v, side="right") - below - 1
        out[ok] = (below + 0.5 * ties) / (len(v) - 1)
    return out


def candidate_scores(cand: tuple, col: dict, mask: np.ndarray) -> np.ndarray:
    """The candidate's scores on the masked networks: the member's own for a single,
    the mean normalised rank over the members a network has for an ensemble."""
    if len(cand) == 1:
        return col[cand[0]][mask]
    ranks = np.array([wins(col[e][mask]) for e in cand])
    have = np.isfinite(ranks).sum(axis=0)
    total = np.nansum(ranks, axis=0)
    return np.where(have > 0, total / np.maximum(have, 1), np.nan)


def taus(base: Base, cand: tuple, mask: np.ndarray, regimes=SMALL,
         truth: dict | None = None) -> np.ndarray:
    """``(targets, regimes)``: the weighted tau of ``cand`` on the masked networks,
    averaged over each regime's draws (NaN where undefined)."""
    memo_key = (cand, mask.tobytes(), tuple(regimes), id(truth))
    if memo_key in base.memo:
        return base.memo[memo_key]
    truth = truth or base.truth
    out = np.full((len(base.targets), len(regimes)), np.nan)
    for i, t in enumerate(base.targets):
        acc = truth[t][mask]
        for j, r in enumerate(regimes):
            vals = [stats.weighted_tau(candidate_scores(cand, base.columns[k], mask), acc)
                    for k in base.keys([r]) if k[0] == t]
            out[i, j] = stats.nanmean(vals)
    base.memo[memo_key] = out
    return out


def coverage(base: Base, cand: tuple, mask: np.ndarray, regimes=SMALL) -> float:
    """The share of (network, ranking) pairs that ``cand`` scores."""
    got = [np.isfinite(candidate_scores(cand, base.columns[k], mask)).mean()
           for k in base.keys(regimes)]
    return float(np.mean(got)) if got else 0.0


def criterion(base: Base, cand: tuple, mask: np.ndarray, regimes=SMALL) -> float:
    return stats.nanmean(taus(base, cand, mask, regimes))


def name(cand: tuple) -> str:
    if len(cand) == 1:
        return cand[0]
    return "ensemble:" + ",".join(cand)


@dataclass
class Choice:
    chosen: tuple
    value: float                 # its criterion on the fold's networks
    best_in_budget: tuple
    table: dict                  # cand -> criterion, every candidate tried


def candidates(base: Base, mask: np.ndarray, pool_from=None) -> list[tuple]:
    singles = [(e,) for e in (pool_from or base.labeled)]
    ranked = sorted(singles, key=lambda c: -np.nan_to_num(criterion(base, c, mask), nan=-9))
    # members in the registry's order, so that one set of members is one candidate
    # whichever fold's ranking drew it
    pool = sorted((c[0] for c in ranked[:POOL]), key=base.estimators.index)
    ensembles = stats.subsets(pool, (2, 3, 4))
    out = singles + [(SIZE,), (SOURCE,)] + [tuple(c) for c in ensembles]
    out += [(e, SIZE) for e in (pool_from or base.labeled)]
    out += [tuple(c) + (SIZE,) for c in ensembles if len(c) < 4]
    return list(dict.fromkeys(out))


def choose(base: Base, mask: np.ndarray, cands: list[tuple] | None = None) -> Choice | None:
    """Steps 2, 3 and 5 of :data:`RULE` on the masked networks."""
    cands = cands if cands is not None else candidates(base, mask)
    cands = [c for c in cands if coverage(base, c, mask) >= COVERAGE]
    table = {c: criterion(base, c, mask) for c in cands}
    sil = base.cost.get("silhouette", np.nan)

    def best(group):
        vals = [(table[c], -i) for i, c in enumerate(cands) if c in group
                and np.isfinite(table[c])]
        return cands[-max(vals)[1]] if vals else None

    within = [c for c in cands if base.cost_of(c) <= BUDGET * sil]
    over = [c for c in cands if c not in within]
    b_in, b_over = best(within), best(over)
    chosen = b_in
    if b_over is not None and (b_in is None or table[b_over] - table[b_in]
                               >= PRICE * (base.cost_of(b_over) / sil - BUDGET)):
        chosen = b_over
    if chosen is None:  # no candidate defined on these networks (e.g. tied accuracies)
        return None
    return Choice(chosen, table[chosen], b_in, table)


@dataclass
class Fold:
    family: str
    nets: int
    choice: Choice
    held_out_value: float        # the fold's choice on the rankings with the family in


def family_folds(base: Base, exclude=()) -> list[Fold]:
    """Step 4 of :data:`RULE`: each family left out of the choice, evaluated with it."""
    full = base.mask(exclude)
    folds = []
    for fam in sorted({base.family[m] for m in base.nets if m not in exclude}):
        train = base.mask(exclude, families_out=(fam,))
        if train.sum() < 2:
            continue
        c = choose(base, train)
        if c is None:
            continue
        folds.append(Fold(fam, int((full & ~train).sum()), c,
                          criterion(base, c.chosen, full)))
    return folds


def modal_choice(base: Base, folds: list[Fold]) -> tuple:
    counts = Counter(f.choice.chosen for f in folds)
    held = {c: np.mean([f.held_out_value for f in folds if f.choice.chosen == c])
            for c in counts}
    return max(counts, key=lambda c: (counts[c], held[c], -base.cost_of(c)))


def _row_means(table: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values; NaN for a row with none."""
    return np.array([stats.nanmean(row) for row in table])


def interval(base: Base, cand: tuple, mask: np.ndarray, regimes=SMALL, draws: int = 1000,
             seed: int = 0) -> stats.Interval:
    """The mean over targets with a percentile interval from resampling the targets."""
    per_target = _row_means(taus(base, cand, mask, regimes))[:, None]
    picks = stats.target_draws(len(per_target), draws, seed)
    return stats.percentile(stats.nanmean(per_target), stats.over_targets(per_target,
                                                                          picks)[:, 0])


def paired(base: Base, a: tuple, b: tuple, mask: np.ndarray, regimes=SMALL,
           draws: int = 1000, seed: int = 0) -> stats.Interval:
    """Mean difference a - b over targets, interval from resampling the targets."""
    diff = (_row_means(taus(base, a, mask, regimes))
            - _row_means(taus(base, b, mask, regimes)))[:, None]
    picks = stats.target_draws(len(diff), draws, seed)
    return stats.percentile(stats.nanmean(diff), stats.over_targets(diff, picks)[:, 0])


def label_free_candidates(base: Base) -> list[tuple]:
    singles = [(e,) for e in base.label_free] + [(b,) for b in LABEL_FREE_BASELINES]
    return singles + [(e, SIZE) for e in base.label_free]


def label_free_folds(base: Base, exclude=()) -> list[Fold]:
    """The label-free choice with each family left out (no cost rule: all are cheap)."""
    full = base.mask(exclude)
    cands = label_free_candidates(base)
    folds = []
    for fam in sorted({base.family[m] for m in base.nets if m not in exclude}):
        train = base.mask(exclude, families_out=(fam,))
        if train.sum() < 2:
            continue
        table = {c: criterion(base, c, train) if coverage(base, c, train) >= COVERAGE
                 else np.nan for c in cands}
        if not np.isfinite(list(table.values())).any():
            continue
        best = max(cands, key=lambda c: (np.nan_to_num(table[c], nan=-9), -cands.index(c)))
        folds.append(Fold(fam, int((full & ~train).sum()),
                          Choice(best, table[best], best, table),
                          criterion(base, best, full)))
    return folds


def ranks_of(values: np.ndarray) -> np.ndarray:
    """1 = best (highest); NaN stays NaN."""
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    order = np.argsort(-values[ok], kind="stable")
    r = np.empty(ok.sum())
    r[order] = np.arange(1, ok.sum() + 1)
    out[ok] = r
    return out


def held_out_ranks(base: Base, cands: list[tuple], regimes=SMALL) -> list[dict]:
    """For each held-out network and target: its rank by probe accuracy among all
    networks and its mean rank by each candidate over the small-regime draws."""
    full = base.mask()
    names = [m for m, keep in zip(base.nets, full) if keep]
    rows = []
    for m in base.held_out:
        i = names.index(m)
        for t in base.targets:
            row = {"net": m, "target": t, "of": len(names),
                   "true": ranks_of(base.truth[t][full])[i]}
            for c in cands:
                row[name(c)] = stats.nanmean([ranks_of(candidate_scores(
                    c, base.columns[k], full))[i] for k in base.keys(regimes) if k[0] == t])
            rows.append(row)
    return rows


