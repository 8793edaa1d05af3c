"""Table 6: the five 512-unit models beside their 1024-unit twins, target Fashion 0-4.

The paper's claim: "regardless of the dimensions in L5, top-5 models according to the SC
score are also the top-5 models based on actual accuracy performance".
"""

from __future__ import annotations

from .agreement import top_k_share
from .paper import TABLE6, TWINS_1024, WIDE_512
from .tables import MAIN_VARIANTS, agreement_table, score_accuracy_table

MODELS = TWINS_1024 + WIDE_512


def section(records: dict, test_y, *, draws: int, seed: int = 0) -> tuple[str, dict]:
    paper_s = {m: v[0] for m, v in TABLE6.items()}
    paper_a = {m: v[1] for m, v in TABLE6.items()}
    table, found = agreement_table(records, MODELS, paper_s, paper_a, test_y, draws=draws,
                                   seed=seed)
    parts = [score_accuracy_table(records, MODELS, paper_s, paper_a, test_y), "", table, ""]
    claims = []
    for v in MAIN_VARIANTS:
        share = top_k_share(records, MODELS, v, test_y, 5, draws=draws, seed=seed)
        if share is not None:
            claims.append(f"under the {v} protocol the top five by score are "
                          f"{'' if share[0] else 'not '}the top five by accuracy "
                          f"(in {100 * share[1]:.0f}% of test-image resamples)")
    if claims:
        parts.append("The paper's top-5 claim holds by its own Table 6; here, "
                     + "; ".join(claims) + ".")
    return "\n".join(parts), found
