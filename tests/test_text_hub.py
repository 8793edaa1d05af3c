"""Text models from the hub and from checkpoint folders: the tokenizer fetched at the
model's commit, and transformers text checkpoints exported on add."""

from __future__ import annotations

import numpy as np
import pytest

import zooindex
from support.hf_server import FakeRepo
from support.text_models import tiny_encoder, write_tokenizer

pytest.importorskip("huggingface_hub")

COMMIT = "d" * 40
REVIEWS = (["good fun movie", "great nice film", "love the actor", "fine story"] * 3
           + ["bad boring plot", "awful poor film", "hate the movie", "terrible story"] * 3)
LABELS = [1] * 12 + [0] * 12


def _repo_files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_onnx_text_repo_brings_its_tokenizer_at_the_commit(fake_hub, tmp_path):
    folder = tmp_path / "repo"
    (folder / "onnx").mkdir(parents=True)
    tiny_encoder(folder / "onnx" / "model.onnx")
    write_tokenizer(folder, max_length=24)  # at the root, the model one folder down
    fake_hub.add(FakeRepo("acme/tiny-text", _repo_files(folder), commit=COMMIT))
    index = tmp_path / "i.db"
    [added] = zooindex.add("hf://acme/tiny-text", index=index)
    assert added.status == "added"
    text = zooindex.show("tiny-text", index=index)["source"]["text"]
    local = tmp_path / "cache" / "hf" / "acme--tiny-text" / COMMIT
    assert text["tokenizer"] == str((local / "tokenizer.json").resolve())
    assert text["max_length"] == 24
    ranking = zooindex.search(zooindex.load_target(x=REVIEWS, y=LABELS), index=index,
                              confidence=False)
    assert ranking.results[0].status == "ok"


def test_an_image_repo_with_a_tokenizer_stays_an_image_model(fake_hub, tmp_path):
    import onnx

    from support.onnx_factory import mlp

    folder = tmp_path / "repo"
    folder.mkdir()
    onnx.save(mlp(), folder / "model.onnx")
    write_tokenizer(folder)
    fake_hub.add(FakeRepo("acme/vision", _repo_files(folder), commit=COMMIT))
    [added] = zooindex.add("hf://acme/vision", index=tmp_path / "i.db")
    assert added.status == "added"
    assert "text" not in zooindex.show("vision", index=tmp_path / "i.db")["source"]


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _bert_checkpoint(folder, classifier: bool):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=40, num_labels=2)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    model = cls(config).eval()
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return model


@pytest.mark.parametrize("classifier", [True, False])
def test_a_text_checkpoint_folder_is_exported_on_add(tmp_path, monkeypatch, classifier):
    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    model = _bert_checkpoint(folder, classifier)
    index = tmp_path / "i.db"
    [added] = zooindex.add(folder, index=index)
    assert added.status == "added", added.reason
    shown = zooindex.show("tiny-bert", index=index)
    export = shown["source"]["export"]
    assert export["kind"] == "text" and export["output"] == (
        "logits" if classifier else "last_hidden_state")
    assert shown["source"]["text"]["max_length"] == 40
    from zooindex.text.run import run_text_model
    from zooindex.text import tokenizer as tokenizers

    with zooindex.index.opened(index) as idx:
        record = idx.catalogue.get_model("tiny-bert")
    texts = np.array(REVIEWS[:5])
    got = run_text_model(record, texts, [record.default_layer]).features[record.default_layer]
    feed = tokenizers.encode(tokenizers.load(record.text, record.name), texts)
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()},
                    output_hidden_states=True)
        if classifier:  # BERT's classifier reads the pooler output
            want = model.bert.pooler(out.hidden_states[-1]).numpy()
        else:
            mask = feed["attention_mask"][:, :, None]
            want = (out.last_hidden_state.numpy() * mask).sum(1) / mask.sum(1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_a_text_checkpoint_repo_is_exported_with_its_tokenizer(fake_hub, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    _bert_checkpoint(folder, classifier=True)
    fake_hub.add(FakeRepo("acme/tiny-bert", _repo_files(folder), commit=COMMIT,
                          tags=("transformers",)))
    index = tmp_path / "i.db"
    [added] = zooindex.add("hf://acme/tiny-bert", index=index)
    assert added.status == "added", added.reason
    local = tmp_path / "cache" / "hf" / "acme--tiny-bert" / COMMIT
    assert added.path == str(local / "zooindex-export" / "model.onnx")
    text = zooindex.show("tiny-bert", index=index)["source"]["text"]
    assert text["tokenizer"] == str((local / "tokenizer.json").resolve())
    ranking = zooindex.search(zooindex.load_target(x=REVIEWS, y=LABELS), index=index,
                              confidence=False)
    assert ranking.results[0].status == "ok"
