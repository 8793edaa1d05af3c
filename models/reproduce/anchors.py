"""The zoo's own training beside what the paper shows of its zoo: in-domain accuracies and
the paper's accuracies of the models whose target is (part of) their own task."""

from __future__ import annotations

from .common import fmt, markdown_table
from .paper import ANCHORS, EXTRA_SEEDS, LITE, NINE, WIDE_512, paper_name, seeded


def in_domain_table(entries: dict) -> str:
    """Each model's test accuracy on its own classes (the seeds' beside seed 0's)."""
    rows = []
    for m in NINE + LITE + WIDE_512:
        e = entries.get(m)
        seeds = [entries.get(seeded(m, k)) for k in EXTRA_SEEDS]
        rows.append([m, paper_name(m), "missing" if e is None else f"{e['test_accuracy']:.4f}",
                     " / ".join("–" if s is None else f"{s['test_accuracy']:.4f}"
                                for s in seeds) if m in NINE else "",
                     "" if e is None else e.get("epochs"),
                     "" if e is None else f"{e['train_seconds']:.0f}"])
    return markdown_table(["model", "paper", "test accuracy, own classes (seed 0)",
                           "seeds 1 / 2", "epochs", "training s"], rows)


def anchor_table(records: dict, test_ys: dict, entries: dict) -> str:
    """The paper's accuracy of models transferred to (a part of) their own task, beside
    ours: the closest the paper comes to saying how well its zoo was trained."""
    rows = []
    for model, target, paper_acc, where in ANCHORS:
        rec = records.get(target, {}).get(model)
        y = test_ys.get(target)
        e = entries.get(model)
        rows.append([paper_name(model), {"mnist": "MNIST 0-4", "fashion": "Fashion 0-4"}[target],
                     f"{paper_acc:.3f} ({where})",
                     fmt(None if rec is None or "logits" not in rec.predictions
                         else rec.accuracy("logits", y)),
                     fmt(None if rec is None or "probe" not in rec.predictions
                         else rec.accuracy("probe", y)),
                     "–" if e is None else f"{e['test_accuracy']:.3f} ({e['classes']})"])
    return markdown_table(["model", "target", "paper: accuracy after retraining the logits",
                           "ours (logits)", "ours (probe)", "ours: own test accuracy (classes)"],
                          rows)
