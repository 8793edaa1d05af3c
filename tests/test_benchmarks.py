"""The benchmark scripts still run: each measured once on a tiny case (their numbers are
for benchmarks/RESULTS.md, not checked here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield
    for name in ("bench_big_target", "bench_search", "_results"):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_big_target_searches_held_and_streamed_and_renders(benchmarks):
    import bench_big_target as bench

    held = bench.one_run(2000, stream=False)
    streamed = bench.one_run(2000, stream=True)
    assert held["score"] == pytest.approx(streamed["score"], abs=1e-6)
    assert held["peak_rss_mb"] > 0 and held["components"] == 10
    assert "| 2,000 |" in bench.render([held, streamed])


@pytest.mark.slow
def test_search_benchmark_runs_with_either_scorer(benchmarks, tmp_path):
    import bench_search as bench

    default = bench.cold_and_warm(tmp_path, 2, 300)
    assert default["scorer"] == "logme" and default["members"] == ()  # the default, alone
    paper = bench.cold_and_warm(tmp_path, 2, 300, scorer="silhouette")
    assert paper["scorer"] == "silhouette" and paper["members"] == ()
    # the same two models ranked, and the warm repeat served from the index
    assert sorted(paper["ranking"]) == sorted(default["ranking"]) and len(paper["ranking"]) == 2
    assert paper["warm_s"] < paper["cold_s"]
