"""How much the agreement depends on the transfer protocol: the paper's logits layer with
other seeds, epochs and optimizer, and the linear probe, on Table 3/4's nine."""

from __future__ import annotations

from .agreement import agreement, logits_seed_interval
from .common import fmt, interval, markdown_table, verdict
from .measure import Variant
from .paper import NINE, paper_name

# the probe as zooindex evaluate measured it for this file so far: 5,000 training images
PROBE_LIMIT = 5_000
MAIN = [Variant("logits", "logits"), Variant("probe", "probe", train_limit=PROBE_LIMIT)]
LOGITS_SEEDS = [Variant("logits seed 1", "logits", {"seed": 1}),
                Variant("logits seed 2", "logits", {"seed": 2})]
SENSITIVITY = [Variant("logits, SGD 5 epochs", "logits", {"epochs": 5}),
               Variant("logits, Adam 5 epochs", "logits", {"optimizer": "adam", "epochs": 5}),
               Variant("logits, Adam 20 epochs", "logits", {"optimizer": "adam", "epochs": 20})]


def describe(variant: Variant) -> str:
    params = variant.resolved()
    if variant.protocol == "logits":
        return (f"{params['optimizer']} lr {params['lr']:g}, batch {params['batch_size']}, "
                f"{params['epochs']} epochs, dropout {params['dropout']}, seed {params['seed']}")
    limit = (f", on a stratified, seeded subsample of {variant.train_limit:,} training images"
             if variant.train_limit else "")
    return f"standardised, L-BFGS up to {params['max_iter']} iterations{limit}"


def section(records: dict, test_y, *, draws: int, seed: int = 0) -> str:
    variants = MAIN + LOGITS_SEEDS + SENSITIVITY
    present = [v for v in variants
               if any(v.label in r.predictions for m, r in records.items() if m in NINE)]
    if not present:
        return "Not measured yet."
    acc_rows = []
    for m in NINE:
        r = records.get(m)
        acc_rows.append([paper_name(m), fmt(None if r is None else r.score),
                         *[fmt(r.accuracy(v.label, test_y)) if r is not None
                           and v.label in r.predictions else "–" for v in present]])
    tau_rows = []
    for v in present:
        ag = agreement(records, NINE, v.label, test_y, draws=draws, seed=seed)
        if ag is not None:
            tau_rows.append([v.label, describe(v), interval(ag.tau), interval(ag.tau_w),
                             verdict(ag.tau)])
    logits_seeds = logits_seed_interval(records, NINE, ["logits"] + [v.label for v in LOGITS_SEEDS],
                                        test_y, draws=draws, seed=seed)
    text = [markdown_table(["model", "score", *[v.label for v in present]], acc_rows), "",
            markdown_table(["variant", "parameters", "Kendall τ [95% interval, test images]",
                            "weighted τ [interval]", "what the interval supports"], tau_rows)]
    if logits_seeds is not None:
        text += ["", f"Over the three seeds of the logits retraining alone (same networks, "
                     f"same scores): τ = {logits_seeds}."]
    return "\n".join(text)
