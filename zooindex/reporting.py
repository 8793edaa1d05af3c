"""A ranking explained in pictures, written as one PNG or a self-contained HTML page.

A score alone asks to be trusted; the report shows why a model ranks where it does, the
way the neuralRank paper argues its results:

1. the ranking itself, every ranked model as a bar, the top ``k`` highlighted;
2. the score of the top models against the PCA dimension D (the paper's Figure 2): lines
   that stay apart over a wide range of D mean the ranking does not hinge on ``--dim``;
3. a 3-D PCA scatter of each top model's layer, coloured by class (the paper's Figure 3):
   a model that ranks high separates the classes visibly.

Scores and activations come from the search's cache, so a report after a search runs no
model. matplotlib is an optional extra, imported only when a report is drawn, and drawn
on figures of its own (the Agg canvas, never pyplot), so a caller's plotting backend and
open figures are left alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DependencyError, ZooIndexError
from .options import SearchOptions, TargetSelection, from_settings

FORMATS = (".html", ".png")
DIMS = (2, 3, 5, 10, 20, 50, 100)
SCATTER_DIM = 3
# more classes than this get a colour bar instead of a legend entry each
_LEGEND_CLASSES = 20
_SCATTER_COLUMNS = 3
_HIGHLIGHT, _MUTED = "#1f77b4", "#c7c7c7"


@dataclass
class _Panel:
    """What one top model contributes to the report: its curve and its scatter."""

    label: str
    rank: int
    score: float
    layer: str | None
    curve: dict
    points: np.ndarray   # (m, 1..3) PCA coordinates of the plotted samples
    labels: np.ndarray   # (m,) class codes of those samples


def score_curves(features_by_model, labels, dims=DIMS, metric: str = "cosine", *,
                 seed: int = 0) -> dict:
    """Silhouette score of each model's features at every PCA dimension D in ``dims``.

    ``features_by_model`` maps a model's label to its layer's features ``(n, d)``;
    ``labels`` are the ``(n,)`` class labels. Each D is clipped to the components PCA can
    give for that layer (``min(n, d)``, fewer when the features span fewer dimensions) and
    repeated values are dropped, so a 16-wide layer of full rank with the default
    ``dims`` gives points at 2, 3, 5, 10 and 16. Each point is
    computed as the search computes its score (the same PCA with the same seed, the same
    silhouette), so the point at D equals ``search(dim=D)``'s score for that model.

    Returns ``{label: {D: score}}`` with the D in increasing order.
    """
    from .estimators import check_inputs
    from .estimators.silhouette import silhouette_score
    from .reduce import pca

    wanted = _dims(dims)
    curves = {}
    for name, features in features_by_model.items():
        # float32 stays float32, as in the search, so the curve meets its scores exactly
        feats, codes = check_inputs(features, labels, "silhouette", keep_float32=True)
        curve: dict[int, float] = {}
        for d in wanted:
            reduced, used = pca(feats, d, seed=seed)
            if used not in curve:
                curve[used] = float(silhouette_score(reduced, codes, metric))
            if used < d:  # every larger D is clipped to the same components
                break
        curves[name] = dict(sorted(curve.items()))
    return curves


def sample_rows(labels, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted row positions of a seeded subsample of at most ``max_points`` rows.

    Stratified where possible, so every class keeps its share of the plotted points; when
    the counts make that impossible (fewer points or fewer rows left out than classes),
    a plain seeded random sample.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if max_points >= n:
        return np.arange(n)
    k = len(np.unique(labels))
    if max_points >= k and n - max_points >= k:
        from sklearn.model_selection import train_test_split

        drawn, _ = train_test_split(np.arange(n), train_size=int(max_points),
                                    stratify=labels, random_state=int(seed))
    else:
        drawn = np.random.default_rng(int(seed)).choice(n, size=int(max_points),
                                                        replace=False)
    return np.sort(drawn)


def report(target, options: SearchOptions | None = None, *, out, index=None,
           selection: TargetSelection | None = None, top: int = 5, dims=DIMS,
           max_points: int = 2000, models=None, filter=None, progress: bool | None = False,
           executor=None, budget=None, **settings) -> Path:
    """Rank the zoo for ``target`` and write the ranking with its plots to ``out``.

    ``out`` ending in ``.png`` gets one figure with every panel; ``.html`` gets a page
    with the target, the ranking as a table and each figure embedded, readable offline
    and safe to mail. ``top`` models get a score-against-D curve (over ``dims``) and a
    3-D PCA scatter of their layer (at most ``max_points`` samples, a stratified seeded
    subsample). ``options``, ``selection`` (or their fields as keywords), ``models`` and
    ``filter`` mean what they mean for :func:`~zooindex.ranking.search`. Only the file
    itself is created: its folder must exist. It is replaced atomically; returns its path.

    ``budget`` (``0.3``, ``"30%"``, ``"90s"``, ``"auto"``; ``None``: a full search) ranks
    by :func:`~zooindex.budget.search_on_budget` instead, aiming at a settled top
    ``top``: the report's ranking is the race's last round (its survivors, then the
    dropped models marked with the round after which they were dropped and the images
    they saw), and a section says what was spent and saved, the rounds and the advice.
    The figures are drawn for the survivors only, on the images they saw (the last
    round's subsample, whose activations the race cached, so no model runs again): the
    scores there are the ones the ranking shows, and the dropped models' scores were
    made on fewer images, not comparable with them.
    """
    options, selection = from_settings(options, selection, **settings)
    if budget is not None:
        from .budget import parse_budget

        budget = parse_budget(budget)  # a bad one: before any work, in one line
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ZooIndexError(f"cannot write a report to '{out}': unknown suffix "
                            f"'{out.suffix or '(none)'}'; use one of: {', '.join(FORMATS)}")
    _check_count("--top", top)
    _check_count("--max-points", max_points)
    _check_writable(out)
    wanted = _dims(dims)
    matplotlib = _matplotlib()  # before the search, which may take a while

    from .index import opened
    from .ranking import search

    tgt = selection.load(target)
    if not tgt.labeled:
        raise ZooIndexError(f"target {tgt.source} has no labels; a report colours its "
                            "plots by class and needs them (`zooindex search` ranks "
                            "unlabeled targets)")
    raced, drawn_on = None, tgt
    with opened(index, create=False) as idx:
        if budget is None:
            ranking = search(tgt, options, index=idx, models=models, filter=filter,
                             progress=progress, executor=executor)
        else:
            from .budget import search_on_budget

            raced = search_on_budget(tgt, budget, top, options, index=idx,
                                     selection=selection, models=models, filter=filter,
                                     executor=executor)
            ranking, drawn_on = raced.ranking, raced.seen_target(tgt)
        panels = _panels(idx, drawn_on, ranking, options, top, wanted, max_points,
                         executor, progress)

    names = [str(c) for c in (tgt.class_names or tgt.classes)]
    if suffix == ".png":
        data = _png(_whole_figure(matplotlib, ranking, panels, names, top, raced))
    else:
        data = _page(matplotlib, ranking, panels, names, top, tgt, raced).encode("utf-8")
    _write_atomic(out, data)
    return out


def figures(ranking, target, options: SearchOptions | None = None, *, index=None,
            top: int = 5, dims=DIMS, max_points: int = 2000, executor=None) -> dict:
    """The report's figures for a ranking already made, as PNG bytes.

    ``ranking`` is what :func:`~zooindex.ranking.search` returned for ``target`` (the
    :class:`~zooindex.target.Target` it searched, or a path with the same selection);
    ``options`` default to the ranking's. Returns ``{"ranking": ..., "curves": ...,
    "scatter": ...}``: the bar chart, the score against D of the ``top`` models, and
    their 3-D PCA scatters, drawn as :func:`report` draws them. The activations come
    from the cache (or the models run, as for ``report``).
    """
    options = options or ranking.options or SearchOptions()
    _check_count("--top", top)
    _check_count("--max-points", max_points)
    wanted = _dims(dims)
    matplotlib = _matplotlib()
    from .index import opened

    tgt = TargetSelection().load(target)
    with opened(index, create=False) as idx:
        panels = _panels(idx, tgt, ranking, options, top, wanted, max_points, executor,
                         False)
    names = [str(c) for c in (tgt.class_names or tgt.classes)]
    return {name: _png(fig) for name, fig in
            _figures(matplotlib, ranking, panels, names, top).items()}


def _panels(idx, tgt, ranking, options, top, wanted, max_points, executor, progress):
    """Each top model's curve and scatter, one layer's features in memory at a time."""
    from .ranking import activations

    if not ranking.ranked:
        reasons = "; ".join(f"{r.model}: {r.reason}" for r in ranking.skipped)
        raise ZooIndexError(f"no model could be ranked for {tgt.source}, so there is "
                            f"nothing to report; {reasons}")
    chosen = ranking.ranked[:top]
    labels = _labels(ranking.ranked)[:top]  # as the ranking chart names them
    panels = []
    bar = _bar(len(chosen), progress)
    for r, label in zip(chosen, labels):
        feats = activations(tgt, [r.model], index=idx, layer=r.layer, options=options,
                            executor=executor)[r.model]
        curve = score_curves({label: feats}, tgt.y, wanted, options.metric,
                             seed=options.seed)[label]
        points, codes = _scatter_points(feats, tgt.y, max_points, options.seed)
        panels.append(_Panel(label=label, rank=r.rank, score=r.score, layer=r.layer,
                             curve=curve, points=points, labels=codes))
        del feats
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return panels


def _bar(total: int, progress):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="plot", desc="plots", leave=False, dynamic_ncols=True,
                disable=None if progress is None else not progress)


def _check_writable(out: Path) -> None:
    """Refuse, before any work, a report path that cannot be written, in one line."""
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise ZooIndexError(f"cannot write the report {out}: the folder {folder} does not "
                            "exist; create it first or choose another --out")
    if not folder.is_dir():
        raise ZooIndexError(f"cannot write the report {out}: {folder} is a file, not a "
                            "folder")
    if out.is_dir():
        raise ZooIndexError(f"cannot write the report {out}: it is a folder; give a file "
                            "name ending in .html or .png")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ZooIndexError(f"cannot write the report {out}: no permission to write in "
                            f"{folder}; choose another --out")


# -- checks -------------------------------------------------------------------------


def _check_count(flag: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ZooIndexError(f"{flag} must be a positive whole number, not {value!r}")


def _dims(dims) -> list[int]:
    """The D values as sorted distinct positive ints; a clear error for anything else."""
    values = [dims] if isinstance(dims, (int, np.integer)) else list(dims)
    if not values or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1
                         for d in values):
        raise ZooIndexError(f"--dims must be positive whole numbers such as "
                            f"{','.join(map(str, DIMS))}, not {dims!r}")
    return sorted({int(d) for d in values})


def _matplotlib():
    """matplotlib, imported only now: it is an optional extra and slow to import."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from mpl_toolkits import mplot3d  # noqa: F401  (registers the 3-D projection)
    except ImportError:
        raise DependencyError("reports need matplotlib: pip install 'zooindex[plots]'",
                              package="matplotlib") from None
    return matplotlib


def _labels(chosen) -> list[str]:
    """Each row's model name, with the layer when a model has several rows (``--layer all``)."""
    names = [r.model for r in chosen]
    if len(set(names)) == len(names):
        return names
    return [f"{r.model} [{r.layer}]" for r in chosen]


def _scatter_points(features, labels, max_points: int, seed: int):
    """PCA of all samples to 3 components, then the subsample that will be drawn."""
    from .estimators import check_inputs
    from .reduce import pca

    feats, codes = check_inputs(features, labels, "report", keep_float32=True)
    reduced, _ = pca(feats, SCATTER_DIM, seed=seed)
    rows = sample_rows(codes, max_points, seed)
    return np.asarray(reduced[rows]), codes[rows]


# -- drawing ------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # no Software/date metadata: the same report gives the same bytes
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _ranking_height(ranking) -> float:
    return max(3.0, 0.8 + 0.28 * len(ranking.ranked))


def _draw_ranking(ax, ranking, top: int) -> None:
    rows = ranking.ranked
    labels = _labels(rows)
    scores = [r.score for r in rows]
    colours = [_HIGHLIGHT if i < top else _MUTED for i in range(len(rows))]
    positions = np.arange(len(rows))
    ax.barh(positions, scores, color=colours, height=0.7)
    ax.set_yticks(positions, [f"{r.rank}. {label}" for r, label in zip(rows, labels)])
    ax.invert_yaxis()  # rank 1 on top
    ax.axvline(0.0, color="black", linewidth=0.8)
    low, high = min(0.0, *scores), max(0.0, *scores)
    pad = 0.15 * ((high - low) or 1.0)
    ax.set_xlim(low - (pad if low < 0 else 0), high + pad)
    for y, s in zip(positions, scores):
        ax.annotate(f"{s:.3f}", (s, y), xytext=(3 if s >= 0 else -3, 0),
                    textcoords="offset points", va="center", ha="left" if s >= 0 else "right",
                    fontsize=8)
    ax.set_xlabel(f"{_score_label(ranking)}; higher is better")
    shown = min(top, len(rows))
    what = "model" if len(set(r.model for r in rows)) == len(rows) else "model layer"
    ax.set_title(f"Ranking of {len(rows)} {what}{'s' * (len(rows) != 1)} "
                 f"(top {shown} highlighted)")


def _score_label(ranking) -> str:
    """What the ranking's score is, in words: 'silhouette (cosine, D=10)' or
    'ensemble: mean rank among these models of logme, sfda, knn, ncti-sei (D=10)'."""
    name = ranking.scorers[0]
    members = ranking.members.get(name)
    if members:
        return (f"{name}: mean normalised rank among these models of "
                f"{', '.join(members)} (D={ranking.dim})")
    if name.startswith("silhouette"):
        return f"{name} score ({ranking.metric}, D={ranking.dim})"
    return f"{name} score (D={ranking.dim})"


def _draw_curves(ax, ranking, panels) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for panel in panels:
        ds = list(panel.curve)
        ax.plot(ds, list(panel.curve.values()), marker="o", markersize=4,
                label=f"{panel.rank}. {panel.label}")
    ax.axvline(ranking.dim, color="grey", linestyle="--", linewidth=0.8,
               label=f"D={ranking.dim} (ranking)")
    ax.set_xscale("log")
    ax.set_xticks(_ticks(ranking, panels))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("PCA dimensions D")
    ax.set_ylabel(f"silhouette score ({ranking.metric})")
    ax.set_title("Silhouette against D: crossing lines mean its ranking changes")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _ticks(ranking, panels) -> list[int]:
    """D values to label: the ranking's D and the curves' D, none too close to another.

    The D a layer was clipped to (a 14-wide layer gives 14) is labelled too, unless it
    would crowd an earlier tick on the log axis (14 next to 15).
    """
    plotted = sorted({d for p in panels for d in p.curve})
    ends = {max(p.curve) for p in panels if p.curve}
    first = [ranking.dim] + [d for d in plotted if d not in ends]
    kept: list[int] = []
    for d in first + sorted(ends):
        if all(abs(math.log(d / t)) > math.log(1.15) for t in kept):
            kept.append(d)
    return sorted(kept)


def _class_colours(matplotlib, k: int):
    name = "tab10" if k <= 10 else "tab20" if k <= 20 else "viridis"
    cmap = matplotlib.colormaps[name]
    if k <= 20:
        return [cmap(i) for i in range(k)], cmap
    return [cmap(i / (k - 1)) for i in range(k)], cmap


def _draw_scatters(matplotlib, container, panels, names, columns: int) -> None:
    """One PCA scatter per panel in a grid of ``container`` (a figure or subfigure)."""
    from matplotlib.lines import Line2D

    k = len(names)
    colours, cmap = _class_colours(matplotlib, k)
    rows = math.ceil(len(panels) / columns)
    for i, panel in enumerate(panels):
        width = panel.points.shape[1]
        three_d = width >= 3
        ax = container.add_subplot(rows, columns, i + 1,
                                   projection="3d" if three_d else None)
        # a 1-D layer is drawn on a line
        points = panel.points if width >= 2 else np.column_stack(
            [panel.points[:, 0], np.zeros(len(panel.points))])
        colour = [colours[c] for c in panel.labels]
        if three_d:
            ax.scatter(*points.T[:3], c=colour, s=6, alpha=0.7, linewidths=0,
                       depthshade=False)
        else:
            ax.scatter(*points.T[:2], c=colour, s=6, alpha=0.7, linewidths=0)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2" if width >= 2 else "")
        if three_d:
            ax.set_zlabel("PC3")
            ax.tick_params(labelsize=6)
        else:
            ax.tick_params(labelsize=7)
        layer = f" - {panel.layer}" if panel.layer and panel.layer not in panel.label else ""
        note = "" if three_d else f" ({width} component{'s' * (width != 1)})"
        ax.set_title(f"{panel.rank}. {panel.label}{layer}\nscore {panel.score:.3f}{note}",
                     fontsize=9)
    if k <= _LEGEND_CLASSES:
        handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], label=names[c])
                   for c in range(k)]
        container.legend(handles=handles, title="class", loc="outside right center",
                         fontsize=8)
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = container.colorbar(ScalarMappable(norm=Normalize(0, k - 1), cmap=cmap),
                                 ax=container.axes, shrink=0.8, pad=0.15)
        bar.set_label(f"class ({names[0]} ... {names[-1]})")


def _scatter_size(panels, columns: int) -> tuple[float, float]:
    rows = math.ceil(len(panels) / columns)
    return 4.2 * columns + 1.5, 4.0 * rows


def _whole_figure(matplotlib, ranking, panels, names, top, raced=None):
    # a full row of columns even for fewer panels, so that panels keep their size and
    # sit under the ranking from the left
    scatter_w, scatter_h = _scatter_size(panels, _SCATTER_COLUMNS)
    top_h = max(_ranking_height(ranking), 4.0)
    fig = _figure(max(scatter_w, 13.0), top_h + scatter_h + 0.6)
    title = (f"zooindex report: {ranking.target} ({ranking.n} samples, "
             f"{len(ranking.classes)} classes)")
    if raced is not None:  # what the race spent, and its advice, under the title
        title += (f"\nbudget {raced.budget}: spent {raced.fraction:.1%} of a full search's "
                  f"inference, saved {raced.saved:.1%}; {raced.advice}")
    fig.suptitle(title, fontsize=13)
    upper, lower = fig.subfigures(2, 1, height_ratios=[top_h, scatter_h])
    left, right = upper.subplots(1, 2)
    _draw_ranking(left, ranking, top)
    _draw_curves(right, ranking, panels)
    lower.suptitle("3-D PCA of each top model's layer, coloured by class", fontsize=11)
    _draw_scatters(matplotlib, lower, panels, names, _SCATTER_COLUMNS)
    return fig


# -- HTML ---------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.top td { background: #e8f0fa; }
tr.dropped td { color: #777; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
"""


def _figures(matplotlib, ranking, panels, names, top) -> dict:
    """The page's three figures: ranking bars, score against D, PCA scatters."""
    ranking_fig = _figure(8.0, _ranking_height(ranking))
    _draw_ranking(ranking_fig.add_subplot(), ranking, top)
    curves_fig = _figure(8.0, 4.5)
    _draw_curves(curves_fig.add_subplot(), ranking, panels)
    columns = min(len(panels), _SCATTER_COLUMNS)
    scatter_fig = _figure(*_scatter_size(panels, columns))
    _draw_scatters(matplotlib, scatter_fig, panels, names, columns)
    return {"ranking": ranking_fig, "curves": curves_fig, "scatter": scatter_fig}


def _page(matplotlib, ranking, panels, names, top, tgt, raced=None) -> str:
    esc = html.escape
    figs = _figures(matplotlib, ranking, panels, names, top)
    ranking_fig, curves_fig, scatter_fig = figs["ranking"], figs["curves"], figs["scatter"]

    def image(fig, alt):
        data = base64.b64encode(_png(fig)).decode("ascii")
        return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'

    shown_classes = ", ".join(names[:_LEGEND_CLASSES]) + (
        f", ... ({len(names)} in all)" if len(names) > _LEGEND_CLASSES else "")
    rows = []
    sure = ranking.confidence is not None
    for r, label in zip(ranking.ranked, _labels(ranking.ranked)):
        firm = ""
        if sure:
            low, high = r.rank_interval or ("", "")
            firm = (f'<td class="num">{low}{"" if low == high else f"–{high}"}</td>'
                    f'<td class="num">{"" if r.p_first is None else f"{r.p_first:.0%}"}</td>')
        rows.append(
            f'<tr class="{"top" if r.rank <= top else "rest"}"><td class="num">{r.rank}</td>'
            f"<td>{esc(label)}</td><td>{esc(str(r.layer))}</td>"
            f'<td class="num">{r.score:.4f}</td>{firm}<td class="num">{r.width}</td>'
            f'<td class="num">{r.components if r.components is not None else ""}</td></tr>')
    settled = ""
    if sure:
        conf = ranking.confidence
        settled = (f"<p>ranks: the 5th to 95th percentile of each row's rank over "
                   f"{conf['resamples']} stratified half-samples of the target's "
                   f"{'texts' if getattr(tgt, 'kind', 'image') == 'text' else 'images'}; "
                   "first: the share of them that rank it first.")
        if conf["sentence"]:
            settled += f' <strong class="unsettled">{esc(conf["sentence"])}</strong>'
        settled += "</p>"
    if raced is not None:
        rows += _dropped_rows(raced, esc, 6 + 2 * sure)
    skipped = "".join(f"<tr><td>{esc(r.model)}</td><td>{esc(r.reason or '')}</td></tr>"
                      for r in ranking.skipped)
    notes = "".join(f"<li>{esc(n)}</li>" for n in ranking.notes)
    title = f"zooindex report: {ranking.target}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Target</h2><ul>",
        f"<li>source: {esc(str(tgt.source))}</li>",
        f"<li>samples: {len(tgt)}"
        + (f" (the race's last round ranked on {ranking.n})" if raced is not None else "")
        + "</li>",
        f"<li>classes ({len(names)}): {esc(shown_classes)}</li>",
        f"<li>score: {esc(_score_label(ranking))}; higher is better</li></ul>",
        *_text_part(tgt, esc),
        "<h2>Ranking</h2>",
        '<table id="ranking"><thead><tr><th>rank</th><th>model</th><th>layer</th>'
        f"<th>score</th>{'<th>ranks</th><th>first</th>' if sure else ''}"
        "<th>features</th><th>D used</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
        settled,
        *(_budget_part(raced, esc) if raced is not None else []),
    ]
    if skipped:
        parts += ["<h3>Skipped</h3>", '<table id="skipped"><thead><tr><th>model</th>'
                  "<th>reason</th></tr></thead><tbody>", skipped, "</tbody></table>"]
    if notes:
        parts += ["<h3>Notes</h3><ul>", notes, "</ul>"]
    parts += [
        image(ranking_fig, "ranking bar chart"),
        "<h2>Score against D</h2>",
        "<p>The silhouette (the paper's score) of the top models when the features are "
        "reduced to D dimensions instead of the ranking's D. Lines that stay apart over a "
        "wide range of D mean the silhouette's ranking does not depend on the choice of "
        "D; crossings mark where it would change.</p>",
        image(curves_fig, "score against PCA dimensions"),
        "<h2>Features of the top models</h2>",
        f"<p>Each top model's layer reduced to 3 dimensions by PCA, at most "
        f"{max(len(p.labels) for p in panels)} samples each, coloured by class. A model "
        "that ranks high separates the classes.</p>",
        image(scatter_fig, "PCA scatter plots of the top models"),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _dropped_rows(raced, esc, columns: int) -> list[str]:
    """The models a budgeted search dropped, after its ranked rows: no rank, no score."""
    return [f'<tr class="dropped"><td class="num">–</td><td>{esc(d["model"])}</td>'
            f'<td colspan="{columns - 2}">dropped after round {d["round"]}, having seen '
            f'{d["images"]} {raced.samples}</td></tr>' for d in raced.dropped]


def _budget_part(raced, esc) -> list[str]:
    """What a budgeted search spent and saved, its rounds and its advice."""
    rounds = "".join(
        f'<tr><td class="num">{i}</td><td class="num">{r["models"]}</td>'
        f'<td class="num">{r["per_class"]}</td><td class="num">{r["images"]}</td>'
        f'<td>{esc(", ".join(r["top"]))}</td><td>{esc(", ".join(r["dropped"]))}</td></tr>'
        for i, r in enumerate(raced.rounds, 1))
    what = raced.samples
    return [
        '<h2 id="budget">Budget</h2>',
        f"<p>{esc(raced.summary[0].upper() + raced.summary[1:])}.</p>",
        f"<p>The ranking above is the last round's, on the {raced.rounds[-1]['images']} "
        f"{what} its models saw; the figures below are drawn for those models on those "
        f"{what}.</p>",
        f'<table id="rounds"><thead><tr><th>round</th><th>models</th><th>{what} per '
        f'class</th><th>{what} each</th><th>top {raced.k} then</th><th>dropped after it'
        f"</th></tr></thead><tbody>{rounds}</tbody></table>",
        f'<p><strong class="advice">{esc(raced.advice[0].upper() + raced.advice[1:])}.'
        "</strong></p>",
    ]


def _text_part(tgt, esc) -> list[str]:
    """A text target's samples per class and a few of its texts (none for images)."""
    from .text import target_summary

    info = target_summary(tgt)
    if not info:
        return []
    counts = ", ".join(f"{esc(k)} {v}" for k, v in (info.get("counts") or {}).items())
    rows = "".join(f"<tr><td>{esc(s['label'])}</td><td>{esc(s['text'])}</td></tr>"
                   for s in info["samples"])
    return ([f"<p>{'Text pairs' if info['pairs'] else 'Texts'}"
             + (f"; samples per class: {counts}" if counts else "") + "</p>"]
            + ['<table id="texts"><thead><tr><th>label</th><th>text</th></tr></thead>'
               f"<tbody>{rows}</tbody></table>"])


# -- output -------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Write next to ``path``, then rename over it: readers never see half a report."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # 0o666 lets the umask decide, as for any file the user creates
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ZooIndexError(f"cannot write the report {path}: "
                            f"{exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["report", "figures", "score_curves", "sample_rows", "FORMATS", "DIMS"]
