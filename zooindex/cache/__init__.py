"""What the index remembers of past work: targets, scores and activation files.

Everything is keyed by the model's content hash x layer x target x preprocessing (and,
for scores, the estimator and the options it depends on), so that a model replaced by
other content never reuses stale numbers. Three tables, and what is built on them:

* :mod:`~zooindex.cache.rows`: :class:`TargetRows` (what a target key stands for) and
  :class:`ScoreRows` (the scores);
* :mod:`~zooindex.cache.activations`: :class:`ActivationFiles`, the ``.npy`` files
  beside the database, their CRC-checked rows, and least-recently-used eviction;
* :mod:`~zooindex.cache.partial`: :class:`PartialActivations`, the images of a target a
  model has seen so far (a search on a budget), kept as two activation entries (no
  table of its own);
* :mod:`~zooindex.cache.cache`: :class:`Cache`, which joins them on one store and keeps
  what spans them: :meth:`Cache.absorb` commits one unit of work's target row, score
  rows and staged activation files in one transaction; counts, clearing and orphans.

Writing activations is in two steps so that the file work can happen off the
database's thread: :meth:`Cache.stage_activations` writes a file (no database access),
:meth:`Cache.absorb` then commits its row with the scores and target they belong to.
Files no row refers to (a crash between the two steps, a search stopped before it stored
them) are found by ``zooindex check`` and removed by ``check --fix``, ``cache clear``,
and :meth:`Cache.discard`. :class:`CachedFile` names one intact entry's file, shape and
checksum: it can be read without the database, by a worker thread or process.
"""

from .activations import (
    DECODE_ERRORS, DEFAULT_CACHE_LIMIT, ActivationFiles, CachedFile, StagedActivations,
    decode_array,
)
from .cache import Cache, Entry
from .partial import PartialActivations
from .rows import ScoreRows, TargetRows

__all__ = ["Cache", "Entry", "ActivationFiles", "ScoreRows", "TargetRows", "CachedFile",
           "StagedActivations", "PartialActivations", "DECODE_ERRORS", "DEFAULT_CACHE_LIMIT", "decode_array"]
