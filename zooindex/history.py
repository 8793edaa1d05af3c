"""What the index remembers of past searches: targets and their rankings, read back.

Every search stores, per target, one score for each model content x layer x
preprocessing x estimator x the options that estimator depends on
(:meth:`~zooindex.cache.Cache.scores_for_target`). Grouped by estimator and options, the
scores of one target are the rankings past searches produced; joined with the catalogue
they name the models indexed now. This module only reads: it opens the index, groups,
sorts, and closes it.

A combination (``ensemble``, and the default scorer where it is one) scores a rank among
the models searched together, so the index keeps its members' scores, not its own. Where
a target holds every member's scores under one set of options, the combined ranking is
recomputed from them over the models that have them, as the search does.

A score belongs to a model when the model's content hash and preprocessing are those it
was computed with. Scores of content no indexed model has any more (a model replaced or
removed) are left out, as are scores computed under a preprocessing the model no longer
has: a search would not reuse them either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .errors import StoreError
from .index import opened

# the shortest key prefix a URL or caller may use for a target
MIN_KEY_PREFIX = 8


@dataclass
class PastRow:
    """One (model, layer) row of a past ranking."""

    rank: int
    model: str
    layer: str
    score: float
    components: int | None
    default: bool          # the layer is the model's default layer
    width: int | None


@dataclass
class PastRanking:
    """The ranking one estimator with one set of options gave a target."""

    estimator: str
    params: dict
    rows: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """``silhouette (D=10, cosine)``: the estimator and what it depended on."""
        shown = [f"D={v}" if k == "dim" else f"seed={v}" if k == "seed" else str(v)
                 for k, v in sorted(self.params.items())]
        return f"{self.estimator} ({', '.join(shown)})" if shown else self.estimator

    def to_dict(self) -> dict:
        return {"estimator": self.estimator, "params": self.params, "label": self.label,
                "rows": [asdict(r) for r in self.rows]}


@dataclass
class PastTarget:
    """A target the index holds numbers for, and what was computed for it."""

    key: str
    source: str
    n: int
    classes: list
    created_at: str
    models: int = 0                                   # indexed models with a score
    rankings: list = field(default_factory=list)      # PastRanking, most complete first

    @property
    def estimators(self) -> list[str]:
        return sorted({r.estimator for r in self.rankings})

    def to_dict(self, rankings: bool = True) -> dict:
        d = {"key": self.key, "source": self.source, "n": self.n, "classes": self.classes,
             "created_at": self.created_at, "models": self.models,
             "estimators": self.estimators}
        if rankings:
            d["rankings"] = [r.to_dict() for r in self.rankings]
        return d


def targets(*, index=None) -> list[PastTarget]:
    """Every target with cached scores, newest first, each with its rankings."""
    with opened(index, create=False) as idx:
        owners = _owners(idx)
        out = []
        for row in idx.cache.targets():
            past = _past(row, idx.cache.scores_for_target(row["key"]), owners)
            if past.rankings:
                out.append(past)
        return out


def target(key: str, *, index=None) -> PastTarget:
    """One target by its key (or a unique prefix of at least 8 characters)."""
    with opened(index, create=False) as idx:
        row = _find(idx, key)
        return _past(row, idx.cache.scores_for_target(row["key"]), _owners(idx))


def model_scores(model: str, *, index=None) -> list[dict]:
    """Every cached score of one indexed model, per target: newest target first, then
    estimator, options and layer. Each row carries the model's rank among the models
    scored for that target with that estimator and options."""
    with opened(index, create=False) as idx:
        record = idx.catalogue.get_model(model)
        owners = _owners(idx)
        out = []
        for row in idx.cache.targets():
            past = _past(row, idx.cache.scores_for_target(row["key"]), owners)
            for ranking in past.rankings:
                for r in ranking.rows:
                    if r.model == record.name:
                        out.append({"target": past.key, "source": past.source,
                                    "n": past.n, "classes": len(past.classes),
                                    "estimator": ranking.estimator, "params": ranking.params,
                                    "label": ranking.label, "layer": r.layer,
                                    "default": r.default, "score": r.score, "rank": r.rank,
                                    "of": len({x.model for x in ranking.rows})})
        return out


def _find(idx, key: str) -> dict:
    key = str(key).strip().lower()
    rows = idx.cache.targets()
    exact = [r for r in rows if r["key"] == key]
    if exact:
        return exact[0]
    found = [r for r in rows if len(key) >= MIN_KEY_PREFIX and r["key"].startswith(key)]
    if len(found) == 1:
        return found[0]
    why = "matches several targets; give more of it" if found else "is not in the index"
    raise TargetNotFound(f"target key '{key}' {why}. See the history page or "
                         "`zooindex.history.targets()`.", path=str(idx.path))


class TargetNotFound(StoreError, LookupError):
    """A target key was asked for that the index holds no numbers for."""


def _owners(idx) -> dict:
    """``{(model content, preprocessing key): [record, ...]}`` of the indexed models."""
    from .adapt import Preprocessing

    owners: dict = {}
    for record in idx.catalogue.models():
        key = (record.sha256, Preprocessing.from_dict(record.preprocessing).key())
        owners.setdefault(key, []).append(record)
    return owners


def _past(row: dict, scores: list[dict], owners: dict) -> PastTarget:
    groups: dict = {}
    for s in scores:
        for record in owners.get((s["model_sha"], s["prep"]), ()):
            layer = next((l for l in record.layers if l.name == s["layer"]), None)
            groups.setdefault((s["estimator"], s["params"]), []).append(PastRow(
                rank=0, model=record.name, layer=s["layer"], score=float(s["value"]),
                components=s["components"], default=s["layer"] == record.default_layer,
                width=layer.width if layer is not None else None))
    rankings = [PastRanking(estimator=estimator, params=json.loads(params or "{}"),
                            rows=rows) for (estimator, params), rows in groups.items()]
    rankings += _combined(rankings)
    for ranking in rankings:
        ranking.rows.sort(key=lambda r: (-r.score, r.model, r.layer))
        for i, r in enumerate(ranking.rows, 1):
            r.rank = i
    # the ranking with the most rows first; the default scorer before others
    first = _default_scorer().name
    rankings.sort(key=lambda r: (-len(r.rows), r.estimator != first, r.estimator,
                                 json.dumps(r.params, sort_keys=True)))
    models = {r.model for ranking in rankings for r in ranking.rows}
    return PastTarget(key=row["key"], source=row["source"], n=row["n"],
                      classes=list(row["classes"]), created_at=row["created_at"],
                      models=len(models), rankings=rankings)


def _default_scorer():
    from .estimators.combine import resolve
    from .options import DEFAULT_SCORER

    return resolve(DEFAULT_SCORER)


def _combined(rankings: list[PastRanking]) -> list[PastRanking]:
    """The rankings of the combinations a search ranks by without naming members (the
    default scorer where it is one, and ``ensemble``), from their members' rows."""
    from .estimators.combine import resolve

    scorers = {s.name: s for s in (_default_scorer(), resolve("ensemble"))
               if s.combiner is not None}
    return [r for scorer in scorers.values() for r in _combined_one(scorer, rankings)]


def _combined_one(scorer, rankings: list[PastRanking]) -> list[PastRanking]:
    """``scorer``'s rankings: one per set of options under which every member was scored,
    over the (model, layer) rows that have at least one member (as in a search, a row
    missing a member is ranked on the others)."""
    by_member: dict = {}
    for ranking in rankings:
        by_member.setdefault(ranking.estimator, []).append(ranking)
    if not all(m in by_member for m in scorer.members):
        return []
    option_sets = {json.dumps(r.params, sort_keys=True)
                   for m in scorer.members for r in by_member[m] if r.params} or {"{}"}
    out = []
    for options in map(json.loads, sorted(option_sets)):
        chosen = {}
        for estimator in scorer.estimators:
            wanted = {k: v for k, v in options.items() if k in estimator.params}
            chosen[estimator.name] = next((r for r in by_member[estimator.name]
                                           if r.params == wanted), None)
        if any(r is None for r in chosen.values()):
            continue
        table: dict = {}
        rows: dict = {}
        reducing = next((e.name for e in scorer.estimators if "dim" in e.params), None)
        for name, ranking in chosen.items():
            for r in ranking.rows:
                key = (r.model, r.layer)
                table.setdefault(key, {})[name] = r.score
                if key not in rows or name == reducing:
                    rows[key] = r
        out.append(PastRanking(
            estimator=scorer.name, params=options,
            rows=[PastRow(rank=0, model=rows[key].model, layer=rows[key].layer,
                          score=value, components=rows[key].components,
                          default=rows[key].default, width=rows[key].width)
                  for key, value in scorer.combine(table).items()]))
    return out


__all__ = ["targets", "target", "model_scores", "PastTarget", "PastRanking", "PastRow",
           "TargetNotFound", "MIN_KEY_PREFIX"]
