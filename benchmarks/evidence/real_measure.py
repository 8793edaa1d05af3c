"""Measurements of the real-network base, each cached in the work folder.

* the zoo: zooindex's demo networks (``models/demo``) and the networks by other authors
  in ``--nets`` (its ``manifest.json``), each read by ``zooindex.catalogue.inspect_file``;
* features: per (model sha256, target), the default layer's activations of the training
  pool and the test set (float32) and the class probabilities, through zooindex's runner
  (the model's own preprocessing and input size), in ``WORK/features/SHA/TARGET.npz``;
  estimator code can change without any inference being repeated;
* truth: per (model, target), the test accuracy of ``zooindex.transfer``'s ``probe`` and
  ``logits`` protocols trained on the whole training pool, with per-image correctness;
* scores: per (model, target, regime, draw, estimator), the value and its seconds, keyed
  on the source of the estimator's module, so an estimator whose code changed is scored
  again and an unchanged one never is;
* cost: every estimator's seconds on the benchmark shape (5,000 x 1,024, 10 classes).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import real_data

OPTIONS = {"dim": 10, "metric": "cosine", "seed": 0}
# per class in the training pool -> draws; 100 is the whole pool (one draw)
REGIMES = {10: 5, 30: 3, 100: 1}
SMALL = (10, 30)
PROTOCOLS = ("probe", "logits")
DEMO_FAMILY = "zooindex demo CNN"
COST_SHAPE = (5000, 1024, 10)  # samples, width, classes: benchmarks/bench_search.py's
HOLDOUT_SALT = "zooindex-real-holdout/"
HOLDOUT_MAX = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _json_write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _json_read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


# -- the zoo ------------------------------------------------------------------------


@dataclass
class Net:
    name: str
    path: Path
    family: str
    params: int | None = None          # the manifest's count, for the report
    source_accuracy: float | None = None
    info: dict = field(default_factory=dict)  # the manifest record, as it is
    record: object = None               # zooindex.catalogue.ModelRecord, read lazily

    def load(self):
        if self.record is None:
            from zooindex.catalogue import inspect_file

            self.record = inspect_file(self.path, name=self.name)
        return self.record

    @property
    def sha256(self) -> str:
        return self.load().sha256

    @property
    def size(self) -> int:
        """The size prior: the graph's parameter count (the same counting for every net)."""
        return int(self.load().params)


def demo_zoo(folder: Path) -> list[Net]:
    manifest = json.loads((folder / "manifest.json").read_text())["models"]
    return [Net(name=f"demo-{name}", path=folder / e["file"], family=DEMO_FAMILY,
                params=e.get("parameters"), source_accuracy=e.get("test_accuracy"),
                info={"package": "zooindex (models/demo)", "source": f"{e['dataset']} "
                      f"{e['classes']}", "sha256": e.get("sha256")})
            for name, e in sorted(manifest.items())]


def _records(manifest) -> list[dict]:
    if isinstance(manifest, dict):
        for key in ("models", "nets", "networks", "records"):
            if key in manifest:
                return _records(manifest[key])
        return [{"name": k, **v} for k, v in manifest.items() if isinstance(v, dict)]
    return [r for r in manifest if isinstance(r, dict)]


def _first(record: dict, *keys):
    for k in keys:
        if record.get(k) not in (None, ""):
            return record[k]
    return None


def nets_zoo(folder: Path) -> list[Net]:
    """The networks of ``folder/manifest.json`` whose file is there and complete (its
    sha256 matches the manifest's, where the manifest gives one)."""
    path = folder / "manifest.json"
    if not path.exists():
        return []
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:  # being rewritten: the next run reads it
        return []
    out = []
    for r in _records(manifest):
        name = _first(r, "name", "id")
        file = _first(r, "onnx", "onnx_file", "file", "path", "filename") or f"{name}.onnx"
        onnx_path = Path(file) if Path(file).is_absolute() else folder / file
        if not name or not onnx_path.exists():
            continue
        want = _first(r, "onnx_sha256", "sha256")
        if want and _sha(onnx_path) != want:
            log(f"skipping {name}: file does not match the manifest's sha256 (still being "
                "written?)")
            continue
        acc = _first(r, "source_accuracy", "accuracy", "top1", "imagenet_top1")
        if isinstance(acc, (int, float)) and acc > 1:
            acc = acc / 100.0
        out.append(Net(name=str(name), path=onnx_path,
                       family=family_of(str(_first(r, "family", "architecture") or name)),
                       params=_first(r, "params", "parameters"),
                       source_accuracy=acc if isinstance(acc, (int, float)) else None,
                       info=r))
    return out


def family_of(text: str) -> str:
    """The architecture family of a manifest's family text: what precedes a bracketed
    detail ("MobileNet (MediaPipe Iris)" -> "MobileNet"), so that networks sharing an
    architecture are left out together."""
    return text.split(" (")[0].strip() or text


_SHA: dict = {}


def _sha(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _SHA:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA[key] = h.hexdigest()
    return _SHA[key]


def holdout_hash(name: str) -> int:
    return int(hashlib.sha256((HOLDOUT_SALT + name).encode()).hexdigest(), 16)


def holdout(nets: list[Net]) -> list[str]:
    """The networks no choice ever sees, by a fixed rule of their names alone: a network
    is eligible when ``sha256(SALT + name) mod 4 == 0``; of each family at most its
    eligible network of lowest hash; of those at most ``HOLDOUT_MAX``, lowest hash first.
    The rule reads no measurement, and a network arriving later never changes whether
    an earlier one is held out unless its family had none (or the cap is reached)."""
    best: dict[str, tuple[int, str]] = {}
    for n in nets:
        h = holdout_hash(n.name)
        if h % 4 == 0 and (n.family not in best or h < best[n.family][0]):
            best[n.family] = (h, n.name)
    return [name for _, name in sorted(best.values())[:HOLDOUT_MAX]]


# -- features -----------------------------------------------------------------------


def features(net: Net, spec, target: dict, work: Path) -> dict:
    """``{train, test, probs_train, probs_test, seconds}`` for (net, target), cached."""
    path = work / "features" / net.sha256[:16] / f"{spec.name}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import zooindex
    from zooindex.runner import class_probabilities, run_model

    record = net.load()
    x = np.concatenate([target["x_train"], target["x_test"]])
    unlabeled = zooindex.load_target(x=x)  # only its input range is read
    t = time.perf_counter()
    out = run_model(record, unlabeled.x, [record.default_layer], with_output=True,
                    device="cpu", input_range=unlabeled.input_range)
    seconds = time.perf_counter() - t
    feats = out.features[record.default_layer].astype(np.float32)
    n = len(target["x_train"])
    arrays = {"train": feats[:n], "test": feats[n:], "seconds": np.float64(seconds)}
    if out.output is not None and record.output_name:
        probs = class_probabilities(record, out.output).astype(np.float32)
        arrays.update(probs_train=probs[:n], probs_test=probs[n:])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    log(f"  inference {net.name} x {spec.name}: {len(x)} images in {seconds:.1f} s, "
        f"width {feats.shape[1]}")
    return arrays


# -- ground truth -------------------------------------------------------------------


def truth(net: Net, spec, target: dict, feats: dict, work: Path) -> dict:
    """``{protocol: {accuracy, correct, seconds}}``: trained on the pool, tested on the test set."""
    from zooindex import transfer

    path = work / "truth" / f"{net.sha256[:16]}__{spec.name}.json"
    data = _json_read(path)
    changed = False
    for name in PROTOCOLS:
        if name in data:
            continue
        t = time.perf_counter()
        correct = transfer.PROTOCOLS[name].correct(feats["train"], target["y_train"],
                                                   feats["test"], target["y_test"])
        data[name] = {"accuracy": float(np.mean(correct)),
                      "correct": np.asarray(correct, dtype=np.int8).tolist(),
                      "seconds": time.perf_counter() - t}
        changed = True
    if changed:
        _json_write(path, data)
    return data


# -- scores -------------------------------------------------------------------------


def estimators():
    from zooindex import estimators as registry

    return registry.available(experimental=True)


# an estimator whose docstring states a cost cubic in the width (a d x d eigenproblem)
# is not run on wider layers: at a width of 14,336 one call takes many minutes on one
# core, and each (network, target) has nine draws; the report marks those scores missing
MAX_CUBIC_WIDTH = 4096


def cubic_in_width(est) -> bool:
    import re

    return bool(re.search(r"\bd\^3", est.func.__doc__ or ""))


_CODE: dict = {}


def code_key(est) -> str:
    """A hash of the source of the estimator's module and the registry's validation."""
    if est.module not in _CODE:
        import zooindex.estimators as pkg

        folder = Path(pkg.__file__).parent
        h = hashlib.sha256()
        for f in (folder / f"{est.module}.py", folder / "__init__.py"):
            h.update(f.read_bytes() if f.exists() else b"")
        _CODE[est.module] = h.hexdigest()[:12]
    return _CODE[est.module]


def scores(net: Net, spec, target: dict, feats: dict, work: Path, *,
           only: set | None = None) -> dict:
    """``{"PER_CLASS/DRAW/ESTIMATOR": {value | error, seconds, code}}``, computing what is
    missing or was computed by other estimator code."""
    path = work / "scores" / f"{net.sha256[:16]}__{spec.name}.json"
    data = _json_read(path)
    y = target["y_train"]
    probs = feats.get("probs_train")
    dirty = 0
    for per_class, draws in REGIMES.items():
        for d, pick in enumerate(real_data.regime_draws(y, per_class, draws)):
            for est in estimators():
                if only is not None and est.name not in only:
                    continue
                key = f"{per_class}/{d}/{est.name}"
                if data.get(key, {}).get("code") == code_key(est):
                    continue
                if est.needs_probs and probs is None:
                    data[key] = {"error": "no classifier output", "code": code_key(est)}
                    continue
                width = feats["train"].shape[1]
                if width > MAX_CUBIC_WIDTH and cubic_in_width(est):
                    data[key] = {"error": f"skipped: O(d^3) at width {width} > "
                                 f"{MAX_CUBIC_WIDTH}", "code": code_key(est)}
                    continue
                t = time.perf_counter()
                try:
                    value = est(feats["train"][pick], y[pick] if est.needs_labels else None,
                                probs=None if probs is None else probs[pick], **OPTIONS)
                    entry = {"value": value}
                except Exception as exc:  # an estimator refusing these features is a result
                    entry = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                entry.update(seconds=time.perf_counter() - t, code=code_key(est))
                data[key] = entry
                dirty += 1
                if dirty % 50 == 0:
                    _json_write(path, data)
    if dirty:
        _json_write(path, data)
    return data


# -- cost on the benchmark shape ------------------------------------------------------


def cost(work: Path, *, shape=COST_SHAPE, only=None, repeats: int = 3) -> dict:
    """Seconds of each estimator on ``shape`` (clustered synthetic features, float32 as
    the runner gives them, 1,000 source classes of probabilities): the fastest of
    ``repeats`` calls, cached per code."""
    path = work / "cost.json"
    data = _json_read(path)
    n, width, k = shape
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), n // k)
    centres = rng.standard_normal((k, width))
    x = (centres[labels] + 2.0 * rng.standard_normal((n, width))).astype(np.float32)
    logits = rng.standard_normal((n, 1000)).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    todo = [e for e in estimators() if (only is None or e.name in only)
            and not (data.get(e.name, {}).get("code") == code_key(e) and "runs" in data[e.name])]
    runs: dict = {e.name: [] for e in todo}
    errors: dict = {}
    # rounds over all estimators, so that a busy spell of the shared machine slows one
    # round of each rather than every run of one
    for _ in range(repeats):
        for est in todo:
            if est.name in errors:
                continue
            t = time.perf_counter()
            try:
                est(x, labels if est.needs_labels else None, probs=probs, **OPTIONS)
                runs[est.name].append(time.perf_counter() - t)
            except Exception as exc:
                errors[est.name] = f"{type(exc).__name__}: {exc}"[:200]
    for est in todo:
        # the fastest run: what the code costs, not what other work on the machine added
        entry = ({"error": errors[est.name]} if est.name in errors
                 else {"seconds": min(runs[est.name]), "runs": runs[est.name]})
        entry["code"] = code_key(est)
        data[est.name] = entry
        log(f"  cost {est.name}: {entry.get('seconds', float('nan')):.2f} s")
    if todo:
        _json_write(path, data)
    return data
