"""The real-network benchmark (benchmarks/bench_real.py and evidence/real_*.py): the
statistics and the choice rule on hand-worked cases, and the pipeline end to end on
three tiny ONNX networks and a tiny target."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_real  # noqa: E402
from evidence import real_analysis as ra  # noqa: E402
from evidence import real_measure, real_report, stats  # noqa: E402
from tests.support import onnx_factory  # noqa: E402


def test_wins_and_ensemble_scores_are_zooindex_mean_rank():
    # ranks of 0.3, 0.1, 0.2, 0.2 among four: 1, 0, and the tie shares 1.5 / 3 = 0.5
    np.testing.assert_allclose(ra.wins(np.array([0.3, 0.1, 0.2, 0.2])), [1, 0, 0.5, 0.5])
    assert ra.wins(np.array([np.nan, 2.0]))[1] == 0.5 and np.isnan(ra.wins(
        np.array([np.nan, 2.0]))[0])
    rng = np.random.default_rng(0)
    col = {"a": rng.standard_normal(7), "b": rng.standard_normal(7),
           "c": rng.standard_normal(7)}
    col["b"][2] = np.nan
    mask = np.ones(7, bool)
    np.testing.assert_allclose(ra.candidate_scores(("a", "b", "c"), col, mask),
                               stats.mean_rank([col["a"], col["b"], col["c"]]))


def _raw(good_cost=5.0):
    """Six networks in two families, one target; accuracies fall with the index.

    ``good`` orders them exactly (tau 1), ``bad`` exactly backwards (tau -1), and
    ``silhouette`` is right on draw 0 and backwards on draw 1 (mean 0) at both small
    regimes; the size prior grows with the index (tau -1)."""
    nets = [f"n{i}" for i in range(6)]
    acc = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    down, up = [6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6]
    scores = {}
    for i, m in enumerate(nets):
        rows = [{"good": down[i], "bad": up[i], "silhouette": down[i]},
                {"good": down[i], "bad": up[i], "silhouette": up[i]}]
        scores[m] = {"t": {"10": rows, "30": rows, "100": rows[:1]}}
    return {"nets": {m: {"family": "A" if i < 3 else "B", "size": 10 ** (i + 1),
                         "sha256": "0" * 64, "input": [1, 8, 8]}
                     for i, m in enumerate(nets)},
            "targets": {"t": "T"},
            "truth": {m: {"t": {"probe": acc[i], "logits": acc[i]}} for i, m in enumerate(nets)},
            "scores": scores,
            "estimators": {e: {"needs_labels": True} for e in ("good", "bad", "silhouette")},
            "cost": {"silhouette": {"seconds": 1.0}, "bad": {"seconds": 1.0},
                     "good": {"seconds": good_cost}}}


def test_criterion_on_hand_worked_rankings():
    base = ra.Base(_raw())
    every = base.mask()
    assert ra.criterion(base, ("good",), every) == pytest.approx(1.0)
    assert ra.criterion(base, ("bad",), every) == pytest.approx(-1.0)
    assert ra.criterion(base, ("silhouette",), every) == pytest.approx(0.0)  # (1 - 1) / 2
    assert ra.criterion(base, (ra.SIZE,), every) == pytest.approx(-1.0)
    # good + bad: every network's mean rank is 0.5, a constant score: tau undefined
    assert np.isnan(ra.criterion(base, ("good", "bad"), every))
    # the 100-per-class regime has draw 0 only, where the silhouette is right
    assert ra.criterion(base, ("silhouette",), every, ("100",)) == pytest.approx(1.0)


def test_choice_pays_for_cost_only_when_the_gain_is_large_enough():
    # good costs 5x the silhouette: 3 multiples over the 2x budget need a gain of 0.06;
    # it gains 1.0 over the best within budget (the silhouette, 0)
    base = ra.Base(_raw(good_cost=5.0))
    c = ra.choose(base, base.mask())
    assert c.best_in_budget == ("silhouette",) and c.chosen == ("good",)
    # at 100x the gain would have to be 0.02 * 98 = 1.96: the silhouette stays
    base = ra.Base(_raw(good_cost=100.0))
    assert ra.choose(base, base.mask()).chosen == ("silhouette",)
    # with each family left out the choice is made on three networks and evaluated on six
    folds = ra.family_folds(ra.Base(_raw()))
    assert [f.family for f in folds] == ["A", "B"]
    assert all(f.choice.chosen == ("good",) and f.held_out_value == pytest.approx(1.0)
               for f in folds)
    assert ra.modal_choice(base, folds) == ("good",)


def test_family_is_the_architecture_before_its_detail():
    assert real_measure.family_of("MobileNet (MediaPipe Iris)") == "MobileNet"
    assert real_measure.family_of("MobileNet (MobileNetV3-small, x0.35)") == "MobileNet"
    assert real_measure.family_of("BlazeFace") == "BlazeFace"


def test_holdout_rule_reads_names_only():
    nets = [real_measure.Net(name=f"net{i}", path=Path("x"), family=f"f{i % 5}")
            for i in range(40)]
    held = real_measure.holdout(nets)
    assert held == real_measure.holdout(list(reversed(nets)))  # order-free
    assert 0 < len(held) <= real_measure.HOLDOUT_MAX
    assert all(real_measure.holdout_hash(n) % 4 == 0 for n in held)
    family = {n.name: n.family for n in nets}
    assert len({family[n] for n in held}) == len(held)  # one per family at most


class _Spec:
    def __init__(self, name):
        self.name, self.label = name, name.upper()


def _target(seed=0, classes=3, pool=40, test=20):
    """8x8 grey images: each class lights its own row band, plus noise."""
    rng = np.random.default_rng(seed)

    def images(per_class):
        y = np.repeat(np.arange(classes), per_class)
        x = rng.integers(0, 200, size=(len(y), 8, 8))
        for c in range(classes):
            x[y == c, 2 * c:2 * c + 3, :] += 60
        return np.clip(x, 0, 255).astype(np.uint8), y

    x_train, y_train = images(pool)
    x_test, y_test = images(test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.mark.slow
def test_pipeline_end_to_end_on_tiny_networks(tmp_path, monkeypatch):
    # names the holdout rule keeps in (three) and holds out (one, its own family)
    kept = [f"tiny{i}" for i in range(40) if real_measure.holdout_hash(f"tiny{i}") % 4]
    held = next(f"tiny{i}" for i in range(40) if real_measure.holdout_hash(f"tiny{i}") % 4 == 0)
    nets = []
    for i, (name, family, hidden) in enumerate(((kept[0], "a", 6), (kept[1], "a", 12),
                                                (kept[2], "b", 24), (held, "c", 9))):
        path = tmp_path / f"{name}.onnx"
        onnx_factory.save(onnx_factory.cnn(hidden=hidden, classes=4, seed=i), path)
        nets.append(real_measure.Net(name=name, path=path, family=family))
    only = {"silhouette", "logme", "knn", "rankme"}
    specs = [_Spec("toy")]
    targets = {"toy": _target()}
    work = tmp_path / "work"
    raw = bench_real.measure_all(nets, specs, targets, work, only=only)
    assert list(raw["nets"]) == [n.name for n in nets]
    assert [raw["nets"][n.name]["width"] for n in nets] == [6, 12, 24, 9]
    assert [n.name for n in nets if raw["nets"][n.name]["held_out"]] == [held]
    for m in raw["nets"]:
        assert set(raw["truth"][m]["toy"]) == {"probe", "logits"}
        assert all(0 <= v <= 1 for v in raw["truth"][m]["toy"].values())
        per = raw["scores"][m]["toy"]
        # 10 and 30 per class: 5 and 3 draws; 100 per class exceeds the pool: the pool once
        assert [len(per[r]) for r in ("10", "30", "100")] == [5, 3, 1]
        assert set(per["10"][0]) == only
    feats = np.load(work / "features" / nets[2].sha256[:16] / "toy.npz")
    assert feats["train"].dtype == np.float32 and feats["train"].shape == (120, 24)
    assert feats["test"].shape == (60, 24)

    # a rerun reads everything from the work folder: no network is run again
    import zooindex.runner

    def no_inference(*a, **k):
        raise AssertionError("inference repeated")

    monkeypatch.setattr(zooindex.runner, "run_model", no_inference)
    again = bench_real.measure_all(nets, specs, targets, work, only=only)
    assert again["scores"] == raw["scores"] and again["truth"] == raw["truth"]

    raw["cost"] = real_measure.cost(work, shape=(300, 16, 3), only=only)
    assert set(raw["cost"]) == only
    raw.update(command="pytest", date="today")
    text = real_report.write(raw, draws=20)
    assert "## The rule" in text and "## Cost per model" in text
    assert all(n.name in text for n in nets)
    assert "Default by the rule" in text  # two families not held out: two folds
    assert f"Held out: {held} (c)" in text
