"""Search benchmarks: where a cold search spends its time, warm vs cold, memory vs zoo size.

Builds a zoo of CNNs shaped like the paper's (5x5 conv 32, pool, 5x5 conv 64, pool,
dense 1024, logits) with seeded random weights, and a 5,000-sample 28x28 target.

    python benchmarks/bench_search.py [--models 10] [--n 5000] [--scorer silhouette]

Writes the "search" section of benchmarks/RESULTS.md (zooindex's default scorer), or
"search-NAME" for another ``--scorer``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402


def paper_cnn(seed: int, hidden: int = 1024, classes: int = 10) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array(
            (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name)

    inits = [w("c1", 32, 1, 5, 5), numpy_helper.from_array(np.zeros(32, np.float32), "c1b"),
             w("c2", 64, 32, 5, 5), numpy_helper.from_array(np.zeros(64, np.float32), "c2b"),
             w("d1", 3136, hidden), numpy_helper.from_array(np.zeros(hidden, np.float32), "d1b"),
             w("d2", hidden, classes),
             numpy_helper.from_array(np.zeros(classes, np.float32), "d2b")]
    nodes = [
        helper.make_node("Conv", ["input", "c1", "c1b"], ["conv1"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "c2", "c2b"], ["conv2"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["conv2"], ["relu2"]),
        helper.make_node("MaxPool", ["relu2"], ["pool2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool2"], ["flat"]),
        helper.make_node("Gemm", ["flat", "d1", "d1b"], ["dense"]),
        helper.make_node("Relu", ["dense"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "d2", "d2b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "paper_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])], inits)
    # IR 8 (onnx 1.10+) loads in every onnxruntime that runs opset 17
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def make_zoo(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"cnn{i:02d}.onnx"
        if not path.exists():
            onnx.save(paper_cnn(seed=i), path)


def make_target(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 5
    # class-dependent blobs so the scores are not all noise
    base = rng.uniform(0, 255, size=(5, 28, 28))
    x = np.clip(base[y] * 0.6 + rng.uniform(0, 100, size=(n, 28, 28)), 0, 255)
    np.savez(path, x=x.astype(np.uint8), y=y)


def _fresh_index(index: Path) -> None:
    for extra in ("", "-wal", "-shm"):
        Path(f"{index}{extra}").unlink(missing_ok=True)
    shutil.rmtree(f"{index}-activations", ignore_errors=True)


def inference_alone(index: Path, target: Path) -> float:
    """Seconds onnxruntime takes for the same models and batches with nothing else running.

    The search scores model i while model i+1 runs, so the inference it times includes
    what the two threads cost each other; this baseline does not.
    """
    from zooindex.adapt import Preprocessing
    from zooindex.index import Index
    from zooindex.runner import run_model
    from zooindex.target import load_target

    tgt = load_target(target)
    total = 0.0
    with Index(index) as idx:
        for record in idx.catalogue.models():
            prep = Preprocessing.from_dict(record.preprocessing)
            total += run_model(record, tgt.x, [record.default_layer], prep).inference_seconds
    return total


def cold_and_warm(work: Path, count: int, n: int, repeats: int = 1,
                  scorer: str | None = None) -> dict:
    """Cold searches (empty cache, a fresh index each) and one warm repeat, in this process.

    Each cold search is bracketed by the inference-alone baseline on the same models,
    run just before and just after it, and compared with their mean (the machine is
    shared: speed drifts from minute to minute). The cold search is repeated
    ``repeats`` times; the run with the median share of everything else is reported, and
    all shares are listed.
    """
    import zooindex

    scorers = {"scorers": [scorer]} if scorer else {}
    zoo = work / f"zoo{count}"
    make_zoo(zoo, count)
    target = work / f"target{n}.npz"
    if not target.exists():
        make_target(target, n)
    index = work / f"index{count}.db"
    # libraries a first search imports once per process, timed apart from the search
    t = time.perf_counter()
    import onnxruntime  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import threadpoolctl  # noqa: F401
    imports_s = time.perf_counter() - t
    runs = []
    for _ in range(repeats):
        _fresh_index(index)
        zooindex.add(zoo, index=index)
        before = inference_alone(index, target)
        t = time.perf_counter()
        cold = zooindex.search(target, index=index, **scorers)
        cold_s = time.perf_counter() - t
        infer = sum(r.inference_seconds for r in cold.ranked)
        scoring = sum(sum(r.timings.values()) for r in cold.ranked)
        alone = (before + inference_alone(index, target)) / 2
        # the ranking's confidence: its half-samples' scores in the scoring thread, and
        # combining them at the end; then the same cold search without it
        confidence_s = sum(r.resample_seconds for r in cold.ranked) + \
            cold.stats["confidence_seconds"]
        _fresh_index(index)
        zooindex.add(zoo, index=index)
        t = time.perf_counter()
        plain = zooindex.search(target, index=index, confidence=False, **scorers)
        plain_s = time.perf_counter() - t
        assert [(r.model, r.score) for r in plain.ranked] == \
            [(r.model, r.score) for r in cold.ranked]
        runs.append({"cold_s": cold_s, "inference_s": infer, "scoring_s": scoring,
                     "alone_s": alone, "share": alone / cold_s,
                     "confidence_s": confidence_s, "plain_s": plain_s,
                     "flip": cold.confidence["flip"]["probability"],
                     "ranking": [r.model for r in cold.ranked]})
    _fresh_index(index)  # the warm repeats read an index that a default search filled
    zooindex.add(zoo, index=index)
    zooindex.search(target, index=index, **scorers)
    assert all(r["ranking"] == runs[0]["ranking"] for r in runs)
    t = time.perf_counter()
    warm = zooindex.search(target, index=index, **scorers)
    warm_s = time.perf_counter() - t
    assert [r.model for r in warm.ranked] == runs[-1]["ranking"]
    assert all(r.cached for r in warm.ranked)
    warm_plain_s = []
    warm_on_s = []
    for _ in range(5):  # interleaved, the median of each: a few ms move with the machine
        t = time.perf_counter()
        zooindex.search(target, index=index, confidence=False, **scorers)
        warm_plain_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        zooindex.search(target, index=index, **scorers)
        warm_on_s.append(time.perf_counter() - t)
    median = sorted(runs, key=lambda r: r["share"])[len(runs) // 2]
    return {"models": count, "n": n, **median, "shares": [r["share"] for r in runs],
            "warm_s": warm_s, "imports_s": imports_s,
            "warm_plain_s": sorted(warm_plain_s)[2], "warm_on_s": sorted(warm_on_s)[2],
            "provider": cold.ranked[0].provider,
            "scorer": cold.scorers[0], "members": cold.members.get(cold.scorers[0], ()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=7, help="cold searches; the median is kept")
    ap.add_argument("--memory-zoos", default="10,40")
    ap.add_argument("--memory-n", type=int, default=2000,
                    help="target size of the memory runs (smaller: they are about growth)")
    ap.add_argument("--scorer", default=None,
                    help="rank by this scorer (default: zooindex's default)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement in a fresh process, for its own peak memory
        print(json.dumps(cold_and_warm(Path(args.work), args.models, args.n,
                                       scorer=args.scorer)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        main_run = cold_and_warm(work, args.models, args.n, args.repeats, args.scorer)
        mem = []
        for count in map(int, args.memory_zoos.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", "--work", tmp,
                                  "--models", str(count), "--n", str(args.memory_n),
                                  *(["--scorer", args.scorer] if args.scorer else [])],
                                 capture_output=True, text=True, check=True).stdout
            mem.append(json.loads(out.strip().splitlines()[-1]))
    share = main_run["share"]
    others = main_run["cold_s"] - main_run["alone_s"]
    shares = ", ".join(f"{1 - s:.1%}" for s in main_run["shares"])
    rows = [
        f"| one-time imports before the search (onnxruntime, scikit-learn) | "
        f"{main_run['imports_s']:.2f} s |",
        f"| cold search, {main_run['models']} models, {main_run['n']} samples "
        f"({main_run['provider']}) | {main_run['cold_s']:.2f} s |",
        f"| onnxruntime inference alone, same models and batches, nothing else running "
        f"(mean of a run just before and one just after the search) | "
        f"{main_run['alone_s']:.2f} s ({share:.1%} of the cold search) |",
        f"| everything else: cold search minus inference alone (load, graph edit, adapt, "
        f"PCA, score, index writes) | {others:.2f} s ({1 - share:.1%}; target <= 15%) |",
        f"| everything else in each of the {len(main_run['shares'])} cold runs "
        f"(median above) | {shares} |",
        f"| inference as timed inside the search (PCA and scoring of the previous model "
        f"run beside it) | {main_run['inference_s']:.2f} s |",
        f"| scoring ({main_run['scorer']}"
        f"{': ' + ', '.join(main_run['members']) if main_run['members'] else ''}), "
        f"summed over models (in the scoring thread) | {main_run['scoring_s']:.2f} s |",
        f"| confidence (100 half-samples): computed in the scoring thread plus combined at "
        f"the end, summed over models | {main_run['confidence_s']:.2f} s "
        f"({main_run['confidence_s'] / main_run['cold_s']:.1%} of the cold search; "
        f"target <= 10%) |",
        f"| the same cold search with --no-confidence (fresh index, run after the one "
        f"above) | {main_run['plain_s']:.2f} s |",
        f"| chance that the top two swap over the half-samples | {main_run['flip']:.0%} |",
        f"| warm repeat (all cached) | {main_run['warm_s'] * 1000:.1f} ms |",
        f"| warm repeat, median of 5 interleaved: with confidence / --no-confidence | "
        f"{main_run['warm_on_s'] * 1000:.1f} ms / {main_run['warm_plain_s'] * 1000:.1f} ms |",
        f"| warm vs cold | {main_run['cold_s'] / main_run['warm_s']:.0f}x faster "
        "(target >= 50x) |",
    ]
    mem_rows = [f"| {m['models']} | {m['cold_s']:.1f} s | {m['peak_rss_mb']:.0f} MB |"
                for m in mem]
    body = ("Paper-shaped CNNs (conv 32, conv 64, dense 1024) with seeded random weights; "
            f"target of 5-class 28x28 uint8 images; ranked by {main_run['scorer']}. "
            f"`python benchmarks/bench_search.py"
            f"{' --scorer ' + args.scorer if args.scorer else ''}"
            f"{f' --repeats {args.repeats}' if args.repeats != 7 else ''}"
            f"{f' --memory-zoos {args.memory_zoos}' if args.memory_zoos != '10,40' else ''}`."
            "\n\n"
            "| measure | value |\n|---|---|\n" + "\n".join(rows) +
            f"\n\nPeak resident memory of a whole cold search (fresh process each, "
            f"{args.memory_n}-sample target):\n\n"
            "| models | cold search | peak RSS |\n|---|---|---|\n" + "\n".join(mem_rows) +
            f"\n\nPeak memory ratio {mem[-1]['models']} vs {mem[0]['models']} models: "
            f"{mem[-1]['peak_rss_mb'] / mem[0]['peak_rss_mb']:.2f}x (flat means activations "
            "are processed model by model).\n")
    if args.scorer:
        write_section(f"search-{args.scorer}",
                      f"Search: cold, warm, memory (--scorer {args.scorer})", body)
    else:
        write_section("search", "Search: cold, warm, memory (the default scorer)", body)
    print(body)


if __name__ == "__main__":
    main()
