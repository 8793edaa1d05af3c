"""Figures 2 and 3: the score against D, and 3-D PCA scatters of three models' layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .measure import paper_layers
from .paper import paper_name


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure2(curves: dict[str, dict], path: Path, title: str) -> Path:
    """Score against D, one line per model (the paper's Figure 2)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", markersize=3, label=label)
    ax.axvline(10, color="grey", linestyle="--", linewidth=0.8, label="D=10 (default)")
    ax.set_xscale("log")
    ticks = sorted({d for curve in curves.values() for d in curve} | {10})
    ax.set_xticks([d for d in ticks if d in (2, 3, 5, 10, 20, 50, 100) or d == ticks[-1]])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("PCA dimensions D")
    ax.set_ylabel("silhouette score (cosine)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    return path


def figure3(panels: list[tuple[str, str, np.ndarray, np.ndarray]], names, path: Path,
            columns: int = 3) -> Path:
    """3-D PCA scatters (the paper's Figure 3): ``(title, _, points (n, 3), codes)``."""
    import matplotlib
    from matplotlib.lines import Line2D
    from mpl_toolkits import mplot3d  # noqa: F401  (registers the 3-D projection)

    rows = max(1, -(-len(panels) // columns))
    fig = _figure(4.0 * columns + 1.5, 3.8 * rows)
    cmap = matplotlib.colormaps["tab10"]
    for i, (title, _, points, codes) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        pts = np.zeros((len(points), 3))
        pts[:, :points.shape[1]] = points[:, :3]
        ax.scatter(*pts.T, c=[cmap(c) for c in codes], s=4, alpha=0.7, linewidths=0,
                   depthshade=False)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=6)
    handles = [Line2D([], [], marker="o", linestyle="", color=cmap(c), label=str(n))
               for c, n in enumerate(names)]
    fig.legend(handles=handles, title="class", loc="outside right center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    return path


def draw_figure2(order: list[str], ranks: dict, index, target, path: Path, dims, seed: int):
    """Score against D of the top five of ``order`` (our Table 3 ranking)."""
    import zooindex
    from zooindex.reporting import score_curves

    curves = {}
    for m in order[:5]:
        feats = zooindex.features(target, m, index=index)
        curves[f"{ranks[m]}. {paper_name(m)}"] = score_curves({m: feats}, target.y, dims,
                                                               seed=seed)[m]
        del feats
    if not curves:
        return None
    return figure2(curves, path, "Fashion 0-4 target: score at L5 against D, top five of "
                                 "our Table 3")


def draw_figure3(order, index, tgt, path, seed):
    """L0, L2 and the last dense layer of our ranks 1, 3 and 7 (or the lowest rank)."""
    import zooindex
    from zooindex.reduce import pca

    if not order:
        return None, []
    wanted = [1, 3, 7]
    picks = []
    for r in wanted:
        m = order[min(r, len(order)) - 1]
        if m not in [p[1] for p in picks]:
            picks.append((min(r, len(order)), m))
    panels = []
    for rank, m in picks:
        layers = paper_layers(zooindex.layers(m, index=index),
                                  zooindex.show(m, index=index)["default_layer"])
        chosen = [(0, layers[0]), (2, layers[2]), (len(layers) - 1, layers[-1])]
        for li, layer in chosen:
            feats = zooindex.features(tgt, m, index=index, layer=layer)
            points, _ = pca(feats, 3, seed=seed)
            panels.append((f"rank {rank}: {paper_name(m)}, L{li}", m, points, tgt.y))
            del feats
    names = [str(c) for c in (tgt.class_names or tgt.classes)]
    if tgt.class_names is None and all(isinstance(c, int) for c in tgt.classes):
        from ..data import IDX_CLASS_NAMES  # IDX files carry no names

        fashion = IDX_CLASS_NAMES["fashion-mnist"]
        names = [f"{c} {fashion[c]}" for c in tgt.classes]
    return figure3(panels, names, path), picks
