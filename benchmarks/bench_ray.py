"""Ray benchmark: local vs Ray on this machine, and a cost model for a big zoo on a cluster.

1. The same zoo of small paper-shaped CNNs is searched cold (a fresh index each time)
   with the local pipeline executor and with the Ray executor on a single-node cluster
   of this machine's cores, returning the activations for the cache or only the scores.
   The difference per model is Ray's overhead here.
2. What the driver does per model is measured apart: its CPU time during a Ray search
   (it runs no model, so that is planning, submitting, receiving, writing the cache and
   the index), an SQLite transaction of one model's scores, a cache file of 5,000 x 1,024
   activations, a Ray task round trip.
3. A cost model built from those numbers predicts the Ray searches of part 1 (checked
   against them), then 10,000 models x 5,000 images on 1, 8 and 64 workers.

    python benchmarks/bench_ray.py [--models 16] [--n 1000] [--repeats 3]

Writes the "ray" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# a local cluster's addresses stay on 127.0.0.1, no usage statistics (see tests/test_ray.py)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402
from bench_search import _fresh_index, make_target, make_zoo  # noqa: E402

# the cost model's cluster: 10 GbE between nodes; the big search's activations
BIG_MODELS, BIG_N, BIG_WIDTH = 10_000, 5_000, 1_024
NETWORK_BYTES_S = 1.25e9
WORKERS = (1, 8, 64)


def timed_ray(**settings):
    """The Ray executor, also counting the seconds the driver waits for results."""
    from zooindex.distributed import Ray

    class TimedRay(Ray):
        waited = 0.0

        def _result(self, ray, ref, errors):
            started = time.perf_counter()
            try:
                return super()._result(ray, ref, errors)
            finally:
                self.waited += time.perf_counter() - started

    return TimedRay(**settings)


def cold_search(zoo: Path, index: Path, target: Path, executor) -> dict:
    """One cold search on a fresh index: wall time, the ranking and, on Ray, the driver's
    CPU time and its busy time (wall time less the waits for results; it includes the
    SQLite commits' waits on the disk, which CPU time leaves out)."""
    import zooindex

    _fresh_index(index)
    zooindex.add(zoo, index=index)
    wall, cpu = time.perf_counter(), time.process_time()
    ranking = zooindex.search(target, index=index, executor=executor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    busy = wall - getattr(executor, "waited", wall)
    return {"wall": wall, "cpu": cpu, "busy": busy, "ranking": ranking,
            "unit": statistics.mean(r.seconds for r in ranking.ranked),
            "scores": {r.model: r.score for r in ranking.ranked}}


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def task_overhead(ray, count: int = 400) -> dict:
    """A Ray task that does nothing: one round trip, and the cost per task of many."""
    noop = ray.remote(lambda x: x)
    ray.get([noop.remote(i) for i in range(20)])  # workers started
    trips = []
    for i in range(20):
        t = time.perf_counter()
        ray.get(noop.remote(i))
        trips.append(time.perf_counter() - t)
    t = time.perf_counter()
    ray.get([noop.remote(i) for i in range(count)])
    return {"round_trip": statistics.median(trips), "per_task": (time.perf_counter() - t) / count}


def driver_writes(work: Path, ray) -> dict:
    """The driver's per-model writes, alone: one SQLite transaction of scores; one cache
    file of 5,000 x 1,024 float32 activations with its row; fetching such an array from
    a worker through the object store; reading it back from the cache."""
    from zooindex.cache import Entry
    from zooindex.index import Index

    index = work / "writes.db"
    _fresh_index(index)
    rng = np.random.default_rng(0)
    array = rng.standard_normal((BIG_N, BIG_WIDTH)).astype(np.float32)
    target = ("t" * 64, "bench", BIG_N, [0, 1, 2, 3, 4])
    rows = [("silhouette", '{"dim": 10, "metric": "cosine"}', 0.5, 10, 0.1)]
    scores, files, reads = [], [], []
    with Index(index) as idx:
        for i in range(40):
            sha = f"{i:064x}"
            t = time.perf_counter()
            idx.cache.absorb(Entry(model_sha=sha, target=target[0], prep="p",
                                   scores={"layer": rows}), target)
            scores.append(time.perf_counter() - t)
        for i in range(8):
            sha = f"{1000 + i:064x}"
            t = time.perf_counter()
            staged = idx.cache.stage_activations(sha, "layer", target[0], "p", array)
            idx.cache.absorb(Entry(model_sha=sha, target=target[0], prep="p",
                                   scores={"layer": rows}, staged=[staged]), target)
            files.append(time.perf_counter() - t)
            cached = idx.cache.cached_files(sha, target[0], "p")["layer"]
            t = time.perf_counter()
            cached.read()
            reads.append(time.perf_counter() - t)
    make = ray.remote(lambda seed: np.random.default_rng(seed).standard_normal(
        (BIG_N, BIG_WIDTH)).astype(np.float32))
    fetches = []
    for i in range(5):
        ref = make.remote(i)
        ray.wait([ref])
        t = time.perf_counter()
        np.array(ray.get(ref))  # the driver's own copy, as the cache writer reads it
        fetches.append(time.perf_counter() - t)
    return {"scores": statistics.median(scores), "file": statistics.median(files),
            "read": statistics.median(reads), "fetch": statistics.median(fetches),
            "bytes": array.nbytes}


def unit_seconds(work: Path, zoo: Path, n: int, count: int = 2) -> dict:
    """One model's whole unit (load, infer, PCA, score) on one core, at ``n`` images."""
    import zooindex

    target = work / f"target{n}.npz"
    if not target.exists():
        make_target(target, n)
    sub = work / f"unit-zoo{n}"
    sub.mkdir(exist_ok=True)
    for f in sorted(zoo.glob("*.onnx"))[:count]:
        (sub / f.name).write_bytes(f.read_bytes())
    index = work / f"unit{n}.db"
    _fresh_index(index)
    zooindex.add(sub, index=index)
    os.environ["ZOOINDEX_THREADS"] = "1"  # as a Ray task with one CPU runs it
    try:
        ranking = zooindex.search(target, index=index, executor="sequential")
    finally:
        del os.environ["ZOOINDEX_THREADS"]
    return {"unit": statistics.mean(r.seconds for r in ranking.ranked),
            "inference": statistics.mean(r.inference_seconds for r in ranking.ranked)}


def predict(models: int, workers: int, unit: float, task: float, driver: float,
            shared_cores: int | None = None) -> dict:
    """Seconds for ``models`` on ``workers`` one-CPU task slots.

    The workers compute ``models * (unit + task) / workers``; the driver, one thread,
    spends ``models * driver`` and overlaps the workers, so the slower of the two sets
    the pace; the last model adds one ``unit`` that nothing overlaps. With
    ``shared_cores`` the driver runs on the workers' cores (as on one machine): their
    work adds up instead.
    """
    compute = models * (unit + task) / workers
    writer = models * driver
    if shared_cores:
        return {"seconds": (models * (unit + task) + writer) / shared_cores,
                "bound": "cores"}
    return {"seconds": max(compute, writer) + unit,
            "bound": "driver (single writer)" if writer > compute else "workers"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="cold searches per executor")
    args = ap.parse_args()

    import ray

    cores = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        zoo = work / "zoo"
        make_zoo(zoo, args.models)
        target = work / f"target{args.n}.npz"
        make_target(target, args.n)
        index = work / "index.db"

        t = time.perf_counter()
        ray.init(num_cpus=cores, log_to_driver=False)
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        cold_search(zoo, index, target, timed_ray())  # starts the workers
        first_s = time.perf_counter() - t
        cold_search(zoo, index, target, "pipeline")  # the driver's own first imports
        overhead = task_overhead(ray)
        runs = {"pipeline": [], "ray": [], "ray, scores only": []}
        for _ in range(args.repeats):  # interleaved: the machine's speed drifts
            runs["pipeline"].append(cold_search(zoo, index, target, "pipeline"))
            runs["ray"].append(cold_search(zoo, index, target, timed_ray()))
            runs["ray, scores only"].append(
                cold_search(zoo, index, target, timed_ray(return_activations=False)))
        reference = runs["pipeline"][0]["scores"]
        for kind, kind_runs in runs.items():
            for run in kind_runs:
                assert run["scores"].keys() == reference.keys()
                assert max(abs(run["scores"][m] - reference[m]) for m in reference) < 1e-6, kind
        writes = driver_writes(work, ray)
        unit_small = unit_seconds(work, zoo, args.n, count=4)
        unit_big = unit_seconds(work, zoo, BIG_N)
        ray.shutdown()
    load_after = os.getloadavg()[0]

    med = {kind: median_run(kind_runs) for kind, kind_runs in runs.items()}
    m = args.models
    local = med["pipeline"]["wall"]
    rows = []
    for kind, run in med.items():
        extra = "" if kind == "pipeline" else \
            f"{(run['wall'] - local) / m * 1000:+.0f} ms | {run['cpu'] / m * 1000:.1f} ms | " \
            f"{run['busy'] / m * 1000:.1f} ms"
        walls = ", ".join(f"{r['wall']:.2f}" for r in runs[kind])
        rows.append(f"| {kind} | {run['wall']:.2f} s | {run['wall'] / m * 1000:.0f} ms | "
                    f"{extra or '– | – | –'} | {walls} |")
    checks, errors = [], {"measured alone": [], "as the workers timed it": []}
    for kind in ("ray", "ray, scores only"):
        run = med[kind]
        for label, unit in (("measured alone", unit_small["unit"]),
                            ("as the workers timed it", run["unit"])):
            p = predict(m, cores, unit, overhead["per_task"], run["cpu"] / m,
                        shared_cores=cores)
            errors[label].append(abs(p["seconds"] - run["wall"]) / run["wall"])
            checks.append(f"| {kind} | {unit * 1000:.0f} ms ({label}) | "
                          f"{run['cpu'] / m * 1000:.1f} ms | {p['seconds']:.2f} s | "
                          f"{run['wall']:.2f} s | "
                          f"{(p['seconds'] - run['wall']) / run['wall']:+.0%} |")

    # the big search: per model on the driver, with and without the activations
    act_bytes = BIG_N * BIG_WIDTH * 4
    # plan, submit, receive, absorb: the busy time, which counts the disk waits too and,
    # with the driver sharing the cores here, is an upper bound
    driver_scores = med["ray, scores only"]["busy"] / m
    driver_acts = driver_scores + writes["file"] + writes["fetch"] + act_bytes / NETWORK_BYTES_S
    unit = unit_big["unit"]
    big = []
    for workers in WORKERS:
        cells = []
        for driver in (driver_acts, driver_scores):
            p = predict(BIG_MODELS, workers, unit, overhead["per_task"], driver)
            cells.append(f"{_duration(p['seconds'])} ({p['bound']})")
        big.append(f"| {workers} | {' | '.join(cells)} |")
    limit_scores = unit / driver_scores
    limit_acts = unit / driver_acts
    slowdown = statistics.mean(med[k]["unit"] for k in ("ray", "ray, scores only")) \
        / unit_small["unit"]
    faster = med["ray"]["wall"] < local
    versus = (f"Under that load one model per core in {cores} processes (Ray) got through the "
              f"zoo faster than one onnxruntime session with {cores} threads beside the "
              "loading and scoring threads (the pipeline): the comparison says Ray adds no "
              "visible cost per model here, not that it is faster in general."
              if faster else
              f"Ray took {(med['ray']['wall'] - local) / m * 1000:.0f} ms more per model "
              "than the pipeline here.")

    body = f"""Ray {ray.__version__}, a single-node cluster of this machine's {cores} cores \
(`ray.init(num_cpus={cores})`, one CPU and one onnxruntime thread per task). \
`python benchmarks/bench_ray.py --models {m} --n {args.n} --repeats {args.repeats}`.

**Local vs Ray, same machine.** {m} paper-shaped CNNs (conv 32, conv 64, dense 1024), \
{args.n}-image target, a fresh index for each cold search; the median of {args.repeats} \
interleaved runs (all runs listed). Scores agree with the pipeline's to 1e-6 in every run \
(the tests hold Ray to the sequential executor at 1e-9).

| executor | cold search | per model | difference per model vs pipeline | driver CPU per model | driver busy per model | runs (s) |
|---|---:|---:|---:|---:|---:|---|
{chr(10).join(rows)}

The machine was shared with other work: load average {load_before:.1f} before and \
{load_after:.1f} after, on {cores} cores. {versus} What Ray itself adds is measured \
below: a task round trip, and the driver's time per model: its CPU time, and its busy time \
(the search's wall time less the waits for results, so it counts the SQLite commits' \
waits on the disk too, and here the time the workers took its cores).

Starting the local cluster took {start_s:.1f} s and the first search on it \
{first_s:.1f} s (its workers start and import onnxruntime); both are left out above, as \
is the driver's first local search (its imports). \
A Ray task that does nothing: {overhead['round_trip'] * 1000:.1f} ms for one round trip, \
{overhead['per_task'] * 1000:.2f} ms per task when {400} are in flight.

**The driver's writes, measured alone** (the single writer's cost per model): one \
model's scores in one SQLite transaction {writes['scores'] * 1000:.1f} ms; a cache file \
of {BIG_N:,} x {BIG_WIDTH:,} float32 activations ({writes['bytes'] / 2**20:.0f} MiB) with \
its row {writes['file'] * 1000:.0f} ms; fetching such an array from a worker through the \
object store {writes['fetch'] * 1000:.0f} ms; reading it back from the cache (to ship it to \
a worker for another D) {writes['read'] * 1000:.0f} ms.

**Cost model.** A search of M models on W one-CPU workers takes \
max(M·(t_unit + t_task)/W, M·t_driver) + t_unit: the workers' share and the single \
writer's run side by side, the slower one sets the pace, and the last model is not \
overlapped. t_unit is one model's whole unit on one core (load, infer, PCA, score, as \
timed alone here in one thread, without Ray, or as the workers timed it), t_task Ray's \
cost per task (above), t_driver the driver's time \
per model (planning from the index, submitting, receiving, writing cache files and \
scores). On this machine the driver shares the {cores} cores with the workers, so there \
the times add up instead: (M·(t_unit + t_task) + M·t_driver)/{cores}, with the driver's \
CPU time as t_driver. Checked against the Ray runs \
above: with t_unit as the workers timed it, the model predicts the wall time within \
{max(errors['as the workers timed it']):.0%} (so nothing it leaves out, such as waiting \
on the slowest task of the window, costs much); with t_unit timed alone, within \
{max(errors['measured alone']):.0%}: on this machine a unit took {slowdown:.1f}x as long \
with {cores} running at once as alone.

| Ray run | t_unit | t_driver | predicted | measured | error |
|---|---:|---:|---:|---:|---:|
{chr(10).join(checks)}

**10,000 models x 5,000 images on a cluster.** Assumptions: each model is a paper-shaped \
CNN, whose unit on one core at 5,000 images was measured here: t_unit = {unit:.2f} s \
(inference {unit_big['inference']:.2f} s); workers are one-CPU task slots like these \
cores; t_task = {overhead['per_task'] * 1000:.2f} ms as measured; models at the same path \
on every node (no bytes shipped); the driver on a node of its own. Scores only: t_driver = \
{driver_scores * 1000:.1f} ms, the driver's busy time per model measured above (an upper \
bound: it includes the time the workers took the driver's cores here). With the \
activations: plus the cache file ({writes['file'] * 1000:.0f} ms), the fetch into the \
driver ({writes['fetch'] * 1000:.0f} ms) and {act_bytes / 2**20:.0f} MiB over a 10 GbE link \
({act_bytes / NETWORK_BYTES_S * 1000:.0f} ms): t_driver = {driver_acts * 1000:.0f} ms.

| workers | activations returned (default) | scores only |
|---:|---|---|
{chr(10).join(big)}

The single writer becomes the bottleneck beyond t_unit/t_driver workers: about \
{limit_acts:.0f} when the activations come back, about {limit_scores:.0f} with scores \
only. Beyond the driver's time, 64 workers would produce \
{act_bytes * 64 / unit / 2**20:,.0f} MiB/s of activations, \
{act_bytes * 64 / unit / NETWORK_BYTES_S:.0%} of what a 10 GbE link into the driver \
carries, and {BIG_MODELS * act_bytes / 2**30:,.0f} GiB in all for a cache that \
keeps 2 GiB (ZOOINDEX_CACHE_LIMIT), so almost all of it would be evicted again: for a big \
zoo, return only the scores (`Ray(return_activations=False)`). Of the driver's time, \
the index's own writes (one SQLite transaction, {writes['scores'] * 1000:.1f} ms a model) \
are the smaller part; with scores only the single writer keeps up with about \
{limit_scores:.0f} workers of this speed, and with more for models that take longer.
"""
    write_section("ray", "Ray: local vs a single-node cluster, and a cost model", body)
    print(body)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
