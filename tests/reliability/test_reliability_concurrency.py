"""Concurrency: four processes adding, searching and removing at once on one index.

Each worker is a separate Python process that runs a fixed, seeded sequence of
operations through the API, opening the index afresh for each (as the CLI does). They
start together (a file barrier) and finish with a log of what they did. Nothing may
fail, "database is locked" included, and the models left in the index must be exactly
those added and not removed, summed over all workers.
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# crash, subprocess and concurrency tests: the fast lane (-m 'not slow') leaves them out
pytestmark = pytest.mark.slow

WORKERS = 4
FAST_OPS = 12
SLOW_OPS = 40
MODEL_FILES = 3  # workers add copies of these under their own names


def run_worker(index: Path, folder: Path, worker: int, ops: int) -> dict:
    """A seeded mix of add (1/2), search (1/4) and rm (1/4) of this worker's own models."""
    from zooindex import ranking, zoo
    from zooindex.errors import ZooIndexError
    from zooindex.target import load_target

    data = np.load(folder / "t.npz")
    target = load_target(x=data["x"], y=data["y"])
    rng = random.Random(1000 + worker)
    mine: list[str] = []
    log = {"added": [], "removed": [], "searches": 0, "ranked": 0, "errors": []}
    for op_number in range(ops):
        roll = rng.random()
        try:
            if not mine or roll < 0.5:
                name = f"w{worker}-{op_number}"
                model = folder / f"m{rng.randrange(MODEL_FILES)}.onnx"
                zoo.add([model], index=index, name=name)
                mine.append(name)
                log["added"].append(name)
            elif roll < 0.75:
                try:
                    result = ranking.search(target, index=index)
                except ZooIndexError as exc:  # every model removed at this moment
                    if "no models to rank" not in str(exc):
                        raise
                    continue
                log["searches"] += 1
                log["ranked"] += len(result.ranked)
                if any(not np.isfinite(r.score) for r in result.ranked):
                    log["errors"].append("a search returned a non-finite score")
            else:
                name = mine.pop(rng.randrange(len(mine)))
                zoo.rm(name, index=index)
                log["removed"].append(name)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            log["errors"].append(f"op {op_number}: {type(exc).__name__}: {exc}")
    return log


def _hammer(tmp_path, ops):
    from support.data import clustered
    from support.onnx_factory import mlp, save

    for i in range(MODEL_FILES):
        save(mlp(input_dim=8, hidden=(16, 12), classes=3, seed=i), tmp_path / f"m{i}.onnx")
    x, y = clustered(n_per_class=20, classes=3)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    index = tmp_path / "i.db"
    procs = [subprocess.Popen([sys.executable, __file__, str(index), str(tmp_path), str(w),
                               str(ops)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for w in range(WORKERS)]
    # release them together once each has imported everything
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{w}").exists() for w in range(WORKERS)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    logs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        logs.append(json.loads(out))
    return index, logs


def _assert_sum_of_operations(index, logs, ops):
    from zooindex.audit import check
    from zooindex.index import Index

    errors = [e for log in logs for e in log["errors"]]
    assert errors == []  # no "database is locked", nor anything else
    assert sum(len(log["added"]) + len(log["removed"]) for log in logs) + \
        sum(log["searches"] for log in logs) <= WORKERS * ops
    expected = set()
    for log in logs:
        expected |= set(log["added"]) - set(log["removed"])
    with Index(index) as idx:
        assert set(idx.catalogue.model_names()) == expected
        assert all(idx.catalogue.get_model(n).layers for n in expected)
    report = check(index=index, fix=True)  # a concurrent rm can orphan a search's cache
    assert report.integrity == ["ok"] and report.damaged == 0 and report.ok


def test_four_processes_add_search_and_remove_at_once(tmp_path):
    index, logs = _hammer(tmp_path, FAST_OPS)
    _assert_sum_of_operations(index, logs, FAST_OPS)
    assert sum(log["searches"] for log in logs) > 0


def test_four_processes_under_a_longer_load(tmp_path):
    index, logs = _hammer(tmp_path, SLOW_OPS)
    _assert_sum_of_operations(index, logs, SLOW_OPS)
    assert sum(log["searches"] for log in logs) >= WORKERS * SLOW_OPS // 8


if __name__ == "__main__":
    index_path, folder_path, worker_id, op_count = sys.argv[1:5]
    folder_arg = Path(folder_path)
    import zooindex.ranking  # noqa: F401 - import before the barrier, not during the race
    import zooindex.zoo  # noqa: F401

    (folder_arg / f"ready{worker_id}").touch()
    while not (folder_arg / "go").exists():
        time.sleep(0.01)
    print(json.dumps(run_worker(Path(index_path), folder_arg, int(worker_id),
                                int(op_count))))
    sys.stdout.flush()
    os._exit(0)
