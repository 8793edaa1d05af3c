"""Cached activations: ``.npy`` files beside the database, their rows, and their eviction.

Cached activations are ``.npy`` files in a folder beside the database
(``<index>-activations/``); a row of the ``activations`` table refers to each file, with
its shape and CRC-32: a file that is missing, cut short or altered is a cache miss, never
wrong numbers. (Files, not blobs: writing tens of MB into SQLite costs about ten times
more, as the WAL and then the database each receive a copy.) Rows written by schema 2,
which kept the activations in the database (a sparse ``.npz`` blob, :func:`decode_array`),
are still read. Beyond the size limit, the least recently used files go first.

Writing is in two steps so that the file work can happen off the database's thread:
:meth:`ActivationFiles.stage` writes a file under a temporary name and renames it into
place (no database access); :meth:`ActivationFiles.insert` then writes its row inside the
caller's transaction. Files whose rows are deleted are removed after the commit; files no
row refers to (a crash between the two steps, a search stopped before it stored them) are
found by :meth:`ActivationFiles.unreferenced` and removed by
:meth:`ActivationFiles.remove_unreferenced` and :meth:`ActivationFiles.discard`.

:class:`CachedFile` names one intact entry's file, shape and checksum: it can be read
without the database, by a worker thread or process that receives it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..store import Store, now

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
    """A cache file written by :meth:`ActivationFiles.stage`, its row not yet stored."""

    key: tuple          # (model_sha, layer, target, prep)
    file: str
    bytes: int
    crc: int
    n: int
    dim: int


class ActivationFiles:
    """The ``activations`` table and the folder of files its rows refer to.

    ``limit``: bytes of activation files kept (least recently used out beyond it).
    """

    def __init__(self, store: Store, limit: int):
        self.store = store
        self.limit = limit
        self.folder = store.path.with_name(store.path.name + "-activations")
        self._doomed: set[str] = set()   # files of deleted rows, removed after the commit

    @property
    def db(self):
        return self.store.db

    # -- reading -------------------------------------------------------------------
    def get(self, model_sha: str, layer: str, target: str, prep: str) -> np.ndarray | None:
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

    def cached(self, model_sha: str, target: str, prep: str) -> dict:
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
        if self.store.read_only:
            return
        with contextlib.suppress(StoreError):
            with self.store.transaction():
                self.db.execute(
                    "UPDATE activations SET used_at = ? WHERE model_sha = ? AND layer = ? "
                    "AND target = ? AND prep = ?", [time.time(), model_sha, layer, target,
                                                    prep])

    def drop_entry(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Forget one entry (found damaged), best effort."""
        if self.store.read_only:
            return
        with contextlib.suppress(StoreError):
            with self.store.transaction():
                self.delete("model_sha = ? AND layer = ? AND target = ? AND prep = ?",
                            [model_sha, layer, target, prep])

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

    def damaged(self) -> list[int]:
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

    # -- writing -------------------------------------------------------------------
    def put(self, model_sha: str, layer: str, target: str, prep: str,
            array: np.ndarray) -> bool:
        """Cache ``array`` unless it alone exceeds the cache limit; evict LRU beyond it.

        The array goes to a file of its own (written, then renamed into place), and its
        row is committed after. Best effort: a failed write is noted in the store's
        warnings, leaves no file behind, and the caller goes on without the cache.
        """
        staged = self.stage(model_sha, layer, target, prep, array)
        if staged is None:
            return False
        with self.store.best_effort("activations"):
            try:
                with self.store.transaction():
                    self.insert(staged)
                    self.evict(self.limit)
            except BaseException:
                self.discard([staged])
                raise
            return True
        return False

    def stage(self, model_sha: str, layer: str, target: str, prep: str,
              array: np.ndarray) -> StagedActivations | None:
        """Write ``array``'s cache file, not yet its row: no database access, so another
        thread may do it. ``None`` when nothing is cached (read-only index, an array over
        the cache limit, or a failed write, noted in the store's warnings).
        """
        if self.store.read_only:
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

    def insert(self, staged: StagedActivations) -> None:
        """Write the row of a staged file (inside the caller's transaction)."""
        model_sha, layer, target, prep = staged.key
        self.db["activations"].upsert({
            "model_sha": model_sha, "layer": layer, "target": target,
            "prep": prep, "n": staged.n, "dim": staged.dim,
            "bytes": staged.bytes, "data": None, "file": staged.file,
            "crc": staged.crc, "created_at": now(), "used_at": time.time()},
            pk=("model_sha", "layer", "target", "prep"))

    def mark_used(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Mark an entry as just used (inside the caller's transaction)."""
        self.db.execute("UPDATE activations SET used_at = ? WHERE model_sha = ? AND layer = ? "
                        "AND target = ? AND prep = ?",
                        [time.time(), model_sha, layer, target, prep])

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

    # -- deleting and evicting -------------------------------------------------------
    def drop_rows(self, rowids) -> int:
        """Delete these activation rows, and their files after the commit."""
        with self.store.transaction():
            return sum(self.delete("rowid = ?", [rowid]) for rowid in rowids)

    def delete(self, where: str, params=()) -> int:
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

    def remove_unreferenced(self) -> int:
        """Remove :meth:`unreferenced` files; how many there were."""
        files = self.unreferenced()
        for leftover in files:
            with contextlib.suppress(OSError):
                leftover.unlink()
        return len(files)

    def unreferenced(self) -> list[Path]:
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

    def evict(self, limit: int) -> None:
        """Delete the least recently used rows until their files take ``limit`` bytes at
        most (inside the caller's transaction)."""
        total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM activations").fetchone()[0]
        if total <= limit:
            return
        for key in list(self.db.execute(
                "SELECT model_sha, layer, target, prep, bytes FROM activations "
                "ORDER BY used_at ASC")):
            if total <= limit:
                break
            self.delete("model_sha = ? AND layer = ? AND target = ? AND prep = ?", key[:4])
            total -= key[4]

    def stats(self) -> dict:
        """``activations``, ``activation_bytes``, and ``by_target``: the files of each
        target, largest first (``source``, ``entries``, ``bytes``, ``models``, ``layers``)."""
        act = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM activations").fetchone()
        by_target = [dict(zip(("key", "source", "entries", "bytes", "models", "layers"), r))
                     for r in self.db.execute(
            "SELECT a.target, t.source, COUNT(*), SUM(a.bytes), COUNT(DISTINCT a.model_sha), "
            "COUNT(DISTINCT a.layer) FROM activations a LEFT JOIN targets t "
            "ON t.key = a.target GROUP BY a.target ORDER BY SUM(a.bytes) DESC")]
        return {"activations": act[0], "activation_bytes": act[1], "by_target": by_target}
