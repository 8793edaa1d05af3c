"""The persistent index: one SQLite file, its model catalogue and its cache.

An :class:`Index` opens a :class:`~zooindex.store.Store` (the file: connection,
transactions, retries, schema) and gives it two faces: :attr:`Index.catalogue`, the
indexed models (:mod:`zooindex.catalogue`), and :attr:`Index.cache`, the targets, scores
and activation files remembered from past work (:mod:`zooindex.cache`). The few changes
that touch both, removing or replacing a model together with the cached numbers only it
had, are methods here, each one transaction.
"""

from __future__ import annotations

import contextlib
import os

from .cache import DECODE_ERRORS, DEFAULT_CACHE_LIMIT, Cache, CachedFile, decode_array
from .catalogue import Catalogue, ModelRecord, weight_stats
from .store import SCHEMA_VERSION, Store, as_store_errors, default_path

__all__ = ["Index", "opened", "ModelRecord", "Catalogue", "Cache", "CachedFile", "Store",
           "SCHEMA_VERSION", "DEFAULT_CACHE_LIMIT", "DECODE_ERRORS", "decode_array",
           "default_path", "weight_stats"]


class Index:
    """A zooindex database. Open with ``Index(path)``; use as a context manager.

    ``create``: make a new index when none exists at ``path`` (otherwise that is a
    :class:`~zooindex.errors.StoreError`). ``read_only``: ``None`` decides from the
    permissions of the file and its folder; ``True`` opens it read-only whatever they
    are. ``cache_limit``: bytes of activation files kept.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 cache_limit: int | None = None, read_only: bool | None = None):
        self.store = Store(path, create=create, read_only=read_only)
        self.catalogue = Catalogue(self.store)
        self.cache = Cache(self.store, limit=cache_limit)

    @property
    def path(self):
        return self.store.path

    @property
    def read_only(self) -> bool:
        return self.store.read_only

    @property
    def warnings(self) -> list[str]:
        """Best-effort writes (cache, scores) that failed and were skipped."""
        return self.store.warnings

    @property
    def db(self):
        return self.store.db

    def transaction(self):
        return self.store.transaction()

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def remove_model(self, name: str) -> ModelRecord:
        """Remove a model, and the cached numbers of content no other model shares."""
        with self.store.transaction():
            record = self.catalogue.delete_model(name)
            self.cache.forget_removed_models()
        return record

    def replace_model(self, old_sha: str, record: ModelRecord) -> bool:
        """Replace the model ``record.name`` if it still has content ``old_sha``, atomically.

        Used to re-index a model whose file changed; cached numbers of the old content
        that no other model shares go in the same transaction. ``False`` (and nothing
        written) when another process changed or removed the model meanwhile.
        """
        with self.store.transaction():
            if self.catalogue.content_of(record.name) != old_sha:
                return False
            self.catalogue.put_model(record, replace=True)
            self.cache.forget_removed_models()
        return True


@contextlib.contextmanager
def opened(index: "Index | str | os.PathLike | None", *, create: bool = True,
           read_only: bool | None = None):
    """Use ``index`` if it is an open :class:`Index`, else open (and close) one at that path.

    SQLite errors that escape the block (a damaged file, an I/O error while reading)
    become a one-line :class:`~zooindex.errors.StoreError`.
    """
    if isinstance(index, Index):
        with as_store_errors(index.path):
            yield index
        return
    idx = Index(index, create=create, read_only=read_only)
    try:
        with as_store_errors(idx.path):
            yield idx
    finally:
        idx.close()
