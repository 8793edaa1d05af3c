"""Reproduce the neuralRank paper's Tables 2-6 and Figures 2-3 on this project's zoo.

    python -m models.reproduce [--zoo models/zoo] [--data DIR] [--out models/RESULTS.md]

Everything goes through zooindex's public API (``add``, ``search``, ``evaluate``,
``features``, ``zooindex.report.score_curves``), as a user would run it, into a fresh
temporary index unless ``--index`` names one. Each table prints the paper's numbers
beside ours, and the rank correlations (Kendall's tau, weighted tau, Spearman's rho)
between our scores and our accuracies and between our ranking and the paper's.

The zoo may be incomplete (it takes hours to train on a small machine): the script uses
the models that exist and marks the others as missing. What each model measured is kept
in a JSON file under ``models/.cache/`` keyed by the model's content hash and the
targets' fingerprints, so a later run measures only the models that are new.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ZOO = HERE / "zoo"
DEFAULT_OUT = HERE / "RESULTS.md"
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
LOW = [0, 1, 2, 3, 4]
HIGH = [5, 6, 7, 8, 9]
MISSING = "missing"

# the zoo's file stems and the paper's names for them (Table 1, Table 5's lite, Table 6's 512)
NINE = ["mnist-all", "mnist-0-4", "mnist-5-9", "fashion-all", "fashion-0-4", "fashion-5-9",
        "cifar10-all", "cifar10-0-4", "cifar10-5-9"]
LITE = [f"{m}-lite" for m in NINE]
WIDE_512 = ["fashion-all-512", "fashion-0-4-512", "cifar10-all-512", "cifar10-0-4-512",
            "cifar10-5-9-512"]
TWINS_1024 = ["fashion-all", "fashion-0-4", "cifar10-all", "cifar10-0-4", "cifar10-5-9"]
_SHORT = {"mnist": "M", "fashion": "F", "cifar10": "C"}


def paper_name(model: str) -> str:
    """The paper's symbol for a zoo model: ``fashion-0-4-lite`` -> ``F0-4 (lite)``."""
    data, _, rest = model.partition("-")
    suffix = ""
    for tag in ("-lite", "-512"):
        if rest.endswith(tag):
            rest, suffix = rest[: -len(tag)], f" ({tag[1:]})"
    return f"{_SHORT.get(data, data)}{'10' if rest == 'all' else rest}{suffix}"


# The paper's numbers, transcribed from its tables.
PAPER_TABLE2 = {  # MNIST 0-4 target, score at L0..L5
    "mnist-all": [0.346, 0.361, 0.396, 0.480, 0.548, 0.784],
    "mnist-0-4": [0.346, 0.369, 0.409, 0.477, 0.544, 0.821],
    "mnist-5-9": [0.346, 0.360, 0.393, 0.391, 0.455, 0.463],
    "fashion-all": [0.346, 0.306, 0.343, 0.275, 0.359, 0.248],
    "fashion-0-4": [0.346, 0.328, 0.366, 0.257, 0.356, 0.276],
    "fashion-5-9": [0.346, 0.276, 0.315, 0.272, 0.350, 0.210],
    "cifar10-all": [0.346, 0.329, 0.367, 0.313, 0.368, 0.293],
    "cifar10-0-4": [0.346, 0.351, 0.380, 0.337, 0.394, 0.315],
    "cifar10-5-9": [0.346, 0.324, 0.361, 0.325, 0.389, 0.303],
}
PAPER_TABLE3 = dict(zip(NINE, [0.099, 0.081, 0.061, 0.499, 0.540, 0.082, 0.212, 0.182, 0.180]))
PAPER_TABLE4 = dict(zip(NINE, [0.862, 0.871, 0.859, 0.942, 0.943, 0.875, 0.892, 0.886, 0.883]))
PAPER_TABLE5 = {  # lite models: (MNIST score, MNIST accuracy, Fashion score, Fashion accuracy)
    m: v for m, v in zip(LITE, [
        (0.671, 0.998, 0.174, 0.881), (0.723, 0.998, 0.134, 0.864),
        (0.419, 0.992, 0.107, 0.868), (0.226, 0.987, 0.418, 0.939),
        (0.231, 0.975, 0.436, 0.939), (0.189, 0.977, 0.170, 0.878),
        (0.301, 0.986, 0.235, 0.883), (0.305, 0.982, 0.195, 0.855),
        (0.304, 0.986, 0.212, 0.876)])}
PAPER_TABLE6 = {  # Fashion 0-4 target: (score, accuracy), as printed in Table 6
    m: v for m, v in zip(TWINS_1024 + WIDE_512, [
        (0.499, 0.940), (0.540, 0.940), (0.212, 0.893), (0.182, 0.881), (0.180, 0.879),
        (0.476, 0.946), (0.561, 0.946), (0.191, 0.851), (0.185, 0.863), (0.160, 0.868)])}


# -- the zoo ------------------------------------------------------------------------


def available_models(zoo) -> dict[str, Path]:
    """Model name -> file for every finished model of the zoo folder.

    The zoo builder writes each ``.onnx`` through a temporary name, so a file with the
    final name is complete even while the build is still running.
    """
    zoo = Path(zoo)
    return {p.stem: p for p in sorted(zoo.glob("*.onnx"))}


def source_accuracy(path) -> float | None:
    """A model's accuracy on its own training task, from its metadata or the manifest."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        if "zooindex.source_accuracy" in meta:
            return float(meta["zooindex.source_accuracy"])
    except Exception:  # an unreadable file is reported by zooindex.add, not here
        pass
    manifest = path.parent / "manifest.json"
    if manifest.exists():
        entry = json.loads(manifest.read_text()).get("models", {}).get(path.stem, {})
        if entry.get("test_accuracy") is not None:
            return float(entry["test_accuracy"])
    return None


def paper_layers(layers, default_layer: str | None) -> list[str]:
    """The layers named L0, L1, ... in the paper's Figure 1, from a model's candidates.

    Mapped by kind and order, never by name: L0 is the input, then every conv and pool
    output in graph order, then the default (last hidden dense) layer. The paper network
    gives six (L0-L5), the lite one four (L0-L3). The logits are not a paper layer.
    """
    ordered = sorted(layers, key=lambda l: l.position)
    default = next((l for l in ordered if l.name == default_layer), None)
    out = [l.name for l in ordered if l.kind == "input"][:1]
    stop = default.position if default else float("inf")
    out += [l.name for l in ordered
            if l.kind in ("conv", "pool") and l.position < stop]
    if default is not None:
        out.append(default.name)
    return out


# -- measuring, with a cache of what was measured -----------------------------------


class Measurements:
    """A JSON file of per-model measurements, keyed by model hash and target fingerprints.

    Lets an interrupted or repeated run skip models already measured; a retrained model
    (new hash) or another target (new fingerprint) is measured again.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.data = {}
        if self.path and self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # another run may have added entries since this one read the file: keep them
        if self.path.exists():
            try:
                self.data = {**json.loads(self.path.read_text()), **self.data}
            except ValueError:
                pass
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".json.tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


# Bumped when zooindex computes the same scores differently; stored scores of an older
# version are recomputed (accuracies stay). 2: exact PCA (was randomized on wide layers).
SCORES_VERSION = 2


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def evaluate_models(names, *, train, test, index, store: Measurements, scorers=("silhouette",),
                    seed: int = 0, log=print) -> dict[str, dict]:
    """Score and transfer accuracy of each model, one :func:`zooindex.evaluate` per model.

    One model at a time, so that each model's search time and retraining time are
    measured on their own and a run can resume. Returns ``{model: record}`` with the
    scores, the accuracy, the per-estimator seconds, ``search_seconds`` (run the test
    split through the model and score it) and ``transfer_seconds`` (run the training
    split through it and retrain the logits).
    """
    import zooindex

    shas = {m["name"]: m["sha256"] for m in zooindex.ls(index=index)}
    out = {}
    for name in names:
        key = _key(shas[name], train.key, test.key, ",".join(scorers), seed, "evaluate")
        record = store.get(key)
        if record is None:
            log(f"  evaluating {name} ...")
            ev = zooindex.evaluate(train=train, test=test, index=index, scorers=scorers,
                                   models=[name], seed=seed)
            m = ev.models[0]
            record = {"model": name, "status": m.status, "reason": m.reason,
                      "accuracy": m.accuracy, "scores": m.scores, "timings": m.timings,
                      "layer": m.layer, "search_seconds": ev.search_seconds,
                      "transfer_seconds": ev.transfer_seconds}
            record["scores_version"] = SCORES_VERSION
            store.put(key, record)
        elif record.get("scores_version", 1) != SCORES_VERSION and record["status"] == "ok":
            log(f"  re-scoring {name} ...")
            ranking = zooindex.search(test, index=index, scorers=scorers, models=[name],
                                      seed=seed)
            record = {**record, "scores": ranking.ranked[0].scores,
                      "scores_version": SCORES_VERSION}
            store.put(key, record)
        out[name] = record
    return out


def layer_scores(names, target, *, index, store: Measurements, seed: int = 0,
                 log=print) -> dict[str, list[float]]:
    """Score of each model at every paper layer L0, L1, ... for ``target`` (Table 2)."""
    import zooindex

    out = {}
    for name in names:
        sha = zooindex.show(name, index=index)["sha256"]
        key = _key(sha, target.key, seed, "layers")
        record = store.get(key)
        if record is None:
            log(f"  layer sweep {name} ...")
            ranking = zooindex.search(target, index=index, layer="all", models=[name],
                                      seed=seed)
            by_layer = {r.layer: r.score for r in ranking.ranked}
            order = paper_layers(zooindex.layers(name, index=index),
                                 zooindex.show(name, index=index)["default_layer"])
            record = [by_layer.get(layer) for layer in order]
            store.put(key, record)
        out[name] = record
    return out


# -- tables -------------------------------------------------------------------------


def markdown_table(headers: list[str], rows: list[list]) -> str:
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


def table2(ours: dict[str, list], accuracies: dict | None = None, models=NINE) -> str:
    """Scores at L0..L5 for the MNIST 0-4 target, paper / ours per cell.

    ``accuracies`` (our transfer accuracy of each model on MNIST 0-4) adds, per layer,
    the correlation of our scores with them.
    """
    rows = []
    for m in models:
        paper = PAPER_TABLE2[m]
        mine = ours.get(m)
        cells = [f"{p:.3f} / {MISSING if mine is None else _fmt(mine[i] if i < len(mine) else None)}"
                 for i, p in enumerate(paper)]
        rows.append([m, paper_name(m), *cells])
    body = markdown_table(["model", "paper", *[f"L{i} paper / ours" for i in range(6)]], rows)
    pairs = []
    for i in range(6):
        mine = {m: ours[m][i] for m in models if m in ours and i < len(ours[m])}
        paper = {m: PAPER_TABLE2[m][i] for m in models}
        if i:  # L0 is the same for every model: no ranking to compare
            pairs.append((f"L{i}: our scores vs the paper's", mine, paper))
            if accuracies:
                pairs.append((f"L{i}: our scores vs our accuracies", mine, accuracies))
    return body + "\n\n" + correlation_table(pairs)


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _score(records: dict, m: str):
    r = records.get(m)
    return None if r is None or r.get("status") != "ok" else r["scores"].get("silhouette")


def _acc(records: dict, m: str):
    r = records.get(m)
    return None if r is None or r.get("status") != "ok" else r["accuracy"]


def score_accuracy_table(records: dict, models, paper_scores: dict, paper_accs: dict) -> str:
    """Score and transfer accuracy, paper beside ours, with ranks and correlations."""
    ours_s = {m: _score(records, m) for m in models}
    ours_a = {m: _acc(records, m) for m in models}
    rs_p, rs_o = ranks(paper_scores), ranks(ours_s)
    ra_p, ra_o = ranks(paper_accs), ranks(ours_a)
    rows = []
    for m in models:
        present = m in records
        rows.append([m, paper_name(m), paper_scores.get(m),
                     ours_s[m] if present else MISSING, rs_p.get(m), rs_o.get(m),
                     paper_accs.get(m), ours_a[m] if present else MISSING,
                     ra_p.get(m), ra_o.get(m)])
    body = markdown_table(["model", "paper", "score (paper)", "score (ours)",
                           "rank (paper)", "rank (ours)", "accuracy (paper)",
                           "accuracy (ours)", "acc. rank (paper)", "acc. rank (ours)"], rows)
    pairs = [("our scores vs our accuracies", ours_s, ours_a),
             ("paper's scores vs paper's accuracies", paper_scores, paper_accs),
             ("our scores vs the paper's scores", ours_s, paper_scores),
             ("our accuracies vs the paper's accuracies", ours_a, paper_accs)]
    return body + "\n\n" + correlation_table(pairs)


def table5(mnist: dict, fashion: dict) -> str:
    parts = []
    for title, records, col in (("MNIST 0-4", mnist, 0), ("Fashion 0-4", fashion, 2)):
        paper_s = {m: PAPER_TABLE5[m][col] for m in LITE}
        paper_a = {m: PAPER_TABLE5[m][col + 1] for m in LITE}
        parts.append(f"**Target {title}**\n\n"
                     + score_accuracy_table(records, LITE, paper_s, paper_a))
    return "\n\n".join(parts)


def table6(fashion: dict) -> str:
    models = TWINS_1024 + WIDE_512
    return score_accuracy_table(fashion, models, {m: PAPER_TABLE6[m][0] for m in models},
                                {m: PAPER_TABLE6[m][1] for m in models})


def cost_table(records: dict) -> tuple[str, float | None]:
    """Wall time of ranking vs retraining the logits, per model and over the zoo."""
    ok = {m: r for m, r in records.items() if r.get("status") == "ok"}
    rows = [[m, r["search_seconds"], r["transfer_seconds"],
             r["transfer_seconds"] / r["search_seconds"] if r["search_seconds"] else None]
            for m, r in ok.items()]
    search = sum(r["search_seconds"] for r in ok.values())
    transfer = sum(r["transfer_seconds"] for r in ok.values())
    ratio = transfer / search if search else None
    rows.append(["**whole zoo**", search, transfer, ratio])
    table = markdown_table(["model", "search s (rank)", "retrain logits s (evaluate)",
                            "retrain / search"], [[r[0], *(_secs(v) for v in r[1:3]),
                                                   None if r[3] is None else f"{r[3]:.1f}×"]
                                                  for r in rows])
    return table, ratio


def _secs(v) -> str:
    return "–" if v is None else f"{v:.1f}"


# -- figures ------------------------------------------------------------------------


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


# -- the whole reproduction ---------------------------------------------------------


@dataclass
class Settings:
    train_limit: int | None = 5_000
    layer_limit: int | None = 1_000
    scatter_limit: int = 1_000
    dims: tuple = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 75, 100)
    seed: int = 0
    notes: list = field(default_factory=list)


def data_sources(data_dir) -> dict[str, Path]:
    data_dir = Path(data_dir)
    return {"mnist": data_dir / "mnist", "fashion": data_dir / "fashion-mnist"}


def reproduce(zoo=DEFAULT_ZOO, data=DEFAULT_DATA, out=DEFAULT_OUT, *, index=None,
              cache_dir=DEFAULT_CACHE, settings: Settings | None = None,
              sources: dict | None = None, log=print) -> Path:
    """Measure everything on the models that exist and write ``out`` with its figures.

    ``sources`` maps ``mnist`` and ``fashion`` to targets with train and test splits
    (default: the IDX folders under ``data``).
    """
    import zooindex
    from zooindex.reporting import score_curves

    s = settings or Settings()
    out = Path(out)
    figures = out.parent / "figures"
    sources = sources or data_sources(data)
    models = available_models(zoo)
    started = time.perf_counter()
    tmp = None
    if index is None:
        tmp = tempfile.TemporaryDirectory(prefix="zooindex-reproduce-")
        index = Path(tmp.name) / "index.db"
    store = Measurements(Path(cache_dir) / "reproduce-measurements.json" if cache_dir else None)
    try:
        if models:
            zooindex.add(list(models.values()), index=index)
        names = set(models)
        log(f"{len(models)} models in {zoo}: {', '.join(sorted(models)) or '(none)'}")

        def target(name, split, limit=None, classes=LOW):
            return zooindex.load_target(str(sources[name]), split=split, classes=classes,
                                        limit=limit, seed=s.seed)

        mnist_test, mnist_train = target("mnist", "test"), target("mnist", "train",
                                                                  s.train_limit)
        fashion_test, fashion_train = target("fashion", "test"), target("fashion", "train",
                                                                        s.train_limit)
        everything = [m for m in NINE + LITE + WIDE_512 if m in names]
        log("Table 2: layer sweep, MNIST 0-4")
        t2 = layer_scores([m for m in NINE if m in names],
                          target("mnist", "test", s.layer_limit), index=index, store=store,
                          seed=s.seed, log=log)
        log("Tables 3, 4, 5, 6: Fashion 0-4")
        fashion = evaluate_models(everything, train=fashion_train, test=fashion_test,
                                  index=index, store=store, seed=s.seed, log=log)
        log("Table 5: MNIST 0-4")
        mnist = evaluate_models([m for m in NINE + LITE if m in names], train=mnist_train,
                                test=mnist_test, index=index, store=store, seed=s.seed,
                                log=log)

        nine_scores = {m: _score(fashion, m) for m in NINE if _score(fashion, m) is not None}
        order = sorted(nine_scores, key=lambda m: -nine_scores[m])
        log("Figure 2: score against D")
        curves = {}
        for m in order[:5]:
            feats = zooindex.features(fashion_test, m, index=index)
            curves[f"{ranks(nine_scores)[m]}. {paper_name(m)}"] = score_curves(
                {m: feats}, fashion_test.y, s.dims, seed=s.seed)[m]
            del feats
        fig2 = figure2(curves, figures / "figure2-score-vs-d.png",
                       "Fashion 0-4 target: score at L5 against D, top five of our Table 3") \
            if curves else None
        log("Figure 3: PCA scatter")
        fig3, fig3_models = _figure3(order, index, target("fashion", "test", s.scatter_limit),
                                     figures / "figure3-pca.png", s.seed)
        text = _document(models=models, zoo=zoo, t2=t2, fashion=fashion, mnist=mnist,
                         fig2=fig2, fig3=fig3, fig3_models=fig3_models, out=out, s=s,
                         seconds=time.perf_counter() - started,
                         sizes=(len(mnist_test), len(mnist_train), len(fashion_test),
                                len(fashion_train)))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def _figure3(order, index, tgt, path, seed):
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
        from .data import IDX_CLASS_NAMES  # IDX files carry no names

        fashion = IDX_CLASS_NAMES["fashion-mnist"]
        names = [f"{c} {fashion[c]}" for c in tgt.classes]
    return figure3(panels, names, path), picks


def _shown(path) -> str:
    """A path relative to the repository when it lies inside it, as the docs show it."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _document(*, models, zoo, t2, fashion, mnist, fig2, fig3, fig3_models, out, s, seconds,
              sizes) -> str:
    missing = [m for m in NINE + LITE + WIDE_512 if m not in models]
    mnist_test_n, mnist_train_n, fashion_test_n, fashion_train_n = sizes
    accs = {m: source_accuracy(p) for m, p in models.items()}
    lines = [
        "# The neuralRank paper reproduced on this project's zoo",
        "",
        f"_Written by `python -m models.reproduce` on {time.strftime('%Y-%m-%d %H:%M %Z')} "
        f"in {seconds / 60:.1f} min (measurements cached from earlier runs are reused)._",
        "",
        "## What was run",
        "",
        f"- Zoo: `{_shown(zoo)}`, {len(models)} of the paper's 23 models "
        f"({', '.join(sorted(models)) or 'none'}).",
    ]
    if missing:
        lines.append(f"- **Missing** (not trained yet when this ran, marked `{MISSING}` or `–` "
                     f"below): {', '.join(missing)}.")
    lines += [
        "- Models: the paper's network (Figure 1) trained with Adam (lr 0.001), batch 100, "
        f"for **{_epochs(zoo)} epochs** (the paper does not say how long it trained); see "
        "`models/README.md`. Accuracy of each model on its own test classes (epochs): "
        + ", ".join(f"{m} {a:.4f} ({_epochs(zoo, m)})" for m, a in accs.items()
                    if a is not None) + ".",
        "- CIFAR-10 models are trained on **CIFAR-10 (JPEG copy)**, converted to 28x28 grey; "
        "the JPEG compression makes the images slightly different from the original CIFAR-10.",
        "- Score: zooindex's neuralRank score (activations of the layer, PCA to D=10, "
        "silhouette coefficient with cosine distance); higher is better.",
        f"- Targets: the **test** split, classes 0-4 ({mnist_test_n} MNIST images, "
        f"{fashion_test_n} Fashion-MNIST images). Table 2 uses a stratified, seeded "
        f"subsample of {s.layer_limit} of the MNIST ones: the conv layers are up to "
        "25,088 wide, and PCA of all of them would take minutes per model on this machine.",
        "- Transfer accuracy (`zooindex.evaluate`): the logits retrained on frozen "
        "features (logistic regression on the standardised last hidden dense layer), "
        + (f"trained on a stratified, seeded **{s.train_limit:,}-image subsample** of the "
           "training split" if s.train_limit else "trained on the whole training split")
        + f", classes 0-4 (MNIST {mnist_train_n}, Fashion {fashion_train_n} images"
        + ("; subsampled to keep the run short" if s.train_limit else "")
        + "), tested on the whole test split above. The paper "
        "retrains the logits layer by gradient descent on the full training split.",
        "- Rank correlations: Kendall's τ, weighted τ (`scipy.stats.weightedtau`, which "
        "weighs the top of the ranking most) and Spearman's ρ over the models present "
        "in both columns; `–` where fewer than two models are present or a column is "
        "constant.",
        "",
        "## Table 2: score at each layer, target MNIST 0-4",
        "",
        "Layers L0-L5 as in the paper's Figure 1 (L0 input, L1 conv1+ReLU, L2 pool1, "
        "L3 conv2+ReLU, L4 pool2, L5 dense 1024), found from each model's graph by kind and "
        "order. Each cell: paper / ours. Below it, per layer, our scores against the "
        "paper's, and against our transfer accuracy of the same models on MNIST 0-4 "
        "(measured as for Table 5).",
        "",
        table2(t2, {m: _acc(mnist, m) for m in NINE if _acc(mnist, m) is not None}),
        "",
        _table2_comment(t2),
        "",
        "## Tables 3 and 4: score at L5 and transfer accuracy, target Fashion 0-4",
        "",
        score_accuracy_table(fashion, NINE, PAPER_TABLE3, PAPER_TABLE4),
        "",
        _fashion_comment(fashion),
        "",
        "## Table 5: lite models (no second conv/pool; the score at their L3), "
        "targets MNIST 0-4 and Fashion 0-4",
        "",
        table5(mnist, fashion),
        "",
        "## Table 6: 512-unit models beside their 1024-unit twins, target Fashion 0-4",
        "",
        table6(fashion),
        "",
        "## Figure 2: score against D",
        "",
    ]
    if fig2:
        lines += [f"![score against D]({os.path.relpath(fig2, out.parent)})", "",
                  "The top five models of our Table 3, score at L5 for D from 2 to 100. "
                  "Lines that do not cross keep the ranking whatever D is used."]
    else:
        lines.append("Not drawn: no model of Table 3 exists yet.")
    lines += ["", "## Figure 3: 3-D PCA of L0, L2 and L5", ""]
    if fig3:
        picked = ", ".join(f"rank {r} {paper_name(m)}" for r, m in fig3_models)
        lines += [f"![PCA scatter]({os.path.relpath(fig3, out.parent)})", "",
                  f"Fashion 0-4 test images ({s.scatter_limit}, stratified), projected on "
                  f"the first three principal components of each layer, coloured by class, "
                  f"for {picked} of our Table 3 (the paper shows ranks 1, 3 and 7; with "
                  "fewer than seven models the lowest rank stands in for 7)."]
    else:
        lines.append("Not drawn: no model of Table 3 exists yet.")
    table, ratio = cost_table(fashion)
    lines += ["", "## Ranking cost: search vs retraining the logits", "",
              "Wall time per model on the Fashion 0-4 target, measured by "
              "`zooindex.evaluate` one model at a time on a fresh index: *search* runs the "
              f"{fashion_test_n} test images through the model and scores them; *retrain* "
              f"runs the {fashion_train_n} training images through it and fits the logits "
              "(it reuses the test activations the search cached, so it is if anything "
              "understated). The machine's two cores were shared with the zoo's training "
              "while this ran, so the absolute seconds are inflated; the ratio is the "
              "meaningful number.", "", table, ""]
    if ratio:
        lines.append(f"Ranking the zoo by score took **{ratio:.1f}× less** wall time than "
                     "retraining every model's logits to measure its accuracy.")
    return "\n".join(lines) + "\n"


def _epochs(zoo, model: str | None = None) -> str:
    """Epochs the zoo's models (or one model) were trained for, from the manifest."""
    manifest = Path(zoo) / "manifest.json"
    if not manifest.exists():
        return "?"
    entries = json.loads(manifest.read_text()).get("models", {})
    entries = [entries.get(model, {})] if model else entries.values()
    return " or ".join(str(e) for e in sorted({e.get("epochs") for e in entries
                                             if e.get("epochs") is not None})) or "?"


def _table2_comment(t2: dict) -> str:
    if not t2:
        return "No model of Table 1 exists yet."
    mnist_models = [m for m in NINE[:3] if m in t2]
    others = [m for m in NINE[3:] if m in t2]
    lines = []
    last = {m: t2[m][-1] for m in t2 if t2[m] and t2[m][-1] is not None}
    if last:
        top = sorted(last, key=lambda m: -last[m])[:3]
        lines.append(f"Our top three at L5: {', '.join(paper_name(m) for m in top)}.")
    if mnist_models and others:
        gaps = []
        for i in range(6):
            a = [t2[m][i] for m in mnist_models if i < len(t2[m]) and t2[m][i] is not None]
            b = [t2[m][i] for m in others if i < len(t2[m]) and t2[m][i] is not None]
            if a and b:
                gaps.append(f"L{i} {np.mean(a) - np.mean(b):+.3f}")
        lines.append("Mean score of the MNIST models minus that of the others, per layer: "
                     + ", ".join(gaps) + ". The paper's point is that this contrast is "
                     "sharpest at L5.")
    lines.append("Our L0 (the raw pixels) differs from the paper's 0.346 because the "
                 "subsample differs and the paper's exact input scaling is not stated.")
    return " ".join(lines)


def _fashion_comment(fashion: dict) -> str:
    scores = {m: _score(fashion, m) for m in NINE if _score(fashion, m) is not None}
    if not scores:
        return "No model of Table 1 exists yet."
    ours = sorted(scores, key=lambda m: -scores[m])
    paper = [m for m in sorted(PAPER_TABLE3, key=lambda m: -PAPER_TABLE3[m]) if m in scores]
    same = ours == paper
    text = (f"Our ranking by score: {', '.join(paper_name(m) for m in ours)}; the paper's, "
            f"restricted to the same models: {', '.join(paper_name(m) for m in paper)}"
            f" ({'the same order' if same else 'they differ'}). ")
    foreign = [m for m in ours if not m.startswith("fashion")]
    if foreign and len(foreign) < len(ours):
        best = foreign[0]
        text += (f"The best model from another domain is {paper_name(best)} at rank "
                 f"{ours.index(best) + 1} (in the paper's Table 3, C10 at rank 3, far above "
                 "F5-9; its text names C0-4). ")
    accs = {m: _acc(fashion, m) for m in ours}
    rest = [accs[m] for m in ours if m not in ("fashion-all", "fashion-0-4")]
    if len(rest) >= 2:
        text += (f"Apart from F10 and F0-4, our accuracies lie within "
                 f"{100 * (max(rest) - min(rest)):.1f} points of each other "
                 f"({min(rest):.3f}-{max(rest):.3f}; the paper's within 3.3), so their "
                 "order, and with it the correlations, is sensitive to small changes of "
                 "the retraining; a score that separates the top two from the rest, as "
                 "ours does, is what a user choosing a model needs. ")
    text += ("Our accuracies come from logistic regression on frozen features with a "
             "subsampled training split, the paper's from retraining the logits layer, so "
             "absolute accuracies differ by up to a few points; the models were also "
             "trained for only one or two epochs, which changes how specialised their L5 "
             "features are and hence the absolute scores.")
    if len(scores) < len(NINE):
        text += (f" Only {len(scores)} of the nine models existed when this ran, so the "
                 "correlations rest on few models.")
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default=str(DEFAULT_ZOO), help="folder of the zoo's .onnx files")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder with mnist/ and fashion-mnist/ (IDX files)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the markdown file to write")
    parser.add_argument("--index", default=None,
                        help="index to use (default: a fresh temporary one, so that the "
                             "timings are those of a cold search)")
    parser.add_argument("--train-limit", type=int, default=5_000,
                        help="training images for the logits (stratified subsample)")
    parser.add_argument("--layer-limit", type=int, default=1_000,
                        help="test images for the layer sweep of Table 2")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure every model again instead of reusing "
                             "models/.cache/reproduce-measurements.json")
    args = parser.parse_args(argv)
    settings = Settings(train_limit=args.train_limit, layer_limit=args.layer_limit)
    path = reproduce(args.zoo, args.data, args.out, index=args.index, settings=settings,
                     cache_dir=None if args.no_cache else DEFAULT_CACHE)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
