"""Text features against transformers' own outputs, on tiny random models exported here.

Every hidden state zooindex finds and pools is compared with ``output_hidden_states``
of the same model on the same token ids (mean over the attention mask, and the first
token), and the default layer of a sequence classifier with the input of its final
linear layer. Tolerance 1e-4: float32 through a few small layers, as the exporter and
onnxruntime order the sums differently from torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import zooindex  # noqa: E402
from zooindex.catalogue import inspect_file  # noqa: E402
from zooindex.text.run import run_text_model as run_model  # noqa: E402
from zooindex.text import tokenizer as tokenizers  # noqa: E402
from zooindex.text.export import from_transformers  # noqa: E402

from support.text_models import write_tokenizer  # noqa: E402

COMMON = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=32, max_position_embeddings=64)
CONFIGS = {
    "bert": lambda: transformers.BertConfig(**COMMON),
    "roberta": lambda: transformers.RobertaConfig(**COMMON, pad_token_id=1),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=60, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
        max_position_embeddings=64),
    "deberta-v2": lambda: transformers.DebertaV2Config(
        **COMMON, relative_attention=True, pos_att_type=["c2p", "p2c"], position_buckets=8,
        max_relative_positions=16),
}
TEXTS = np.array(["good movie", "a very boring film with no plot at all", "fun",
                  "the actor was fine but the story was poor"])


def _exported(tmp_path, arch: str, classifier: bool, opset: int = 17):
    torch.manual_seed(0)
    auto = (transformers.AutoModelForSequenceClassification if classifier
            else transformers.AutoModel)
    model = auto.from_config(CONFIGS[arch]()).eval()
    folder = tmp_path / f"{arch}-{classifier}-{opset}"
    folder.mkdir()
    from_transformers(model, folder / "model.onnx", opset=opset)
    write_tokenizer(folder)
    return model, folder / "model.onnx"


def _reference(model, record, pooling: str):
    tok = tokenizers.load(record.text, record.name)
    feed = tokenizers.encode(tok, TEXTS)
    names = record.text["inputs"]
    with torch.no_grad():
        out = model(**{n: torch.from_numpy(feed[n]) for n in names},
                    output_hidden_states=True)
    mask = feed["attention_mask"][:, :, None].astype(np.float64)
    pooled = []
    for state in out.hidden_states:
        state = state.numpy().astype(np.float64)
        pooled.append((state * mask).sum(1) / mask.sum(1) if pooling == "mean"
                      else state[:, 0])
    return pooled, feed


@pytest.mark.parametrize("arch", sorted(CONFIGS))
@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_hidden_states_match_transformers(tmp_path, arch, pooling):
    model, path = _exported(tmp_path, arch, classifier=False)
    record = inspect_file(path)
    hidden = [l.name for l in record.layers if l.kind == "hidden"]
    want, _ = _reference(model, record, pooling)
    assert len(hidden) == len(want) == 3  # embeddings and two blocks
    got = run_model(record, TEXTS, hidden, batch_size=3, pooling=pooling).features
    for name, reference in zip(hidden, want):
        np.testing.assert_allclose(got[name], reference, rtol=0, atol=1e-4)
    assert record.default_layer == hidden[-1]


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_hidden_states_of_an_opset_14_export(tmp_path, arch):
    """Before opset 17 the layer norms are written out as arithmetic (optimum's default
    opset for these models is 14); the last hidden state is found all the same."""
    model, path = _exported(tmp_path, arch, classifier=True, opset=14)
    record = inspect_file(path)
    hidden = [l.name for l in record.layers if l.kind == "hidden"]
    want, _ = _reference(model, record, "mean")
    assert len(hidden) == len(want) == 3
    got = run_model(record, TEXTS, hidden).features
    for name, reference in zip(hidden, want):
        np.testing.assert_allclose(got[name], reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_default_layer_of_a_classifier_is_its_input(tmp_path, arch):
    model, path = _exported(tmp_path, arch, classifier=True)
    record = inspect_file(path)
    final = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = {}
    final.register_forward_hook(lambda module, args, out: seen.setdefault("x", args[0]))
    _, feed = _reference(model, record, "mean")
    got = run_model(record, TEXTS, [record.default_layer], batch_size=4).features
    np.testing.assert_allclose(got[record.default_layer], seen["x"].numpy(), rtol=0,
                               atol=1e-4)


def test_layer_mean_and_search_on_an_exported_bert(tmp_path):
    from zooindex.text import LAYER_MEAN

    model, path = _exported(tmp_path, "bert", classifier=False)
    record = inspect_file(path)
    want, _ = _reference(model, record, "mean")
    got = run_model(record, TEXTS, [LAYER_MEAN]).features[LAYER_MEAN]
    # transformer-ranker's layermean: the blocks' outputs, the embeddings left out
    np.testing.assert_allclose(got, np.mean(want[1:], axis=0), rtol=0, atol=1e-4)
    zooindex.add(path, index=tmp_path / "i.db", name="bert")
    texts = np.concatenate([TEXTS] * 3)
    ranking = zooindex.search(zooindex.load_target(x=texts, y=np.arange(12) % 2),
                              index=tmp_path / "i.db", confidence=False,
                              layer_aggregation="mean")
    assert ranking.results[0].status == "ok" and ranking.results[0].layer == LAYER_MEAN


def test_the_export_records_the_position_limit(tmp_path):
    _, bert = _exported(tmp_path, "bert", classifier=False)
    _, roberta = _exported(tmp_path, "roberta", classifier=False)
    assert inspect_file(bert).text["max_length"] == 64
    # RoBERTa's positions start after the padding index: 64 - (1 + 1)
    assert inspect_file(roberta).text["max_length"] == 62
    assert "metadata" in inspect_file(bert).text["max_length_from"]
    # a text longer than the positions allow is truncated, not an error
    record = inspect_file(roberta)
    long_text = np.array([" ".join(["good"] * 200), "fun"])
    got = run_model(record, long_text, [record.default_layer]).features
    assert got[record.default_layer].shape == (2, 16)


def test_sentence_pairs_feed_their_segments(tmp_path):
    """A pair is one sequence ``[CLS] a [SEP] b [SEP]`` whose second part has token type
    1: BERT's segment embeddings see it, as transformers' own call does."""
    model, path = _exported(tmp_path, "bert", classifier=False)
    record = inspect_file(path)
    assert record.text["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    pairs = np.array([["good movie", "a fun film"], ["bad plot", "the story was poor"],
                      ["fine", "great"]])
    tok = tokenizers.load(record.text, record.name)
    feed = tokenizers.encode(tok, pairs)
    assert feed["token_type_ids"].max() == 1
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    mask = feed["attention_mask"][:, :, None]
    want = (out.last_hidden_state.numpy() * mask).sum(1) / mask.sum(1)
    last = record.default_layer
    got = run_model(record, pairs, [last]).features[last]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # the segments matter: the same tokens all typed 0 give other features
    single = run_model(record, np.array([" ".join(p) for p in pairs]), [last]).features[last]
    assert np.abs(single - got).max() > 1e-3
