"""The cache of an index: its three parts, and what spans them.

:class:`Cache` joins :class:`~zooindex.cache.rows.TargetRows`,
:class:`~zooindex.cache.rows.ScoreRows` and
:class:`~zooindex.cache.activations.ActivationFiles` on one store, and keeps the methods
that touch several of them in one transaction: storing one unit of work's results
(:meth:`Cache.absorb`), counting, clearing, and finding or dropping orphans.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..store import Store
from .activations import DEFAULT_CACHE_LIMIT, ActivationFiles, StagedActivations
from .partial import PartialActivations
from .rows import ScoreRows, TargetRows


@dataclass
class Entry:
    """What one unit of work adds to the cache: its scores and staged files, for one
    model content x target x preprocessing. ``scores``: layer -> rows of
    ``(estimator, params_json, value, components, seconds)``."""

    model_sha: str
    target: str
    prep: str
    scores: dict = field(default_factory=dict)
    staged: list = field(default_factory=list)
    damaged: list = field(default_factory=list)   # layers whose cached file was not intact
    used: list = field(default_factory=list)      # layers whose cached file served


class Cache:
    """Targets, scores and activation files of a :class:`~zooindex.store.Store`.

    ``limit``: bytes of activation files kept (least recently used out beyond it);
    default ``$ZOOINDEX_CACHE_LIMIT`` or 2 GiB. The parts are :attr:`target_rows`,
    :attr:`score_rows` and :attr:`activation_files` (and :attr:`partial`, the images of a
    target seen so far, kept in activation files, see :mod:`zooindex.cache.partial`); the methods below that only pass a
    call on to one of them keep the names every caller uses.
    """

    def __init__(self, store: Store, *, limit: int | None = None):
        self.store = store
        env_limit = os.environ.get("ZOOINDEX_CACHE_LIMIT")
        self.target_rows = TargetRows(store)
        self.score_rows = ScoreRows(store)
        self.activation_files = ActivationFiles(store, limit if limit is not None else (
            int(float(env_limit)) if env_limit else DEFAULT_CACHE_LIMIT))
        self.partial = PartialActivations(self.activation_files)

    @property
    def db(self):
        return self.store.db

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    @property
    def limit(self) -> int:
        return self.activation_files.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self.activation_files.limit = value

    @property
    def folder(self) -> Path:
        return self.activation_files.folder

    # -- targets and scores (see zooindex.cache.rows) --------------------------------
    def put_target(self, key: str, source: str, n: int, classes: list) -> None:
        """Record a target (inside the caller's transaction)."""
        self.target_rows.put(key, source, n, classes)

    def targets(self) -> list[dict]:
        """Every target with cached numbers, newest first."""
        return self.target_rows.all()

    def get_scores(self, model_sha: str, layer: str, target: str, prep: str) -> dict:
        """See :meth:`ScoreRows.get <zooindex.cache.rows.ScoreRows.get>`."""
        return self.score_rows.get(model_sha, layer, target, prep)

    def scores_for_target(self, target: str) -> list[dict]:
        """See :meth:`ScoreRows.for_target <zooindex.cache.rows.ScoreRows.for_target>`."""
        return self.score_rows.for_target(target)

    def put_scores(self, model_sha: str, layer: str, target: str, prep: str,
                   rows: list[tuple[str, str, float, int | None, float]]) -> bool:
        """See :meth:`ScoreRows.put <zooindex.cache.rows.ScoreRows.put>`."""
        return self.score_rows.put(model_sha, layer, target, prep, rows)

    # -- activation files (see zooindex.cache.activations) ------------------------------
    def get_activations(self, model_sha: str, layer: str, target: str,
                        prep: str) -> np.ndarray | None:
        """See :meth:`ActivationFiles.get <zooindex.cache.activations.ActivationFiles.get>`."""
        return self.activation_files.get(model_sha, layer, target, prep)

    def cached_files(self, model_sha: str, target: str, prep: str) -> dict:
        """See :meth:`ActivationFiles.cached
        <zooindex.cache.activations.ActivationFiles.cached>`."""
        return self.activation_files.cached(model_sha, target, prep)

    def touch(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Mark an entry as just used (least recently used entries are evicted first)."""
        self.activation_files.touch(model_sha, layer, target, prep)

    def drop_entry(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Forget one entry (found damaged), best effort."""
        self.activation_files.drop_entry(model_sha, layer, target, prep)

    def damaged_activations(self) -> list[int]:
        """Row ids of cached activations that are not intact, read one at a time."""
        return self.activation_files.damaged()

    def drop_activations(self, rowids) -> int:
        """Delete these activation rows, and their files after the commit."""
        return self.activation_files.drop_rows(rowids)

    def put_activations(self, model_sha: str, layer: str, target: str, prep: str,
                        array: np.ndarray) -> bool:
        """See :meth:`ActivationFiles.put <zooindex.cache.activations.ActivationFiles.put>`."""
        return self.activation_files.put(model_sha, layer, target, prep, array)

    def stage_activations(self, model_sha: str, layer: str, target: str, prep: str,
                          array: np.ndarray) -> StagedActivations | None:
        """See :meth:`ActivationFiles.stage
        <zooindex.cache.activations.ActivationFiles.stage>`."""
        return self.activation_files.stage(model_sha, layer, target, prep, array)

    def discard(self, staged) -> None:
        """Remove staged files whose rows were not stored, unless a row refers to them."""
        self.activation_files.discard(staged)

    def unreferenced_files(self) -> list[Path]:
        """See :meth:`ActivationFiles.unreferenced
        <zooindex.cache.activations.ActivationFiles.unreferenced>`."""
        return self.activation_files.unreferenced()

    # -- one unit of work's results --------------------------------------------------
    def absorb(self, entry: Entry, target: tuple) -> bool:
        """Store what one unit of work computed, in one transaction: its target row
        (``(key, source, n, classes)``), score rows and staged activation files; drop
        the entries it found damaged and mark those it used as recently used. Best
        effort: on failure the staged files are removed, the reason goes to the store's
        warnings, and ``False`` comes back.

        The target row is written with the first numbers that refer to it, never
        alone, so a search that stores nothing leaves no orphaned target.
        """
        if self.read_only:
            self.discard(entry.staged)
            return False
        if not (any(entry.scores.values()) or entry.staged or entry.damaged or entry.used):
            return True
        with self.store.best_effort("results"):
            try:
                with self.store.transaction():
                    files = self.activation_files
                    for layer in entry.damaged:
                        files.delete("model_sha = ? AND layer = ? AND target = ? AND prep = ?",
                                     [entry.model_sha, layer, entry.target, entry.prep])
                    for layer in entry.used:
                        files.mark_used(entry.model_sha, layer, entry.target, entry.prep)
                    if any(entry.scores.values()) or entry.staged:
                        self.target_rows.put(*target)
                    for layer, rows in entry.scores.items():
                        if rows:
                            self.score_rows.upsert(entry.model_sha, layer, entry.target,
                                                   entry.prep, rows)
                    for staged in entry.staged:
                        files.insert(staged)
                    if entry.staged:
                        files.evict(files.limit)
            except BaseException:
                self.discard(entry.staged)
                raise
            return True
        return False

    def stats(self) -> dict:
        """Counts and sizes; ``by_target``: the activation files of each target, largest
        first (``source``, ``entries``, ``bytes``, ``models``, ``layers``)."""
        files = self.activation_files.stats()
        return {"activations": files["activations"],
                "activation_bytes": files["activation_bytes"],
                "scores": self.score_rows.count(), "targets": self.target_rows.count(),
                "limit_bytes": self.limit, "folder": str(self.folder),
                "by_target": files["by_target"]}

    def clear(self) -> dict:
        """Drop every cached activation, score and target; the models stay."""
        stats = self.stats()
        with self.store.transaction():
            self.activation_files.delete("1")
            self.db.execute("DELETE FROM scores")
            self.db.execute("DELETE FROM targets")
        self.activation_files.remove_unreferenced()
        with contextlib.suppress(sqlite3.OperationalError):
            with self.db.ensure_autocommit_on():
                self.db.execute("VACUUM")
        return stats

    # -- orphans (see zooindex.audit) -----------------------------------------------
    _ORPHANS = {
        "activations": "model_sha NOT IN (SELECT sha256 FROM models)",
        "scores": "model_sha NOT IN (SELECT sha256 FROM models) "
                  "OR target NOT IN (SELECT key FROM targets)",
        "targets": "key NOT IN (SELECT target FROM scores) "
                   "AND key NOT IN (SELECT target FROM activations)",
    }

    def orphans(self) -> dict[str, int]:
        """Cached rows and files nothing refers to: per table (and ``files``), how many.

        Activations and scores whose model content no indexed model has; scores of a
        target that is gone; targets neither a score nor an activation refers to;
        activation files no row refers to (see :meth:`unreferenced_files`).
        """
        with self.store.snapshot():
            counts = {table: self.db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
                for table, where in self._ORPHANS.items()}
            counts["files"] = len(self.activation_files.unreferenced())
        return counts

    def drop_orphans(self) -> dict[str, int]:
        """Delete every orphan (see :meth:`orphans`): rows in one transaction, then files."""
        with self.store.transaction():
            removed = {"activations": self.activation_files.delete(
                self._ORPHANS["activations"])}
            removed.update({table: self.db.execute(f"DELETE FROM {table} WHERE {where}").rowcount
                            for table, where in self._ORPHANS.items() if table != "activations"})
        removed["files"] = self.activation_files.remove_unreferenced()
        return removed

    def forget_removed_models(self) -> int:
        """Delete cached rows whose model content no indexed model has any more
        (inside the caller's transaction, after a model was removed or replaced)."""
        removed = self.activation_files.delete(
            "model_sha NOT IN (SELECT sha256 FROM models)")
        return removed + self.db.execute(
            "DELETE FROM scores WHERE model_sha NOT IN (SELECT sha256 FROM models)").rowcount
