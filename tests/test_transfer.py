"""Transfer protocols on frozen features, and rank agreement with its uncertainty."""

import numpy as np
import pytest

from support.data import clustered
from zooindex.errors import TargetError
from zooindex.evaluation import transfer_accuracy
from zooindex.transfer import (PROTOCOLS, bootstrap_tau, fit_logits, kendall_tau,
                               logits_accuracy, probe_accuracy, resampled_means,
                               seed_bootstrap_tau, seed_tau, train_logits, weighted_tau)


def split(seed=0, spread=0.3):
    x, y = clustered(n_per_class=60, classes=3, spread=spread, seed=seed)
    x = x - x.mean(axis=0)  # centred, so that a few SGD steps without a scaler can learn
    order = np.random.default_rng(seed).permutation(len(y))
    tr, te = order[:120], order[120:]
    return x[tr], y[tr], x[te], y[te]


# --- the logits layer, by hand and against a reference --------------------------------


def test_one_sgd_step_by_hand():
    # X = [[1, 0], [0, 2]], labels [0, 1], W = 0, c = 0: every softmax is (1/2, 1/2), so
    # (P - Y) / 2 = [[-1/4, 1/4], [1/4, -1/4]] and
    # dW = X^T (P - Y) / 2 = [[-1/4, 1/4], [1/2, -1/2]], dc = [0, 0].
    # One full-batch step with lr 0.5: W = -0.5 dW = [[1/8, -1/8], [-1/4, 1/4]].
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    w, c = train_logits(x, np.array([0, 1]), np.zeros((2, 2)), np.zeros(2), epochs=1,
                        lr=0.5, dropout=0.0, batch_size=2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(w, [[0.125, -0.125], [-0.25, 0.25]], atol=1e-15)
    np.testing.assert_allclose(c, [0.0, 0.0], atol=1e-15)


def test_dropout_mask_is_drawn_after_the_order_and_scales_the_kept_inputs():
    # one batch of all rows: the generator gives the epoch's order, then the batch's mask
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    codes = np.array([0, 1, 1])
    w0 = np.full((3, 2), 0.1)
    rng = np.random.default_rng(7)
    order = rng.permutation(3)
    kept = x[order] * (rng.random((3, 3)) < 0.6) / 0.6  # dropout 0.4: keep 60%, scale 1/0.6
    p = np.exp(kept @ w0)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(3), codes[order]] -= 1.0
    expected = w0 - 0.01 * kept.T @ p / 3
    w, _ = train_logits(x, codes, w0, np.zeros(2), epochs=1, lr=0.01, dropout=0.4,
                        batch_size=3, rng=np.random.default_rng(7))
    np.testing.assert_allclose(w, expected, rtol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_full_batch_training_matches_torch(optimizer):
    torch = pytest.importorskip("torch")
    x, y, _, _ = split()
    rng = np.random.default_rng(1)
    w0, c0 = rng.normal(size=(x.shape[1], 3)) * 0.1, rng.normal(size=3) * 0.1
    # a full batch makes the row order irrelevant; no dropout makes it deterministic
    w, c = train_logits(x, y, w0, c0, epochs=25, lr=0.05, dropout=0.0, batch_size=len(y),
                        rng=np.random.default_rng(0), optimizer=optimizer)
    layer = torch.nn.Linear(x.shape[1], 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w0.T))
        layer.bias.copy_(torch.from_numpy(c0))
    opt = (torch.optim.SGD(layer.parameters(), lr=0.05) if optimizer == "sgd"
           else torch.optim.Adam(layer.parameters(), lr=0.05, eps=1e-8))
    inputs, targets = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y)
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(layer(inputs), targets).backward()
        opt.step()
    np.testing.assert_allclose(w, layer.weight.detach().numpy().T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c, layer.bias.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_logits_learn_separable_classes_seeded_and_with_any_label_values():
    tr_x, tr_y, te_x, te_y = split()
    assert logits_accuracy(tr_x, tr_y, te_x, te_y, epochs=100, lr=0.05) > 0.9
    a = fit_logits(tr_x, tr_y, epochs=3, seed=5)
    b = fit_logits(tr_x, tr_y, epochs=3, seed=5)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, fit_logits(tr_x, tr_y, epochs=3, seed=6).weights)
    names = np.array(["coat", "dress", "trouser"])
    layer = fit_logits(tr_x, names[tr_y], epochs=3, seed=5)
    assert np.array_equal(layer.predict(te_x), names[a.predict(te_x)])
    # relabelling the classes (y*2+10) changes nothing
    assert logits_accuracy(tr_x, tr_y * 2 + 10, te_x, te_y * 2 + 10, epochs=3) == \
        logits_accuracy(tr_x, tr_y, te_x, te_y, epochs=3)


def test_probe_is_the_logistic_regression_evaluate_has_used():
    tr_x, tr_y, te_x, te_y = split(spread=1.2)
    assert probe_accuracy(tr_x, tr_y, te_x, te_y) == transfer_accuracy(tr_x, tr_y, te_x, te_y)


# enough steps for 120 training rows (the defaults are sized for tens of thousands)
QUICK = {"logits": {"epochs": 50, "lr": 0.05}}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_protocol(name):
    protocol = PROTOCOLS[name]
    tr_x, tr_y, te_x, te_y = split(spread=1.2)
    assert protocol.resolve() == protocol.params and "seed" in protocol.params
    with pytest.raises(ValueError, match="no parameter"):
        protocol.resolve(bogus=1)
    quick = QUICK.get(name, {})
    correct = protocol.correct(tr_x, tr_y, te_x, te_y, **quick)
    assert correct.dtype == bool and correct.shape == te_y.shape
    assert protocol.accuracy(tr_x, tr_y, te_x, te_y, **quick) == correct.mean() > 0.5
    # seeded: the same parameters give the same predictions
    assert np.array_equal(protocol.predictions(tr_x, tr_y, te_x, **quick),
                          protocol.predictions(tr_x, tr_y, te_x, **quick))
    with pytest.raises(TargetError, match="finite"):
        protocol.accuracy(np.where(tr_x > 2, np.nan, tr_x), tr_y, te_x, te_y)
    with pytest.raises(TargetError, match="two classes"):
        protocol.accuracy(tr_x, np.zeros_like(tr_y), te_x, te_y)
    with pytest.raises(TargetError, match="width"):
        protocol.accuracy(tr_x, tr_y, te_x[:, :3], te_y)


# --- agreement and its intervals ------------------------------------------------------


def test_taus_by_hand():
    # pairs of [1, 2, 3] vs [1, 3, 2]: (1,2) and (1,3) concordant, (2,3) discordant:
    # tau = (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert weighted_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None  # a constant column: undefined


def correctness(accuracies, n, seed=0):
    """Per-image correctness whose row means are exactly ``accuracies`` (n images)."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in accuracies:
        row = np.zeros(n, dtype=bool)
        row[:round(a * n)] = True
        rows.append(rng.permutation(row))
    return np.array(rows)


def test_resampled_means_are_paired_and_unbiased():
    values = np.array([[1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 2.0, 0.0]])
    means = resampled_means(values, draws=4000, seed=0)
    assert means.shape == (4000, 2)
    # the same images for both rows: the second row is always twice the first
    np.testing.assert_allclose(means[:, 1], 2 * means[:, 0])
    assert means[:, 0].mean() == pytest.approx(0.5, abs=0.01)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_images():
    accs = [0.70, 0.72, 0.74, 0.76, 0.78]
    scores = [1, 2, 3, 4, 5]
    widths = []
    for n in (200, 2000, 20000):
        iv = bootstrap_tau(scores, correctness(accs, n), draws=500, seed=1)
        assert iv.estimate == pytest.approx(1.0)
        assert iv.low <= iv.estimate <= iv.high
        widths.append(iv.high - iv.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] == 0.0  # 2 points apart on 20,000 images: never swapped
    again = bootstrap_tau(scores, correctness(accs, 200), draws=500, seed=1)
    assert str(again) == str(bootstrap_tau(scores, correctness(accs, 200), draws=500, seed=1))


def test_bootstrap_with_certain_accuracies_is_a_point():
    # model 0 gets every image right, model 1 none: every resample keeps 1.0 > 0.0
    correct = np.array([[True] * 50, [False] * 50])
    iv = bootstrap_tau([0.2, 0.1], correct, draws=200)
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)
    assert iv.excludes(0.0) and str(iv) == "1.00 [1.00, 1.00]"


def test_bootstrap_can_resample_the_scores_too():
    correct = correctness([0.70, 0.72, 0.74], 300)
    samples = np.array([np.full(300, 0.1), np.full(300, 0.2), np.full(300, 0.3)])
    samples[:, :150] += 0.05  # per-image values whose means are the scores 0.125, ...
    iv = bootstrap_tau(samples.mean(axis=1), correct, score_samples=samples, draws=200)
    assert iv.low <= iv.estimate <= iv.high
    with pytest.raises(ValueError, match="shape"):
        bootstrap_tau([1, 2, 3], correct, score_samples=samples[:, :10])


def test_seed_interval_by_hand():
    # the score does not depend on the seed; model 0's accuracy is 0.5 or 0.9 by seed,
    # model 1's 0.7: a zoo with seed 0 for model 0 orders them like the scores (+1),
    # one with seed 1 reverses them (-1); the seed means (0.7, 0.7) tie: undefined
    iv = seed_tau([1.0, 2.0], [[0.5, 0.9], [0.7, 0.7]], draws=400)
    assert iv.estimate is None and (iv.low, iv.high) == (-1.0, 1.0)
    # when score and accuracy come from the same trained network, both are drawn together
    iv = seed_tau([[1.0, 3.0], [2.0, 2.0]], [[0.5, 0.9], [0.7, 0.7]], draws=400)
    assert (iv.low, iv.high) == (1.0, 1.0)


def test_seeds_and_images_together():
    accs = [[0.70, 0.71, 0.69], [0.80, 0.79, 0.81], [0.90, 0.91, 0.89]]
    correct = np.stack([np.stack([correctness([a], 400, seed=s)[0]
                                  for s, a in enumerate(row)]) for row in accs])
    iv = seed_bootstrap_tau([1.0, 2.0, 3.0], correct, draws=300)
    assert iv.estimate == 1.0 and iv.low == 1.0  # ten points apart: never swapped
    with pytest.raises(ValueError, match="models, seeds, images"):
        seed_bootstrap_tau([1.0, 2.0, 3.0], correct[:, 0])
