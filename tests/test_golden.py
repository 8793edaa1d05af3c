"""Golden numbers: the rankings and scores of two zoos, recorded once, held on every processor.

The demo zoo (six trained CNNs, the shipped Fashion-MNIST target; every estimator at
the default layer, the silhouette of every candidate layer, and the default scorer's
ranking with its members) and three models of the search benchmark's zoo (paper-shaped
CNNs with seeded random weights, a 600-sample synthetic target with little signal),
ranked by the silhouette with every other estimator beside it. Any change to the
pipeline (the runner, the reduction, the estimators, the cache) that moves a number
beyond what rounding explains fails here.

What the exactness rests on. Two things round differently from one processor to the
next: onnxruntime's float32 kernels (the activations; the file keeps a digest of each
model's default-layer activations, so a failure says whether they changed) and the
BLAS/LAPACK kernels numpy and scipy pick for the processor (OpenBLAS chooses Haswell,
SkylakeX, Zen, ... at start-up; every estimator computes in float64 on top). Neither is
a change of zooindex, so each estimator is held to the rounding its own computation
amplifies, relative to the recorded value plus a twentieth of its column's largest
magnitude (a score near zero is a sum of terms of the column's size and carries their
rounding), and the rankings exactly:

* ``RTOL`` (3e-6) for the closed forms: means, covariances, eigen- and Cholesky
  decompositions, log-determinants and distances of float32 activations. Their float64
  arithmetic rounds at 1e-15; what moves them is the activations' float32 rounding
  (about 6e-8 relative per element), amplified by the conditioning of the scatter
  matrices. Largest drift measured over the kernels below: 1.3e-6 (ncti-vc, Nehalem), so
  3e-6 keeps a 2x margin and still fails a change of 1e-5.
* ``ITERATIVE`` (2e-5) for the two estimators that stop an iteration at a tolerance
  (``nleep``: EM for a Gaussian mixture; ``gbc``: Bhattacharyya terms through
  log-determinants of per-class covariances near singular): a rounding difference can
  shift the step at which EM stops. Measured: 4.7e-6 (nleep), 3.8e-6 (gbc).
* ``COUNTS`` for the estimators that count samples: ``knn`` (a neighbour's vote flips
  only at a near-tie of distances: one sample allowed, none measured) and ``linear`` (a
  cross-validated logistic regression, fitted by L-BFGS to its own tolerance; predictions
  at the decision boundary flip: five samples allowed, two of 1,000 measured).
* Combined scores (``ensemble``) are mean ranks: exact, given the members' order.

Measured by hand on an AMD EPYC (AVX2, no AVX-512) with ``OPENBLAS_CORETYPE`` = Zen,
Haswell, Sandybridge, Nehalem, Prescott and Excavator, against a file recorded on
another processor (so the activations differed too): every score within the bounds
above, every ranking identical. ``test_a_change_of_one_estimator_by_1e-5_fails`` shows
the other side.

Record again (only when a number is meant to change, saying why in the commit)::

    ZOOINDEX_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import zooindex

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "rankings.json"
DEMO = ROOT / "models" / "demo"
RECORD = os.environ.get("ZOOINDEX_RECORD_GOLDEN") == "1"

RTOL = 3e-6
ITERATIVE = {"nleep": 2e-5, "gbc": 2e-5}
COUNTS = {"knn": 1, "linear": 5}  # samples whose prediction may flip


def _bench_zoo(root: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_search import make_zoo
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    make_zoo(root / "bench", 3)
    # the benchmark's target, with less signal
    rng = np.random.default_rng(0)
    y = np.arange(600) % 5
    base = rng.uniform(0, 255, size=(5, 28, 28))
    x = np.clip(base[y] * 0.08 + rng.uniform(0, 235, size=(600, 28, 28)), 0, 255)
    np.savez(root / "bench-target.npz", x=x.astype(np.uint8), y=y)
    return root / "bench", root / "bench-target.npz"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def _measure(folder: Path, target: Path, index: Path, **options) -> dict:
    zooindex.add(folder, index=index)
    ranking = zooindex.search(target, index=index, **options)
    rows = [{"rank": r.rank, "model": r.model, "layer": r.layer, "score": r.score,
             "scores": dict(sorted(r.scores.items()))} for r in ranking.ranked]
    digests = {m: _digest(zooindex.features(target, m, index=index))
               for m in sorted({r.model for r in ranking.ranked})}
    return {"scorers": list(ranking.scorers), "ranked": rows, "digests": digests,
            "skipped": [r.model for r in ranking.skipped], "samples": ranking.n}


def tolerance(name: str, recorded: float, column: list[float], samples: int) -> float:
    """How far a recorded score of estimator ``name`` may move on another processor."""
    if name in COUNTS:
        return COUNTS[name] / samples + 1e-12
    # relative to the value, plus a twentieth of the column's largest magnitude: a score
    # near zero is a sum of terms of the column's size, and carries their rounding
    scale = max(abs(v) for v in column)
    return ITERATIVE.get(name, RTOL) * (abs(recorded) + scale / 20)


def differences(want: dict, got: dict) -> list[str]:
    """Every way ``got`` (one zoo's measurement) departs from ``want`` (its record)."""
    found = []
    for key in ("scorers", "skipped"):
        if got[key] != want[key]:
            found.append(f"{key}: {got[key]} != {want[key]}")
    order = [(r["rank"], r["model"], r["layer"]) for r in want["ranked"]]
    if [(r["rank"], r["model"], r["layer"]) for r in got["ranked"]] != order:
        found.append("the ranking differs")
        return found
    same = got["digests"] == want["digests"]
    names = set().union(*(r["scores"] for r in want["ranked"]))
    for name in sorted(names):
        column = [r["scores"][name] for r in want["ranked"] if r["scores"].get(name) is not None]
        samples = want.get("samples") or got["samples"]
        for g, w in zip(got["ranked"], want["ranked"]):
            value, recorded = g["scores"].get(name), w["scores"].get(name)
            if (value is None) != (recorded is None):
                found.append(f"{w['model']} {name}: {value} != {recorded}")
                continue
            if recorded is None:
                continue
            tol = tolerance(name, recorded, column, samples)
            if not abs(value - recorded) <= tol:
                found.append(f"{w['model']} {name}: {value!r} != {recorded!r} (off by "
                             f"{abs(value - recorded):.2g}, tolerance {tol:.2g}; activations "
                             f"{'identical' if same else 'differ'})")
    return found


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    bench, bench_target = _bench_zoo(root)
    demo_target = DEMO / "fashion-0-4-target.npz"
    return {"demo": _measure(DEMO, demo_target, root / "demo.db", scorers="all"),
            "demo-sweep": _measure(DEMO, demo_target, root / "sweep.db", layer="all",
                                   scorers="silhouette"),
            "demo-default": _measure(DEMO, demo_target, root / "default.db"),
            "bench": _measure(bench, bench_target, root / "bench.db", scorers="all")}


def test_rankings_and_scores_match_the_recorded_ones(measured):
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(measured)
    found = {zoo: differences(want, measured[zoo]) for zoo, want in golden.items()}
    assert not any(found.values()), {zoo: f for zoo, f in found.items() if f}


CLOSED_FORMS = sorted(set(json.loads(GOLDEN.read_text())["demo"]["scorers"])
                      - set(ITERATIVE) - set(COUNTS))


@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_a_change_of_one_estimator_by_1e_5_fails(measured, name):
    """The other side of the tolerances: a closed-form estimator whose scores all move by
    1e-5 relative is caught (here on the recorded numbers themselves, so the processor's
    rounding plays no part)."""
    golden = json.loads(GOLDEN.read_text())
    for zoo in ("demo", "bench"):
        changed = copy.deepcopy(golden[zoo])
        for row in changed["ranked"]:
            row["scores"][name] *= 1 + 1e-5
        assert differences(golden[zoo], changed), (zoo, name)
        assert not differences(golden[zoo], copy.deepcopy(golden[zoo]))


def test_a_perturbed_estimator_fails_end_to_end(tmp_path, monkeypatch):
    """An estimator whose code returns 1e-5 more, through a real search of the demo zoo."""
    from dataclasses import replace

    from zooindex import estimators

    golden = json.loads(GOLDEN.read_text())["demo"]
    target = DEMO / "fashion-0-4-target.npz"

    def only(measurement: dict, name: str) -> dict:
        kept = copy.deepcopy(measurement)
        kept["scorers"] = [name]
        for row in kept["ranked"]:
            row["scores"] = {name: row["scores"][name]}
        kept["ranked"].sort(key=lambda r: r["model"])
        for rank, row in enumerate(kept["ranked"], 1):
            row["rank"] = rank
        return kept

    honest = _measure(DEMO, target, tmp_path / "honest.db", scorers="logme")
    assert not differences(only(golden, "logme"), only(honest, "logme"))

    logme = estimators.get("logme")
    monkeypatch.setitem(estimators._REGISTRY, "logme", replace(
        logme, func=lambda *args, **kwargs: (1 + 1e-5) * logme.func(*args, **kwargs)))
    perturbed = _measure(DEMO, target, tmp_path / "perturbed.db", scorers="logme")
    found = differences(only(golden, "logme"), only(perturbed, "logme"))
    assert found and all("logme" in line for line in found)
