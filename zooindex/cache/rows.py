"""The rows of the cache that are numbers, not files: targets and scores.

Scores are keyed by the model's content hash x layer x target x preprocessing x the
estimator and the options it depends on, so that a model replaced by other content never
reuses stale numbers; a target row says what a target key stands for (its source, size
and classes).
"""

from __future__ import annotations

import json

from ..store import Store, now


class TargetRows:
    """The ``targets`` table: every target some cached number refers to."""

    def __init__(self, store: Store):
        self.store = store

    def put(self, key: str, source: str, n: int, classes: list) -> None:
        """Record a target (inside the caller's transaction)."""
        self.store.db["targets"].upsert({"key": key, "source": source, "n": n,
                                         "classes": json.dumps([str(c) for c in classes]),
                                         "created_at": now()}, pk="key")

    def all(self) -> list[dict]:
        """Every target with cached numbers, newest first."""
        out = []
        for row in self.store.db.query("SELECT key, source, n, classes, created_at FROM "
                                       "targets ORDER BY created_at DESC, key"):
            row["classes"] = json.loads(row["classes"]) if row["classes"] else []
            out.append(row)
        return out

    def count(self) -> int:
        return self.store.db.execute("SELECT COUNT(*) FROM targets").fetchone()[0]


class ScoreRows:
    """The ``scores`` table: one row per model content x layer x target x preprocessing
    x estimator x options, with its value, components and seconds.

    A score's resampled deviations (:mod:`zooindex.confidence`) are rows of the same
    table, their options naming the resamples (``"halves"``) and their value a BLOB of
    float64s, so that removing a model or clearing the cache takes them along;
    :meth:`for_target` (the history of a target's scores) and :meth:`count` leave them
    out."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, model_sha: str, layer: str, target: str, prep: str) -> dict:
        """``{(estimator, params_json): (value, components, seconds)}`` cached for this key."""
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in self.store.db.execute(
            "SELECT estimator, params, value, components, seconds FROM scores "
            "WHERE model_sha = ? AND layer = ? AND target = ? AND prep = ?",
            [model_sha, layer, target, prep])}

    def for_target(self, target: str) -> list[dict]:
        """Every cached score of one target: model content, layer, preprocessing,
        estimator, its options, value."""
        return [dict(zip(("model_sha", "layer", "prep", "estimator", "params", "value",
                          "components"), r)) for r in self.store.db.execute(
            "SELECT model_sha, layer, prep, estimator, params, value, components FROM scores "
            "WHERE target = ? AND typeof(value) != 'blob' "
            "ORDER BY model_sha, layer, estimator", [target])]

    def put(self, model_sha: str, layer: str, target: str, prep: str,
            rows: list[tuple[str, str, float, int | None, float]]) -> bool:
        """Cache one (model, layer, target) group of scores, all or none; best effort.

        A concurrent ``rm`` or ``cache clear`` can leave these rows orphaned; ``zooindex
        check`` reports them and ``check --fix`` (or the next ``rm``) removes them.
        """
        if self.store.read_only or not rows:
            return False
        with self.store.best_effort("scores"):
            with self.store.transaction():
                self.upsert(model_sha, layer, target, prep, rows)
            return True
        return False

    def count(self) -> int:
        """Scores cached (their resampled deviations are not counted)."""
        return self.store.db.execute(
            "SELECT COUNT(*) FROM scores WHERE typeof(value) != 'blob'").fetchone()[0]

    def upsert(self, model_sha, layer, target, prep, rows) -> None:
        """Write score rows (inside the caller's transaction)."""
        self.store.db["scores"].upsert_all(
            ({"model_sha": model_sha, "layer": layer, "target": target, "prep": prep,
              "estimator": est, "params": params, "value": value,
              "components": components, "seconds": seconds, "created_at": now()}
             for est, params, value, components, seconds in rows),
            pk=("model_sha", "layer", "target", "prep", "estimator", "params"))
