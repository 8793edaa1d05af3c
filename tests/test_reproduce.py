"""The paper's reproduction: layer mapping, tables beside the paper's numbers, a tiny run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import onnx_factory
import zooindex
from models import reproduce as rp
from zooindex.layer import Layer

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def test_paper_names():
    assert rp.paper_name("mnist-all") == "M10"
    assert rp.paper_name("fashion-0-4-lite") == "F0-4 (lite)"
    assert rp.paper_name("cifar10-5-9-512") == "C5-9 (512)"


def test_paper_layers_follow_kind_and_position_not_names():
    # names chosen to mislead: order must come from position, roles from kind
    layers = [Layer(name, "op", kind, (), None, position) for name, kind, position in [
        ("zz_dense", "dense", 9), ("a_pool", "pool", 6), ("logits", "dense", 10),
        ("b_conv", "conv", 2), ("img", "input", 0), ("c_pool", "pool", 3),
        ("d_conv", "conv", 5)]]
    assert rp.paper_layers(layers, "zz_dense") == ["img", "b_conv", "c_pool", "d_conv", "a_pool",
                                       "zz_dense"]


def test_paper_layers_of_an_indexed_lite_network(tmp_path):
    # input -> conv1 -> pool1 -> fc1 (hidden dense): the lite network's L0..L3
    path = tmp_path / "lite.onnx"
    onnx_factory.save(onnx_factory.cnn(), path)
    index = tmp_path / "i.db"
    zooindex.add(path, index=index)
    layers = zooindex.layers("lite", index=index)
    default = zooindex.show("lite", index=index)["default_layer"]
    mapped = rp.paper_layers(layers, default)
    kinds = {l.name: l.kind for l in layers}
    assert len(mapped) == 4
    assert [kinds[n] for n in mapped] == ["input", "conv", "pool", "dense"]
    assert mapped[-1] == default


def _records(scores, accs):
    return {m: {"status": "ok", "scores": {"silhouette": s}, "accuracy": a,
                "search_seconds": 1.0, "transfer_seconds": 10.0}
            for m, s, a in zip(rp.NINE, scores, accs)}


def test_table_3_4_shows_both_and_correlations():
    # our scores order the first five models exactly as our accuracies do:
    # Kendall tau = weighted tau = Spearman = 1 on the five present
    records = _records([0.5, 0.4, 0.3, 0.2, 0.1], [0.95, 0.9, 0.85, 0.8, 0.75])
    text = rp.score_accuracy_table(records, rp.NINE, rp.PAPER_TABLE3, rp.PAPER_TABLE4)
    assert "| 0.540 |" in text and "| 0.943 |" in text          # the paper's F0-4
    assert "| 0.500 |" in text and "| 0.750 |" in text          # ours
    row = next(l for l in text.splitlines() if l.startswith("| our scores vs our acc"))
    assert row.split("|")[2:6] == [" 1.000 ", " 1.000 ", " 1.000 ", " 5 "]
    # models 6..9 are absent: marked, and left out of the correlations
    assert text.count("| missing |") == 2 * 4
    paper_row = next(l for l in text.splitlines() if l.startswith("| paper's scores"))
    assert paper_row.rstrip().endswith("| 9 |")


def test_cost_table_ratio():
    records = _records([0.5, 0.4], [0.9, 0.8])
    table, ratio = rp.cost_table(records)
    assert ratio == pytest.approx(10.0)  # 20 s of retraining over 2 s of search
    assert "10.0×" in table


def test_table2_cells_and_layer_correlations():
    ours = {m: list(v) for m, v in rp.PAPER_TABLE2.items() if m != "cifar10-5-9"}
    text = rp.table2(ours, {m: v[-1] for m, v in ours.items()})
    assert "0.784 / 0.784" in text and "0.303 / missing" in text
    # identical to the paper at L5 over the eight present: every correlation is 1
    row = next(l for l in text.splitlines() if l.startswith("| L5: our scores vs the paper"))
    assert row.split("|")[2:6] == [" 1.000 ", " 1.000 ", " 1.000 ", " 8 "]
    assert "| L3: our scores vs our accuracies |" in text


@pytest.fixture
def tiny(tmp_path):
    """Three demo models as a zoo, and the demo target split into train and test."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for m in ("fashion-0-4", "mnist-all", "cifar10-all"):
        shutil.copy(DEMO / f"{m}.onnx", zoo)
    with np.load(DEMO / "fashion-0-4-target.npz") as z:
        x, y = z["x"], z["y"]
    data = tmp_path / "fashion.npz"
    np.savez(data, x_train=x[:300], y_train=y[:300], x_test=x[300:550], y_test=y[300:550])
    return zoo, {"mnist": data, "fashion": data}


def test_reproduce_on_a_tiny_zoo(tiny, tmp_path):
    zoo, sources = tiny
    out = tmp_path / "out" / "RESULTS.md"
    settings = rp.Settings(train_limit=None, layer_limit=60, scatter_limit=60,
                           dims=(2, 5, 10))
    lines = []
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    text = out.read_text()
    for heading in ("## Table 2", "## Tables 3 and 4", "## Table 5", "## Table 6",
                    "## Figure 2", "## Figure 3", "## Ranking cost"):
        assert heading in text
    assert "0.540" in text and "0.943" in text  # the paper's F0-4 beside ours
    assert "**Missing**" in text and "mnist-0-4" in text
    assert (out.parent / "figures" / "figure2-score-vs-d.png").stat().st_size > 1000
    assert (out.parent / "figures" / "figure3-pca.png").stat().st_size > 1000
    # the Fashion-trained model ranks first on the Fashion target, as in the paper
    row = next(l for l in text.split("## Tables 3 and 4")[1].splitlines()
               if l.startswith("| fashion-0-4 |"))
    assert row.split("|")[6].strip() == "1"
    # a second run measures nothing again
    lines.clear()
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    assert not [l for l in lines if l.startswith("  ")]  # "  evaluating m ...", etc.
    # scores stored by an older scores version are recomputed; accuracies are kept
    cache = tmp_path / "cache" / "reproduce-measurements.json"
    stored = json.loads(cache.read_text())
    evaluated = {k: v for k, v in stored.items() if isinstance(v, dict) and "accuracy" in v}
    assert evaluated and all(v["scores_version"] == rp.SCORES_VERSION
                             for v in evaluated.values())
    stale = {k: {**v, "scores": {"silhouette": -0.5}, "scores_version": 1, "accuracy": 0.25}
             if k in evaluated else v for k, v in stored.items()}
    cache.write_text(json.dumps(stale))
    lines.clear()
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    assert [l for l in lines if l.startswith("  re-scoring")]
    again = json.loads(cache.read_text())
    for key, before in evaluated.items():
        assert again[key]["scores"] == pytest.approx(before["scores"], abs=1e-12)
        assert again[key]["accuracy"] == 0.25  # kept, not re-measured


def test_estimator_benchmark_summary_against_baselines():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_estimators as be

    models = ["a", "b", "c"]
    accs = {"a": 0.9, "b": 0.8, "c": 0.7}
    # "good" orders the models as their accuracies do (tau_w = 1), "bad" reverses it
    # (tau_w = -1); the parameter count baseline is constant (tau undefined)
    records = {m: {"status": "ok", "accuracy": accs[m], "timings": {"good": 0.5, "bad": 1.5},
                   "scores": {"good": accs[m], "bad": -accs[m]}} for m in models}
    measured = {"models": models, "missing": ["d"], "scorers": ["good", "bad"],
                "results": {"T": {"records": records, "n_test": 10, "n_train": 20}},
                "baselines": {"params": {m: 5.0 for m in models},
                              "source_accuracy": {"a": 0.99, "b": 0.98, "c": 0.97}},
                "limit": 10, "train_limit": 20, "seconds": 1.0}
    rows = be.summarise(measured)
    assert rows["good"]["mean"] == pytest.approx(1.0)
    assert rows["bad"]["mean"] == pytest.approx(-1.0)
    assert rows["good"]["seconds"] == pytest.approx(0.5)
    assert rows["baseline: parameter count"]["mean"] is None
    assert rows["baseline: source-task accuracy"]["mean"] == pytest.approx(1.0)
    text = be.document(measured)
    assert "**good** ranks best" in text and "**Missing**" in text
