"""The text benchmark's comparison (benchmarks/bench_text.py, evidence/text_*.py) on a
tiny BERT made here: each side's embeddings agree across runtimes, the estimator pairs
agree on the same embeddings once their documented differences are accounted for, and
zooindex's search gives the scores the benchmark computes from its features.

Needs transformer-ranker (and with it transformers, torch, datasets); skipped without.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformer_ranker")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_text  # noqa: E402
from evidence import text_models, text_reference  # noqa: E402

pytestmark = pytest.mark.slow

# three topics, texts drawn from a fixed seed; short, so that every text fits 64 tokens
_WORDS = (
    "bread cheese soup apple dinner kitchen salt butter".split(),
    "goal match team ball coach score player field".split(),
    "disk kernel compiler memory bug server code screen".split(),
)
_FILLER = "the a of and to with on for".split()


def _texts(per_class: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in enumerate(_WORDS):
        for _ in range(per_class):
            n = int(rng.integers(4, 12))
            picked = [str(rng.choice(words if rng.random() < 0.6 else _FILLER))
                      for _ in range(n)]
            texts.append(" ".join(picked).capitalize() + ".")
            labels.append(label)
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    work = tmp_path_factory.mktemp("text-bench")
    texts, labels = _texts()
    folder = text_models.make_tiny("tiny-bert", work / "models" / "tiny-bert", texts)
    plain, every = bench_text.exports(folder, work, "tiny-bert")
    return work, folder, plain, every, texts, labels


def test_each_recipe_agrees_across_runtimes(tiny):
    _, folder, plain, every, texts, _ = tiny
    tr, _, _ = text_reference.tr_embeddings(folder, texts)
    on_onnx = text_reference.onnx_tr_recipe(every, folder, texts)
    zi, _, _ = bench_text.zooindex_features(plain, texts, name="tiny-bert")
    torch_mean = text_reference.torch_mask_mean(folder, texts)
    assert tr.shape == (len(texts), 3, 32) and zi.shape == (len(texts), 4, 32)
    # float32 states of size ~1 through three blocks: the runtimes' kernels differ by a
    # few ulps per operation, far below 1e-4
    np.testing.assert_allclose(on_onnx, tr, atol=1e-4)
    np.testing.assert_allclose(zi, torch_mean, atol=1e-4)
    # the two recipes are not the same (word pooling without special tokens against the
    # token mean over the attention mask): the benchmark reports this gap
    assert np.abs(tr - zi[:, 1:]).max() > 1e-2


def test_estimator_pairs_agree_on_the_same_embeddings(tiny):
    _, folder, _, _, texts, labels = tiny
    tr, _, _ = text_reference.tr_embeddings(folder, texts)
    x = tr[:, -1].astype(np.float64)
    n = len(labels)
    assert n > x.shape[1]  # 120 texts, 32 wide: LogME's maximum is interior
    same = bench_text.same_embedding_scores(x, labels)
    tr_h, zi_h = same["pairs"]["hscore"]
    # transformer-ranker divides the between-class covariance by n - 1, zooindex by n
    assert zi_h == pytest.approx(tr_h * (n - 1) / n, rel=1e-6)
    # LogME: equal once transformer-ranker's 11-step iteration is run to convergence
    assert same["pairs"]["logme"][1] == pytest.approx(same["logme_converged"], rel=1e-6)
    # 3-NN on the full features with torch.mode's tie rule is transformer-ranker's k-NN
    assert same["knn3_smallest_label"] == pytest.approx(same["pairs"]["knn"][0], abs=1e-6)


def test_transformer_ranker_run_matches_the_decomposition(tiny):
    _, folder, _, _, texts, labels = tiny
    tr, _, _ = text_reference.tr_embeddings(folder, texts)
    mine = {k: text_reference.tr_aggregate(v)
            for k, v in text_reference.tr_layer_scores(tr, labels).items()}
    for est, agg in (("logme", "layermean"), ("hscore", "lastlayer"), ("knn", "bestlayer")):
        ran = text_reference.tr_run([folder], texts, labels, est, agg)
        assert ran[str(folder)] == pytest.approx(mine[est][agg], rel=1e-5, abs=1e-6)


def test_zooindex_search_gives_the_scores_computed_from_its_features(tiny):
    work, _, plain, _, texts, labels = tiny
    zi, _, _ = bench_text.zooindex_features(plain, texts, name="tiny-bert")
    searched = bench_text.zooindex_search({"tiny-bert": plain}, texts, labels,
                                          work / "search")
    for est in ("logme", "hscore-shrinkage"):
        mine = bench_text.zi_aggregate(zi, labels, est)
        assert searched[f"{est}/last"]["tiny-bert"] == pytest.approx(mine["last block"],
                                                                     rel=1e-6)
        assert searched[f"{est}/mean"]["tiny-bert"] == pytest.approx(mine["layermean"],
                                                                     rel=1e-5)
        assert searched[f"{est}/best"]["tiny-bert"] == pytest.approx(
            mine["best hidden state"], rel=1e-6)
