"""Table 5: the lite models (no second conv/pool; scored at their L3), targets MNIST 0-4
and Fashion 0-4; and the paper's claim about all 18 models of Tables 3-5."""

from __future__ import annotations

from .common import correlation, fmt, interval, markdown_table, verdict
from .paper import LITE, NINE, TABLE3, TABLE4, TABLE5
from .agreement import agreement
from .tables import MAIN_VARIANTS, agreement_table, score_accuracy_table

TARGETS = (("MNIST 0-4", "mnist", 0), ("Fashion 0-4", "fashion", 2))


def section(records: dict, test_ys: dict, *, draws: int, seed: int = 0) -> tuple[str, dict]:
    """``records``/``test_ys``: per target (``mnist``, ``fashion``). Returns markdown and
    the agreements per (target, variant), including the 18-model one on Fashion 0-4."""
    parts, found = [], {}
    for title, target, col in TARGETS:
        paper_s = {m: TABLE5[m][col] for m in LITE}
        paper_a = {m: TABLE5[m][col + 1] for m in LITE}
        recs, y = records.get(target, {}), test_ys.get(target)
        if y is None:
            continue
        table, ags = agreement_table(recs, LITE, paper_s, paper_a, y, draws=draws, seed=seed)
        found.update({(target, v): a for v, a in ags.items()})
        parts += [f"**Target {title}**", "",
                  score_accuracy_table(recs, LITE, paper_s, paper_a, y), "", table, ""]
    fashion, y = records.get("fashion", {}), test_ys.get("fashion")
    if y is not None:
        paper_s = {**TABLE3, **{m: TABLE5[m][2] for m in LITE}}
        paper_a = {**TABLE4, **{m: TABLE5[m][3] for m in LITE}}
        paper_tau = correlation(paper_s, paper_a)["tau"]
        rows = []
        for v in MAIN_VARIANTS:
            ag = agreement(fashion, NINE + LITE, v, y, draws=draws, seed=seed)
            if ag is None:
                continue
            found[("all18", v)] = ag
            rows.append([f"our scores vs our accuracies ({v})", interval(ag.tau),
                         interval(ag.tau_w), len(ag.models), verdict(ag.tau, paper_tau)])
        rows.append(["the paper's (Tables 3, 4, 5)", fmt(paper_tau, 2),
                     fmt(correlation(paper_s, paper_a)["tau_w"], 2), 18, ""])
        parts += ["**All 18 models of Tables 3-5, target Fashion 0-4** (the paper: \"ranking "
                  "of all 18 models based on SC score matches the ranking based on the "
                  "accuracy\")", "",
                  markdown_table(["comparison", "Kendall τ [95% interval, test images]",
                                  "weighted τ [interval]", "models",
                                  "what the interval supports"], rows)]
    return "\n".join(parts), found
