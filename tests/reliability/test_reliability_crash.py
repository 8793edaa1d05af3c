"""Crashes: ``zooindex add`` and ``zooindex search`` killed with SIGKILL at random moments.

After every kill the index must open, pass ``PRAGMA integrity_check`` and hold nothing
half-written: every model has its layers, an ``add`` of several models landed whole or
not at all, every cached activation decodes, every group of scores (one model, layer,
target and preprocessing) holds all the scorers of its search or none, and every score
belongs to a known target. After all kills, a search ranks exactly as an uninterrupted
one on a fresh index.

Kill moments are drawn uniformly between 0 and the measured length of an uninterrupted
run, from a fixed seed, so a failure can be replayed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pytest

from support.data import clustered
from support.onnx_factory import mlp, save
from zooindex.audit import check
from zooindex.index import Index

# crash, subprocess and concurrency tests: the fast lane (-m 'not slow') leaves them out
pytestmark = pytest.mark.slow

SCORERS = ("silhouette", "hscore")  # two, so that a half-written group would show
MORE = [f"more{i}" for i in range(4)]  # added together, in one transaction
FAST_KILLS = 4
SLOW_KILLS = 30


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    (root / "models").mkdir()
    (root / "more").mkdir()
    for seed in range(3):
        save(mlp(input_dim=8, hidden=(64, 32), classes=3, seed=seed),
             root / "models" / f"m{seed}.onnx")
    for i, name in enumerate(MORE):
        save(mlp(input_dim=8, hidden=(16, 12), classes=3, seed=10 + i),
             root / "more" / f"{name}.onnx")
    x, y = clustered(n_per_class=200, classes=3, informative=2, noise_dims=6, seed=1)
    np.savez(root / "t.npz", x=x, y=y)
    env = dict(os.environ, ZOOINDEX_DEBUG="")
    return root, env


def _cmd(root, index, op, i):
    base = [sys.executable, "-m", "zooindex.cli"]
    if op == "add":
        # re-tags all four models: each run rewrites them, in one transaction
        return base + ["add", "--index", str(index), "--replace", "--tag", f"run={i}",
                       str(root / "more")]
    scorers = [arg for s in SCORERS for arg in ("--scorer", s)]
    # another subsample each time: another target, so every run computes and caches
    return base + ["search", "--index", str(index), str(root / "t.npz"), "--layer", "all",
                   "--limit", "450", "--seed", str(i), *scorers, "--json"]


def _timed(cmd, env):
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def _search_json(root, index, env):
    scorers = [arg for s in SCORERS for arg in ("--scorer", s)]
    done = subprocess.run([sys.executable, "-m", "zooindex.cli", "search", "--index",
                           str(index), str(root / "t.npz"), "--layer", "all", *scorers,
                           "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [(r["model"], r["layer"], r["score"], r["hscore"]) for r in json.loads(done.stdout)["results"]]


def assert_sound(index):
    """Everything a crash must not break (see the module docstring)."""
    with Index(index) as idx:
        db = idx.db
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        names = idx.catalogue.model_names()
        assert all(idx.catalogue.get_model(n).layers for n in names), "a model without its layers"
        more = [n for n in names if n in MORE]
        assert more in ([], MORE), f"an add landed in part: {more}"
        runs = {idx.catalogue.get_model(n).tags.get("run") for n in more}
        assert len(runs) <= 1, f"an add landed in part: tags {runs}"
        groups = defaultdict(set)
        for row in db.execute("SELECT model_sha, layer, target, prep, estimator FROM scores"):
            groups[row[:4]].add(row[4])
        assert all(found == set(SCORERS) for found in groups.values()), "half a score group"
        targets = {r[0] for r in db.execute("SELECT key FROM targets")}
        assert {key[2] for key in groups} <= targets, "scores of an unknown target"
    report = check(index=index)
    assert report.damaged == 0 and report.integrity == ["ok"]
    return len(groups)


def _kill_many(zoo, tmp_path, kills, seed):
    root, env = zoo
    index = tmp_path / "i.db"
    subprocess.run([sys.executable, "-m", "zooindex.cli", "add", "--index", str(index),
                    str(root / "models")], env=env, check=True, capture_output=True)
    # how long an uninterrupted run of each takes here (also warms the file cache)
    lengths = {"add": _timed(_cmd(root, index, "add", 10**6), env),
               "search": _timed(_cmd(root, index, "search", 10**6), env)}
    rng = random.Random(seed)
    killed = 0
    for i in range(kills):
        op = ("add", "search")[i % 2]
        delay = rng.uniform(0, lengths[op])
        proc = subprocess.Popen(_cmd(root, index, op, i), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        assert_sound(index)
    assert killed >= kills // 2, f"only {killed} of {kills} runs were still running"
    # the next search ranks as an uninterrupted one on a fresh index does
    fresh = tmp_path / "fresh.db"
    subprocess.run([sys.executable, "-m", "zooindex.cli", "add", "--index", str(fresh),
                    str(root / "models")], env=env, check=True, capture_output=True)
    with Index(index) as idx:
        for name in MORE:
            if idx.catalogue.has_model(name):
                idx.remove_model(name)
    after = _search_json(root, index, env)
    expected = _search_json(root, fresh, env)
    assert [(m, l) for m, l, *_ in after] == [(m, l) for m, l, *_ in expected]
    np.testing.assert_allclose([s for *_, s, _ in after], [s for *_, s, _ in expected],
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose([h for *_, h in after], [h for *_, h in expected],
                               rtol=0, atol=1e-9)
    assert_sound(index)
    return killed


def test_sigkill_at_random_moments_leaves_a_sound_index(zoo, tmp_path):
    _kill_many(zoo, tmp_path, FAST_KILLS, seed=0)


def test_many_sigkills_leave_a_sound_index(zoo, tmp_path):
    _kill_many(zoo, tmp_path, SLOW_KILLS, seed=1)
