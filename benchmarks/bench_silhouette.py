"""Silhouette benchmark: zooindex's linear-time cosine silhouette vs scikit-learn's pairwise one.

Seeded clustered data (5 classes, D = 10, as after neuralRank's PCA) at N = 5,000, 20,000
and 50,000; both implementations run in this process on the same arrays. Times are the
best of a few repeats (scikit-learn runs once at the largest sizes, where one run takes a
minute or more).

    python benchmarks/bench_silhouette.py [--out benchmarks/RESULTS.md] [--sizes 5000,20000]

Writes the "silhouette" section of the results file, leaving the other sections alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn import metrics

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _results import RESULTS, write_section  # noqa: E402

from zooindex.estimators.silhouette import silhouette_samples, silhouette_score  # noqa: E402

CLASSES, DIM, METRIC = 5, 10, "cosine"


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in R^10 around 5 class centres, overlapping enough for a mid score."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % CLASSES)
    centres = rng.normal(size=(CLASSES, DIM))
    return centres[labels] + 0.8 * rng.normal(size=(n, DIM)), labels


def best_of(repeats: int, func, *args, **kwargs):
    """Smallest wall time of ``repeats`` calls, and the last result."""
    best, value = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file to update")
    parser.add_argument("--sizes", default="5000,20000,50000",
                        help="comma-separated sample counts")
    args = parser.parse_args()

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        x, labels = clustered(n)
        ours_s, ours = best_of(5, silhouette_score, x, labels, METRIC)
        theirs_s, theirs = best_of(3 if n <= 5000 else 1, metrics.silhouette_score, x, labels,
                                   metric=METRIC)
        rows.append((n, ours_s, theirs_s, abs(ours - theirs), ours))
        print(f"N={n:>6}: zooindex {ours_s * 1e3:8.2f} ms, scikit-learn {theirs_s:8.2f} s, "
              f"{theirs_s / ours_s:8.0f}x, |diff| {abs(ours - theirs):.1e}", flush=True)

    x, labels = clustered(5000)
    per_sample = np.max(np.abs(silhouette_samples(x, labels, METRIC)
                               - metrics.silhouette_samples(x, labels, metric=METRIC)))

    table = ["| N | score | zooindex | scikit-learn | speed-up | abs. difference |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, ours_s, theirs_s, diff, score in rows:
        table.append(f"| {n:,} | {score:.6f} | {ours_s * 1e3:.2f} ms | {theirs_s:.2f} s | "
                     f"{theirs_s / ours_s:,.0f}x | {diff:.1e} |")
    body = (f"`silhouette_score(X, labels, \"{METRIC}\")` against "
            f"`sklearn.metrics.silhouette_score` on seeded clustered data ({CLASSES} classes, "
            f"D = {DIM}). Times are the best of 5 runs for zooindex and of 3 (N <= 5,000) or 1 "
            "for scikit-learn, in the same process.\n\n" + "\n".join(table) +
            f"\n\nLargest per-sample difference from `sklearn.metrics.silhouette_samples` at "
            f"N = 5,000: {per_sample:.1e}.\n")
    write_section("silhouette", "Silhouette: linear time vs scikit-learn", body, path=args.out)
    print(f"wrote the silhouette section of {args.out}")


if __name__ == "__main__":
    main()
