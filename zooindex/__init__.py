"""zooindex: rank a zoo of pre-trained ONNX models for your labeled data.

The Python API mirrors the CLI, command for command::

    import zooindex
    zooindex.add("models/demo")                       # index every .onnx under a folder
    ranking = zooindex.search("target.npz")           # neuralRank: PCA(10) + cosine silhouette
    for r in ranking.ranked:
        print(r.rank, r.model, r.score)

Submodules are imported on first use, so ``import zooindex`` is cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "add": "zoo", "layers": "zoo", "ls": "zoo", "show": "zoo", "rm": "zoo",
    "cache_clear": "zoo",
    "search": "ranking", "features": "ranking", "Ranking": "ranking", "Result": "ranking",
    "evaluate": "evaluation",
    "load_target": "target", "Target": "target",
    "Index": "index",
    "Preprocessing": "adapt",
}
_ERRORS = ("ZooIndexError", "DependencyError", "ModelError", "LayerError", "TargetError",
           "SplitError",
           "AdaptError", "EstimatorError", "StoreError", "NotIndexedError", "DownloadError")


def scorers():
    """Every registered transferability estimator (name, description, options)."""
    from .estimators import available

    return available()


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    if name in _ERRORS:
        return getattr(importlib.import_module(".errors", __name__), name)
    raise AttributeError(f"module 'zooindex' has no attribute '{name}'")


__all__ = sorted([*_API, *_ERRORS, "scorers", "__version__"])
