"""Partial activations: the images of a target a model has seen so far, kept for later.

A search on a budget (:mod:`zooindex.budget`) runs each model on a growing subsample of
the target. What it ran is kept under the *whole* target's key, so that the next round
and a later full search run only the images not seen yet. One entry is two activation
files of :class:`~zooindex.cache.activations.ActivationFiles` (no table of its own):

* ``LAYER#rows``: the positions in the target of the images seen, ``(m,)`` int64,
  sorted;
* ``LAYER#seen``: their activations, ``(m, width)``, in the same order.

Both are stored in one transaction; a pair that is not whole (one file evicted or damaged) is a
miss, never wrong numbers. When every image has been seen, the pair gives way to the
layer's ordinary entry for the whole target, which every search reads.
"""

from __future__ import annotations

import numpy as np

from .activations import DECODE_ERRORS, ActivationFiles

ROWS = "#rows"
SEEN = "#seen"


def is_partial(layer: str) -> bool:
    """Is this cache layer name one half of a partial entry?"""
    return layer.endswith(ROWS) or layer.endswith(SEEN)


class PartialActivations:
    """Read and write partial entries on an :class:`ActivationFiles`."""

    def __init__(self, files: ActivationFiles):
        self.files = files

    def get(self, model_sha: str, layer: str, target: str, prep: str):
        """``(rows, activations)`` seen so far, or ``None`` (nothing, or not whole)."""
        cached = self.files.cached(model_sha, target, prep)
        rows, seen = cached.get(layer + ROWS), cached.get(layer + SEEN)
        if rows is None or seen is None:
            return None
        try:
            rows = rows if isinstance(rows, np.ndarray) else rows.read()
            seen = seen if isinstance(seen, np.ndarray) else seen.read()
        except DECODE_ERRORS:
            self.drop(model_sha, layer, target, prep)
            return None
        if rows.ndim != 1 or len(rows) != len(seen) or np.any(np.diff(rows) <= 0):
            self.drop(model_sha, layer, target, prep)
            return None
        return rows.astype(np.int64), seen

    def models(self, target: str) -> set:
        """Content hashes of the models with a partial entry for ``target``: one query,
        so that a search whose target no budgeted search saw costs nothing more."""
        return {row[0] for row in self.files.db.execute(
            "SELECT DISTINCT model_sha FROM activations WHERE target = ? AND layer LIKE ?",
            [target, "%" + ROWS])}

    def stage(self, model_sha: str, layer: str, target: str, prep: str, rows: np.ndarray,
              seen: np.ndarray) -> list | None:
        """Write the two files of a partial entry (``seen``: the activations of the
        target's images at ``rows``, sorted), not yet their rows: the caller stores them
        with :meth:`zooindex.cache.Cache.absorb`, replacing what was kept before.
        ``None`` when nothing is cached (read-only index, over the limit, a failed write)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) != len(seen) or np.any(np.diff(rows) <= 0):
            raise ValueError("partial activations need sorted, distinct rows, one per sample")
        staged = [self.files.stage(model_sha, layer + ROWS, target, prep, rows),
                  self.files.stage(model_sha, layer + SEEN, target, prep, seen)]
        if any(s is None for s in staged):
            self.files.discard([s for s in staged if s is not None])
            return None
        return staged

    def drop(self, model_sha: str, layer: str, target: str, prep: str) -> None:
        """Forget a partial entry (both files), best effort."""
        for part in (ROWS, SEEN):
            self.files.drop_entry(model_sha, layer + part, target, prep)


__all__ = ["PartialActivations", "is_partial", "ROWS", "SEEN"]
