"""Small helpers shared by the tables: markdown, ranks, rank correlations, intervals."""

from __future__ import annotations

from pathlib import Path

MISSING = "missing"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats to three decimals, ``None`` as a dash."""
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def correlation(a: dict, b: dict) -> dict:
    """Kendall tau, weighted tau and Spearman rho of two {model: value} over shared models."""
    from zooindex.evaluation import rank_agreement

    common = [m for m in a if m in b and a[m] is not None and b[m] is not None]
    ag = rank_agreement([a[m] for m in common], [b[m] for m in common])
    return {"tau": ag["tau"], "tau_w": ag["tau_w"], "spearman": ag["spearman"],
            "models": len(common)}


def correlation_table(pairs: list[tuple[str, dict, dict]]) -> str:
    rows = []
    for label, a, b in pairs:
        c = correlation(a, b)
        rows.append([label, c["tau"], c["tau_w"], c["spearman"], c["models"]])
    return markdown_table(["comparison", "Kendall τ", "weighted τ", "Spearman ρ", "models"],
                          rows)


def ranks(values: dict) -> dict:
    """1 for the highest value; models without a value get none."""
    present = sorted((m for m in values if values[m] is not None), key=lambda m: -values[m])
    return {m: i for i, m in enumerate(present, 1)}


def fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def interval(iv) -> str:
    """``0.72 [0.61, 0.83]`` for a :class:`zooindex.transfer.Interval`, a dash for none."""
    return "–" if iv is None else str(iv)


def verdict(iv, paper: float | None = None) -> str:
    """What an interval of Kendall's tau supports, in words.

    *agrees* when the whole interval is above 0, *no evidence of agreement* when it
    straddles 0, *disagrees* when it is below; the paper's value is then *inside* or
    *outside* the interval. "Same order" needs tau = 1 throughout the interval.
    """
    if iv is None or iv.low is None:
        return "undefined"
    if iv.low >= 1 - 1e-9:
        words = "same order in every resample"
    elif iv.low > 0:
        words = "agrees (τ > 0), not the same order"
    elif iv.high < 0:
        words = "disagrees (τ < 0)"
    else:
        words = "no evidence of agreement (interval includes 0)"
    if paper is not None:
        inside = iv.low <= paper <= iv.high
        words += f"; the paper's {paper:.2f} is {'inside' if inside else 'outside'}"
    return words


def shown(path, root: Path) -> str:
    """A path relative to ``root`` when it lies inside it, as the docs show it."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
