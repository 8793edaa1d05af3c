"""The table builders shared by Tables 3-6: scores and accuracies beside the paper's, and
the agreement between them with intervals."""

from __future__ import annotations

import numpy as np

from .agreement import accuracies, agreement, scores
from .common import correlation, fmt, interval, markdown_table, ranks, verdict
from .paper import EXTRA_SEEDS, paper_name, seeded

MAIN_VARIANTS = ("logits", "probe")


def score_accuracy_table(records: dict, models: list, paper_scores: dict, paper_accs: dict,
                         test_y, variants=MAIN_VARIANTS) -> str:
    """One row per model: score, accuracy under each variant, and ranks, paper beside ours."""
    ours_s = scores(records, models)
    accs = {v: accuracies(records, models, v, test_y) for v in variants
            if any(v in r.predictions for r in records.values())}
    rs_p, rs_o = ranks(paper_scores), ranks(ours_s)
    ra_p = ranks(paper_accs)
    ra_o = {v: ranks(a) for v, a in accs.items()}
    rows = []
    for m in models:
        if m not in records:
            rows.append([m, paper_name(m), f"{fmt(paper_scores.get(m))} / missing",
                         f"{rs_p.get(m, '–')} / –", fmt(paper_accs.get(m)),
                         *["missing"] * len(accs), " / ".join(["–"] * (1 + len(accs)))])
            continue
        rows.append([m, paper_name(m), f"{fmt(paper_scores.get(m))} / {fmt(ours_s[m])}",
                     f"{rs_p.get(m, '–')} / {rs_o.get(m, '–')}", fmt(paper_accs.get(m)),
                     *[fmt(a.get(m)) for a in accs.values()],
                     " / ".join([str(ra_p.get(m, "–"))]
                                + [str(r.get(m, "–")) for r in ra_o.values()])])
    headers = ["model", "paper", "score: paper / ours", "rank: paper / ours",
               "accuracy (paper)", *[f"accuracy ({v})" for v in accs],
               "acc. rank: paper / " + " / ".join(accs)]
    return markdown_table(headers, rows)


def agreement_table(records: dict, models: list, paper_scores: dict, paper_accs: dict,
                    test_y, variants=MAIN_VARIANTS, *, draws: int, seed: int = 0) -> tuple[str, dict]:
    """Kendall's tau of our scores against our accuracies per variant, with intervals; and
    the paper's own, and ours against the paper's, as points. Returns the table and the
    :class:`~.agreement.Agreement` of each variant."""
    paper_tau = correlation(paper_scores, paper_accs)
    rows, found = [], {}
    for v in variants:
        ag = agreement(records, models, v, test_y, draws=draws, seed=seed)
        if ag is None:
            continue
        found[v] = ag
        rows.append([f"our scores vs our accuracies ({v})", interval(ag.tau),
                     interval(ag.tau_w), interval(ag.tau_scored), interval(ag.tau_seeds),
                     interval(ag.tau_seeds_images), len(ag.models),
                     verdict(ag.tau, paper_tau["tau"])])
    rows.append(["the paper's scores vs its accuracies", fmt(paper_tau["tau"], 2),
                 fmt(paper_tau["tau_w"], 2), "", "", "", paper_tau["models"], ""])
    ours_s = scores(records, models)
    c = correlation(ours_s, paper_scores)
    rows.append(["our scores vs the paper's scores", fmt(c["tau"], 2), fmt(c["tau_w"], 2),
                 "", "", "", c["models"], ""])
    for v in variants:
        if v in found:
            c = correlation(accuracies(records, models, v, test_y), paper_accs)
            rows.append([f"our accuracies ({v}) vs the paper's", fmt(c["tau"], 2),
                         fmt(c["tau_w"], 2), "", "", "", c["models"], ""])
    table = markdown_table(["comparison", "Kendall τ [95% interval, test images]",
                            "weighted τ [interval]", "τ, score resampled too",
                            "τ over training seeds", "τ over seeds and images", "models",
                            "what the interval supports"], rows)
    return table, found


def seeds_table(records: dict, models: list, test_y, variants=MAIN_VARIANTS) -> str | None:
    """Per model, the score and accuracies of its three training runs: mean [min, max]."""
    runs = {m: [seeded(m, k) for k in (0, *EXTRA_SEEDS)] for m in models}
    runs = {m: r for m, r in runs.items() if all(x in records for x in r)}
    if not runs:
        return None

    def spread(values):
        values = np.asarray(values, dtype=float)
        return f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]"

    rows = []
    for m, r in runs.items():
        rows.append([m, paper_name(m), spread([records[x].score for x in r]),
                     *[spread([records[x].accuracy(v, test_y) for x in r]) for v in variants]])
    return markdown_table(["model", "paper", "score, 3 seeds: mean [min, max]",
                           *[f"accuracy ({v}): mean [min, max]" for v in variants]], rows)
