"""Table 2: the score at every layer L0-L5 of Table 1's nine, target MNIST 0-4."""

from __future__ import annotations

import numpy as np

from .common import correlation, fmt, interval, markdown_table, MISSING
from .paper import NINE, TABLE2, paper_name

LAYERS = 6


def table2(ours: dict[str, list], records: dict | None = None, test_y=None,
           variant: str = "logits", models=NINE, *, draws: int = 2000) -> str:
    """Scores at L0..L5 for the MNIST 0-4 target, paper / ours per cell; below, per layer,
    Kendall's tau of our scores against the paper's and against our transfer accuracies
    (``records`` of the same models on MNIST 0-4), with an interval over test images."""
    from zooindex.transfer import bootstrap_tau

    rows = []
    for m in models:
        mine = ours.get(m)
        cells = [f"{p:.3f} / {MISSING if mine is None else fmt(mine[i] if i < len(mine) else None)}"
                 for i, p in enumerate(TABLE2[m])]
        rows.append([m, paper_name(m), *cells])
    body = markdown_table(["model", "paper", *[f"L{i} paper / ours" for i in range(LAYERS)]],
                          rows)
    present = [m for m in models if m in ours]
    with_acc = [m for m in present if records and m in records
                and variant in records[m].predictions]
    correct = (np.array([records[m].correct(variant, test_y) for m in with_acc])
               if len(with_acc) >= 3 else None)
    lines = []
    for i in range(1, LAYERS):  # L0 is the same for every model: nothing to rank
        mine = {m: ours[m][i] for m in present if i < len(ours[m]) and ours[m][i] is not None}
        vs_paper = correlation(mine, {m: TABLE2[m][i] for m in models})
        vs_acc = None
        if correct is not None and all(m in mine for m in with_acc):
            vs_acc = bootstrap_tau([mine[m] for m in with_acc], correct, draws=draws)
        lines.append([f"L{i}", fmt(vs_paper["tau"], 2), interval(vs_acc), vs_paper["models"]])
    return body + "\n\n" + markdown_table(
        ["layer", "Kendall τ: our scores vs the paper's",
         f"Kendall τ: our scores vs our accuracies ({variant}) [95% interval]", "models"],
        lines)


def comment(t2: dict) -> str:
    if not t2:
        return "No model of Table 1 exists yet."
    mnist_models = [m for m in NINE[:3] if m in t2]
    others = [m for m in NINE[3:] if m in t2]
    lines = []
    last = {m: t2[m][-1] for m in t2 if t2[m] and t2[m][-1] is not None}
    if last:
        top = sorted(last, key=lambda m: -last[m])[:3]
        lines.append(f"Our top three at L5: {', '.join(paper_name(m) for m in top)}.")
    if mnist_models and others:
        gaps = []
        for i in range(LAYERS):
            a = [t2[m][i] for m in mnist_models if i < len(t2[m]) and t2[m][i] is not None]
            b = [t2[m][i] for m in others if i < len(t2[m]) and t2[m][i] is not None]
            if a and b:
                gaps.append(f"L{i} {np.mean(a) - np.mean(b):+.3f}")
        paper_gaps = [np.mean([TABLE2[m][i] for m in NINE[:3]])
                      - np.mean([TABLE2[m][i] for m in NINE[3:]]) for i in range(LAYERS)]
        lines.append("Mean score of the MNIST models minus that of the others, per layer: "
                     + ", ".join(gaps) + " (the paper's: "
                     + ", ".join(f"L{i} {g:+.3f}" for i, g in enumerate(paper_gaps))
                     + "). The paper's point is that this contrast is sharpest at L5.")
    lines.append("L0 is the raw pixels, the same for every model: ours is computed on our "
                 "subsample of the test images, the paper's 0.346 on an unstated sample "
                 "with an unstated input scaling.")
    return " ".join(lines)
