"""Big targets: peak memory of a search as the target grows from 20,000 to 200,000 samples.

20,000 samples (78 MB of activations) are held in memory, below the default streaming
limit (128 MiB); 120,000 and 200,000 are reduced as they stream.

The model has a 1024-wide hidden layer (x (N, 64) -> Gemm 1024 + ReLU -> Gemm 10 ->
Softmax, seeded weights), so 200,000 samples make 819 MB of float32 activations at the
default layer. The target is a pair of ``.npy`` files (inputs memory-mapped by the npy
reader, labels in ``y.npy``). Each search runs as a child process (`zooindex search
--json`, cold index) that reports its own peak resident memory (``VmHWM``) as it exits;
a sampler also records the peak of anonymous memory (RSS minus file-backed pages, which
the memory map adds and the kernel can drop at any time).

    python benchmarks/bench_big_target.py [--sizes 20000,120000,200000] [--no-stream]

``--no-stream`` adds a run at the largest size with streaming turned off
(``ZOOINDEX_MAX_ACTIVATION_BYTES`` set past the activations' size), to show what
holding every activation would cost. Writes the "big-target" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _results import write_section  # noqa: E402
from support.hostile import PEAK_LAUNCHER  # noqa: E402  (the tests' peak-memory launcher)

FEATURES, HIDDEN, CLASSES = 64, 1024, 10


def wide_mlp(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return numpy_helper.from_array(
            (rng.normal(size=shape) * np.sqrt(2.0 / shape[0])).astype(np.float32), name)

    inits = [w("W1", FEATURES, HIDDEN), numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "b1"),
             w("W2", HIDDEN, CLASSES), numpy_helper.from_array(np.zeros(CLASSES, np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["dense"]),
             helper.make_node("Relu", ["dense"], ["hidden"]),
             helper.make_node("Gemm", ["hidden", "W2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "wide_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", CLASSES])], inits)
    # IR 8 (onnx 1.10+) loads in every onnxruntime that runs opset 17
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def write_target(folder: Path, n: int, seed: int = 0) -> Path:
    """``X.npy`` (n, 64) float32 in 10 clusters and ``y.npy``, written in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, FEATURES)).astype(np.float32) * 2
    y = rng.integers(0, CLASSES, size=n)
    x = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32,
                                  shape=(n, FEATURES))
    for start in range(0, n, 50_000):
        part = y[start:start + 50_000]
        x[start:start + len(part)] = centres[part] + rng.normal(
            size=(len(part), FEATURES)).astype(np.float32)
    x.flush()
    del x
    np.save(folder / "y.npy", y)
    return folder / "X.npy"


def measured(args: list[str], env: dict, peak_file: Path) -> dict:
    """Run the CLI with ``args``: its peak RSS, peak anonymous memory (sampled), wall time."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PEAK_LAUNCHER, *args],
                            env={**env, "ZOOINDEX_PEAK_FILE": str(peak_file)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = [0]
    done = threading.Event()

    def sample():
        try:
            p = psutil.Process(proc.pid)
            while not done.is_set():
                info = p.memory_info()
                peak_anon[0] = max(peak_anon[0], info.rss - info.shared)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    return {"returncode": proc.returncode, "stdout": out, "stderr": err,
            "seconds": time.perf_counter() - started, "peak_anon_mb": peak_anon[0] / 2**20,
            "peak_rss_mb": int(peak_file.read_text()) / 1024 if peak_file.exists() else None}


def one_run(n: int, stream: bool) -> dict:
    """Build the zoo and target for ``n`` samples and search once, cold."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        onnx.save(wide_mlp(), folder / "wide.onnx")
        target = write_target(folder, n)
        index = folder / "i.db"
        env = dict(os.environ, ZOOINDEX_INDEX=str(index))
        if not stream:
            env["ZOOINDEX_MAX_ACTIVATION_BYTES"] = str(4 * n * HIDDEN * 2)
        subprocess.run([sys.executable, "-m", "zooindex.cli", "add", str(folder / "wide.onnx")],
                       env=env, check=True, capture_output=True)
        # the paper's silhouette: one model, and a score that streamed and held layers
        # both give (LogME and SFDA, in the default ensemble, need the held activations)
        run = measured(["search", str(target), "--json", "--scorer", "silhouette"], env,
                       folder / "peak")
        if run["returncode"] != 0:
            raise SystemExit(f"search failed for n={n}: {run['stderr'].strip()}")
        row = json.loads(run["stdout"])["results"][0]
        return {"n": n, "stream": stream, "score": row["score"], "components": row["components"],
                "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
                "peak_anon_mb": run["peak_anon_mb"],
                "input_mb": n * FEATURES * 4 / 2**20,
                "activations_mb": n * HIDDEN * 4 / 2**20}


def render(rows: list[dict]) -> str:
    """The RESULTS.md section for the measured ``rows``."""
    from zooindex.runner import DEFAULT_MAX_ACTIVATION_BYTES

    limit = DEFAULT_MAX_ACTIVATION_BYTES

    def streamed(r):
        return r["stream"] and r["activations_mb"] * 2**20 > limit

    lines = ["| samples | inputs (MB, mmap) | layer activations (MB) | reduced as they stream | "
             "peak RSS (MB) | peak anonymous (MB) | search (s) | silhouette |",
             "|---:|---:|---:|:---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['input_mb']:.0f} | {r['activations_mb']:.0f} | "
                     f"{'yes' if streamed(r) else 'no'} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_anon_mb']:.0f} | {r['seconds']:.1f} | {r['score']:.4f} |")
    first, last = rows[0], max(rows, key=lambda r: r["n"])
    worst = max(rows, key=lambda r: r["peak_rss_mb"])
    return "\n".join(lines) + (
        f"\n\nA cold `zooindex search` of a {HIDDEN}-wide dense layer, the target given as "
        f"`X.npy` + `y.npy` (memory-mapped). From {first['n']:,} to {last['n']:,} samples "
        f"the layer's activations grew {last['activations_mb'] / first['activations_mb']:.0f}x "
        f"while peak RSS went from {first['peak_rss_mb']:.0f} to {last['peak_rss_mb']:.0f} MB: "
        f"above `ZOOINDEX_MAX_ACTIVATION_BYTES` ({limit / 2**20:.0f} MiB by default) "
        "activations are reduced to D components as they stream (two passes through the "
        "model) instead of being held. Below that limit they are held, cached and reduced "
        "in memory, which costs several times their size. The largest peak, "
        f"{worst['peak_rss_mb']:.0f} MB, is at {worst['n']:,} samples "
        f"({worst['activations_mb']:.0f} MB of activations, "
        f"{'streamed' if streamed(worst) else 'held'}). "
        "Peak RSS counts the memory-mapped input pages the search has touched; the "
        "anonymous column leaves them out (sampled every 50 ms).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,120000,200000")
    parser.add_argument("--no-stream", action="store_true",
                        help="also run the largest size without streaming")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    plan = [(n, True) for n in sizes] + ([(max(sizes), False)] if args.no_stream else [])
    rows = []
    for n, stream in plan:
        rows.append(one_run(n, stream))
        r = rows[-1]
        print(f"n={n:>7} stream={stream}: peak RSS {r['peak_rss_mb']:.0f} MB, anonymous "
              f"{r['peak_anon_mb']:.0f} MB, {r['seconds']:.1f} s, score {r['score']:.4f}",
              flush=True)
    write_section("big-target", "Big targets: peak memory, 20,000 vs 200,000 samples",
                  render(rows))


if __name__ == "__main__":
    main()
