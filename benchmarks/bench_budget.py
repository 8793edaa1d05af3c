"""A search on a budget against the full search: same top 1 and top 3, for what share.

The demo zoo (six small CNNs in models/demo) ranked for Fashion-MNIST and MNIST test
targets (classes 0-4, 5-9 and all; a seeded stratified subsample per seed), once in full
and once with ``search_on_budget``; for each search, whether the budgeted top 1 and top 3
(as sets) equal the full search's, and the share of the full inference it spent.

    python benchmarks/bench_budget.py [--budget 0.3] [--seeds 3] [--n 2000] [--scorer knn]

Writes the "budget" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

# the shared data sets beside the checkout (../shared/data), or beside its parent folder
DATA = next((p for p in (ROOT.parent / "shared" / "data",
                         ROOT.parent.parent / "shared" / "data") if p.exists()),
            ROOT.parent / "shared" / "data")
TARGETS = [(name, classes) for name in ("fashion-mnist", "mnist")
           for classes in ("0-4", "5-9", None)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--scorer", action="append", default=None)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    import zooindex

    scorers = {"scorers": args.scorer} if args.scorer else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index.db"
        zooindex.add(ROOT / "models" / "demo", index=index)
        for name, classes in TARGETS:
            for seed in range(args.seeds):
                where = Path(args.data) / name
                t = time.perf_counter()
                full = zooindex.search(where, index=index, split="test", classes=classes,
                                       limit=args.n, seed=seed, **scorers)
                full_s = time.perf_counter() - t
                t = time.perf_counter()
                raced = zooindex.search_on_budget(where, budget=args.budget, k=args.k,
                                                  index=index, split="test",
                                                  classes=classes, limit=args.n, seed=seed,
                                                  **scorers)
                raced_s = time.perf_counter() - t
                order = [r.model for r in full.ranked]
                rows.append({"target": f"{name} {classes or 'all'}", "seed": seed,
                             "top1": raced.order[0] == order[0],
                             "top3": set(raced.order[:args.k]) == set(order[:args.k]),
                             "spent": raced.fraction, "rounds": len(raced.rounds),
                             "reason": raced.reason, "full_s": full_s, "raced_s": raced_s,
                             "flip": full.confidence["flip"]["probability"]})
                print(rows[-1], flush=True)
    scorer = full.scorers[0]
    top1 = sum(r["top1"] for r in rows) / len(rows)
    top3 = sum(r["top3"] for r in rows) / len(rows)
    spent = sum(r["spent"] for r in rows) / len(rows)
    table = "\n".join(
        f"| {r['target']} | {r['seed']} | {'yes' if r['top1'] else 'no'} | "
        f"{'yes' if r['top3'] else 'no'} | {r['spent']:.1%} | {r['rounds']} | {r['reason']} "
        f"| {r['flip']:.0%} |" for r in rows)
    body = (f"The demo zoo (6 CNNs), {len(rows)} searches: {len(TARGETS)} test targets of "
            f"{args.n} images x {args.seeds} seeds, ranked by {scorer}; budget "
            f"{args.budget:.0%}, top {args.k}. `python benchmarks/bench_budget.py"
            f"{''.join(' --scorer ' + s for s in args.scorer or [])}`.\n\n"
            f"Same top 1 as the full search: **{top1:.0%}**; same top {args.k} (as a set): "
            f"**{top3:.0%}**; inference spent: **{spent:.1%}** of the full search's on "
            "average (an image seen in two rounds counted twice).\n\n"
            f"| target | seed | same top 1 | same top {args.k} | spent | rounds | stopped "
            "| full search: top two swap |\n|---|---|---|---|---|---|---|---|\n" + table +
            "\n")
    write_section("budget" if not args.scorer else f"budget-{'-'.join(args.scorer)}",
                  f"Search on a budget vs the full search ({scorer})", body)
    print(body)


if __name__ == "__main__":
    main()
