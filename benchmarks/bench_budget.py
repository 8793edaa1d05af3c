"""A search on a budget against the full search: same top 1 and top 3, for what share.

Three zoos, each ranked for several targets and seeds, once in full and once by
``search_on_budget`` at each budget, for each scorer that ranks from partial data:

* **demo**: the demo zoo (six small CNNs in models/demo) for Fashion-MNIST and MNIST
  test targets (classes 0-4, 5-9 and all; a seeded stratified subsample of ``--n``
  images per seed). Cold runs on fresh indexes time a full search, a budgeted one, and
  a full search after the budgeted one (which runs only the images not seen yet);
* **evidence**: the networks by other authors (``--nets``, benchmarks/.pretrained) and
  the demo zoo, for the four default targets of bench_real.py (five classes of CIFAR-10,
  Fashion-MNIST and MNIST; pool and test, 1,000 images), from the features bench_real.py
  cached under ``--work`` (put into the index's cache as the search would have: no
  network runs here). The networks held out by bench_real.py's fixed hash rule are kept
  apart: the settings were chosen on the zoo without them ("development"); the zoo with
  them ("with the held out") is reported separately;
* **torchvision**: bench_realistic.py's zoo of standard architectures at 224x224 (its
  ``export_zoo``: torchvision's ResNet-50, MobileNetV3-Large, EfficientNet-B0,
  DenseNet-121, ConvNeXt-Tiny, RegNetY-400MF and timm's DeiT-Tiny, **random weights**,
  seed 0: no pretrained weights can be downloaded here), added with the ImageNet preset
  to an index under ``--tv-work``, for CIFAR-10 test targets (classes 0-4 and 5-9, a
  seeded stratified subsample of ``--tv-n`` images each) resized to 224x224 on the way
  in. The first run exports the networks and runs one full search per target, which
  caches every model's activations and measures its inference per image; later runs
  read them back from that index (no network runs, no torch needed), so the race alone
  is re-run in minutes (keep ``--tv-work`` whole: the index lists the exported ONNX files
  in it, and a model whose file is gone is not searched). It measures the race's agreement with the full search on real
  224x224 architectures, not which network transfers better.

A budgeted search decides only from the activations of the images it chose, which do
not depend on whether they were run now or read from the cache, so on a warm cache
its decisions and its count of images are those of a cold run (``fraction``: images
seen, summed over models, over models x images). For each search: whether the budgeted
top 1 and top 3 (as sets) equal the full search's, and the fraction of the inference
it needed. A cost model prices it for 1,000 and 10,000 models from the measured
per-image inference of the networks.

    python benchmarks/bench_budget.py [--part demo,evidence,torchvision] [--seeds 3]
        [--n 2000] [--budgets 0.1,0.2,0.3,auto] [--scorers logme,silhouette,knn]
        [--work ../main/benchmarks/.real-work] [--tv-work benchmarks/.tv-work] [--tv-n 1000]

Writes the "budget" section of benchmarks/RESULTS.md (demo and evidence together), or
"budget-<part>" for a part alone. The torchvision part's first run needs torch,
torchvision (and timm, for DeiT-Tiny) to export the zoo.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

# the shared data sets beside the checkout (../shared/data), or beside its parent folder
DATA = next((p for p in (ROOT.parent / "shared" / "data",
                         ROOT.parent.parent / "shared" / "data") if p.exists()),
            ROOT.parent / "shared" / "data")
DEMO_TARGETS = [(name, classes) for name in ("fashion-mnist", "mnist")
                for classes in ("0-4", "5-9", None)]
EVIDENCE_TARGETS = ("cifar10-0-4", "cifar10-5-9", "fashion-0-4", "mnist-0-4")
TV_TARGETS = ("0-4", "5-9")  # CIFAR-10 classes
TV_ZOO = "torchvision (random weights)"
K = 3
MARGIN: dict = {}  # search_on_budget's margin, when --margin is given
UNIFORM = 0.3  # the baseline's share of each class (--uniform; 0: none)


class Counter:
    """Images run through any model, counted where zooindex's runner is called."""

    def __init__(self):
        from zooindex import runner

        self.images = 0
        real = runner.run_model

        def counting(record, x, *args, **kwargs):
            self.images += len(x)
            return real(record, x, *args, **kwargs)

        runner.run_model = counting


def agree(raced, full) -> dict:
    order = [r.model for r in full.ranked]
    return {"top1": raced.order[0] == order[0],
            "top3": set(raced.order[:K]) == set(order[:K]),
            "spent": raced.fraction, "rounds": len(raced.rounds),
            "stable_after": raced.stable_after, "settled": raced.settled,
            "reason": raced.reason}


def race_all(tgt, index, scorers, budgets, seed, label, models=None) -> list[dict]:
    """Every scorer x budget against the full search, on a warm cache; and, as a
    baseline, every model scored on the same stratified UNIFORM share of the images."""
    import zooindex

    rows = []
    for scorer in scorers:
        full = zooindex.search(tgt, index=index, scorers=[scorer], seed=seed, models=models)
        for budget in budgets:
            raced = zooindex.search_on_budget(tgt, budget=budget, k=K, index=index,
                                              scorers=[scorer], seed=seed, models=models,
                                              **MARGIN)
            rows.append({"zoo": label, "scorer": scorer, "budget": str(raced.budget),
                         "seed": seed, "models": len(full.ranked), **agree(raced, full)})
        if UNIFORM:
            rows.append({"zoo": label, "scorer": scorer, "seed": seed,
                         "models": len(full.ranked),
                         **uniform(tgt, index, scorer, seed, models, full)})
    return rows


def uniform(tgt, index, scorer, seed, models, full) -> dict:
    """Every model on the first UNIFORM share of each class (the race's nested order):
    what the same inference buys without a race. Reads the whole target's cached
    activations; runs no model."""
    import zooindex
    from zooindex.budget import _cache_round, first_rows, nested_order
    from zooindex.index import Index
    from zooindex.options import from_settings
    from zooindex.partial import gather, rows_of
    from zooindex.ranking import _records

    order = nested_order(tgt.y, seed)
    per_class = max(1, int(UNIFORM * max(len(o) for o in order)))
    rows = first_rows(order, per_class)
    sub = rows_of(tgt, rows)
    options, _ = from_settings(None, None, scorers=[scorer], seed=seed)
    with Index(index) as idx:
        records = {r.name: r for r in _records(idx, models, None)}
        got = gather(idx, tgt, list(records.values()), rows, options)
        assert all(ran == 0 for _, ran in got.values()), "a model ran"
        _cache_round(idx, sub, records, got, options)
    ranking = zooindex.search(sub, index=index, scorers=[scorer], seed=seed, models=models)
    order_ = [r.model for r in ranking.ranked]
    truth = [r.model for r in full.ranked]
    return {"budget": f"uniform {UNIFORM:.0%}", "top1": order_[0] == truth[0],
            "top3": set(order_[:K]) == set(truth[:K]),
            "spent": len(rows) / len(tgt), "rounds": 1, "stable_after": None,
            "settled": None, "reason": "one subsample"}


def demo(args, scorers, budgets, counter) -> tuple[list, list]:
    import zooindex

    rows, cold = [], []
    for name, classes in DEMO_TARGETS:
        for seed in range(args.seeds):
            tgt = zooindex.load_target(DATA / name, split="test", classes=classes,
                                       limit=args.n, seed=seed)
            label = f"{name} {classes or 'all'}"
            with tempfile.TemporaryDirectory() as tmp:
                fresh, raced_index = Path(tmp) / "fresh.db", Path(tmp) / "raced.db"
                for index in (fresh, raced_index):
                    zooindex.add(ROOT / "models" / "demo", index=index)
                counter.images = 0
                t = time.perf_counter()
                full = zooindex.search(tgt, index=fresh, seed=seed)
                full_s, full_images = time.perf_counter() - t, counter.images
                counter.images = 0
                t = time.perf_counter()
                raced = zooindex.search_on_budget(tgt, budget=0.3, k=K, index=raced_index,
                                                  seed=seed)
                raced_s, raced_images = time.perf_counter() - t, counter.images
                counter.images = 0
                t = time.perf_counter()
                after = zooindex.search(tgt, index=raced_index, seed=seed)
                after_s, after_images = time.perf_counter() - t, counter.images
                same = [r.model for r in after.ranked] == [r.model for r in full.ranked]
                cold.append({"target": label, "seed": seed, "full_s": full_s,
                             "full_images": full_images, "raced_s": raced_s,
                             "raced_images": raced_images, "after_s": after_s,
                             "after_images": after_images, "after_same": same,
                             "per_image": raced.seconds_per_image,
                             **agree(raced, full)})
                print(cold[-1], flush=True)
                for row in race_all(tgt, fresh, scorers, budgets, seed, "demo"):
                    rows.append({**row, "target": label})
                    print(rows[-1], flush=True)
    return rows, cold


def evidence(args, scorers, budgets) -> tuple[list, dict]:
    import zooindex
    from evidence import real_measure
    from zooindex.adapt import Preprocessing
    from zooindex.index import Index

    nets = real_measure.demo_zoo(ROOT / "models" / "demo") + \
        real_measure.nets_zoo(args.nets)
    held = set(real_measure.holdout(nets))
    per_image: dict = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "evidence.db"
        usable = []
        for net in nets:
            folder = args.work / "features" / net.sha256[:16]
            if all((folder / f"{t}.npz").exists() for t in EVIDENCE_TARGETS):
                zooindex.add(net.path, name=net.name, index=index)
                usable.append(net)
        for target in EVIDENCE_TARGETS:
            with np.load(args.work / "targets" / f"{target}.npz") as z:
                x = np.concatenate([z["x_train"], z["x_test"]])
                y = np.concatenate([z["y_train"], z["y_test"]])
            tgt = zooindex.load_target(x=x, y=y)
            with Index(index) as idx:
                for net in usable:
                    record = idx.catalogue.get_model(net.name)
                    with np.load(args.work / "features" / net.sha256[:16] /
                                 f"{target}.npz") as z:
                        feats = np.concatenate([z["train"], z["test"]])
                        per_image.setdefault(net.name, []).append(
                            float(z["seconds"]) / len(feats))
                    idx.cache.put_activations(
                        record.sha256, record.default_layer, tgt.key,
                        Preprocessing.from_dict(record.preprocessing).key(), feats)
            for seed in range(args.seeds):
                for zoo, names in (("development", [n.name for n in usable
                                                    if n.name not in held]),
                                   ("with the held out", [n.name for n in usable])):
                    for row in race_all(tgt, index, scorers, budgets, seed, zoo, names):
                        rows.append({**row, "target": target})
                        print(rows[-1], flush=True)
        info = {"nets": [n.name for n in usable], "held": sorted(held & {n.name for n in usable}),
                "per_image": {k: float(np.median(v)) for k, v in per_image.items()}}
    return rows, info


def tv_target(classes: str, n: int):
    """A seeded, stratified subsample of ``n`` CIFAR-10 test images of ``classes`` (the
    same images, hence the same cache key, on every run)."""
    import zooindex

    return zooindex.load_target(DATA / "cifar10" / "cifar10-jpeg.tar.gz", split="test",
                                classes=classes, limit=n, seed=0)


def tv_extract(work: Path, n: int) -> dict:
    """Export the zoo, add it, and run one full search per target, once: the index under
    ``work`` then holds every model's activations. Returns what it measured (kept in
    ``work``/extraction-<n>.json; a run that finds it reads it instead)."""
    import json

    import zooindex

    record = work / f"extraction-{n}.json"
    index = work / f"torchvision-{n}.db"
    if record.exists() and index.exists():
        return json.loads(record.read_text())
    from bench_realistic import export_zoo  # torch, torchvision (and timm) only here

    for extra in ("", "-wal", "-shm"):  # an interrupted extraction starts over
        Path(f"{index}{extra}").unlink(missing_ok=True)
    import shutil

    shutil.rmtree(f"{index}-activations", ignore_errors=True)
    t = time.perf_counter()
    names = export_zoo(work / "zoo")
    export_s = time.perf_counter() - t
    zooindex.add([work / "zoo" / f"{name}.onnx" for name in names], index=index,
                 preset="imagenet")
    per_image: dict = {}
    targets = {}
    for classes in TV_TARGETS:
        tgt = tv_target(classes, n)
        t = time.perf_counter()
        full = zooindex.search(tgt, index=index, seed=0)
        seconds = time.perf_counter() - t
        for r in full.ranked:
            per_image.setdefault(r.model, []).append(r.inference_seconds / len(tgt))
            print(f"{r.model}: {r.inference_seconds / len(tgt) * 1e3:.1f} ms per image "
                  f"({classes}, layer {r.layer}, width {r.width})", flush=True)
        skipped = {r.model: r.reason for r in full.skipped}
        if skipped:
            raise SystemExit(f"models skipped by the extraction: {skipped}")
        targets[classes] = {"images": len(tgt), "seconds": seconds,
                            "layers": {r.model: [r.layer, r.width] for r in full.ranked}}
        print(f"CIFAR-10 {classes}: {len(tgt)} images through {len(full.ranked)} models "
              f"in {seconds:.0f} s", flush=True)
    info = {"nets": names, "export_s": export_s, "targets": targets,
            "per_image": {m: float(np.mean(v)) for m, v in per_image.items()},
            "threads": os.environ.get("ZOOINDEX_THREADS") or "onnxruntime's default",
            "cores": os.cpu_count()}
    record.write_text(json.dumps(info, indent=1))
    return info


def tv_part(args, scorers, budgets, counter) -> tuple[list, dict]:
    """The race against the full search on the torchvision zoo, from cached activations."""
    info = tv_extract(args.tv_work, args.tv_n)
    index = args.tv_work / f"torchvision-{args.tv_n}.db"
    counter.images = 0
    t = time.perf_counter()
    rows = []
    for classes in TV_TARGETS:
        tgt = tv_target(classes, args.tv_n)
        for seed in range(args.seeds):
            for row in race_all(tgt, index, scorers, budgets, seed, TV_ZOO):
                rows.append({**row, "target": f"cifar10-{classes}"})
                print(rows[-1], flush=True)
    info = {**info, "race_s": time.perf_counter() - t, "race_images": counter.images}
    return rows, info


def summary(rows, keys=("zoo", "scorer", "budget")) -> str:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    lines = [f"| {' | '.join(keys)} | searches | same top 1 | same top 3 | spent (mean) | "
             "spent (max) | top 3 stable after (median, per class) |",
             "|" + "---|" * (len(keys) + 6)]
    for key, group in groups.items():
        stable = [r["stable_after"] for r in group if r["stable_after"] is not None]
        lines.append(
            f"| {' | '.join(map(str, key))} | {len(group)} | "
            f"{np.mean([r['top1'] for r in group]):.0%} | "
            f"{np.mean([r['top3'] for r in group]):.0%} | "
            f"{np.mean([r['spent'] for r in group]):.1%} | "
            f"{np.max([r['spent'] for r in group]):.1%} | "
            f"{f'{np.median(stable):.0f} ({len(stable)}/{len(group)})' if stable else '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="demo,evidence")
    ap.add_argument("--budgets", default="0.1,0.2,0.3,auto")
    ap.add_argument("--scorers", default="logme,silhouette,knn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nets", type=Path, default=ROOT / "benchmarks" / ".pretrained")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".real-work")
    ap.add_argument("--tv-work", type=Path, default=ROOT / "benchmarks" / ".tv-work",
                    help="the torchvision part's networks, index and activations")
    ap.add_argument("--tv-n", type=int, default=1000,
                    help="images per torchvision target (their activations are computed "
                         "once per size)")
    ap.add_argument("--margin", type=int, default=None,
                    help="search_on_budget's margin (default: its own)")
    ap.add_argument("--project", type=int, choices=(0, 1), default=None,
                    help="search_on_budget's project (default: its own)")
    ap.add_argument("--wide", type=int, choices=(0, 1), default=None,
                    help="search_on_budget's wide (default: its own)")
    ap.add_argument("--trend", choices=("inverse", "log"), default=None,
                    help="zooindex.budget.TREND (default: its own)")
    ap.add_argument("--uniform", type=float, default=0.3,
                    help="the baseline's share of each class (0: no baseline)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    global UNIFORM
    UNIFORM = args.uniform
    if args.margin is not None:
        MARGIN["margin"] = args.margin
    if args.project is not None:
        MARGIN["project"] = bool(args.project)
    if args.wide is not None:
        MARGIN["wide"] = bool(args.wide)
    if args.trend is not None:
        from zooindex import budget as racing

        racing.TREND = args.trend
    budgets = [b if b == "auto" or b.endswith(("s", "m", "h")) else float(b)
               for b in args.budgets.split(",")]
    scorers = args.scorers.split(",")
    parts = args.part.split(",")
    counter = Counter()
    out = {}
    t0 = time.perf_counter()
    if "demo" in parts:
        out["demo"] = demo(args, scorers, budgets, counter)
    if "evidence" in parts:
        out["evidence"] = evidence(args, scorers, budgets)
    if "torchvision" in parts:
        out["torchvision"] = tv_part(args, scorers, budgets, counter)
    body = report(args, out, time.perf_counter() - t0)
    print(body)
    if not args.no_write:  # one part alone writes a section of its own
        both = {"demo", "evidence"} <= set(parts)
        write_section("budget" if both else f"budget-{args.part}",
                      "Search on a budget vs the full search" +
                      ("" if both else f" ({args.part})"), body)


def report(args, out, seconds) -> str:
    cmd = ("`python benchmarks/bench_budget.py --part " + args.part + f" --seeds {args.seeds}"
           + (f" --n {args.n}" if "demo" in out else "")
           + (f" --tv-n {args.tv_n}" if "torchvision" in out and args.tv_n != 1000 else "") +
           f" --budgets {args.budgets} --scorers {args.scorers}"
           + (f" --margin {args.margin}" if args.margin is not None else "")
           + (f" --uniform {args.uniform:g}" if args.uniform != 0.3 else "")
           + "".join(f" --{flag} {getattr(args, flag)}" for flag in ("project", "wide", "trend")
                     if getattr(args, flag) is not None) + "`")
    text = [f"{cmd} ({seconds / 60:.0f} min). Top {K}; a search agrees when its budgeted "
            "top 1 (top 3, as a set) equals the full search's with the same scorer, seed "
            "and models; spent: the images the budgeted search ran, summed over the "
            "models, over a full search's (models x images), each image counted once "
            "(what a model saw is kept between rounds)."
            + (f" Baseline, `uniform {args.uniform:.0%}`: no race, every model scored on "
               f"the same first {args.uniform:.0%} of each class (the race's nested "
               "order): what that inference buys without one." if args.uniform else "")]
    if "demo" in out:
        rows, cold = out["demo"]
        text.append(f"\n**Demo zoo** (6 CNNs; {len(DEMO_TARGETS)} test targets of {args.n} "
                    f"images x {args.seeds} seeds):\n\n" + summary(rows))
        mean = {k: np.mean([c[k] for c in cold]) for k in
                ("full_s", "raced_s", "after_s", "full_images", "raced_images",
                 "after_images")}
        text.append(
            f"\nCold, on fresh indexes (LogME, budget 30%, {len(cold)} searches, means): a "
            f"full search {mean['full_s']:.2f} s running {mean['full_images']:.0f} images; "
            f"the budgeted search {mean['raced_s']:.2f} s running "
            f"{mean['raced_images']:.0f}; a full search after it {mean['after_s']:.2f} s "
            f"running {mean['after_images']:.0f} (the images not seen yet), and ranking as "
            f"the fresh full search in {sum(c['after_same'] for c in cold)}/{len(cold)}. "
            f"Same top 3 cold: {sum(c['top3'] for c in cold)}/{len(cold)}.")
    if "evidence" in out:
        rows, info = out["evidence"]
        text.append(
            f"\n**Evidence base** ({len(info['nets'])} networks: the demo zoo and the "
            f"networks by other authors; held out by bench_real.py's hash rule: "
            f"{', '.join(info['held']) or 'none'}); {len(EVIDENCE_TARGETS)} targets of "
            f"1,000 images (200 per class) x {args.seeds} seeds, from the features cached "
            "by bench_real.py:\n\n" + summary(rows))
        costs = sorted(info["per_image"].items(), key=lambda kv: kv[1])
        text.append("\nMeasured inference per image (bench_real.py's runs, one onnxruntime "
                    "thread, median over the targets): " +
                    ", ".join(f"{n} {s * 1e3:.2f} ms" for n, s in costs) + ".")
        text.append(cost_model(info["per_image"]))
    if "torchvision" in out:
        text.append(tv_report(args, *out["torchvision"]))
    return "\n".join(text) + "\n"


def tv_report(args, rows, info) -> str:
    extraction = sum(t["seconds"] for t in info["targets"].values())
    images = sum(t["images"] for t in info["targets"].values())
    layers = next(iter(info["targets"].values()))["layers"]
    costs = sorted(info["per_image"].items(), key=lambda kv: kv[1])
    auto = [r for r in rows if r["budget"] == "auto"]
    settled = [r for r in auto if r["settled"]]
    others = sorted({r["reason"] for r in auto if not r["settled"]})
    early = (f"`auto` stopped with its top 3 settled in {len(settled)} of {len(auto)} "
             "searches: " + "; ".join(f"{r['scorer']} ({r['target']}, seed {r['seed']}) after "
                                      f"{r['rounds']} round(s), "
                                      f"{r['spent']:.0%} spent, same top 3: "
                                      f"{'yes' if r['top3'] else 'no'}"
                                      for r in settled) +
             f". The others stopped as {' or '.join(others) or '-'}.") if auto else ""
    return "\n".join([
        f"\n**Torchvision architectures at 224x224, random weights** ({len(info['nets'])} "
        f"networks exported by bench_realistic.py's `export_zoo`: "
        f"{', '.join(f'{m} ({layers[m][0]}, {layers[m][1]})' for m in info['nets'])}; "
        "default layer and its width). The weights are random (seed 0): no pretrained "
        "weights can be downloaded here, so this measures whether the budgeted search "
        "finds the full search's top 3 among real 224x224 architectures (their widths, "
        "depths and activation statistics), not which network transfers better. "
        f"Targets: CIFAR-10 (JPEG copy) test classes {' and '.join(TV_TARGETS)}, "
        f"{args.tv_n:,} images each (a seeded stratified subsample), resized to 224x224 "
        f"by the ImageNet preset; x {args.seeds} seeds of the searches:\n",
        summary(rows) + "\n\n" + early,
        f"\nThe activations were computed once, by one full search per target ({images:,} "
        f"images x {len(info['nets'])} models in {extraction / 60:.1f} min on "
        f"{info['cores']} cores, onnxruntime threads: {info['threads']}; export "
        f"{info['export_s']:.0f} s) and kept in the index under `--tv-work`; the "
        f"{len(rows)} budgeted searches and their full searches then read them back "
        f"({info['race_images']} images run, {info['race_s'] / 60:.1f} min). Measured "
        "inference per image inside that search (mean over the targets; a machine shared "
        "with other work): " +
        ", ".join(f"{n} {s * 1e3:.1f} ms" for n, s in costs) + ".",
    ])


def cost_model(per_image: dict) -> str:
    """A search of M models x N images, cold, from the measured per-image inference."""
    c = float(np.median(list(per_image.values())))
    n = 5000
    lines = [f"\n**Cost model.** Inference of a full search: M·N·c on one core; a budgeted "
             f"search needs a fraction f of it (the table above: f = 30% at most at budget "
             f"30%). With c = {c * 1e3:.2f} ms per image (the median network above), "
             f"N = {n:,} images, on this machine's 2 cores (2 one-thread models at once, "
             "as the Ray section measures) and on W one-CPU Ray workers (the Ray section's "
             "model with its measured t_task = 0.48 ms and t_driver = 5.7 ms, scores "
             "only; each round is one wave of Ray tasks, a model's unit costing "
             "its new images' inference):", "",
             "| models | full, 2 cores | budget 30%, 2 cores | full, 64 Ray workers | "
             "budget 30%, 64 Ray workers |", "|---:|---:|---:|---:|---:|"]
    for m in (1000, 10000):
        def local(f):
            return m * n * c * f / 2

        def ray(f, w=64, rounds=5):
            return max(m * (n * c * f + 0.48e-3 * rounds) / w, m * rounds * 5.7e-3)
        lines.append(f"| {m:,} | {_t(local(1))} | {_t(local(0.3))} | {_t(ray(1, rounds=1))} "
                     f"| {_t(ray(0.3))} |")
    return "\n".join(lines)


def _t(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
