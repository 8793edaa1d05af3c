"""Golden numbers: the rankings and scores of two zoos, recorded once and held to 1e-12.

The demo zoo (six trained CNNs, the shipped Fashion-MNIST target; every estimator at
the default layer, the silhouette of every candidate layer, and the default scorer's
ranking, the recommended ensemble with its members) and three models of the
search benchmark's zoo (paper-shaped CNNs with seeded random weights, a 600-sample
synthetic target with little signal, so that no estimator saturates), ranked by the silhouette with every
other estimator beside it. Any
change to the pipeline (the runner, the reduction, the estimators, the cache) that moves
a number fails here.

onnxruntime's CPU kernels differ between processor generations, by about 1e-7: the file
also records a digest of each model's default-layer activations. Where they come out
bit-identical (the machine kind the numbers were recorded on), the scores must match to
1e-12; elsewhere to 1e-6, and the ranking exactly.

Record again (only when a number is meant to change, saying why in the commit)::

    ZOOINDEX_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

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
EXACT, LOOSE = 1e-12, 1e-6


def _bench_zoo(root: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_search import make_zoo
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    make_zoo(root / "bench", 3)
    # the benchmark's target, with less signal, so that no estimator saturates
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
            "skipped": [r.model for r in ranking.skipped]}


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
    for zoo, want in golden.items():
        got = measured[zoo]
        assert got["scorers"] == want["scorers"], zoo
        assert got["skipped"] == want["skipped"], zoo
        assert [(r["rank"], r["model"], r["layer"]) for r in got["ranked"]] == \
            [(r["rank"], r["model"], r["layer"]) for r in want["ranked"]], zoo
        same_kernels = got["digests"] == want["digests"]
        tol = EXACT if same_kernels else LOOSE
        for g, w in zip(got["ranked"], want["ranked"]):
            assert set(g["scores"]) == set(w["scores"]), (zoo, g["model"])
            for name, value in w["scores"].items():
                assert abs(g["scores"][name] - value) <= tol, \
                    (zoo, g["model"], name, g["scores"][name], value, tol)


def test_the_golden_file_covers_every_estimator_on_both_zoos():
    golden = json.loads(GOLDEN.read_text())
    names = {e.name for e in zooindex.scorers()}
    for zoo in ("demo", "bench"):
        assert set(golden[zoo]["scorers"]) == names
        assert len(golden[zoo]["ranked"]) == (6 if zoo == "demo" else 3)
        assert all(set(r["scores"]) == names for r in golden[zoo]["ranked"])
