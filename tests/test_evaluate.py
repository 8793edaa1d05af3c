"""evaluate: real transfer accuracy and how well a ranking predicts it."""

import json

import numpy as np
import pytest

import zooindex
from support.data import clustered, selector
from support.onnx_factory import linear_features, save
from zooindex.cli import main
from zooindex.errors import ZooIndexError
from zooindex.evaluation import rank_agreement, transfer_accuracy


@pytest.fixture
def setup(tmp_path):
    # 'good' sees both informative dims, 'half' one of them, 'noise' none: the transfer
    # accuracy of a linear classifier on their features must come out in that order
    save(linear_features(selector([0, 1]), classes=4), tmp_path / "good.onnx")
    save(linear_features(selector([0, 5, 6]), classes=4), tmp_path / "half.onnx")
    save(linear_features(selector([4, 5, 6, 7]), classes=4), tmp_path / "noise.onnx")
    x, y = clustered(n_per_class=60, classes=4, spread=0.35, seed=1)
    np.savez(tmp_path / "all.npz", x=x, y=y)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, te = order[:150], order[150:]
    np.savez(tmp_path / "train.npz", x=x[tr], y=y[tr])
    np.savez(tmp_path / "test.npz", x=x[te], y=y[te])
    index = tmp_path / "i.db"
    zooindex.add(tmp_path, index=index)
    return tmp_path, index


def test_rank_agreement_by_hand():
    # identical order: every correlation is 1 and the top model is the best one
    assert rank_agreement([3, 2, 1], [0.9, 0.8, 0.7]) == pytest.approx(
        {"tau_w": 1.0, "tau": 1.0, "spearman": 1.0, "top1": 1.0})
    # reversed order: -1, and the top-ranked model reaches 0.7/0.9 of the best accuracy
    ag = rank_agreement([1, 2, 3], [0.9, 0.8, 0.7])
    assert ag["tau"] == pytest.approx(-1) and ag["spearman"] == pytest.approx(-1)
    assert ag["top1"] == pytest.approx(0.7 / 0.9)


def test_transfer_accuracy_separable_and_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    sep = np.c_[y * 10.0 + rng.normal(size=100), rng.normal(size=100)]
    assert transfer_accuracy(sep[::2], y[::2], sep[1::2], y[1::2]) == 1.0
    noise = rng.normal(size=(100, 2))
    assert transfer_accuracy(noise[::2], y[::2], noise[1::2], y[1::2]) < 0.75


def test_evaluate_orders_models_like_their_features(setup):
    folder, index = setup
    ev = zooindex.evaluate(train=folder / "train.npz", test=folder / "test.npz", index=index)
    acc = {m.model: m.accuracy for m in ev.models}
    assert acc["good"] > acc["half"] > acc["noise"]
    assert [m.model for m in ev.models] == ["good", "half", "noise"]  # by accuracy
    ag = ev.agreement["logme"]  # the default scorer
    assert ag["tau"] == pytest.approx(1.0) and ag["top1"] == pytest.approx(1.0)
    assert ag["models"] == 3


def test_evaluate_one_target_with_test_size_and_all_scorers(setup):
    folder, index = setup
    ev = zooindex.evaluate(target=folder / "all.npz", test_size=0.4, index=index,
                           scorers=["silhouette", "logme", "linear"])
    assert set(ev.agreement) == {"silhouette", "logme", "linear"}
    for name, ag in ev.agreement.items():
        assert ag["seconds"] >= 0 and ag["models"] == 3
    assert ev.models[0].model == "good"


def test_evaluate_reuses_cached_activations(setup, monkeypatch):
    folder, index = setup
    zooindex.evaluate(train=folder / "train.npz", test=folder / "test.npz", index=index)
    from zooindex import runner

    monkeypatch.setattr(runner, "run_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran a model")))
    again = zooindex.evaluate(train=folder / "train.npz", test=folder / "test.npz",
                              index=index)
    assert again.models[0].model == "good"


def test_evaluate_argument_errors(setup):
    folder, index = setup
    with pytest.raises(ZooIndexError, match="--test-size"):
        zooindex.evaluate(target=folder / "all.npz", index=index)
    with pytest.raises(ZooIndexError, match="--train and --test"):
        zooindex.evaluate(train=folder / "train.npz", index=index)


def test_evaluate_cli_json(setup, capsys):
    folder, index = setup
    main(["evaluate", "--index", str(index), "--train", str(folder / "train.npz"),
          "--test", str(folder / "test.npz"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in out["models"]] == ["good", "half", "noise"]
    assert set(out["agreement"]["logme"]) >= {"tau_w", "tau", "spearman", "top1"}


def test_protocols_are_cached_with_their_parameters_and_give_intervals(setup, monkeypatch):
    folder, index = setup
    paths = dict(train=folder / "train.npz", test=folder / "test.npz", index=index)
    logits = zooindex.evaluate(**paths, protocol="logits", protocol_params={"epochs": 5})
    probe = zooindex.evaluate(**paths, protocol="probe")
    assert logits.protocol == "logits" and logits.protocol_params["epochs"] == 5
    assert probe.protocol == "probe" and probe.protocol_params["max_iter"] == 300
    assert not any(m.cached for m in logits.models + probe.models)
    # what a protocol gives differs from the other's, not from the same one again
    acc = {m.model: m.accuracy for m in logits.models}
    assert acc != {m.model: m.accuracy for m in probe.models}
    from zooindex import transfer

    def no_retraining(*a, **k):
        raise AssertionError("retrained although the accuracy was cached")

    monkeypatch.setattr(transfer.Protocol, "correct", no_retraining)
    again = zooindex.evaluate(**paths, protocol="logits", protocol_params={"epochs": 5})
    assert all(m.cached for m in again.models)
    assert {m.model: m.accuracy for m in again.models} == acc
    ag = again.agreement["logme"]  # the default scorer
    low, high = ag["tau_interval"]
    assert low <= ag["tau"] <= high
    # other parameters are another result: computed, not served
    with pytest.raises(AssertionError, match="retrained"):
        zooindex.evaluate(**paths, protocol="logits", protocol_params={"epochs": 6})
    with pytest.raises(ZooIndexError, match="unknown protocol 'paper'"):
        zooindex.evaluate(**paths, protocol="paper")


def test_evaluate_cli_protocol_and_intervals(setup, capsys):
    folder, index = setup
    main(["evaluate", "--index", str(index), "--train", str(folder / "train.npz"),
          "--test", str(folder / "test.npz"), "--protocol", "probe"])
    out, err = capsys.readouterr()
    assert "tau_w 95%" in out and "the probe protocol" in err
