"""Scorer names, and combiners that aggregate several estimators over a search's models.

An estimator scores one model from that model's features alone, so its score is cached
per model and the index stays incremental. A rank aggregation cannot work that way: a
model's place among the others depends on every other model's score. It is therefore not
an estimator but a *combiner*: a pure function of the table of its members' scores over
all the models of one search,

    {model: {member: score}}  ->  {model: combined score}.

A ``--scorer`` name resolves (:func:`resolve`) to a :class:`Scorer`: the estimators to
compute per model, which the search caches one by one exactly as it caches any
estimator, and the combine step it runs once every model has been scored::

    scorers = resolve_many(["ensemble", "logme"])       # what --scorer gave
    for estimator in member_estimators(scorers):         # per model, cached per model
        table[model][estimator.name] = estimator(features, labels, probs=..., **options)
    for scorer in scorers:                               # after the last model
        column = scorer.combine(table)                   # {model: value}, higher better

A plain estimator resolves to a Scorer with one member whose combine step copies that
member's column, so the search needs one code path for both.

Names: an estimator (``logme``), a combiner with its default members (``ensemble``), a
combiner with chosen members (``ensemble:logme,nce,knn``), or ``recommended``
(:data:`zooindex.estimators.RECOMMENDED`).

A combined score is recomputed from the cached member scores after every search; it
depends on which models were searched together, so it is neither cached nor comparable
between searches of different zoos. Its cost is the sum of its members' costs plus
``O(M m log m)`` for ``M`` members and ``m`` models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import EstimatorError
from . import Estimator, _load_all, _RESERVED, _REGISTRY, available, get, label_free

#: the default members of ``ensemble``. From benchmarks/ESTIMATORS.md (56 models, 8
#: targets from four data sets, both transfer protocols): the mean-rank ensemble of 2-4
#: feature-only estimators with the highest mean weighted tau on all targets (0.830);
#: chosen the same way with each target left out it reaches 0.828 [0.79, 0.87] on the
#: held-out targets, where LogME alone reaches 0.817 and the silhouette 0.763. Its core,
#: logme, sfda and knn, is in every fold's choice but one; the fourth member varies, and
#: on earlier builds of the base (the zoo trained for 3 epochs; 42 models) other sets led
#: by margins within their intervals. All read the features alone, so every model, with
#: or without a classifier output, gets every member.
ENSEMBLE_MEMBERS: tuple[str, ...] = ("logme", "sfda", "knn", "ncti-sei")

Table = Mapping[Hashable, Mapping[str, float]]


@dataclass(frozen=True)
class Combiner:
    """A registered aggregation of several estimators' scores over the searched models."""

    name: str
    aggregate: Callable[[Table, Sequence[str]], dict]
    description: str
    members: tuple[str, ...]      # the default member estimators
    choosable: bool = True        # may ``name:a,b,c`` choose other members?
    experimental: bool = False

    @property
    def recommended(self) -> bool:
        """Is this combiner what ``--scorer recommended`` selects (with some members)?"""
        return parse(_recommended())[0] == self.name


_COMBINERS: dict[str, Combiner] = {}


def register_combiner(name: str, description: str, *, members: Sequence[str],
                      choosable: bool = True, experimental: bool = False):
    """Decorator that registers ``aggregate(table, members) -> {key: float}`` as ``name``."""

    def wrap(aggregate):
        if name in _COMBINERS or name in _REGISTRY or name in _RESERVED:
            raise ValueError(f"scorer name '{name}' registered twice or reserved")
        _COMBINERS[name] = Combiner(name=name, aggregate=aggregate, description=description,
                                    members=tuple(members), choosable=choosable,
                                    experimental=experimental)
        return aggregate

    return wrap


def combiners() -> list[Combiner]:
    """Every registered combiner, in registration order."""
    _load_all()
    return list(_COMBINERS.values())


@dataclass(frozen=True)
class Scorer:
    """What one ``--scorer`` name asks for: member estimators and how to combine them.

    ``name`` is the column name (``"logme"``, ``"ensemble"``,
    ``"ensemble:logme,nce,knn"``); ``estimators`` the members to compute per model;
    ``combiner`` ``None`` for a plain estimator.
    """

    name: str
    estimators: tuple[Estimator, ...]
    combiner: Combiner | None = None

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.estimators)

    @property
    def needs_labels(self) -> bool:
        """Does it need a labeled target? (A combination needs labels if any member does.)"""
        return any(e.needs_labels for e in self.estimators)

    @property
    def needs_probs(self) -> bool:
        """Does a member use the model's classifier output? Models without one miss it."""
        return any(e.needs_probs for e in self.estimators)

    @property
    def experimental(self) -> bool:
        return (self.combiner is not None and self.combiner.experimental) or \
            any(e.experimental for e in self.estimators)

    @property
    def description(self) -> str:
        if self.combiner is None:
            return self.estimators[0].description
        return f"{self.combiner.description}; members: {', '.join(self.members)}"

    def combine(self, table: Table) -> dict:
        """``{key: score}`` over the keys of ``table`` (``{key: {member: score}}``).

        Keys are whatever identifies a scored row: a model name, or ``(model, layer)``.
        Missing or non-finite member scores count as missing; what a combiner does with a
        row that misses members is documented with it. A plain estimator returns its
        column, without the rows that lack it. Higher is better.
        """
        if self.combiner is None:
            name = self.estimators[0].name
            return {key: float(row[name]) for key, row in table.items()
                    if _finite(row.get(name))}
        return self.combiner.aggregate(table, self.members)


def parse(name: str) -> tuple[str, tuple[str, ...] | None]:
    """Split a scorer name into its base and its chosen members (``None``: the defaults).

    ``"ensemble:logme, nce,knn"`` -> ``("ensemble", ("logme", "nce", "knn"))``;
    ``"logme"`` -> ``("logme", None)``. Syntax only: :func:`resolve` checks the names.
    """
    base, colon, rest = str(name).strip().partition(":")
    base = base.strip()
    if not colon:
        return base, None
    members = tuple(m.strip() for m in rest.split(","))
    if not rest.strip() or any(not m for m in members):
        raise EstimatorError(f"scorer '{name}': list the members after the colon, separated "
                             "by commas, e.g. ensemble:logme,nce,knn", estimator=base)
    return base, members


def resolve(name: str) -> Scorer:
    """The :class:`Scorer` a ``--scorer`` name selects; a clear error for a bad name.

    ``recommended`` resolves to :data:`~zooindex.estimators.RECOMMENDED` (the Scorer is
    named after what it is, e.g. ``ensemble``). Members must be estimators, named once
    each, at least two of them; combiners whose members are fixed (``ncti``) refuse a list.
    """
    _load_all()
    if str(name).strip() == "recommended":
        return resolve(_recommended())
    base, chosen = parse(name)
    if base in _COMBINERS:
        combiner = _COMBINERS[base]
        if chosen is None:
            members = combiner.members
        elif not combiner.choosable:
            raise EstimatorError(
                f"scorer '{base}' has fixed members ({', '.join(combiner.members)}); "
                f"use '{base}' without a list", estimator=base)
        else:
            members = chosen
        estimators = tuple(_member(m, name) for m in members)
        if len(set(members)) != len(members):
            raise EstimatorError(f"scorer '{name}' names a member twice", estimator=base)
        if len(members) < 2:
            raise EstimatorError(
                f"scorer '{name}' has one member; a combination of one is that estimator: "
                f"use --scorer {members[0]}", estimator=base)
        return Scorer(name=base if chosen is None else f"{base}:{','.join(members)}",
                      estimators=estimators, combiner=combiner)
    if base in _REGISTRY:
        if chosen is not None:
            raise EstimatorError(f"estimator '{base}' takes no members; only combiners do "
                                 f"({', '.join(_COMBINERS)})", estimator=base)
        return Scorer(name=base, estimators=(_REGISTRY[base],))
    raise EstimatorError(
        f"unknown scorer '{name}'; choose an estimator "
        f"({', '.join(e.name for e in available(experimental=True))}), a combiner "
        f"({', '.join(_COMBINERS)}, optionally with members: ensemble:logme,nce,knn), "
        "'recommended' or 'all'. See `zooindex scorers`.", estimator=base)


def depends_on(names, option: str) -> bool:
    """Does any of the scorers ``names`` (combinations resolved to their members) depend
    on ``option`` (``"dim"``, ``"metric"``)? Outputs name an option only when it counts."""
    return any(option in e.params for name in names for e in resolve(name).estimators)


def resolve_many(names, default: str | None = None) -> list[Scorer]:
    """Resolve the ``--scorer`` values in order, ``all`` expanded, repeats dropped.

    ``all`` means :func:`~zooindex.estimators.available` (the non-experimental
    estimators); an empty list means ``default`` (zooindex's default scorer if ``None``).
    """
    from ..options import DEFAULT_SCORER

    names = [names] if isinstance(names, str) else list(names or [default or DEFAULT_SCORER])
    out: dict[str, Scorer] = {}
    for name in names:
        found = ([Scorer(name=e.name, estimators=(e,)) for e in available()]
                 if str(name).strip() == "all" else [resolve(name)])
        for scorer in found:
            out.setdefault(scorer.name, scorer)
    return list(out.values())


def member_estimators(scorers: Iterable[Scorer]) -> list[Estimator]:
    """The distinct estimators the scorers need per model, in order of first mention."""
    out: dict[str, Estimator] = {}
    for scorer in scorers:
        for estimator in scorer.estimators:
            out.setdefault(estimator.name, estimator)
    return list(out.values())


def check_label_free(scorers: Iterable[Scorer]) -> None:
    """Refuse, in one message, the scorers that need labels, for an unlabeled target."""
    labeled = [s.name for s in scorers if s.needs_labels]
    if labeled:
        free = ", ".join(e.name for e in label_free())
        raise EstimatorError(
            f"the target has no labels, and {', '.join(labeled)} need them; choose "
            f"label-free scorers: {free} (or a combination of them, e.g. "
            "ensemble:rankme,cluster-silhouette). See `zooindex scorers`.",
            estimator=labeled[0])


def listing() -> list[dict]:
    """One row per name ``--scorer`` accepts, for ``zooindex scorers``: every estimator
    (experimental ones included), then every combiner.

    Keys: ``name``, ``kind`` (estimator or combiner), ``needs`` (what it reads: labels,
    features, classifier output), ``options`` (those its score depends on),
    ``min_per_class``, ``members`` (a combiner's default members), ``recommended``,
    ``experimental``, ``description``.
    """
    def needs(estimators):
        parts = []
        if any(e.needs_labels for e in estimators):
            parts.append("labels")
        if any(not e.needs_probs for e in estimators):
            parts.append("features")
        if any(e.needs_probs for e in estimators):
            parts.append("classifier output")
        return ", ".join(parts)

    rows = [{"name": e.name, "kind": "estimator", "needs": needs([e]),
             "options": ",".join(e.params), "min_per_class": e.min_per_class,
             "members": "", "recommended": e.recommended, "experimental": e.experimental,
             "description": e.description}
            for e in available(experimental=True)]
    for combiner in combiners():
        members = resolve(combiner.name).estimators
        rows.append({"name": combiner.name, "kind": "combiner", "needs": needs(members),
                     "options": ",".join(sorted({p for e in members for p in e.params})),
                     "min_per_class": max(e.min_per_class for e in members),
                     "members": ",".join(combiner.members),
                     "recommended": combiner.recommended,
                     "experimental": combiner.experimental,
                     "description": combiner.description})
    return rows


def _recommended() -> str:
    from . import RECOMMENDED  # read when asked, so that changing it takes effect

    return RECOMMENDED


def _member(member: str, name: str) -> Estimator:
    if member in _COMBINERS or member in _RESERVED:
        raise EstimatorError(f"scorer '{name}': member '{member}' is not an estimator; "
                             "members must be estimators", estimator=member)
    return get(member)


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float, np.floating, np.integer)) \
        and math.isfinite(value)


def _column(table: Table, member: str) -> tuple[list, np.ndarray]:
    keys = [key for key, row in table.items() if _finite(row.get(member))]
    return keys, np.array([float(table[key][member]) for key in keys], dtype=np.float64)


@register_combiner("ensemble", "mean normalised rank (Borda count) of several estimators "
                   "over the searched models", members=ENSEMBLE_MEMBERS)
def mean_rank(table: Table, members: Sequence[str]) -> dict:
    r"""Mean over members of each model's normalised rank; in [0, 1], higher is better.

    For each member ``j`` the ``m_j`` models that have its score are ranked, lowest
    score 1, ties given the average of the ranks they span (as ``scipy.stats.rankdata``
    with ``"average"``), and the rank is normalised to

        w_j(model) = (rank_j(model) - 1) / (m_j - 1)        (0.5 when m_j = 1),

    the share of the other models that this member places below it (ties count half).
    The combined score is the mean of ``w_j`` over the members the model has::

        ensemble(model) = 1 / |J(model)| sum_{j in J(model)} w_j(model).

    Why ranks: the members' scores live on unrelated scales (LogME in nats per sample,
    k-NN an accuracy, N-LEEP a log-likelihood), so they cannot be averaged as they are;
    ranks need no calibration, and no one member's outlier can outweigh the others
    (the Borda count). Normalising by ``m_j - 1`` keeps members comparable when some
    models lack one.

    Missing members: a model without a member's score (e.g. no classifier output for
    ``nce``, or the estimator refused its features) is ranked on the members it has,
    and that member's ranks are taken among the models that have it. A model with no
    member score at all is left out of the result; the caller reports it unscored.
    ``table`` is ``{key: {member: score}}``; the result keeps ``table``'s key order.
    Cost: the members' own, per model (for the defaults logme + sfda + knn + ncti-sei,
    about 0.25 s per model and 1,000 test images in benchmarks/ESTIMATORS.md), plus
    ``O(M m log m)`` here, under a millisecond for 100 models.
    """
    totals = dict.fromkeys(table, 0.0)
    counts = dict.fromkeys(table, 0)
    for member in members:
        keys, values = _column(table, member)
        if not keys:
            continue
        wins = _wins(values)
        for key, win in zip(keys, wins):
            totals[key] += float(win)
            counts[key] += 1
    return {key: totals[key] / counts[key] for key in table if counts[key]}


def _wins(values: np.ndarray) -> np.ndarray:
    """Each value's share of the others strictly below it, ties counting half: the
    average rank, less one, over ``m - 1`` (0.5 for a lone value). Counted by binary
    search in the sorted values, without importing scipy.stats (half a second) into
    a search that is otherwise answered from the cache in milliseconds."""
    if len(values) == 1:
        return np.array([0.5])
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, side="left")
    ties = np.searchsorted(ordered, values, side="right") - below - 1
    return (below + 0.5 * ties) / (len(values) - 1)


def minmax_sum(table: Table, members: Sequence[str]) -> dict:
    r"""Sum over members of each member's score min-max normalised over the models.

    ``sum_j (s_j(model) - min_j) / (max_j - min_j)``, the min and max taken over the
    models; a member equal for every model adds 0. Only models with every member's
    score are placed on this common scale; the others are left out of the result.
    Cost ``O(M m)``.
    """
    complete = [key for key, row in table.items()
                if all(_finite(row.get(member)) for member in members)]
    total = np.zeros(len(complete))
    for member in members:
        values = np.array([float(table[key][member]) for key in complete])
        if not len(values):
            break
        span = values.max() - values.min()
        if span > 0:
            total += (values - values.min()) / span
    return dict(zip(complete, total.tolist()))
