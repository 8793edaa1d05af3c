"""The SQLite file under the index: connection, transactions, retries, schema, migrations.

One SQLite file (through sqlite-utils) in WAL mode, so that searches read while an
``add`` writes. Every logical change runs in one ``BEGIN IMMEDIATE`` transaction
(:meth:`Store.transaction`): a crash leaves either all of it or none of it. What the
tables hold is the business of :mod:`zooindex.catalogue` (models and their layers) and
:mod:`zooindex.cache` (targets, scores, activation files); this module only keeps the
file sound.

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
  names the cause; cache writes are best effort (:meth:`Store.best_effort`), so a
  search still returns its ranking and lists the problem in :attr:`Store.warnings`.
* **Schema versions**: a newer schema is refused; an older one is copied beside the
  database (``<name>.schema<N>.bak``, through SQLite's backup API, so the copy is
  consistent even with a live WAL) and migrated in place in one transaction.
* **Any other SQLite error** inside :func:`zooindex.index.opened` becomes a one-line
  :class:`StoreError` pointing at ``zooindex check``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
import urllib.parse
from pathlib import Path

import sqlite_utils

from .errors import StoreError

SCHEMA_VERSION = 4
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
# from the cached activations, which stay. Version 4 records why a model's default layer
# is what it is (models indexed before say nothing: NULL).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE models ADD COLUMN ctime REAL",
        "ALTER TABLE models ADD COLUMN weights TEXT"),
    2: ("ALTER TABLE activations ADD COLUMN file TEXT",
        "ALTER TABLE activations ADD COLUMN crc INTEGER",
        "DELETE FROM scores"),
    3: ("ALTER TABLE models ADD COLUMN default_reason TEXT",),
}


def default_path() -> Path:
    """``$ZOOINDEX_INDEX``, else ``index.db`` in the user's data directory (XDG)."""
    env = os.environ.get("ZOOINDEX_INDEX")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("zooindex")) / "index.db"


def now() -> str:
    """The current local time as stored in ``*_at`` columns."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """An open zooindex database file.

    ``create``: make the file (and its folder) when it does not exist; otherwise a
    missing file is a :class:`StoreError` that says how to make one. A new index is
    created only in an existing folder, except the default one (the user data
    directory), which is made when needed. ``read_only``:
    ``None`` decides from the permissions of the file and its folder; ``True`` opens it
    read-only whatever they are (nothing is written, not even the cache).
    :attr:`warnings` collects best-effort writes that failed and were skipped.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 read_only: bool | None = None):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.warnings: list[str] = []
        self.schema_version = SCHEMA_VERSION
        self.created = False
        self._after_commit: list = []
        exists = self.path.exists()
        if not exists:
            if not create or read_only:
                raise StoreError(f"no index at {self.path}; check --index (or "
                                 "$ZOOINDEX_INDEX), or create one with `zooindex add "
                                 "MODEL.onnx`", path=str(self.path))
            if path is None and not os.environ.get("ZOOINDEX_INDEX"):
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the index folder {self.path.parent}: "
                                     f"{exc.strerror}", path=str(self.path)) from None
            elif not self.path.parent.is_dir():
                raise StoreError(f"cannot create the index {self.path}: the folder "
                                 f"{self.path.parent} does not exist; create it first or "
                                 "choose another --index", path=str(self.path))
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
                self.retry(self._ensure_wal)
            self.retry(self._check_schema)
        except BaseException as exc:
            if self.db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.db.close()
            if not isinstance(exc, sqlite3.DatabaseError):
                raise
            if is_busy(exc):
                raise store_error(exc, self.path) from None
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

    def retry(self, step):
        """Run ``step()``, again after a jittered backoff while SQLite answers busy."""
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == BUSY_RETRIES:
                    raise
                time.sleep(_BACKOFF_S * 2**attempt * (0.5 + random.random()))

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def refuse_write(self) -> None:
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
        a :class:`StoreError`. Callbacks registered with :meth:`after_commit` run once
        the outermost transaction has committed, and are dropped if it rolls back.
        """
        self.refuse_write()
        conn = self.db.conn
        if conn.in_transaction:  # nested: sqlite-utils uses a savepoint
            with self.db.atomic():
                yield self
            return
        try:
            self.retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as exc:
            raise store_error(exc, self.path) from None
        try:
            yield self
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise store_error(exc, self.path) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self.retry(lambda: conn.execute("COMMIT"))
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise store_error(exc, self.path) from None
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback) -> None:
        """Run ``callback()`` after the current transaction commits (e.g. remove files)."""
        self._after_commit.append(callback)

    def _rollback(self) -> None:
        self._after_commit = []  # what they would undo is back
        # SQLite may already have rolled back on its own (a full disk, an I/O error)
        if self.db.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def snapshot(self):
        """A read transaction: every query inside sees the same committed state."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        self.retry(lambda: conn.execute("BEGIN"))
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @contextlib.contextmanager
    def best_effort(self, what: str):
        """Swallow a failed write of ``what``, keeping its reason in :attr:`warnings`."""
        try:
            yield
        except StoreError as exc:
            note = f"could not cache {what}: {exc}"
            if note not in self.warnings:
                self.warnings.append(note)

    # -- schema ------------------------------------------------------------------
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
            self.created = True
            db = self.db
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["models"].create({
                "name": str, "sha256": str, "path": str, "size": int, "mtime": float,
                "input_name": str, "input_shape": str, "input_dtype": str, "opset": int,
                "params": int, "default_layer": str, "output_name": str,
                "output_is_probs": int, "preprocessing": str, "tags": str, "source": str,
                "external_data": int, "added_at": str, "ctime": float, "weights": str,
                "default_reason": str,
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


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """A one-line :class:`StoreError` for an SQLite error, saying what to do."""
    text = str(exc)
    if is_busy(exc):
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
def as_store_errors(path: Path):
    """SQLite errors escaping the block (damaged file, I/O error) as one-line StoreErrors."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            raise store_error(exc, path) from None
        raise StoreError(f"the index {path} is damaged ({exc}); run `zooindex check "
                         f"--index {path}`", path=str(path)) from None
