"""Ranking cost: one cold search per model against retraining its logits."""

from __future__ import annotations

from .common import markdown_table


def _secs(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def cost_table(records: dict, variant: str = "logits") -> tuple[str, float | None]:
    """Wall time of ranking vs retraining the logits, per model and over the zoo.

    *search*: ``zooindex.search`` of one model on a fresh index (run the test split
    through it, PCA, silhouette); *retrain*: run the training split through it and fit the
    logits layer under ``variant``.
    """
    rows, search, transfer = [], 0.0, 0.0
    for m, r in records.items():
        fit = r.fit_seconds.get(variant)
        if fit is None or r.feature_seconds is None:
            continue
        t = r.feature_seconds + fit
        search += r.search_seconds
        transfer += t
        rows.append([m, _secs(r.search_seconds), _secs(t),
                     f"{t / r.search_seconds:.1f}×" if r.search_seconds else "–"])
    ratio = transfer / search if search else None
    rows.append(["**whole zoo**", _secs(search), _secs(transfer),
                 "–" if ratio is None else f"{ratio:.1f}×"])
    return markdown_table(["model", "search s (rank)", f"retrain logits s ({variant})",
                           "retrain / search"], rows), ratio
