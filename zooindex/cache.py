"""What the index remembers of past work: targets, scores and activation files.

Everything is keyed by the model's content hash x layer x target x preprocessing (and,
for scores, the estimator and the options it depends on), so that a model replaced by
other content never reuses stale numbers. Cached activations are ``.npy`` files in a
folder beside the database (``<index>-activations/``); a row of the ``activations``
table refers to each file, with its shape and CRC-32: a file that is missing, cut short
or altered is a cache miss, never wrong numbers. (Files, not blobs: writing tens of MB
into SQLite costs about ten times more, as the WAL and then the database each receive a
copy.) Rows written by schema 2, which kept the activations in the database (a sparse
``.npz`` blob, :func:`decode_array`), are still read.

Writing is in two steps so that the file work can happen off the database's thread:
:meth:`Cache.stage_activations` writes a file under a temporary name and renames it into
place (no database access); :meth:`Cache.absorb` then commits its row together with the
scores and the target they belong to, in one transaction. Files whose rows are deleted
are removed after the commit; files no row refers to (a crash between the two steps, a
search stopped before it stored them) are found by ``zooindex check`` and removed by
``check --fix``, ``cache clear``, and :meth:`Cache.discard`.

:class:`CachedFile` names one intact entry's file, shape and checksum: it can be read
without the database, by a worker thread or process that receives it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import StoreError
from .store import Store, now

DEFAULT_CACHE_LIMIT = 2 * 1024**3  # bytes of cached activation files kept, LRU beyond
# a temporary activation file older than this is a crash's leftover, not a write
# in progress
_STALE_TMP_S = 600.0

# what decode_array raises on a damaged blob (a damaged header can ask for any size)
DECODE_ERRORS = (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, MemoryError)


def decode_array(blob: bytes) -> np.ndarray:
    """An array from a schema-2 blob: ``np.savez`` of its ``shape``, the bit-packed
    ``mask`` of its non-zeros, and their ``values``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as parts:
        shape = tuple(int(d) for d in parts["shape"])
        values = parts["values"]
        size = int(np.prod(shape))
        packed = parts["mask"]
        # a damaged shape must not make us allocate more than the blob describes
        if any(d < 0 for d in shape) or size > packed.size * 8:
            raise ValueError("damaged activation entry")
        mask = np.unpackbits(packed, count=size).view(bool)
        if int(mask.sum()) != len(values):
            raise ValueError("damaged activation entry")
        out = np.zeros(size, dtype=values.dtype)
        out[mask] = values
    return out.reshape(shape)


@dataclass(frozen=True)
class CachedFile:
    """One cached activation file: enough to read and verify it without the database."""

    path: str
    crc: int
    n: int
    dim: int

    def read(self) -> np.ndarray:
        """The array; a :data:`DECODE_ERRORS` error when the file is not intact."""
        array = np.load(self.path, allow_pickle=False)
        if array.ndim < 1 or len(array) != self.n \
                or int(np.prod(array.shape[1:])) != self.dim \
                or zlib.crc32(np.ascontiguousarray(array)) != self.crc:
            raise ValueError("damaged activation file")
        return array


@dataclass(frozen=True)
class StagedActivations:
    """A cache file written by :meth:`Cache.stage_activations`, its row not yet stored."""

    key: tuple          # (model_sha, layer, target, prep)
    file: str
    bytes: int
    crc: int
    n: int
    dim: int


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
    default ``$ZOOINDEX_CACHE_LIMIT`` or 2 GiB.
    """

    def __init__(self, store: Store, *, limit: int | None = None):
        self.store = store
        env_limit = os.environ.get("ZOOINDEX_CACHE_LIMIT")
        self.limit = limit if limit is not None else (
            int(float(env_limit)) if env_limit else DEFAULT_CACHE_LIMIT)
        self.folder = store.path.with_name(store.path.name + "-activations")
        self._doomed: set[str] = set()   # files of deleted rows, removed after the commit

    @property
    def db(self):
        return self.store.db

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    # -- targets -----------------------------------------------------------------
    def put_target(self, key: str, source: str, n: int, classes: list) -> None:
        """Record a target (inside the caller's transaction)."""
        self.db["targets"].upsert({"key": key, "source": source, "n": n,
                                   "classes": json.dumps([str(c) for c in classes]),
                                   "created_at": now()}, pk="key")

    def targets(self) -> list[dict]:
        """Every target with cached numbers, newest first."""
        out = []
        for row in self.db.query("SELECT key, source, n, classes, created_at FROM targets "
                                 "ORDER BY created_at DESC, key"):
            row["classes"] = json.loads(row["classes"]) if row["classes"] else []
            out.append(row)
        return out

    # -- scores ------------------------------------------------------------------
    def get_scores(self, model_sha: str, layer: str, target: str, prep: str) -> dict:
        """``{(estimator, params_json): (value, components, seconds)}`` cached for this key."""
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in self.db.execute(
            "SELECT estimator, params, value, components, seconds FROM scores "
            "WHERE model_sha = ? AND layer = ? AND target = ? AND prep = ?",
            [model_sha, layer, target, prep])}

    def scores_for_target(self, target: str) -> list[dict]:
        """Every cached score of one target: model content, layer, preprocessing,
        estimator, its options, value."""
        return [dict(zip(("model_sha", "layer", "prep", "estimator", "params", "value",
                          "components"), r)) for r in self.db.execute(
            "SELECT model_sha, layer, prep, estimator, params, value, components FROM scores "
            "WHERE target = ? ORDER BY model_sha, layer, estimator", [target])]

    def put_scores(self, model_sha: str, layer: str, target: str, prep: str,
                   rows: list[tuple[str, str, float, int | None, float]]) -> bool:
        """Cache one (model, layer, target) group of scores, all or none; best effort.

        A concurrent ``rm`` or ``cache clear`` can leave these rows orphaned; ``zooindex
        check`` reports them and ``check --fix`` (or the next ``rm``) removes them.
        """
        if self.read_only or not rows:
            return False
        with self.store.best_effort("scores"):
            with self.store.transaction():
                self._upsert_scores(model_sha, layer, target, prep, rows)
            return True
        return False

    def _upsert_scores(self, model_sha, layer, target, prep, rows) -> None:
        self.db["scores"].upsert_all(
            ({"model_sha": model_sha, "layer": layer, "target": target, "prep": prep,
              "estimator": est, "params": params, "value": value,
              "components": components, "seconds": seconds, "created_at": now()}
             for est, params, value, components, seconds in rows),
            pk=("model_sha", "layer", "target", "prep", "estimator", "params"))

    # -- one unit of work's results --------------------------------------------------
    def absorb(self, entry: Entry, target: tuple) -> bool:
        """Store what one unit of work computed, in one transaction: its target row
        (``(key, source, n, classes)``), score rows and staged activation files; drop
        the entries it found damaged and mark those it used as recently used. Best effort: on failure the staged files are
        removed, the reason goes to the store's warnings, and ``False`` comes back.

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
                    key = "model_sha = ? AND layer = ? AND target = ? AND prep = ?"
                    for layer in entry.damaged:
                        self._delete_activations(
                            key, [entry.model_sha, layer, entry.target, entry.prep])
                    for layer in entry.used:
                        self.db.execute(f"UPDATE activations SET used_at = ? WHERE {key}",
                                        [time.time(), entry.model_sha, layer, entry.target,
                                         entry.prep])
                    if any(entry.scores.values()) or entry.staged:
                        self.put_target(*target)
                    for layer, rows in entry.scores.items():
                        if rows:
                            self._upsert_scores(entry.model_sha, layer, entry.target,
                                                entry.prep, rows)
                    for staged in entry.staged:
                        self._insert_activations(staged)
                    if entry.staged:
                        self._evict(self.limit)
            except BaseException:
                self.discard(entry.staged)
                raise
            return True
        return False

    # -- activations ---------------------------------------------------------------
    def get_activations(self, model_sha: str, layer: str, target: str,
                        prep: str) -> np.ndarray | None:
        """The cached array for this key, or ``None``: absent, or damaged (then dropped)."""
        key = [model_sha, layer, target, prep]
        row = self.db.execute(
            f"SELECT {self._entry_columns} FROM activations WHERE model_sha = ? AND layer = ? "
            "AND target = ? AND prep = ?", key).fetchone()
        if row is None:
            return None
        try:
            array = self._read_entry(*row)
        except DECODE_ERRORS:
            # a damaged entry is a cache miss, never wrong numbers; drop it
            self.drop_entry(*key)
            return None
        self.touch(*key)
        return array

    def cached_files(self, model_sha: str, target: str, prep: str) -> dict:
        """``{layer: CachedFile or array}`` of the entries cached for this model content,
        target and preprocessing; whether each is intact shows when it is read.

        Schema-2 entries (blobs in the database) are decoded here, the others are
        handed out as files to read later.
        """
        out = {}
        for layer, data, file, crc, n, dim in self.db.execute(
                f"SELECT layer, {self._entry_columns} FROM activations WHERE model_sha = ? "
                "AND target = ? AND prep = ?", [model_sha, target, prep]):
            if file and os.path.basename(file) == file:
                out[layer] = CachedFile(str(self.folder / file), crc, n, dim)
            elif not file:
                with contextlib.suppress(*DECODE_ERRORS):
                    out[layer] = decode_array(data)
        return out

    def touch(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Mark an entry as just used (least recently used entries are evicted first)."""
        if self.read_only:
            return
        with contextlib.suppress(StoreError):
            with self.store.transaction():
                self.db.execute(
                    "UPDATE activations SET used_at = ? WHERE model_sha = ? AND layer = ? "
                    "AND target = ? AND prep = ?", [time.time(), model_sha, layer, target,
                                                    prep])

    def drop_entry(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Forget one entry (found damaged), best effort."""
        if self.read_only:
            return
        with contextlib.suppress(StoreError):
            with self.store.transaction():
                self._delete_activations("model_sha = ? AND layer = ? AND target = ? AND "
                                         "prep = ?", [model_sha, layer, target, prep])

    @property
    def _entry_columns(self) -> str:
        """The columns :meth:`_read_entry` takes (schema 2 had no files)."""
        return "data, file, crc, n, dim" if self.store.schema_version >= 3 else \
            "data, NULL, NULL, n, dim"

    def _read_entry(self, data, file, crc, n, dim) -> np.ndarray:
        """Decode one row's activations; ``DECODE_ERRORS`` when they are not intact."""
        if not file:  # written by schema 2: a blob in the row
            return decode_array(data)
        if os.path.basename(file) != file:
            raise ValueError("activation file name with a path")
        return CachedFile(str(self.folder / file), crc, n, dim).read()

    def damaged_activations(self) -> list[int]:
        """Row ids of cached activations that are not intact, read one at a time."""
        damaged = []
        for rowid in [r[0] for r in self.db.execute("SELECT rowid FROM activations")]:
            row = self.db.execute(f"SELECT {self._entry_columns} FROM activations WHERE rowid = ?",
                                  [rowid]).fetchone()
            if row is None:  # removed meanwhile by another process
                continue
            try:
                self._read_entry(*row)
            except DECODE_ERRORS:
                damaged.append(rowid)
        return damaged

    def drop_activations(self, rowids) -> int:
        """Delete these activation rows, and their files after the commit."""
        with self.store.transaction():
            return sum(self._delete_activations("rowid = ?", [rowid]) for rowid in rowids)

    def put_activations(self, model_sha: str, layer: str, target: str, prep: str,
                        array: np.ndarray) -> bool:
        """Cache ``array`` unless it alone exceeds the cache limit; evict LRU beyond it.

        The array goes to a file of its own (written, then renamed into place), and its
        row is committed after. Best effort, like :meth:`put_scores`: a failed write is
        noted in the store's warnings, leaves no file behind, and the caller goes on
        without the cache.
        """
        staged = self.stage_activations(model_sha, layer, target, prep, array)
        if staged is None:
            return False
        with self.store.best_effort("activations"):
            try:
                with self.store.transaction():
                    self._insert_activations(staged)
                    self._evict(self.limit)
            except BaseException:
                self.discard([staged])
                raise
            return True
        return False

    def stage_activations(self, model_sha: str, layer: str, target: str, prep: str,
                          array: np.ndarray) -> StagedActivations | None:
        """Write ``array``'s cache file, not yet its row: no database access, so another
        thread may do it. ``None`` when nothing is cached (read-only index, an array over
        the cache limit, or a failed write, noted in the store's warnings).
        """
        if self.read_only:
            return None
        array = np.ascontiguousarray(array)
        if array.nbytes > self.limit:
            return None
        key = (model_sha, layer, target, prep)
        name = hashlib.sha256("\0".join(key).encode()).hexdigest()[:40] + ".npy"
        with self.store.best_effort("activations"):
            size = self._write_file(name, array)
            return StagedActivations(key=key, file=name, bytes=size, crc=zlib.crc32(array),
                                     n=int(array.shape[0]),
                                     dim=int(np.prod(array.shape[1:])))
        return None

    def _insert_activations(self, staged: StagedActivations) -> None:
        model_sha, layer, target, prep = staged.key
        self.db["activations"].upsert({
            "model_sha": model_sha, "layer": layer, "target": target,
            "prep": prep, "n": staged.n, "dim": staged.dim,
            "bytes": staged.bytes, "data": None, "file": staged.file,
            "crc": staged.crc, "created_at": now(), "used_at": time.time()},
            pk=("model_sha", "layer", "target", "prep"))

    def discard(self, staged) -> None:
        """Remove staged files whose rows were not stored, unless a row refers to them."""
        self._doomed.update(s.file for s in staged)
        self._remove_files()

    def _write_file(self, name: str, array: np.ndarray) -> int:
        """Write ``array`` to ``folder/name`` atomically; its size in bytes."""
        tmp = None
        try:
            self.folder.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
            size = os.path.getsize(tmp)
            os.replace(tmp, self.folder / name)
            return size
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise StoreError(f"cannot write to {self.folder}: "
                             f"{exc.strerror or exc}", path=str(self.store.path)) from None

    def _delete_activations(self, where: str, params=()) -> int:
        """Delete activation rows (inside a transaction); their files go after the commit."""
        if self.store.schema_version >= 3:
            files = [r[0] for r in self.db.execute(
                f"SELECT file FROM activations WHERE ({where}) AND file IS NOT NULL", params)]
            if files:
                self.store.after_commit(lambda files=files: self._remove(files))
        return self.db.execute(f"DELETE FROM activations WHERE {where}", params).rowcount

    def _remove(self, files) -> None:
        self._doomed.update(files)
        self._remove_files()

    def _remove_files(self) -> None:
        """Remove the files of deleted rows, unless a row refers to them again."""
        if not self._doomed:
            return
        names, self._doomed = self._doomed, set()
        for name in names:
            try:
                referenced = self.db.execute("SELECT 1 FROM activations WHERE file = ?",
                                             [name]).fetchone() is not None
            except sqlite3.Error:  # cannot tell: leave it to `zooindex check`
                continue
            if not referenced:
                with contextlib.suppress(OSError):
                    os.unlink(self.folder / name)

    def _remove_unreferenced_files(self) -> int:
        """Remove :meth:`unreferenced_files`; how many there were."""
        files = self.unreferenced_files()
        for leftover in files:
            with contextlib.suppress(OSError):
                leftover.unlink()
        return len(files)

    def unreferenced_files(self) -> list[Path]:
        """Files in :attr:`folder` that no row refers to (a crash's leftovers).

        Temporary files younger than ten minutes are writes in progress, not leftovers.
        """
        if not self.folder.is_dir():
            return []
        if self.store.schema_version >= 3:
            known = {r[0] for r in self.db.execute(
                "SELECT file FROM activations WHERE file IS NOT NULL")}
        else:
            known = set()
        current = time.time()
        out = []
        for entry in os.scandir(self.folder):
            if entry.name in known or not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if current - entry.stat().st_mtime < _STALE_TMP_S:
                        continue
            out.append(Path(entry.path))
        return sorted(out)

    def _evict(self, limit: int) -> None:
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM activations").fetchone()[0]
        if total <= limit:
            return
        for key in list(self.db.execute(
                "SELECT model_sha, layer, target, prep, bytes FROM activations "
                "ORDER BY used_at ASC")):
            if total <= limit:
                break
            self._delete_activations("model_sha = ? AND layer = ? AND target = ? AND "
                                     "prep = ?", key[:4])
            total -= key[4]

    def stats(self) -> dict:
        """Counts and sizes; ``by_target``: the activation files of each target, largest
        first (``source``, ``entries``, ``bytes``, ``models``, ``layers``)."""
        act = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM activations").fetchone()
        scores = self.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        targets = self.db.execute("SELECT COUNT(*) FROM targets").fetchone()[0]
        by_target = [dict(zip(("key", "source", "entries", "bytes", "models", "layers"), r))
                     for r in self.db.execute(
            "SELECT a.target, t.source, COUNT(*), SUM(a.bytes), COUNT(DISTINCT a.model_sha), "
            "COUNT(DISTINCT a.layer) FROM activations a LEFT JOIN targets t "
            "ON t.key = a.target GROUP BY a.target ORDER BY SUM(a.bytes) DESC")]
        return {"activations": act[0], "activation_bytes": act[1], "scores": scores,
                "targets": targets, "limit_bytes": self.limit, "folder": str(self.folder),
                "by_target": by_target}

    def clear(self) -> dict:
        """Drop every cached activation, score and target; the models stay."""
        stats = self.stats()
        with self.store.transaction():
            self._delete_activations("1")
            self.db.execute("DELETE FROM scores")
            self.db.execute("DELETE FROM targets")
        self._remove_unreferenced_files()
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
            counts["files"] = len(self.unreferenced_files())
        return counts

    def drop_orphans(self) -> dict[str, int]:
        """Delete every orphan (see :meth:`orphans`): rows in one transaction, then files."""
        with self.store.transaction():
            removed = {"activations": self._delete_activations(self._ORPHANS["activations"])}
            removed.update({table: self.db.execute(f"DELETE FROM {table} WHERE {where}").rowcount
                            for table, where in self._ORPHANS.items() if table != "activations"})
        removed["files"] = self._remove_unreferenced_files()
        return removed

    def forget_removed_models(self) -> int:
        """Delete cached rows whose model content no indexed model has any more
        (inside the caller's transaction, after a model was removed or replaced)."""
        removed = self._delete_activations("model_sha NOT IN (SELECT sha256 FROM models)")
        return removed + self.db.execute(
            "DELETE FROM scores WHERE model_sha NOT IN (SELECT sha256 FROM models)").rowcount
