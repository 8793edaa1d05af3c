"""Activations of some of a target's images, running each model only on those it has
not seen: the door a search on a budget (:mod:`zooindex.budget`) goes through for each
round, and a full search for the models a budgeted one left with part of the target.

What a model saw of a target is kept in the cache under the whole target's key
(:mod:`zooindex.cache.partial`); :func:`gather` reads it, runs the model (by any
executor) on the images it lacks, and keeps the union; once a model has seen every
image, its activations become the target's ordinary cache entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from .options import SearchOptions


def layers_and_key(record, tgt, options: SearchOptions) -> tuple[list, str]:
    """``(layers, cache key of what turns inputs into features)`` for ``record`` as a
    search with ``options`` sees them: the candidate layers (the chosen one first), and
    a text model's tokenizer and pooling or an image model's preprocessing. Raises
    :class:`~zooindex.errors.LayerError` (no such layer) or
    :class:`~zooindex.errors.AdaptError` (the target's inputs do not fit the model)."""
    from .adapt import Preprocessing, check_fit

    if record.text is not None:
        from .text import choose_layers, features_key

        return choose_layers(record, options), features_key(record, options)
    layers = record.choose_layers(options.layer)
    prep = Preprocessing.from_dict(record.preprocessing)
    check_fit(tgt.x.shape[1:], record.input_shape, prep)
    return layers, prep.key()


def layer_and_key(record, tgt, options: SearchOptions) -> tuple[str, str] | None:
    """The chosen layer's name and the cache key of :func:`layers_and_key`; ``None``
    when the model cannot take the target."""
    from .errors import AdaptError, LayerError

    try:
        layers, key = layers_and_key(record, tgt, options)
    except (LayerError, AdaptError):
        return None
    return layers[0].name, key


def rows_of(tgt, rows: np.ndarray, what: str = "budget"):
    """The target restricted to the images at ``rows`` (sorted), with a key of its own
    (the whole target itself when ``rows`` are all of it)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == len(tgt):
        return tgt
    digest = hashlib.sha256(f"{tgt.key}|{what}|".encode() + rows.astype("<i8").tobytes())
    return replace(tgt, x=tgt.x[rows], y=tgt.y[rows], key=digest.hexdigest(),
                   source=f"{tgt.source} ({len(rows)} of {len(tgt)} "
                          f"{'texts' if tgt.kind == 'text' else 'images'})")


@dataclass
class _Need:
    record: object
    layer: str
    prep: str
    rows: np.ndarray            # seen so far
    seen: np.ndarray | None     # their activations


def gather(idx, tgt, records, rows, options: SearchOptions, executor=None,
           meter: dict | None = None) -> dict:
    """``{model: (activations at rows, images run now)}`` of each record's layer for the
    target's images at ``rows`` (sorted positions): from the whole target's cached
    activations, else from what the model saw before (:mod:`zooindex.cache.partial`)
    plus a run on the images it has not seen, which are kept for next time. Models that
    cannot run are left out (the search that follows says why). ``meter``, when given,
    adds up the ``inference_seconds`` of what ran."""
    from .cache import DECODE_ERRORS

    rows = np.asarray(rows, dtype=np.int64)
    out: dict = {}
    groups: dict = {}
    for record in records:
        found = layer_and_key(record, tgt, options)
        if found is None or idx.catalogue.model_status(record) != "ok":
            continue
        layer, prep_key = found
        whole = idx.cache.cached_files(record.sha256, tgt.key, prep_key).get(layer)
        if whole is not None:
            try:
                array = whole if isinstance(whole, np.ndarray) else whole.read()
                out[record.name] = (array[rows], 0)
                continue
            except DECODE_ERRORS:
                idx.cache.drop_entry(record.sha256, layer, tgt.key, prep_key)
        kept = idx.cache.partial.get(record.sha256, layer, tgt.key, prep_key)
        have, seen = kept if kept is not None else (np.empty(0, np.int64), None)
        missing = np.setdiff1d(rows, have, assume_unique=True)
        need = _Need(record, layer, prep_key, have, seen)
        if not len(missing):
            out[record.name] = (seen[np.searchsorted(have, rows)], 0)
            continue
        groups.setdefault(missing.tobytes(), (missing, []))[1].append(need)
    for missing, needs in groups.values():
        new, seconds = _run(rows_of(tgt, missing, "unseen"), needs, options, executor)
        if meter is not None:
            meter["inference_seconds"] = meter.get("inference_seconds", 0.0) + seconds
        for need in needs:
            if need.record.name not in new:
                continue
            merged_rows = np.concatenate([need.rows, missing])
            parts = [need.seen, new[need.record.name]] if need.seen is not None else \
                [new[need.record.name]]
            merged = np.concatenate(parts)
            order = np.argsort(merged_rows, kind="stable")
            merged_rows, merged = merged_rows[order], merged[order]
            _keep(idx, tgt, need, merged_rows, merged)
            out[need.record.name] = (merged[np.searchsorted(merged_rows, rows)], len(missing))
    return out


def _keep(idx, tgt, need: _Need, rows: np.ndarray, seen: np.ndarray) -> None:
    """Keep what a model saw of the target: as partial activations, or, once it saw
    every image, as the whole target's ordinary entry (the partial one goes)."""
    from .cache import Entry

    sha, target = need.record.sha256, (tgt.key, tgt.source, len(tgt), list(tgt.classes))
    if len(rows) == len(tgt):
        staged = idx.cache.stage_activations(sha, need.layer, tgt.key, need.prep, seen)
        if staged is not None and idx.cache.absorb(
                Entry(model_sha=sha, target=tgt.key, prep=need.prep, staged=[staged]),
                target):
            idx.cache.partial.drop(sha, need.layer, tgt.key, need.prep)
        return
    staged = idx.cache.partial.stage(sha, need.layer, tgt.key, need.prep, rows, seen)
    if staged:
        idx.cache.absorb(Entry(model_sha=sha, target=tgt.key, prep=need.prep,
                               staged=staged), target)


def _run(tgt, needs, options: SearchOptions, executor=None) -> tuple[dict, float]:
    """``{model: activations}`` of each need's layer for ``tgt``, by the executor,
    caching nothing (the caller keeps them); and the seconds of inference they took."""
    from . import executor as executors
    from .unit import ModelTask

    tasks = [ModelTask(record=n.record, layers=(n.layer,), wanted={}, cached={},
                       options=options, keep_features=True, features_key=n.prep)
             for n in needs]
    out: dict = {}
    seconds = 0.0
    # every outcome read, so that the executor ends as a finished run (not a stopped one)
    outcomes = list(executors.get(executor).run(iter(tasks), tgt))
    for task, outcome in zip(tasks, outcomes):
        if outcome.status == "ok":
            out[task.record.name] = outcome.features[task.layers[0]]
            seconds += outcome.inference_seconds
    return out, seconds


def reuse_partial(idx, tgt, records, options: SearchOptions, executor=None) -> int:
    """Before a full search: complete the models that saw part of ``tgt`` (a search on a
    budget) by running only the images they have not seen, so that the search finds
    their whole activations cached. Returns the images run."""
    from .cache.partial import ROWS

    if options.layer == "all":
        return 0
    seen = idx.cache.partial.models(tgt.key)
    partial = []
    for record in records:
        found = layer_and_key(record, tgt, options) if record.sha256 in seen else None
        if found is None:
            continue
        layer, prep = found
        files = idx.cache.cached_files(record.sha256, tgt.key, prep)
        if layer not in files and layer + ROWS in files:
            partial.append(record)
    if not partial:
        return 0
    done = gather(idx, tgt, partial, np.arange(len(tgt)), options, executor)
    return sum(ran for _, ran in done.values())


__all__ = ["gather", "layer_and_key", "layers_and_key", "reuse_partial", "rows_of"]
