"""One unit of the evidence base: a (model, target) pair, measured once and cached.

For each unit, on disk under ``WORK/units/``:

* the model is run through zooindex's own runner (``zooindex.runner.run_model``, the
  model's default layer, its preprocessing from the ONNX metadata), on the target's
  training and test subsamples; the test features and the model's class probabilities
  are kept in ``WORK/features/MODEL/TARGET.npz`` for later sections;
* ``truth``: per-image correctness on the test subsample of both transfer protocols of
  ``zooindex.transfer`` (``logits``: the paper's, a fresh logits layer trained by SGD with
  dropout; ``probe``: standardised features + logistic regression), trained on the
  training subsample;
* ``scores``: every registered estimator (experimental ones included) on the test
  features with the target's labels, at zooindex's defaults (D = 10, cosine, seed 0),
  with the seconds each took; label-free ones see no labels;
* ``variants``: the paper's silhouette in other spaces (other D, whitened, Euclidean, a
  cross-fitted discriminant space, D chosen per model by explained variance);
* ``few``: the labeled estimators on 10 labeled test images per class, several draws.

Each section is computed only if missing, so a rerun costs nothing and a new estimator
costs only itself. A unit stores its model's sha256: a retrained model is measured anew.

``zooindex.transfer`` is the protocols' one implementation; until it is on this branch it
is loaded from the file named by ``ZOOINDEX_TRANSFER`` (default: the zoo worktree's
``zooindex/transfer.py``, ``../zoo`` beside this checkout).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FEW_PER_CLASS = 10
FEW_DRAWS = 3
# left out of the few-label comparison for time: each decomposes a width x width matrix
# whatever the number of samples (seconds per call on a 1,024-wide layer here)
FEW_SKIP = ("hscore", "hscore-shrinkage")
# the transfer protocols' parameters (zooindex.transfer's defaults, stated here so that a
# change of default there cannot silently change the base): 67 epochs of 20 batches of
# 100 on 2,000 training images is 1,340 SGD steps
PROTOCOL_PARAMS = {"logits": {"epochs": 67, "lr": 1e-3, "dropout": 0.4, "batch_size": 100,
                              "optimizer": "sgd", "seed": 0},
                   "probe": {"max_iter": 300, "seed": 0}}
OPTIONS = {"dim": 10, "metric": "cosine", "seed": 0}
VARIANT_DIMS = (5, 20, 50)
SKIP = ("linear",)  # measured separately: see LINEAR_MODELS


def transfer():
    """``zooindex.transfer``: from the package when it has it, else from the zoo worktree."""
    try:
        return importlib.import_module("zooindex.transfer")
    except ImportError:
        pass
    path = Path(os.environ.get("ZOOINDEX_TRANSFER",
                               ROOT.parent / "zoo" / "zooindex" / "transfer.py"))
    if not path.exists():
        raise SystemExit(f"zooindex.transfer is not installed and {path} does not exist; "
                         "set ZOOINDEX_TRANSFER to the file")
    import zooindex

    spec = importlib.util.spec_from_file_location("zooindex.transfer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["zooindex.transfer"] = module
    spec.loader.exec_module(module)
    zooindex.transfer = module
    return module


def transfer_source() -> dict:
    mod = transfer()
    path = Path(mod.__file__)
    return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _estimators():
    from zooindex import estimators as registry

    return [e for e in registry.available(experimental=True) if e.name not in SKIP]


def _json_write(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


class Unit:
    """The cached measurements of one (model, target)."""

    def __init__(self, work: Path, model: str, target: str):
        self.model, self.target = model, target
        self.path = work / "units" / f"{model}__{target}.json"
        self.truth_path = work / "units" / f"{model}__{target}.truth.npz"
        self.feature_path = work / "features" / model / f"{target}.npz"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def complete(self, sha256: str) -> bool:
        """Has every section been measured, for this model file?"""
        return (self.data.get("sha256") == sha256 and self.truth_path.exists()
                and all(k in self.data for k in ("scores", "variants", "few"))
                and "variants" in self.data.get("seconds", {}) and not few_todo(self.data))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _json_write(self.path, self.data)


class Runner:
    """Runs models through zooindex's runner, one record per model file, kept."""

    def __init__(self):
        self._records = {}

    def record(self, path: Path):
        from zooindex.catalogue import inspect_file

        if path not in self._records:
            self._records[path] = inspect_file(path)
        return self._records[path]

    def run(self, path: Path, x: np.ndarray, with_output: bool):
        import zooindex
        from zooindex.runner import class_probabilities, run_model

        record = self.record(path)
        target = zooindex.load_target(x=x)  # unlabeled: only its input range is needed
        out = run_model(record, target.x, [record.default_layer], with_output=with_output,
                        device="cpu", input_range=target.input_range)
        feats = out.features[record.default_layer]
        probs = class_probabilities(record, out.output) if with_output else None
        return feats, probs


def measure(work: Path, model: str, model_path: Path, model_sha: str, target: str,
            data: dict, runner: Runner, *, log=print) -> Unit:
    """Fill in whatever ``model`` x ``target`` still lacks; returns the unit."""
    unit = Unit(work, model, target)
    if unit.data.get("sha256") != model_sha:
        unit.data = {"sha256": model_sha}
        unit.truth_path.unlink(missing_ok=True)
        unit.feature_path.unlink(missing_ok=True)
    feats = probs = None
    if unit.feature_path.exists():
        with np.load(unit.feature_path) as z:
            feats, probs = z["features"], z["probs"]
    need_truth = not unit.truth_path.exists() or unit.data.get("protocols") != PROTOCOL_PARAMS
    if feats is None or need_truth:
        t = time.perf_counter()
        feats, probs = runner.run(model_path, data["x_test"], with_output=True)
        unit.data["inference_seconds"] = time.perf_counter() - t  # the test images
        unit.feature_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unit.feature_path.with_suffix(".tmp.npz")
        np.savez(tmp, features=feats, probs=probs)
        tmp.replace(unit.feature_path)
        unit.data["width"] = int(feats.shape[1])
    y_test = data["y_test"]
    if need_truth:
        tr = transfer()
        train_feats, _ = runner.run(model_path, data["x_train"], with_output=False)
        correct, seconds = {}, {}
        for name, params in PROTOCOL_PARAMS.items():
            t = time.perf_counter()
            correct[name] = tr.PROTOCOLS[name].correct(train_feats, data["y_train"], feats,
                                                       y_test, **params)
            seconds[name] = time.perf_counter() - t
        unit.truth_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unit.truth_path.with_suffix(".tmp.npz")
        np.savez(tmp, **correct)
        tmp.replace(unit.truth_path)
        unit.data["protocols"] = PROTOCOL_PARAMS
        unit.data["accuracy"] = {k: float(v.mean()) for k, v in correct.items()}
        unit.data["truth_seconds"] = seconds
        unit.save()
    scores = unit.data.setdefault("scores", {})
    timings = unit.data.setdefault("timings", {})
    errors = unit.data.setdefault("errors", {})
    for est in _estimators():
        if est.name in scores or est.name in errors:
            continue
        t = time.perf_counter()
        try:
            scores[est.name] = est(feats, y_test if est.needs_labels else None, probs=probs,
                                   **OPTIONS)
            timings[est.name] = time.perf_counter() - t
        except Exception as exc:  # an estimator refusing these features is a result too
            errors[est.name] = f"{type(exc).__name__}: {exc}"[:300]
    unit.save()
    seconds = unit.data.setdefault("seconds", {})
    if "variants" not in seconds:
        t = time.perf_counter()
        unit.data["variants"] = variants(feats, y_test)
        seconds["variants"] = time.perf_counter() - t
        unit.save()
    todo = few_todo(unit.data)
    if todo:
        t = time.perf_counter()
        few_labels(feats, y_test, probs, todo, unit.data.setdefault("few", {}))
        unit.data["few_tried"] = sorted({*unit.data.get("few_tried", ()), *todo})
        seconds["few"] = seconds.get("few", 0.0) + time.perf_counter() - t
        unit.save()
    return unit


def few_todo(data: dict) -> list[str]:
    """The labeled estimators not yet tried on this unit's few-label draws."""
    tried = set(data.get("few_tried", ()))
    return [e.name for e in _estimators()
            if e.needs_labels and e.name not in FEW_SKIP and e.name not in tried]


def _silhouette(points, labels, metric="cosine"):
    from zooindex.estimators.silhouette import silhouette_score

    return float(silhouette_score(points, labels, metric=metric))


def variants(feats: np.ndarray, labels: np.ndarray) -> dict:
    """The silhouette of neuralRank in other spaces, with the same labels (see module).

    Every space is a slice of one PCA to 100 components (the top ``d`` components of a
    PCA are the first ``d`` of a larger one), so the cost is one decomposition.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold

    from zooindex.reduce import pca

    out = {}
    x = np.asarray(feats, dtype=np.float64)
    full, m = pca(x, min(100, *x.shape))
    for d in VARIANT_DIMS:
        out[f"silhouette-D{d}"] = _silhouette(full[:, :d], labels)
    z = full[:, :10]
    std = z.std(axis=0)
    out["silhouette-whitened"] = _silhouette(z / np.where(std > 0, std, 1.0), labels)
    out["silhouette-euclidean"] = _silhouette(z, labels, "euclidean")
    # D per model: the fewest components explaining 90% of the variance (at most 100)
    var = full.var(axis=0)
    total = x.var(axis=0).sum()
    d90 = int(np.searchsorted(np.cumsum(var) / total, 0.9) + 1) if total > 0 else 1
    d90 = max(2, min(d90, m))
    out["silhouette-D90%"] = _silhouette(full[:, :d90], labels)
    out["D90%"] = d90
    # a discriminant space, cross-fitted: LDA (on the top 50 components, shrinkage)
    # fitted on one half, the silhouette of the other half in it, both ways, averaged
    z50 = full[:, :50]
    vals = []
    for fit, held in StratifiedKFold(2, shuffle=True, random_state=0).split(z50, labels):
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lda.fit(z50[fit], labels[fit])
        vals.append(_silhouette(lda.transform(z50[held]), labels[held]))
    out["silhouette-lda"] = float(np.mean(vals))
    return out


def few_labels(feats, labels, probs, names, out: dict, per_class: int = FEW_PER_CLASS,
               draws: int = FEW_DRAWS) -> dict:
    """The estimators ``names`` on ``per_class`` labeled test images per class, in ``out``
    (``{draw: {name: score}}``, filled in place); an estimator that refuses so few samples
    is left out of the draw."""
    from zooindex import estimators as registry

    for draw in range(draws):
        rng = np.random.default_rng(1000 + draw)
        pick = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class,
                                          replace=False) for c in np.unique(labels)])
        row = out.setdefault(str(draw), {})
        for name in names:
            try:
                row[name] = registry.get(name)(feats[pick], labels[pick], probs=probs[pick],
                                               **OPTIONS)
            except Exception:
                pass
    return out
