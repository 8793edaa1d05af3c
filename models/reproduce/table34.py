"""Tables 3 and 4: score at L5 and transfer accuracy of Table 1's nine, target Fashion 0-4.

The paper's central claim: the ranking by score "matches well" the ranking by accuracy
after retraining the logits (Kendall's tau 0.89 by its own numbers).
"""

from __future__ import annotations

from .agreement import top_k_share
from .common import fmt, verdict
from .paper import NINE, TABLE3, TABLE4, paper_name
from .tables import MAIN_VARIANTS, agreement_table, score_accuracy_table, seeds_table


def section(records: dict, test_y, *, draws: int, seed: int = 0) -> tuple[str, dict]:
    """The section's markdown and the agreement per variant (for the summary)."""
    parts = [score_accuracy_table(records, NINE, TABLE3, TABLE4, test_y)]
    table, found = agreement_table(records, NINE, TABLE3, TABLE4, test_y, draws=draws,
                                   seed=seed)
    parts += ["", table]
    seeds = seeds_table(records, NINE, test_y)
    if seeds:
        parts += ["", "Each of the nine trained from three seeds (0, 1, 2), same recipe:",
                  "", seeds]
    parts += ["", comment(records, test_y, found, draws=draws, seed=seed)]
    return "\n".join(parts), found


def comment(records: dict, test_y, found: dict, *, draws: int, seed: int = 0) -> str:
    scores = {m: records[m].score for m in NINE if m in records}
    if not scores:
        return "No model of Table 1 exists yet."
    ours = sorted(scores, key=lambda m: -scores[m])
    paper = [m for m in sorted(TABLE3, key=lambda m: -TABLE3[m]) if m in scores]
    text = [f"Our ranking by score: {', '.join(paper_name(m) for m in ours)}; the paper's: "
            f"{', '.join(paper_name(m) for m in paper)}"
            f" ({'the same order' if ours == paper else 'they differ'})."]
    for v in MAIN_VARIANTS:
        ag = found.get(v)
        if ag is None:
            continue
        share = top_k_share(records, NINE, v, test_y, 2, draws=draws, seed=seed)
        top2 = ""
        if share is not None:
            top2 = (f" The two best by score are the two best by accuracy"
                    f"{'' if share[0] else ' not'} on the whole test split, and in "
                    f"{100 * share[1]:.0f}% of test-image resamples.")
        text.append(f"Under the {v} protocol, τ = {ag.tau}: {verdict(ag.tau, 0.889)}."
                    + (f" Over training seeds: {ag.tau_seeds}." if ag.tau_seeds else "")
                    + top2)
    return " ".join(text)
