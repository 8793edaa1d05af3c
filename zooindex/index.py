"""The persistent index: models, their layers, targets, cached activations and scores.

One SQLite file (through sqlite-utils) in WAL mode, so that searches read while an
``add`` writes. Every logical change runs in one ``BEGIN IMMEDIATE`` transaction: a
crash leaves either all of it or none of it. Cached activations are ``.npy`` files in
a folder beside the database (``<index>-activations/``), one per model content hash x
layer x target x preprocessing, so that a model replaced by other content never reuses
stale numbers. A row of the ``activations`` table refers to each file, with its shape
and CRC-32: a file that is missing, cut short or altered is a cache miss, never wrong
numbers. Files are written under a temporary name and renamed into place, then the row
is committed; files whose rows are deleted are removed after the commit, and files no
row refers to (a crash between the two steps) are found by ``zooindex check``.
(Files, not blobs: writing tens of MB into SQLite costs about ten times more, as the
WAL and then the database each receive a copy.) Rows written by schema 2, which kept
the activations in the database (a sparse ``.npz`` blob, :func:`decode_array`), are
still read.

Failure modes are part of the design, because an index outlives many crashes:

* **Contention**: a busy timeout makes writers queue; where SQLite still answers
  ``SQLITE_BUSY`` at once (a WAL recovery after a crash, switching the journal mode),
  the step is retried a bounded number of times with jittered exponential backoff, and
  only then does a :class:`StoreError` say that the index stayed locked.
* **Read-only** (file or folder without write permission, or ``read_only=True``): the
  database is opened with ``mode=ro`` (or ``immutable=1`` where even the WAL's shared
  memory cannot be created), searches read the cache, and every write raises a
  :class:`StoreError` that says so.
* **Full disk, I/O errors**: the transaction rolls back and a :class:`StoreError`
  names the cause; cache writes (activations, scores, targets) are best effort, so a
  search still returns its ranking and lists the problem in :attr:`Index.warnings`.
* **Schema versions**: a newer schema is refused; an older one is copied beside the
  database (``<name>.schema<N>.bak``, through SQLite's backup API, so the copy is
  consistent even with a live WAL) and migrated in place in one transaction.
* **Any other SQLite error** inside :func:`opened` becomes a one-line
  :class:`StoreError` pointing at ``zooindex check``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import sqlite3
import time
import tempfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils

from .errors import NotIndexedError, StoreError

SCHEMA_VERSION = 3
DEFAULT_CACHE_LIMIT = 2 * 1024**3  # bytes of cached activation files kept, LRU beyond
BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per attempt
BUSY_RETRIES = 4       # further attempts, after 0.1, 0.2, 0.4, 0.8 s (jittered)
_BACKOFF_S = 0.1

# Statements that bring a database from schema version N to N + 1, run in one
# transaction after a backup copy. Version 2 records what a cheap "is the file still
# the one indexed?" check needs beyond size and mtime: the inode change time (which no
# tool can set back, unlike mtime) and the size and times of external weight files.
# Version 3 keeps new activations in files beside the database (rows name the file and
# its CRC-32); version-2 rows keep their blob in ``data`` and stay readable. Its PCA is
# exact where version 2's was randomized for wide layers (scores differ in the fourth
# decimal), so cached scores go: a ranking never mixes the two, and they are recomputed
# from the cached activations, which stay.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE models ADD COLUMN ctime REAL",
        "ALTER TABLE models ADD COLUMN weights TEXT"),
    2: ("ALTER TABLE activations ADD COLUMN file TEXT",
        "ALTER TABLE activations ADD COLUMN crc INTEGER",
        "DELETE FROM scores"),
}
# a temporary activation file older than this is a crash's leftover, not a write
# in progress
_STALE_TMP_S = 600.0
_STAT_TOLERANCE = 1e-6  # seconds: floats of st_mtime/st_ctime round-trip through SQLite


def default_path() -> Path:
    """``$ZOOINDEX_INDEX``, else ``index.db`` in the user's data directory (XDG)."""
    env = os.environ.get("ZOOINDEX_INDEX")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("zooindex")) / "index.db"


def weight_stats(model_path, files) -> list[dict]:
    """Size and times of a model's external weight ``files`` (relative to its folder).

    Stored with the model so that :meth:`ModelRecord.status` notices a weight file that
    changed while the ``.onnx`` file stayed the same.
    """
    folder = Path(model_path).parent
    stats = []
    for name in files:
        st = os.stat(folder / name)
        stats.append({"file": name, "size": st.st_size, "mtime": st.st_mtime,
                      "ctime": st.st_ctime})
    return stats


@dataclass
class ModelRecord:
    """One indexed model, as stored.

    ``sha256`` is the content hash (:func:`zooindex.hashing.sha256_model`: the file and
    its external weight files). ``ctime`` and ``weights`` (the weight files' stats) are
    ``None`` for models indexed before schema 2; the status check then trusts size and
    mtime, as it did then.
    """

    name: str
    sha256: str
    path: str
    size: int
    mtime: float
    input_name: str
    input_shape: list
    input_dtype: str
    opset: int
    params: int
    default_layer: str | None
    output_name: str | None
    output_is_probs: bool
    preprocessing: dict
    tags: dict
    source: dict
    external_data: bool
    added_at: str
    layers: list[dict] = field(default_factory=list)
    ctime: float | None = None
    weights: list[dict] | None = None

    def status(self) -> str:
        """``ok``, ``missing`` or ``changed``: is the file still what was indexed?"""
        return self.verify()[0]

    def verify(self, *, full: bool = False) -> tuple[str, dict | None]:
        """``(status, fresh)``: the status, and new stat fields worth storing.

        A cheap stat decides when size, mtime and ctime of the file (and of each weight
        file) match what was stored; otherwise, or with ``full``, the content is hashed.
        ``fresh`` is not ``None`` when the content matched but the stored stat was stale
        (a ``touch``, a copy, a chmod), so that the next check is cheap again.
        """
        try:
            st = os.stat(self.path)
            weights = weight_stats(self.path, [w["file"] for w in self.weights or []])
        except OSError:
            return "missing", None
        fresh = {"size": st.st_size, "mtime": st.st_mtime, "ctime": st.st_ctime,
                 "weights": weights if self.weights is not None else None}
        if not full and self._stat_matches(fresh):
            return "ok", (fresh if self.ctime is None else None)
        from .hashing import sha256_model

        folder = Path(self.path).parent
        try:
            sha = sha256_model(self.path, [folder / w["file"] for w in self.weights or []])
        except OSError:
            return "missing", None
        if sha != self.sha256:
            return "changed", None
        return "ok", (None if self._stat_matches(fresh, strict=True) else fresh)

    def _stat_matches(self, fresh: dict, strict: bool = False) -> bool:
        def same(a, b):
            return a is not None and b is not None and abs(a - b) < _STAT_TOLERANCE

        if fresh["size"] != self.size or not same(fresh["mtime"], self.mtime):
            return False
        if self.ctime is None:  # indexed before ctime was recorded
            return not strict
        if not same(fresh["ctime"], self.ctime):
            return False
        for old, new in zip(self.weights or [], fresh["weights"] or []):
            if old["size"] != new["size"] or not same(old["mtime"], new["mtime"]) \
                    or not same(old.get("ctime"), new["ctime"]):
                return False
        return True

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        return d


_JSON_FIELDS = ("input_shape", "preprocessing", "tags", "source")


def _record(row: dict, layers: list[dict]) -> ModelRecord:
    row = dict(row)
    for key in _JSON_FIELDS:
        row[key] = json.loads(row[key]) if row[key] else ({} if key != "input_shape" else [])
    row["output_is_probs"] = bool(row["output_is_probs"])
    row["external_data"] = bool(row["external_data"])
    # a schema-1 database opened read-only has neither column
    row["weights"] = json.loads(row["weights"]) if row.get("weights") else None
    row["ctime"] = row.get("ctime")
    return ModelRecord(**row, layers=layers)


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


# what decode_array raises on a damaged blob (a damaged header can ask for any size)
DECODE_ERRORS = (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, MemoryError)


@dataclass(frozen=True)
class StagedActivations:
    """A cache file written by :meth:`Index.stage_activations`, its row not yet stored."""

    key: tuple          # (model_sha, layer, target, prep)
    file: str
    bytes: int
    crc: int
    n: int
    dim: int


class Index:
    """A zooindex database. Open with ``Index(path)``; use as a context manager.

    ``read_only``: ``None`` decides from the permissions of the file and its folder;
    ``True`` opens it read-only whatever they are (nothing is written, not even the
    cache). :attr:`warnings` collects cache writes that failed (full disk, read-only
    file system) and were skipped.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 cache_limit: int | None = None, read_only: bool | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        env_limit = os.environ.get("ZOOINDEX_CACHE_LIMIT")
        self.cache_limit = cache_limit if cache_limit is not None else (
            int(float(env_limit)) if env_limit else DEFAULT_CACHE_LIMIT)
        self.warnings: list[str] = []
        self.schema_version = SCHEMA_VERSION
        self.cache_dir = self.path.with_name(self.path.name + "-activations")
        self._unlink_after_commit: set[str] = set()
        exists = self.path.exists()
        if not exists:
            if not create or read_only:
                raise StoreError(f"no index at {self.path}; add a model first with "
                                 "`zooindex add MODEL.onnx`", path=str(self.path))
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the index folder {self.path.parent}: "
                                 f"{exc.strerror}", path=str(self.path)) from None
        if self.path.is_dir():
            raise StoreError(f"the index path {self.path} is a folder; give a file name "
                             "such as index.db with --index", path=str(self.path))
        # WAL needs to create files beside the database, so the folder counts too
        self.read_only = read_only if read_only is not None else exists and not (
            os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK))
        self.db = None
        try:
            self.db = sqlite_utils.Database(self._connect())
            self.db.execute("PRAGMA foreign_keys = ON")
            if not self.read_only:
                self._retry(self._ensure_wal)
            self._retry(self._check_schema)
        except BaseException as exc:
            if self.db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if _is_busy(exc):
                raise _store_error(exc, self.path) from None
            raise StoreError(f"{self.path} is not a usable zooindex database: {exc}; "
                             "run `zooindex check` on it, or use another --index",
                             path=str(self.path)) from None

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        uri = "file:" + urllib.parse.quote(str(self.path.absolute()))
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # A WAL database in a folder nobody may write: SQLite cannot create the
            # shared-memory file, so read the main file as immutable (changes still
            # in a leftover -wal file are not seen).
            conn.close()
            return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=BUSY_TIMEOUT_S)

    def _ensure_wal(self) -> None:
        mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            with self.db.ensure_autocommit_on():
                self.db.execute("PRAGMA journal_mode = WAL")

    def _retry(self, step):
        """Run ``step()``, again after a jittered backoff while SQLite answers busy."""
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == BUSY_RETRIES:
                    raise
                time.sleep(_BACKOFF_S * 2**attempt * (0.5 + random.random()))

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _refuse_write(self) -> None:
        if self.read_only:
            raise StoreError(f"the index {self.path} is read-only; searches can use its "
                             "cache but nothing can be written (add, rm, cache clear need "
                             "write permission on the file and its folder)",
                             path=str(self.path))

    @contextlib.contextmanager
    def transaction(self):
        """One logical change: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error.

        IMMEDIATE takes the write lock up front, so two writers never deadlock on a
        read-then-write upgrade; the busy timeout makes the second one wait its turn,
        and a bounded retry covers the cases where SQLite does not wait. SQLite errors
        inside (full disk, read-only file, I/O error) roll everything back and become
        a :class:`StoreError`.
        """
        self._refuse_write()
        conn = self.db.conn
        if conn.in_transaction:  # nested: sqlite-utils uses a savepoint
            with self.db.atomic():
                yield self
            return
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as exc:
            raise _store_error(exc, self.path) from None
        try:
            yield self
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise _store_error(exc, self.path) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self._retry(lambda: conn.execute("COMMIT"))
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise _store_error(exc, self.path) from None
        self._remove_files()

    def _rollback(self) -> None:
        self._unlink_after_commit.clear()  # their rows are back
        # SQLite may already have rolled back on its own (a full disk, an I/O error)
        if self.db.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")

    def _schema_on_disk(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _check_schema(self) -> None:
        tables = set(self.db.table_names())
        if "meta" not in tables:
            if self.read_only:
                raise StoreError(f"{self.path} is not a zooindex database", path=str(self.path))
            if tables:
                raise StoreError(f"{self.path} is an SQLite database but not a zooindex "
                                 "index; choose another path with --index", path=str(self.path))
            self._create_schema()
            return
        version = self._schema_on_disk()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the index {self.path} was written by a newer zooindex (schema {version}, "
                f"this one reads up to {SCHEMA_VERSION}); upgrade zooindex",
                path=str(self.path))
        if version < min(_MIGRATIONS, default=SCHEMA_VERSION):
            raise StoreError(f"the index {self.path} has an unknown schema {version}; "
                             "it was not written by zooindex", path=str(self.path))
        if version < SCHEMA_VERSION:
            if self.read_only:  # read it as it is; newer columns read as unknown
                self.schema_version = version
            else:
                self._migrate()

    def _migrate(self) -> None:
        """Bring an older schema up to date: backup copy first, then one transaction."""
        with self.transaction():
            version = self._schema_on_disk()  # another process may have migrated it
            if version >= SCHEMA_VERSION:
                return
            backup = self.path.with_name(f"{self.path.name}.schema{version}.bak")
            self._backup(backup)
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    self.db.execute(statement)
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                            [str(SCHEMA_VERSION)])

    def _backup(self, dest: Path) -> None:
        """A consistent copy of the committed database at ``dest`` (WAL included).

        Read through a second connection while this one holds the write lock, so the
        copy is exactly the state the migration starts from.
        """
        partial = dest.with_name(dest.name + ".partial")
        source = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        try:
            target = sqlite3.connect(str(partial))
            try:
                source.backup(target)
            finally:
                target.close()
            os.replace(partial, dest)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise StoreError(f"cannot back up the index {self.path} to {dest} before "
                             f"upgrading its schema: {exc}; nothing was changed",
                             path=str(self.path)) from None
        finally:
            source.close()

    def _create_schema(self) -> None:
        with self.transaction():
            if "meta" in self.db.table_names():  # another process created it meanwhile
                return
            db = self.db
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["models"].create({
                "name": str, "sha256": str, "path": str, "size": int, "mtime": float,
                "input_name": str, "input_shape": str, "input_dtype": str, "opset": int,
                "params": int, "default_layer": str, "output_name": str,
                "output_is_probs": int, "preprocessing": str, "tags": str, "source": str,
                "external_data": int, "added_at": str, "ctime": float, "weights": str,
            }, pk="name", not_null={"sha256", "path"}, if_not_exists=True)
            db["layers"].create({
                "model": str, "name": str, "op": str, "kind": str, "dim": int,
                "shape": str, "position": int, "is_default": int,
            }, pk=("model", "name"), foreign_keys=[("model", "models", "name")],
                if_not_exists=True)
            db["targets"].create({
                "key": str, "source": str, "n": int, "classes": str, "created_at": str,
            }, pk="key", if_not_exists=True)
            db["activations"].create({
                "model_sha": str, "layer": str, "target": str, "prep": str, "n": int,
                "dim": int, "bytes": int, "data": bytes, "created_at": str,
                "used_at": float, "file": str, "crc": int,
            }, pk=("model_sha", "layer", "target", "prep"), if_not_exists=True)
            db["scores"].create({
                "model_sha": str, "layer": str, "target": str, "prep": str,
                "estimator": str, "params": str, "value": float, "components": int,
                "seconds": float, "created_at": str,
            }, pk=("model_sha", "layer", "target", "prep", "estimator", "params"),
                if_not_exists=True)
            db["layers"].create_index(["model"], if_not_exists=True)
            db["models"].create_index(["sha256"], if_not_exists=True)
            db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)},
                              pk="key")

    # -- models ------------------------------------------------------------------
    def put_model(self, record: ModelRecord, *, replace: bool = False) -> None:
        """Insert (or with ``replace`` overwrite) a model and its layers, atomically."""
        row = {k: v for k, v in record.to_dict().items() if k != "layers"}
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row[key], sort_keys=True)
        row["weights"] = None if record.weights is None else json.dumps(record.weights)
        row["output_is_probs"] = int(record.output_is_probs)
        row["external_data"] = int(record.external_data)
        with self.transaction():
            if replace:
                self.db.execute("DELETE FROM layers WHERE model = ?", [record.name])
                self.db.execute("DELETE FROM models WHERE name = ?", [record.name])
            self.db["models"].insert(row)
            self.db["layers"].insert_all(
                {**layer, "model": record.name, "shape": json.dumps(layer["shape"])}
                for layer in record.layers)

    def get_model(self, name: str) -> ModelRecord:
        rows = list(self.db.query("SELECT * FROM models WHERE name = ?", [name]))
        if not rows:
            names = self.model_names()
            hint = f"indexed: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}" \
                if names else "the index is empty"
            raise NotIndexedError(f"model '{name}' is not in the index ({hint}). "
                                  "See `zooindex ls`.", model=name, path=str(self.path))
        return _record(rows[0], self._layers(name))

    def find_model_by_sha(self, sha256: str) -> ModelRecord | None:
        rows = list(self.db.query("SELECT * FROM models WHERE sha256 = ? ORDER BY name",
                                  [sha256]))
        return _record(rows[0], self._layers(rows[0]["name"])) if rows else None

    def has_model(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone() \
            is not None

    def _layers(self, name: str) -> list[dict]:
        layers = []
        for row in self.db.query(
                "SELECT name, op, kind, dim, shape, position, is_default FROM layers "
                "WHERE model = ? ORDER BY position", [name]):
            row["shape"] = json.loads(row["shape"]) if row["shape"] else []
            row["is_default"] = bool(row["is_default"])
            layers.append(row)
        return layers

    def models(self) -> list[ModelRecord]:
        # one read transaction, so that the layers match the models of the same moment
        with self._snapshot():
            layers: dict[str, list[dict]] = {}
            for row in self.db.query(
                    "SELECT model, name, op, kind, dim, shape, position, is_default "
                    "FROM layers ORDER BY model, position"):
                model = row.pop("model")
                row["shape"] = json.loads(row["shape"]) if row["shape"] else []
                row["is_default"] = bool(row["is_default"])
                layers.setdefault(model, []).append(row)
            return [_record(row, layers.get(row["name"], []))
                    for row in self.db.query("SELECT * FROM models ORDER BY name")]

    @contextlib.contextmanager
    def _snapshot(self):
        """A read transaction: every query inside sees the same committed state."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        self._retry(lambda: conn.execute("BEGIN"))
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def model_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM models ORDER BY name")]

    def remove_model(self, name: str) -> ModelRecord:
        with self.transaction():
            record = self.get_model(name)  # read under the lock: another rm may have won
            self.db.execute("DELETE FROM layers WHERE model = ?", [name])
            self.db.execute("DELETE FROM models WHERE name = ?", [name])
            # cached numbers of content no other model shares are now orphans
            self._drop_orphans()
        return record

    def replace_model(self, old_sha: str, record: ModelRecord) -> bool:
        """Replace the model ``record.name`` if it still has content ``old_sha``, atomically.

        Used to re-index a model whose file changed; cached numbers of the old content
        that no other model shares go in the same transaction. ``False`` (and nothing
        written) when another process changed or removed the model meanwhile.
        """
        with self.transaction():
            row = self.db.execute("SELECT sha256 FROM models WHERE name = ?",
                                  [record.name]).fetchone()
            if row is None or row[0] != old_sha:
                return False
            self.put_model(record, replace=True)
            self._drop_orphans()
        return True

    def update_file_stat(self, name: str, size: int, mtime: float,
                         ctime: float | None = None, weights: list | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE models SET size = ?, mtime = ?, ctime = COALESCE(?, ctime), "
                "weights = COALESCE(?, weights) WHERE name = ?",
                [size, mtime, ctime, None if weights is None else json.dumps(weights), name])

    def model_status(self, record: ModelRecord) -> str:
        """:meth:`ModelRecord.status`, storing the fresh stat when the content still matches.

        A model whose file was touched, copied back or chmod-ed hashes once, not at
        every search. Best effort: a read-only or busy index just hashes again next time.
        """
        status, fresh = record.verify()
        if fresh is not None and not self.read_only and self.schema_version >= 2:
            with contextlib.suppress(StoreError):
                self.update_file_stat(record.name, fresh["size"], fresh["mtime"],
                                      fresh["ctime"], fresh["weights"])
        return status

    # -- targets -----------------------------------------------------------------
    def put_target(self, key: str, source: str, n: int, classes: list) -> None:
        if self.read_only:
            return
        with self._best_effort("the target"):
            with self.transaction():
                self.db["targets"].upsert({"key": key, "source": source, "n": n,
                                           "classes": json.dumps([str(c) for c in classes]),
                                           "created_at": _now()}, pk="key")

    # -- scores ------------------------------------------------------------------
    def get_scores(self, model_sha: str, layer: str, target: str, prep: str) -> dict:
        """``{(estimator, params_json): (value, components, seconds)}`` cached for this key."""
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in self.db.execute(
            "SELECT estimator, params, value, components, seconds FROM scores "
            "WHERE model_sha = ? AND layer = ? AND target = ? AND prep = ?",
            [model_sha, layer, target, prep])}

    def put_scores(self, model_sha: str, layer: str, target: str, prep: str,
                   rows: list[tuple[str, str, float, int | None, float]]) -> bool:
        """Cache one (model, layer, target) group of scores, all or none; best effort.

        A concurrent ``rm`` or ``cache clear`` can leave these rows orphaned; ``zooindex
        check`` reports them and ``check --fix`` (or the next ``rm``) removes them.
        """
        if self.read_only or not rows:
            return False
        with self._best_effort("scores"):
            with self.transaction():
                self.db["scores"].upsert_all(
                    ({"model_sha": model_sha, "layer": layer, "target": target, "prep": prep,
                      "estimator": est, "params": params, "value": value,
                      "components": components, "seconds": seconds, "created_at": _now()}
                     for est, params, value, components, seconds in rows),
                    pk=("model_sha", "layer", "target", "prep", "estimator", "params"))
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
            if not self.read_only:
                with contextlib.suppress(StoreError):
                    with self.transaction():
                        self._delete_activations("model_sha = ? AND layer = ? AND "
                                                 "target = ? AND prep = ?", key)
            return None
        if not self.read_only:
            with contextlib.suppress(StoreError):
                with self.transaction():
                    self.db.execute(
                        "UPDATE activations SET used_at = ? WHERE model_sha = ? AND layer = ? "
                        "AND target = ? AND prep = ?", [time.time(), *key])
        return array

    def cached_layers(self, model_sha: str, target: str, prep: str) -> set[str]:
        """Layers with cached activations for this model content, target and preprocessing
        (rows only: whether each is intact shows when it is read)."""
        return {r[0] for r in self.db.execute(
            "SELECT layer FROM activations WHERE model_sha = ? AND target = ? AND prep = ?",
            [model_sha, target, prep])}

    @property
    def _entry_columns(self) -> str:
        """The columns :meth:`_read_entry` takes (schema 2 had no files)."""
        return "data, file, crc, n, dim" if self.schema_version >= 3 else \
            "data, NULL, NULL, n, dim"

    def _read_entry(self, data, file, crc, n, dim) -> np.ndarray:
        """Decode one row's activations; ``DECODE_ERRORS`` when they are not intact."""
        if not file:  # written by schema 2: a blob in the row
            return decode_array(data)
        if os.path.basename(file) != file:
            raise ValueError("activation file name with a path")
        array = np.load(self.cache_dir / file, allow_pickle=False)
        if array.ndim < 1 or len(array) != n or int(np.prod(array.shape[1:])) != dim \
                or zlib.crc32(np.ascontiguousarray(array)) != crc:
            raise ValueError("damaged activation file")
        return array

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
        with self.transaction():
            return sum(self._delete_activations("rowid = ?", [rowid]) for rowid in rowids)

    def put_activations(self, model_sha: str, layer: str, target: str, prep: str,
                        array: np.ndarray) -> bool:
        """Cache ``array`` unless it alone exceeds the cache limit; evict LRU beyond it.

        The array goes to a file of its own (written, then renamed into place), and its
        row is committed after. Best effort, like :meth:`put_scores`: a failed write is
        noted in :attr:`warnings`, leaves no file behind, and the search goes on
        without the cache. The same as :meth:`stage_activations` then
        :meth:`commit_activations`.
        """
        staged = self.stage_activations(model_sha, layer, target, prep, array)
        return staged is not None and self.commit_activations(staged)

    def stage_activations(self, model_sha: str, layer: str, target: str, prep: str,
                          array: np.ndarray) -> "StagedActivations | None":
        """Write ``array``'s cache file, not yet its row: no database access, so another
        thread may do it. ``None`` when nothing is cached (read-only index, an array over
        the cache limit, or a failed write, noted in :attr:`warnings`).
        """
        if self.read_only:
            return None
        array = np.ascontiguousarray(array)
        if array.nbytes > self.cache_limit:
            return None
        key = (model_sha, layer, target, prep)
        name = hashlib.sha256("\0".join(key).encode()).hexdigest()[:40] + ".npy"
        with self._best_effort("activations"):
            size = self._write_file(name, array)
            return StagedActivations(key=key, file=name, bytes=size, crc=zlib.crc32(array),
                                     n=int(array.shape[0]),
                                     dim=int(np.prod(array.shape[1:])))
        return None

    def commit_activations(self, staged: "StagedActivations") -> bool:
        """Record a staged file in the index; its file goes if that fails (best effort)."""
        model_sha, layer, target, prep = staged.key
        with self._best_effort("activations"):
            try:
                with self.transaction():
                    self.db["activations"].upsert({
                        "model_sha": model_sha, "layer": layer, "target": target,
                        "prep": prep, "n": staged.n, "dim": staged.dim,
                        "bytes": staged.bytes, "data": None, "file": staged.file,
                        "crc": staged.crc, "created_at": _now(), "used_at": time.time()},
                        pk=("model_sha", "layer", "target", "prep"))
                    self._evict(self.cache_limit)
            except StoreError:
                self._unlink_after_commit.add(staged.file)
                self._remove_files()
                raise
            return True
        return False

    def _write_file(self, name: str, array: np.ndarray) -> int:
        """Write ``array`` to ``cache_dir/name`` atomically; its size in bytes."""
        tmp = None
        try:
            self.cache_dir.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
            size = os.path.getsize(tmp)
            os.replace(tmp, self.cache_dir / name)
            return size
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise StoreError(f"cannot write to {self.cache_dir}: "
                             f"{exc.strerror or exc}", path=str(self.path)) from None

    def _delete_activations(self, where: str, params=()) -> int:
        """Delete activation rows (inside a transaction); their files go after the commit."""
        if self.schema_version >= 3:
            self._unlink_after_commit.update(
                r[0] for r in self.db.execute(
                    f"SELECT file FROM activations WHERE ({where}) AND file IS NOT NULL",
                    params))
        return self.db.execute(f"DELETE FROM activations WHERE {where}", params).rowcount

    def _remove_files(self) -> None:
        """Remove the files of deleted rows, unless a row refers to them again."""
        if not self._unlink_after_commit:
            return
        names, self._unlink_after_commit = self._unlink_after_commit, set()
        for name in names:
            try:
                referenced = self.db.execute("SELECT 1 FROM activations WHERE file = ?",
                                             [name]).fetchone() is not None
            except sqlite3.Error:  # cannot tell: leave it to `zooindex check`
                continue
            if not referenced:
                with contextlib.suppress(OSError):
                    os.unlink(self.cache_dir / name)

    def _remove_unreferenced_files(self) -> int:
        """Remove :meth:`unreferenced_files`; how many there were."""
        files = self.unreferenced_files()
        for leftover in files:
            with contextlib.suppress(OSError):
                leftover.unlink()
        return len(files)

    def unreferenced_files(self) -> list[Path]:
        """Files in :attr:`cache_dir` that no row refers to (a crash's leftovers).

        Temporary files younger than ten minutes are writes in progress, not leftovers.
        """
        if not self.cache_dir.is_dir():
            return []
        if self.schema_version >= 3:
            known = {r[0] for r in self.db.execute(
                "SELECT file FROM activations WHERE file IS NOT NULL")}
        else:
            known = set()
        now = time.time()
        out = []
        for entry in os.scandir(self.cache_dir):
            if entry.name in known or not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime < _STALE_TMP_S:
                        continue
            out.append(Path(entry.path))
        return sorted(out)

    @contextlib.contextmanager
    def _best_effort(self, what: str):
        """Swallow a failed cache write, keeping its reason in :attr:`warnings`."""
        try:
            yield
        except StoreError as exc:
            note = f"could not cache {what}: {exc}"
            if note not in self.warnings:
                self.warnings.append(note)

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

    def cache_stats(self) -> dict:
        act = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM activations").fetchone()
        scores = self.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        targets = self.db.execute("SELECT COUNT(*) FROM targets").fetchone()[0]
        return {"activations": act[0], "activation_bytes": act[1], "scores": scores,
                "targets": targets, "limit_bytes": self.cache_limit,
                "folder": str(self.cache_dir)}

    def clear_cache(self) -> dict:
        stats = self.cache_stats()
        with self.transaction():
            self._delete_activations("1")
            self.db.execute("DELETE FROM scores")
            self.db.execute("DELETE FROM targets")
        self._remove_unreferenced_files()
        with contextlib.suppress(sqlite3.OperationalError):
            with self.db.ensure_autocommit_on():
                self.db.execute("VACUUM")
        return stats

    # -- orphans (see zooindex.check) ------------------------------------------------
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
        with self._snapshot():
            counts = {table: self.db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
                for table, where in self._ORPHANS.items()}
            counts["files"] = len(self.unreferenced_files())
        return counts

    def drop_orphans(self) -> dict[str, int]:
        """Delete every orphan (see :meth:`orphans`): rows in one transaction, then files."""
        with self.transaction():
            removed = {"activations": self._delete_activations(self._ORPHANS["activations"])}
            removed.update({table: self.db.execute(f"DELETE FROM {table} WHERE {where}").rowcount
                            for table, where in self._ORPHANS.items() if table != "activations"})
        removed["files"] = self._remove_unreferenced_files()
        return removed

    def _drop_orphans(self) -> int:
        """Delete cached rows whose model content no indexed model has any more."""
        removed = self._delete_activations("model_sha NOT IN (SELECT sha256 FROM models)")
        return removed + self.db.execute(
            "DELETE FROM scores WHERE model_sha NOT IN (SELECT sha256 FROM models)").rowcount


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    if _is_busy(exc):
        waited = BUSY_TIMEOUT_S * (BUSY_RETRIES + 1)
        return StoreError(f"the index {path} stayed locked by another process for about "
                          f"{waited:.0f} s; try again when it finishes", path=str(path))
    if "readonly" in text or "read-only" in text:
        return StoreError(f"the index {path} is read-only; nothing was changed (write "
                          "access to the file and its folder is needed)", path=str(path))
    if "disk" in text and "full" in text or "disk I/O" in text:
        return StoreError(f"cannot write the index {path}: {text}; nothing was changed. "
                          "Free some space, or `zooindex cache clear`", path=str(path))
    return StoreError(f"index {path}: {text}; nothing was changed", path=str(path))


@contextlib.contextmanager
def opened(index: "Index | str | os.PathLike | None", *, create: bool = True,
           read_only: bool | None = None):
    """Use ``index`` if it is an open :class:`Index`, else open (and close) one at that path.

    SQLite errors that escape the block (a damaged file, an I/O error while reading)
    become a one-line :class:`StoreError`.
    """
    if isinstance(index, Index):
        with _as_store_errors(index.path):
            yield index
        return
    idx = Index(index, create=create, read_only=read_only)
    try:
        with _as_store_errors(idx.path):
            yield idx
    finally:
        idx.close()


@contextlib.contextmanager
def _as_store_errors(path: Path):
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            raise _store_error(exc, path) from None
        raise StoreError(f"the index {path} is damaged ({exc}); run `zooindex check "
                         f"--index {path}`", path=str(path)) from None
