"""RESULTS.md: the summary with its verdicts, what was run, every table, the figures."""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import anchors, table2, table34, table5, table6
from .common import fmt, interval, markdown_table, shown, verdict
from .cost import cost_table
from .paper import EXTRA_SEEDS, LITE, NINE, TABLE3, TABLE4, WIDE_512, inconsistencies, \
    paper_name, seeded
from .protocols import MAIN, describe, section as protocols_section

ROOT = Path(__file__).resolve().parents[2]
PAPER_TAU_34 = 0.889


def write(*, zoo, models, entries, t2, records, tests, trains, fig2, fig3, fig3_models, out,
          settings, seconds) -> str:
    s = settings
    fashion, mnist = records.get("fashion", {}), records.get("mnist", {})
    fy, my = tests["fashion"].y, tests["mnist"].y
    test_ys = {"fashion": fy, "mnist": my}
    t34, found34 = table34.section(fashion, fy, draws=s.draws, seed=s.seed)
    t5, found5 = table5.section(records, test_ys, draws=s.draws, seed=s.seed)
    t6, found6 = table6.section(fashion, fy, draws=s.draws, seed=s.seed)
    lines = [
        "# The neuralRank paper reproduced on this project's zoo",
        "",
        f"_Written by `python -m models.reproduce` (`make reproduce`) on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} in {seconds / 60:.1f} min (measurements "
        "cached from earlier runs are reused)._",
        "",
        "## Does the paper's central claim hold?",
        "",
        summary(found34, found5, found6, fashion, fy, s.draws),
        "",
        "## What was run",
        "",
        *what_was_run(zoo, models, entries, tests, trains, s),
        "",
        "## The zoo's training beside the paper's",
        "",
        "The paper reports no in-domain accuracy. The closest it comes is the accuracy of "
        "models retrained on (part of) their own task: F0-4 and F10 on Fashion 0-4 "
        "(Table 4), the lite MNIST models on MNIST 0-4 (Table 5), F0-4 (512) (Table 6). "
        "Ours under both protocols, and each model's own test accuracy:",
        "",
        anchors.anchor_table(records, test_ys, entries),
        "",
        "Every model's test accuracy on its own classes (`models/zoo/manifest.json`; "
        "the recipe and timings per model are in `models/README.md`):",
        "",
        anchors.in_domain_table(entries),
        "",
        "## Table 2: score at each layer, target MNIST 0-4",
        "",
        "Layers L0-L5 as in the paper's Figure 1 (L0 input, L1 conv1+ReLU, L2 pool1, "
        "L3 conv2+ReLU, L4 pool2, L5 dense 1024), found from each model's graph by kind and "
        f"order, on a stratified, seeded subsample of {s.layer_limit} MNIST 0-4 test images "
        "(the conv layers are up to 25,088 wide). Each cell: paper / ours. Below, per layer, "
        "Kendall's τ of our scores against the paper's and against our accuracies on the "
        "whole MNIST 0-4 test split (logits protocol).",
        "",
        table2.table2(t2, mnist, my, draws=s.draws),
        "",
        table2.comment(t2),
        "",
        "## Tables 3 and 4: score at L5 and transfer accuracy, target Fashion 0-4",
        "",
        t34,
        "",
        "## Table 5: lite models, targets MNIST 0-4 and Fashion 0-4",
        "",
        "No second conv/pool; the score is taken at their L3, the last hidden dense layer.",
        "",
        t5,
        "",
        "## Table 6: 512-unit models beside their 1024-unit twins, target Fashion 0-4",
        "",
        t6,
        "",
        "## How much the transfer protocol matters",
        "",
        "Table 3/4's nine on Fashion 0-4, each column one way of measuring the transfer "
        "accuracy on the same frozen features:",
        "",
        protocols_section(fashion, fy, draws=s.draws, seed=s.seed),
        "",
        "## The paper's own inconsistencies",
        "",
        *[f"- {line}" for line in inconsistencies()],
        "",
        "## Figure 2: score against D",
        "",
    ]
    if fig2:
        lines += [f"![score against D]({os.path.relpath(fig2, out.parent)})", "",
                  "The top five models of our Table 3, score at L5 for D from 2 to 100. "
                  "Lines that do not cross keep the ranking whatever D is used."]
    else:
        lines.append("Not drawn: no model of Table 1 exists yet.")
    lines += ["", "## Figure 3: 3-D PCA of L0, L2 and L5", ""]
    if fig3:
        picked = ", ".join(f"rank {r} {paper_name(m)}" for r, m in fig3_models)
        lines += [f"![PCA scatter]({os.path.relpath(fig3, out.parent)})", "",
                  f"Fashion 0-4 test images ({s.scatter_limit}, stratified), projected on "
                  f"the first three principal components of each layer, coloured by class, "
                  f"for {picked} of our Table 3 (the paper shows ranks 1, 3 and 7; with "
                  "fewer than seven models the lowest rank stands in for 7)."]
    else:
        lines.append("Not drawn: no model of Table 1 exists yet.")
    table, ratio = cost_table({m: r for m, r in fashion.items()
                               if m in NINE + LITE + WIDE_512})
    lines += ["", "## Ranking cost: search vs retraining the logits", "",
              "Wall time per model on the Fashion 0-4 target: *search* is "
              "`zooindex.search` of one model on a fresh index (runs the "
              f"{len(fy):,} test images through it, PCA, silhouette); *retrain* runs the "
              f"{len(trains['fashion'].y):,} training images through it "
              "(`zooindex.features`) and fits the logits layer (the paper's protocol). "
              "The machine's two cores were shared with other work while this ran, so the "
              "absolute seconds are inflated; the ratio is the meaningful number.", "",
              table, ""]
    if ratio:
        lines.append(f"Ranking the zoo by score took **{ratio:.1f}× less** wall time than "
                     "retraining every model's logits to measure its accuracy.")
    return "\n".join(lines) + "\n"


def summary(found34: dict, found5: dict, found6: dict, fashion: dict, fy, draws: int) -> str:
    """The verdicts, each from an interval: the central claim first."""
    if not found34 or any(len(ag.models) < len(NINE) for ag in found34.values()):
        return "Not measured yet: Table 1's nine models are not all trained."
    rows = []
    for v in ("logits", "probe"):
        ag = found34.get(v)
        if ag is None:
            continue
        rows.append([f"{v}{' (the paper' + chr(39) + 's)' if v == 'logits' else ''}",
                     interval(ag.tau), interval(ag.tau_seeds), interval(ag.tau_seeds_images),
                     interval(ag.tau_w), verdict(ag.tau, PAPER_TAU_34)])
    lines = [
        "The claim (section 4.3, Tables 3 and 4): on Fashion-MNIST classes 0-4, the ranking "
        "of Table 1's nine models by the score at L5 \"matches well\" their ranking by "
        "accuracy after retraining the logits layer; by the paper's own numbers Kendall's "
        f"τ = {PAPER_TAU_34:.2f}. Ours, with 95% percentile intervals from {draws:,} "
        f"resamples of the {len(fy):,} test images and from drawing one of each model's "
        "three training runs (seeds 0, 1, 2):",
        "",
        markdown_table(["protocol", "Kendall τ [test images]", "[training seeds]",
                        "[seeds and images]", "weighted τ", "what the interval supports"],
                       rows),
        "",
    ]
    logits = found34.get("logits")
    probe = found34.get("probe")
    if logits is not None:
        lines.append(claim_sentence("the paper's protocol (logits retrained on frozen "
                                    "features)", logits))
    if probe is not None:
        lines.append(claim_sentence("the linear probe", probe))
    paper = paper_taus()
    claims = [("Table 5, MNIST 0-4", found5.get(("mnist", "logits")), 9, paper["mnist"]),
              ("Table 5, Fashion 0-4", found5.get(("fashion", "logits")), 9, paper["fashion"]),
              ("the 18 models of Tables 3-5 on Fashion 0-4", found5.get(("all18", "logits")),
               18, paper["all18"]),
              ("Table 6, ten models on Fashion 0-4", found6.get("logits"), 10,
               paper["table6"])]
    more = []
    for label, ag, size, paper_tau in claims:
        if ag is None or len(ag.models) < size:
            have = 0 if ag is None else len(ag.models)
            more.append(f"- {label} (the paper's τ {paper_tau:.2f}): not measured yet, "
                        f"{have} of its {size} models trained.")
        else:
            more.append(f"- {label} (the paper's τ {paper_tau:.2f}): τ = {ag.tau} "
                        f"({verdict(ag.tau, paper_tau)}).")
    if more:
        lines += ["", "The other claims, logits protocol (both protocols in their sections):",
                  "", *more]
    return "\n".join(lines)


def paper_taus() -> dict:
    """Kendall's tau of the paper's scores against its accuracies, table by table."""
    from .common import correlation
    from .paper import TABLE5, TABLE6

    lite_s = {m: TABLE5[m][2] for m in LITE}
    lite_a = {m: TABLE5[m][3] for m in LITE}
    return {
        "mnist": correlation({m: TABLE5[m][0] for m in LITE},
                             {m: TABLE5[m][1] for m in LITE})["tau"],
        "fashion": correlation(lite_s, lite_a)["tau"],
        "all18": correlation({**TABLE3, **lite_s}, {**TABLE4, **lite_a})["tau"],
        "table6": correlation({m: v[0] for m, v in TABLE6.items()},
                              {m: v[1] for m, v in TABLE6.items()})["tau"],
    }


def claim_sentence(what: str, ag) -> str:
    iv = ag.tau
    if iv.low is None:
        return f"Under {what}, τ is undefined."
    if iv.low > 0:
        head = (f"Under {what}, the claim holds as agreement: τ = {iv.estimate:.2f}, and the "
                f"whole interval [{iv.low:.2f}, {iv.high:.2f}] lies above 0")
    elif iv.high < 0:
        head = (f"Under {what}, the claim fails: τ = {iv.estimate:.2f}, interval "
                f"[{iv.low:.2f}, {iv.high:.2f}] below 0")
    else:
        head = (f"Under {what}, the claim is not supported: τ = {iv.estimate:.2f}, and the "
                f"interval [{iv.low:.2f}, {iv.high:.2f}] includes 0")
    tail = ""
    if ag.tau_seeds is not None and ag.tau_seeds.low is not None:
        tail = (f"; over training seeds τ ranges over [{ag.tau_seeds.low:.2f}, "
                f"{ag.tau_seeds.high:.2f}]"
                + (" and stays above 0" if ag.tau_seeds.low > 0 else ", which includes 0"))
    inside = iv.low <= PAPER_TAU_34 <= iv.high
    return (head + tail + f". The paper's {PAPER_TAU_34:.2f} is "
            f"{'inside' if inside else 'outside'} the test-image interval"
            + ("" if iv.low < 1 - 1e-9 else "; the order is the same in every resample") + ".")


def what_was_run(zoo, models, entries, tests, trains, s) -> list[str]:
    missing = [m for m in NINE + LITE + WIDE_512 + [seeded(m, k) for k in EXTRA_SEEDS
                                                   for m in NINE] if m not in models]
    recipes = sorted({(e.get("optimizer", "adam"), e.get("learning_rate", 0.001),
                       e.get("batch_size", 100), e.get("epochs"), e.get("device", "cpu"))
                      for e in entries.values()}, key=str)
    recipe = "; ".join(f"{o} lr {lr:g}, batch {b}, {ep} epochs ({d})"
                       for o, lr, b, ep, d in recipes) or "unknown"
    total = sum(e.get("train_seconds", 0) for e in entries.values())
    lines = [
        f"- Zoo: `{shown(zoo, ROOT)}`, {len(models)} of 41 models: Table 1's nine, their nine "
        "lite versions (Table 5), the five 512-unit models (Table 6), and Table 1's nine "
        "trained from two more seeds (`-seed1`, `-seed2`).",
    ]
    if missing:
        lines.append(f"- **Missing** (not trained when this ran; `missing` or `–` below): "
                     f"{', '.join(missing)}.")
    lines += [
        f"- Training: the paper's network (Figure 1), cross-entropy, dropout 0.4, {recipe}; "
        f"{total / 3600:.1f} h of training in all (`make zoo`; see `models/README.md` for "
        "the recipe's reasons and the per-model table). The paper states only the "
        "learning rate, the loss and the dropout.",
        "- CIFAR-10 models are trained on **CIFAR-10 (JPEG copy)**, converted to 28x28 "
        "grey; the JPEG compression makes the images slightly different from the "
        "original CIFAR-10.",
        "- Score: neuralRank's silhouette, asked for by name (`--scorer silhouette`; "
        "zooindex's default is another scorer): activations of the last hidden dense "
        "layer, PCA to D=10, silhouette coefficient with cosine distance, on the whole "
        "test split of the target; higher is better.",
        f"- Targets: classes 0-4 of Fashion-MNIST ({len(trains['fashion'].y):,} training, "
        f"{len(tests['fashion'].y):,} test images) and of MNIST "
        f"({len(trains['mnist'].y):,} training, {len(tests['mnist'].y):,} test images).",
        "- Transfer accuracy, two protocols (`zooindex.transfer`), both on the frozen "
        "activations of the last hidden dense layer, trained on the training split and "
        "tested on the test split:",
    ]
    for v in MAIN:
        lines.append(f"  - **{v.label}**: {describe(v)}. "
                     + ("The paper's protocol: a fresh logits layer, dropout on its input, "
                        "cross-entropy, learning rate 0.001. Batch 100, plain SGD, the "
                        "Glorot initialisation and the length (67 epochs: the tutorial's "
                        "20,000 steps on these 30,000-image targets) follow TensorFlow's "
                        "`cnn_mnist.py` tutorial, whose network and learning rate the "
                        "paper's match exactly: an inference, not the paper's word."
                        if v.protocol == "logits" else
                        "Not the paper's: what `zooindex evaluate` measured so far."))
    lines += [
        f"- Intervals: 95% percentile intervals of {s.draws:,} resamples. *Test images*: "
        "the test images drawn with replacement (the same draw for every model), each "
        "model's accuracy recomputed from its per-image correctness, τ recomputed; the "
        "scores held fixed, or (*score resampled too*) averaged from the same draw of the "
        "per-image silhouettes. *Training seeds*: for each model one of its three training "
        "runs drawn at random, its score and accuracy together. A claim of agreement is "
        "made only where the whole interval lies above 0, \"same order\" only where τ = 1 "
        "throughout.",
        "- Rank correlations: Kendall's τ-b and weighted τ (`scipy.stats.weightedtau`, "
        "which weighs the top of the ranking most) over the models present; `–` where "
        "fewer than three models are present or a column is constant.",
    ]
    return lines
