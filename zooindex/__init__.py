"""zooindex: rank a zoo of pre-trained ONNX models for your labeled data.

The Python API mirrors the command line, command for command, with the same names::

    import zooindex
    zooindex.add("models/demo")                        # index every .onnx under a folder
    ranking = zooindex.search("target.npz")            # the recommended scorer (LogME)
    for r in ranking.ranked:
        print(r.rank, r.model, r.score, r.scores)      # the members' scores too
    paper = zooindex.search("target.npz", scorers=["silhouette"])  # neuralRank's score

Managing the zoo
    add, layers, ls, show, rm, hub_search
Ranking and checking a ranking
    search, features, evaluate, report, scorers
The index
    check, cache_info, cache_clear
Options and results
    SearchOptions, TargetSelection, Filter, Ranking, Result, Target, load_target,
    Preprocessing, Index
Errors
    ZooIndexError and its subclasses (ModelError, LayerError, TargetError, ...)

Search, evaluate, report and features take a :class:`SearchOptions` and a
:class:`TargetSelection`, or their fields as keywords (``dim=5, classes="0-4"``).
Submodules are imported on first use, so ``import zooindex`` is cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# name -> (module, attribute in it)
_API = {
    "add": ("zoo", "add"), "layers": ("zoo", "layers"), "ls": ("zoo", "ls"),
    "show": ("zoo", "show"), "rm": ("zoo", "rm"), "cache_info": ("zoo", "cache_info"),
    "cache_clear": ("zoo", "cache_clear"), "Filter": ("zoo", "Filter"),
    "hub_search": ("zoo", "hub_search"),
    "search": ("ranking", "search"), "features": ("ranking", "features"),
    "Ranking": ("ranking", "Ranking"), "Result": ("ranking", "Result"),
    "search_on_budget": ("budget", "search_on_budget"), "Budgeted": ("budget", "Budgeted"),
    "Budget": ("budget", "Budget"),
    "evaluate": ("evaluation", "evaluate"), "Evaluation": ("evaluation", "Evaluation"),
    "report": ("reporting", "report"),
    "check": ("audit", "check"),
    "SearchOptions": ("options", "SearchOptions"),
    "TargetSelection": ("options", "TargetSelection"),
    "load_target": ("target", "load_target"), "Target": ("target", "Target"),
    "Index": ("index", "Index"),
    "Preprocessing": ("adapt", "Preprocessing"),
}
_ERRORS = ("ZooIndexError", "DependencyError", "ModelError", "LayerError", "TargetError",
           "SplitError", "AdaptError", "EstimatorError", "StoreError", "NotIndexedError",
           "DownloadError")


def scorers():
    """Every registered transferability estimator (name, description, options)."""
    from .estimators import available

    return available()


def __getattr__(name):
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    elif name in _ERRORS:
        value = getattr(importlib.import_module(".errors", __name__), name)
    else:
        raise AttributeError(f"module 'zooindex' has no attribute '{name}'")
    globals()[name] = value  # found once; later lookups skip this function
    return value


__all__ = sorted([*_API, *_ERRORS, "scorers", "__version__"])


def __dir__():
    return sorted(set(globals()) | set(__all__))
