"""Measuring the zoo through zooindex's public API, with a cache of what was measured.

Per model and target, :func:`measure_transfer` keeps:

* the neuralRank score (``zooindex.search`` on the target's test split, the default
  silhouette scorer) and the silhouette ``s(i)`` of every test image, whose mean is that
  score, for bootstraps that resample the score too;
* for each transfer *variant* (a protocol of :mod:`zooindex.transfer` with parameters),
  the predicted label of every test image, from which per-image correctness, accuracies
  and their bootstraps follow.

The features come from ``zooindex.features`` (the last hidden dense layer of the training
and test splits). Everything is keyed by the model file's sha256, the targets'
fingerprints and the protocol's full parameters, in a JSON file (small values) and a
folder of ``.npz`` files (per-image arrays) under ``models/.cache/``, so that a rerun
measures only what is new: a retrained model, another target, another protocol setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bumped when zooindex computes the same scores differently; stored scores of an older
# version are recomputed (accuracies stay). 2: exact PCA (was randomized on wide layers).
SCORES_VERSION = 2
# the paper's score, named: zooindex's default scorer is the recommended ensemble
PAPER_SCORERS = ("silhouette",)


def available_models(zoo) -> dict[str, Path]:
    """Model name -> file for every finished model of the zoo folder.

    The zoo builder writes each ``.onnx`` through a temporary name, so a file with the
    final name is complete even while the build is still running.
    """
    return {p.stem: p for p in sorted(Path(zoo).glob("*.onnx"))}


def manifest_entries(zoo) -> dict[str, dict]:
    """The zoo's ``manifest.json`` entries by model name (empty when there is none)."""
    path = Path(zoo) / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get("models", {})


def source_accuracy(path) -> float | None:
    """A model's accuracy on its own training task, from its metadata or the manifest."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        if "zooindex.source_accuracy" in meta:
            return float(meta["zooindex.source_accuracy"])
    except Exception:  # an unreadable file is reported by zooindex.add, not here
        pass
    entry = manifest_entries(path.parent).get(path.stem, {})
    return float(entry["test_accuracy"]) if entry.get("test_accuracy") is not None else None


def paper_layers(layers, default_layer: str | None) -> list[str]:
    """The layers named L0, L1, ... in the paper's Figure 1, from a model's candidates.

    Mapped by kind and order, never by name: L0 is the input, then every conv and pool
    output in graph order, then the default (last hidden dense) layer. The paper network
    gives six (L0-L5), the lite one four (L0-L3). The logits are not a paper layer.
    """
    ordered = sorted(layers, key=lambda l: l.position)
    default = next((l for l in ordered if l.name == default_layer), None)
    out = [l.name for l in ordered if l.kind == "input"][:1]
    stop = default.position if default else float("inf")
    out += [l.name for l in ordered
            if l.kind in ("conv", "pool") and l.position < stop]
    if default is not None:
        out.append(default.name)
    return out


# -- the cache ----------------------------------------------------------------------


class Measurements:
    """A JSON file of per-model measurements, keyed by model hash and target fingerprints,
    and a folder beside it for per-image arrays (one ``.npz`` per key).

    Lets an interrupted or repeated run skip models already measured; a retrained model
    (new hash) or another target (new fingerprint) is measured again. Without a path,
    everything stays in memory.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.data = {}
        self.arrays: dict[str, dict] = {}
        if self.path and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}

    @property
    def folder(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.stem + "-arrays")

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # another run may have added entries since this one read the file: keep them
        if self.path.exists():
            try:
                self.data = {**json.loads(self.path.read_text()), **self.data}
            except ValueError:
                pass
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".json.tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def get_arrays(self, key: str) -> dict | None:
        if key in self.arrays:
            return self.arrays[key]
        if self.folder is None or not (self.folder / f"{key}.npz").exists():
            return None
        try:
            with np.load(self.folder / f"{key}.npz") as z:
                self.arrays[key] = {k: z[k] for k in z.files}
        except (OSError, ValueError):  # a torn file is a miss
            return None
        return self.arrays[key]

    def put_arrays(self, key: str, **arrays) -> None:
        self.arrays[key] = arrays
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, self.folder / f"{key}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


# -- transfer: scores, per-image silhouettes, per-image predictions -----------------


@dataclass(frozen=True)
class Variant:
    """One way of measuring transfer accuracy: a protocol, its parameter overrides, and
    optionally a stratified, seeded subsample of ``train_limit`` training images."""

    label: str
    protocol: str
    params: dict = field(default_factory=dict)
    train_limit: int | None = None

    def resolved(self) -> dict:
        from zooindex.transfer import PROTOCOLS

        return PROTOCOLS[self.protocol].resolve(**self.params)

    def key(self) -> str:
        limit = "" if self.train_limit is None else f"|train_limit={self.train_limit}"
        return f"{self.protocol}:{json.dumps(self.resolved(), sort_keys=True)}{limit}"


def stratified_rows(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a stratified, seeded subsample of about ``limit`` rows.

    Each class keeps its share of the rows (rounded); ``None`` or a limit at or above the
    size keeps every row.
    """
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        share = max(1, round(limit * len(members) / len(labels)))
        keep.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


@dataclass
class Record:
    """What was measured for one model on one target."""

    model: str
    score: float
    samples: np.ndarray                       # s(i) per test image; mean = score
    predictions: dict = field(default_factory=dict)   # variant label -> labels (n_test,)
    fit_seconds: dict = field(default_factory=dict)   # variant label -> seconds
    search_seconds: float = 0.0               # cold search: run the test split, score it
    feature_seconds: float | None = None      # run the training split through the model

    def correct(self, label: str, test_y: np.ndarray) -> np.ndarray:
        return self.predictions[label] == test_y

    def accuracy(self, label: str, test_y: np.ndarray) -> float:
        return float(np.mean(self.correct(label, test_y)))


def measure_transfer(names, *, train, test, index, store: Measurements, variants,
                     seed: int = 0, log=print) -> dict[str, Record]:
    """Score, per-image silhouettes and per-variant test predictions of each model.

    ``train`` and ``test`` are :class:`zooindex.Target` s with the same classes. One model
    at a time; what the cache holds is not measured again.
    """
    import zooindex

    if tuple(train.classes) != tuple(test.classes):
        raise ValueError(f"train and test classes differ: {train.classes} vs {test.classes}")
    shas = {m["name"]: m["sha256"] for m in zooindex.ls(index=index)}
    out = {}
    for name in names:
        sha = shas[name]
        score_key = _key(sha, test.key, seed, "score", SCORES_VERSION)
        score = store.get(score_key)
        arrays = store.get_arrays(score_key)
        if score is None or arrays is None:
            log(f"  scoring {name} ...")
            score, arrays = _score(name, test, index, seed)
            store.put(score_key, score)
            store.put_arrays(score_key, **arrays)
        record = Record(name, score["score"], arrays["samples"],
                        search_seconds=score["search_seconds"])
        todo = []
        for v in variants:
            key = _key(sha, train.key, test.key, v.key())
            entry, preds = store.get(key), store.get_arrays(key)
            if entry is None or preds is None:
                todo.append((v, key))
            else:
                record.predictions[v.label] = preds["predictions"]
                record.fit_seconds[v.label] = entry["seconds"]
                record.feature_seconds = entry.get("feature_seconds")
        if todo:
            log(f"  transfer {name}: {', '.join(v.label for v, _ in todo)} ...")
            t = time.perf_counter()
            train_x = zooindex.features(train, name, index=index)
            feature_seconds = time.perf_counter() - t
            test_x = zooindex.features(test, name, index=index)
            for v, key in todo:
                t = time.perf_counter()
                if v.train_limit is None:
                    preds = _protocol(v).predictions(train_x, train.y, test_x, **v.params)
                else:
                    rows = stratified_rows(train.y, v.train_limit, seed)
                    preds = _protocol(v).predictions(train_x[rows], train.y[rows], test_x,
                                                     **v.params)
                seconds = time.perf_counter() - t
                store.put(key, {"model": name, "variant": v.key(), "seconds": seconds,
                                "feature_seconds": feature_seconds,
                                "accuracy": float(np.mean(preds == test.y))})
                store.put_arrays(key, predictions=np.asarray(preds, dtype=np.int64))
                record.predictions[v.label] = np.asarray(preds, dtype=np.int64)
                record.fit_seconds[v.label] = seconds
            record.feature_seconds = feature_seconds
            del train_x, test_x
        out[name] = record
    return out


def _protocol(variant: Variant):
    from zooindex.transfer import PROTOCOLS

    return PROTOCOLS[variant.protocol]


def _score(name, test, index, seed) -> tuple[dict, dict]:
    """Cold search of one model on the test split, then the per-image silhouettes."""
    import zooindex
    from zooindex.estimators.silhouette import silhouette_samples
    from zooindex.reduce import pca

    t = time.perf_counter()
    ranking = zooindex.search(test, index=index, models=[name], seed=seed,
                              scorers=PAPER_SCORERS)
    seconds = time.perf_counter() - t
    result = ranking.ranked[0] if ranking.ranked else None
    if result is None:
        raise RuntimeError(f"zooindex could not score {name}: "
                           f"{[r.reason for r in ranking.results]}")
    feats = zooindex.features(test, name, index=index)  # cached by the search
    reduced, _ = pca(feats, 10, seed=seed)
    samples = silhouette_samples(reduced, test.y, "cosine")
    if abs(float(np.mean(samples)) - result.score) > 1e-6:
        raise RuntimeError(f"{name}: per-image silhouettes average {np.mean(samples)}, "
                           f"the search scored {result.score}")
    return ({"model": name, "score": result.score, "search_seconds": seconds,
             "layer": result.layer, "scores_version": SCORES_VERSION},
            {"samples": samples.astype(np.float64)})


# -- Table 2's layer sweep, and the older evaluate-based measurement ------------------


def layer_scores(names, target, *, index, store: Measurements, seed: int = 0,
                 log=print) -> dict[str, list[float]]:
    """Score of each model at every paper layer L0, L1, ... for ``target`` (Table 2)."""
    import zooindex

    out = {}
    for name in names:
        sha = zooindex.show(name, index=index)["sha256"]
        key = _key(sha, target.key, seed, "layers")
        record = store.get(key)
        if record is None:
            log(f"  layer sweep {name} ...")
            ranking = zooindex.search(target, index=index, layer="all", models=[name],
                                      seed=seed, scorers=PAPER_SCORERS)
            by_layer = {r.layer: r.score for r in ranking.ranked}
            order = paper_layers(zooindex.layers(name, index=index),
                                 zooindex.show(name, index=index)["default_layer"])
            record = [by_layer.get(layer) for layer in order]
            store.put(key, record)
        out[name] = record
    return out


def evaluate_models(names, *, train, test, index, store: Measurements, scorers=PAPER_SCORERS,
                    seed: int = 0, log=print) -> dict[str, dict]:
    """Score and probe accuracy of each model, one :func:`zooindex.evaluate` per model.

    What the estimator benchmark (``benchmarks/bench_estimators.py``) measures: one model
    at a time, so that each model's search time and retraining time are measured on their
    own and a run can resume. Returns ``{model: record}`` with the scores, the accuracy,
    the per-estimator seconds, ``search_seconds`` and ``transfer_seconds``.
    """
    import zooindex

    shas = {m["name"]: m["sha256"] for m in zooindex.ls(index=index)}
    out = {}
    for name in names:
        key = _key(shas[name], train.key, test.key, ",".join(scorers), seed, "evaluate")
        record = store.get(key)
        if record is None:
            log(f"  evaluating {name} ...")
            ev = zooindex.evaluate(train=train, test=test, index=index, scorers=scorers,
                                   models=[name], seed=seed)
            m = ev.models[0]
            record = {"model": name, "status": m.status, "reason": m.reason,
                      "accuracy": m.accuracy, "scores": m.scores, "timings": m.timings,
                      "layer": m.layer, "search_seconds": ev.search_seconds,
                      "transfer_seconds": ev.transfer_seconds,
                      "scores_version": SCORES_VERSION}
            store.put(key, record)
        elif record.get("scores_version", 1) != SCORES_VERSION and record["status"] == "ok":
            log(f"  re-scoring {name} ...")
            ranking = zooindex.search(test, index=index, scorers=scorers, models=[name],
                                      seed=seed)
            record = {**record, "scores": ranking.ranked[0].scores,
                      "scores_version": SCORES_VERSION}
            store.put(key, record)
        out[name] = record
    return out
