"""Input pipeline benchmark: fitting small RGB images to a 3x224x224 model, before and after.

The case measured when the pipeline was reworked: 2,000 RGB 32x32 uint8 images adapted to
a float32 3x224x224 NCHW input in batches of 256 with ImageNet's mean/std (bilinear, no
crop). "before" is the earlier pipeline, kept here as the baseline: a float copy divided
by 255, one ``scipy.ndimage.zoom`` per image and channel, then scale/mean/std as three
array operations. "after" is :func:`zooindex.adapt.adapt`. A second case shrinks 200 RGB
512x512 images to 224x224 (the baseline without anti-aliasing, zooindex with it, as it now
does by default: not the same work, shown for scale).

    python benchmarks/bench_adapt.py [--n 2000] [--batch 256] [--record]

Prints the numbers; ``--record`` also writes the "adapt" section of benchmarks/RESULTS.md.
Measured on 2 cores shared with other jobs (load about 7; Linux x86_64, numpy 2.4 with
OpenBLAS), two runs: 2,000 x 32x32 -> 224x224 before 11.5 s and 11.2 s, after 1.4 s and
1.2 s (8-9x); 200 x 512x512 -> 224x224 before 3.1 s and 5.1 s, after 3.0 s and 4.7 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

from zooindex.adapt import Preprocessing, adapt  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def before(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """The earlier adapt() for uint8 NHWC images to a float32 NCHW model."""
    from scipy import ndimage

    data = x.astype(np.float32)
    data /= 255.0
    n, h, w, c = data.shape
    out = np.empty((n, height, width, c), dtype=np.float32)
    for i in range(n):
        for k in range(c):
            ndimage.zoom(data[i, :, :, k], (height / h, width / w), output=out[i, :, :, k],
                         order=1, grid_mode=True, mode="nearest")
    out = out - np.asarray(MEAN, dtype=np.float32)
    out = out / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)


def after(x: np.ndarray, height: int, width: int) -> np.ndarray:
    return adapt(x, [None, 3, height, width], np.float32, Preprocessing(mean=MEAN, std=STD))


def timed(fn, x: np.ndarray, size: int, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        fn(x[i:i + batch], size, size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--record", action="store_true",
                        help="write the 'adapt' section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(args.n, 32, 32, 3), dtype=np.uint8)
    large = rng.integers(0, 256, size=(max(1, args.n // 10), 512, 512, 3), dtype=np.uint8)
    # the two pipelines agree where they should: enlarging is the same bilinear map
    probe = small[:8]
    gap = float(np.abs(before(probe, 224, 224) - after(probe, 224, 224)).max())
    rows = []
    for label, x in ((f"{len(small)} x 32x32 -> 224x224", small),
                     (f"{len(large)} x 512x512 -> 224x224", large)):
        old = timed(before, x, 224, args.batch)
        new = timed(after, x, 224, args.batch)
        rows.append((label, old, new))
        print(f"{label}: before {old:.2f} s, after {new:.2f} s ({old / new:.1f}x)", flush=True)
    print(f"largest difference when enlarging: {gap:.2g} (normalised units)")
    if args.record:
        body = (f"RGB uint8 images adapted to a float32 3x224x224 NCHW input in batches of "
                f"{args.batch}, ImageNet mean/std; `python benchmarks/bench_adapt.py`.\n\n"
                "| case | before (zoom per image) | after (matrix products) | speed-up |\n"
                "|---|---|---|---|\n" +
                "".join(f"| {label} | {old:.2f} s | {new:.2f} s | {old / new:.1f}x |\n"
                        for label, old, new in rows) +
                f"\nEnlarging, both compute the same bilinear map (largest difference "
                f"{gap:.2g}); shrinking, zooindex now also anti-aliases.")
        write_section("adapt", "Input pipeline: resize and normalise", body)


if __name__ == "__main__":
    main()
