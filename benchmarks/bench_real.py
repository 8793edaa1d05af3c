"""The default ranking measured on networks by other authors: scores, truth, the choice.

    python benchmarks/bench_real.py [--nets benchmarks/.pretrained] [--demo models/demo]
        [--data ../shared/data] [--work benchmarks/.real-work] [--targets all|A,B,...]
        [--analyse-only] [--watch SECONDS] [--out benchmarks/REAL.md]
        [--json benchmarks/real-scores.json]

One command, resumable: the targets, every network's features per target, the transfer
accuracies and every estimator's scores are cached under ``--work`` (see
``evidence/real_measure.py``); a rerun measures only what is new (a network, a target,
an estimator whose code changed) and rewrites the report. ``--analyse-only`` re-reads
``--json`` and writes the report without touching any network.

Networks: zooindex's demo zoo (one family) and every network of ``--nets/manifest.json``
whose file is complete. Targets: five classes of CIFAR-10, Fashion-MNIST and MNIST
(``evidence/real_data.py``), a test set and a training pool of 100 images per class each.
Regimes: 10, 30 and 100 labeled images per class drawn from the pool. The analysis and
the choice rule: ``evidence/real_analysis.py``; the report: ``evidence/real_report.py``.

Run niced with one BLAS and one onnxruntime thread on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ZOOINDEX_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from evidence import real_data, real_measure, real_report  # noqa: E402
from evidence.real_measure import log  # noqa: E402

DEFAULT_DATA = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent)
                     if (p / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data")


def measure_all(nets, specs, targets: dict, work: Path, *, only=None) -> dict:
    """Measure every (net, target) that is missing; return the raw JSON of the base.

    ``specs``: the targets' :class:`real_data.TargetSpec` (or anything with ``name`` and
    ``label``); ``targets``: their arrays by name; ``only``: estimator names to score
    (all registered when ``None``)."""
    held = set(real_measure.holdout(nets))
    raw = {"nets": {}, "targets": {s.name: s.label for s in specs}, "truth": {},
           "scores": {}, "seconds": {}, "inference_seconds": {}, "errors": {},
           "estimators": {e.name: {"needs_labels": e.needs_labels,
                                   "experimental": e.experimental,
                                   "code": real_measure.code_key(e)}
                          for e in real_measure.estimators()
                          if only is None or e.name in only},
           "regimes": {str(k): v for k, v in real_measure.REGIMES.items()},
           "sizes": {s.name: {"pool": int(len(targets[s.name]["y_train"])),
                              "test": int(len(targets[s.name]["y_test"]))} for s in specs}}
    for net in nets:
        try:
            record = net.load()
        except Exception as exc:
            log(f"skipping {net.name}: {type(exc).__name__}: {exc}"[:300])
            continue
        t0 = time.perf_counter()
        entry = {"family": net.family, "sha256": record.sha256, "size": record.params,
                 "params": net.params, "source_accuracy": net.source_accuracy,
                 "input": record.input_shape, "default_layer": record.default_layer,
                 "held_out": net.name in held,
                 "family_detail": net.info.get("family"),
                 **{k: net.info.get(k) for k in ("package", "version", "source", "licence",
                                                  "license", "input_size", "url")
                    if net.info.get(k) is not None}}
        ok = True
        for s in specs:
            try:
                feats = real_measure.features(net, s, targets[s.name], work)
            except Exception as exc:
                log(f"  {net.name} x {s.name} failed: {type(exc).__name__}: {exc}"[:300])
                ok = False
                break
            entry["width"] = int(feats["train"].shape[1])
            raw["inference_seconds"].setdefault(net.name, {})[s.name] = float(feats["seconds"])
            tr = real_measure.truth(net, s, targets[s.name], feats, work)
            raw["truth"].setdefault(net.name, {})[s.name] = {
                p: tr[p]["accuracy"] for p in real_measure.PROTOCOLS}
            sc = real_measure.scores(net, s, targets[s.name], feats, work, only=only)
            per, secs = {}, {}
            for key, v in sc.items():
                regime, draw, est = key.split("/")
                if est not in raw["estimators"]:
                    continue
                rows = per.setdefault(regime, [])
                while len(rows) <= int(draw):
                    rows.append({})
                rows[int(draw)][est] = v.get("value")
                if "error" in v:
                    err = raw["errors"].setdefault(net.name, {}).setdefault(
                        est, {"count": 0, "reason": v["error"][:160]})
                    err["count"] += 1
                secs.setdefault(regime, {}).setdefault(est, []).append(v.get("seconds", 0.0))
            raw["scores"].setdefault(net.name, {})[s.name] = per
            raw["seconds"].setdefault(net.name, {})[s.name] = {
                r: {e: float(np.mean(v)) for e, v in d.items()} for r, d in secs.items()}
        if ok:
            raw["nets"][net.name] = entry
            log(f"{net.name} ({net.family}): done in {time.perf_counter() - t0:.0f} s")
    return raw


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=Path, default=ROOT / "benchmarks" / ".pretrained")
    ap.add_argument("--demo", type=Path, default=ROOT / "models" / "demo")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".real-work")
    ap.add_argument("--targets", default=",".join(real_data.DEFAULT_TARGETS),
                    help="comma-separated target names, or 'all'")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "REAL.md")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "real-scores.json")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    ap.add_argument("--exclude", default="", metavar="NAME[,NAME]",
                    help="networks to leave out of this run (the report names them)")
    ap.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                    help="keep looking for new networks in --nets for this long, "
                    "measuring each and rewriting the report as it arrives")
    args = ap.parse_args(argv)
    command = "python benchmarks/bench_real.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    if args.analyse_only:
        raw = json.loads(args.json.read_text())
        args.out.write_text(real_report.write(raw, draws=args.draws))
        log(f"wrote {args.out}")
        return
    names = list(real_data.TARGETS) if args.targets == "all" else args.targets.split(",")
    specs = [real_data.TARGETS[n] for n in names]
    targets = {s.name: real_data.load(s, args.data, args.work) for s in specs}
    excluded = [n for n in args.exclude.split(",") if n]
    until = time.time() + args.watch
    seen = None
    while True:
        nets = real_measure.demo_zoo(args.demo) + sorted(
            real_measure.nets_zoo(args.nets), key=lambda n: n.path.stat().st_size)
        nets = [n for n in nets if n.name not in excluded]
        # a network rewritten in place (a new conversion) counts as new
        signature = [(n.name, n.path.stat().st_size, n.path.stat().st_mtime_ns) for n in nets]
        if seen != signature:
            seen = signature
            log(f"{len(nets)} networks, {len(specs)} targets")
            raw = measure_all(nets, specs, targets, args.work)
            raw["cost"] = real_measure.cost(args.work)
            raw["command"] = command
            raw["excluded"] = excluded
            raw["date"] = time.strftime("%Y-%m-%d")
            args.json.write_text(json.dumps(raw, indent=1, sort_keys=True))
            args.out.write_text(real_report.write(raw, draws=args.draws))
            log(f"wrote {args.out} and {args.json}")
        if time.time() >= until:
            break
        time.sleep(60)


if __name__ == "__main__":
    main()
