"""The paper's reproduction: layer mapping, tables beside the paper's numbers, a tiny run."""

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
    assert rp.paper_name(rp.seeded("mnist-0-4", 2)) == "M0-4 seed 2"
    assert rp.seeded("mnist-0-4", 0) == "mnist-0-4"


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


def _records(scores, accs, n=400, seed=0):
    """Records of the nine whose logits accuracies are exactly ``accs`` on ``n`` images."""
    rng = np.random.default_rng(seed)
    test_y = rng.integers(0, 5, size=n)
    out = {}
    for m, s, a in zip(rp.NINE, scores, accs):
        right = rng.permutation(np.arange(n) < round(a * n))
        preds = np.where(right, test_y, (test_y + 1) % 5)
        out[m] = rp.Record(m, s, np.full(n, s), predictions={"logits": preds},
                           fit_seconds={"logits": 9.0}, search_seconds=1.0,
                           feature_seconds=1.0)
    return out, test_y


def test_table_3_4_shows_both_and_correlations_with_intervals():
    # our scores order the first five models exactly as our accuracies do, ten points
    # apart on 400 images: tau = 1 in every resample
    records, y = _records([0.5, 0.4, 0.3, 0.2, 0.1], [0.95, 0.85, 0.75, 0.65, 0.55])
    text = rp.score_accuracy_table(records, rp.NINE, rp.TABLE3, rp.TABLE4, y)
    assert "| 0.540 / 0.100 |" in text and "| 0.943 |" in text    # F0-4: paper / ours
    assert "| 0.081 / 0.400 |" in text and "| 0.550 |" in text     # ours, M0-4 and F0-4
    assert "| 0.212 / missing |" in text                           # C10 not trained
    assert text.count("missing") == 4 * 2  # models 6..9: score and accuracy
    table, found = rp.agreement_table(records, rp.NINE, rp.TABLE3, rp.TABLE4, y, draws=200)
    row = next(l for l in table.splitlines() if l.startswith("| our scores vs our acc"))
    assert "| 1.00 [1.00, 1.00] |" in row and "| 5 |" in row
    assert "same order in every resample" in row
    assert found["logits"].tau.estimate == pytest.approx(1.0)
    paper_row = next(l for l in table.splitlines() if l.startswith("| the paper's scores"))
    assert "| 0.89 |" in paper_row and "| 9 |" in paper_row


def test_cost_table_ratio():
    records, _ = _records([0.5, 0.4], [0.9, 0.8])
    table, ratio = rp.cost_table(records)
    assert ratio == pytest.approx(10.0)  # (1 + 9) s of retraining over 1 s of search
    assert "10.0×" in table


def test_table2_cells_and_layer_correlations():
    ours = {m: list(v) for m, v in rp.TABLE2.items() if m != "cifar10-5-9"}
    text = rp.table2(ours)
    assert "0.784 / 0.784" in text and "0.303 / missing" in text
    # identical to the paper at L5 over the eight present: tau 1
    row = next(l for l in text.splitlines() if l.startswith("| L5 |"))
    assert row.split("|")[2:5] == [" 1.00 ", " – ", " 8 "]


def test_paper_inconsistencies_are_computed_from_its_tables():
    lines = rp.inconsistencies()
    assert any("0.942 vs 0.940" in l for l in lines)        # F10, Table 4 vs Table 6
    assert any("0.57 (MNIST 0-4) and 0.59 (Fashion 0-4)" in l for l in lines)


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


def test_reproduce_on_a_tiny_zoo(tiny, tmp_path, monkeypatch):
    zoo, sources = tiny
    out = tmp_path / "out" / "RESULTS.md"
    settings = rp.Settings(train_limit=None, layer_limit=60, scatter_limit=60,
                           dims=(2, 5, 10), draws=50)
    lines = []
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    text = out.read_text()
    for heading in ("## Does the paper's central claim hold?", "## Table 2",
                    "## Tables 3 and 4", "## Table 5", "## Table 6", "## How much the "
                    "transfer protocol matters", "## The paper's own inconsistencies",
                    "## Figure 2", "## Figure 3", "## Ranking cost"):
        assert heading in text
    assert "0.540" in text and "0.943" in text  # the paper's F0-4 beside ours
    assert "**Missing**" in text and "mnist-0-4" in text
    assert (out.parent / "figures" / "figure2-score-vs-d.png").stat().st_size > 1000
    assert (out.parent / "figures" / "figure3-pca.png").stat().st_size > 1000
    # the Fashion-trained model ranks first by score on the Fashion target, as in the paper
    row = next(l for l in text.split("## Tables 3 and 4")[1].splitlines()
               if l.startswith("| fashion-0-4 |"))
    assert row.split("|")[4].strip() == "1 / 1"
    assert "logits" in text and "probe" in text
    # a second run measures nothing again
    lines.clear()
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    assert not [l for l in lines if l.startswith("  ")]  # "  scoring m ...", etc.
    # scores of another scores version are recomputed; the predictions are kept
    monkeypatch.setattr(rp.measure, "SCORES_VERSION", rp.SCORES_VERSION + 1)
    lines.clear()
    rp.reproduce(zoo, out=out, sources=sources, cache_dir=tmp_path / "cache",
                 settings=settings, log=lines.append)
    assert [l for l in lines if l.startswith("  scoring")]
    assert not [l for l in lines if l.startswith("  transfer")]
    def tables34(doc):
        return doc.split("## Tables 3 and 4")[1].split("## Table 5")[0]

    assert tables34(out.read_text()) == tables34(text)  # the same scores, recomputed


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


def test_stratified_rows_keep_class_shares_and_are_seeded():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    rows = rp.measure.stratified_rows(labels, 100, seed=0)
    assert np.bincount(labels[rows]).tolist() == [60, 30, 10]
    assert np.array_equal(rows, np.sort(rows))
    assert np.array_equal(rows, rp.measure.stratified_rows(labels, 100, seed=0))
    assert len(rp.measure.stratified_rows(labels, None)) == 1000
    assert len(rp.measure.stratified_rows(labels, 5000)) == 1000


def test_variant_keys_name_every_parameter_so_defaults_can_change():
    plain = rp.Variant("logits", "logits")
    explicit = rp.Variant("logits", "logits", dict(plain.resolved()))
    assert plain.key() == explicit.key() and '"epochs": 67' in plain.key()
    assert rp.Variant("probe", "probe", train_limit=5000).key().endswith("|train_limit=5000")
    assert plain.key() != rp.Variant("x", "logits", {"seed": 1}).key()
