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


def _add_checked(fake_hub, tmp_path, repo: str, folder, tags=()) -> tuple:
    """Serve ``folder`` as ``repo`` at COMMIT, add it, check that its tokenizer came from
    the commit's folder and that a search ranks it; ``(added, source["text"])``."""
    fake_hub.add(FakeRepo(repo, _repo_files(folder), commit=COMMIT, tags=tags))
    index = tmp_path / "i.db"
    [added] = zooindex.add(f"hf://{repo}", index=index)
    assert added.status == "added", added.reason
    text = zooindex.show(repo.split("/")[1], index=index)["source"]["text"]
    local = tmp_path / "cache" / "hf" / repo.replace("/", "--") / COMMIT
    assert text["tokenizer"] == str((local / "tokenizer.json").resolve())
    ranking = zooindex.search(zooindex.load_target(x=REVIEWS, y=LABELS), index=index,
                              confidence=False)
    assert ranking.results[0].status == "ok"
    return added, text


def test_an_onnx_text_repo_brings_its_tokenizer_at_the_commit(fake_hub, tmp_path):
    folder = tmp_path / "repo"
    (folder / "onnx").mkdir(parents=True)
    tiny_encoder(folder / "onnx" / "model.onnx")
    write_tokenizer(folder, max_length=24)  # at the root, the model one folder down
    _, text = _add_checked(fake_hub, tmp_path, "acme/tiny-text", folder)
    assert text["max_length"] == 24


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


def _check_default_layer(index, name: str, model, classifier: bool) -> None:
    """The indexed model's default layer on a few reviews equals what the PyTorch
    ``model`` gives: BERT's pooler output (a classifier's input), else the mean of the
    last hidden state over the attention mask; to 1e-4."""
    from zooindex.text.run import run_text_model
    from zooindex.text import tokenizer as tokenizers

    with zooindex.index.opened(index) as idx:
        record = idx.catalogue.get_model(name)
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
    _check_default_layer(index, "tiny-bert", model, classifier)


def test_a_text_checkpoint_repo_is_exported_with_its_tokenizer(fake_hub, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    _bert_checkpoint(folder, classifier=True)
    added, _ = _add_checked(fake_hub, tmp_path, "acme/tiny-bert", folder, ("transformers",))
    local = tmp_path / "cache" / "hf" / "acme--tiny-bert" / COMMIT
    assert added.path == str(local / "zooindex-export" / "model.onnx")


def test_a_sharded_text_checkpoint_repo_is_fetched_whole_and_exported(fake_hub, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    model = _bert_checkpoint(folder, classifier=False)
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="20KB")
    files = _repo_files(folder)
    shards = sorted(n for n in files if n.startswith("model-"))
    assert "model.safetensors" not in files and len(shards) >= 2
    _add_checked(fake_hub, tmp_path, "acme/sharded-bert", folder, ("transformers",))
    index = tmp_path / "i.db"
    export = zooindex.show("sharded-bert", index=index)["source"]["export"]
    assert export["kind"] == "text" and export["weights"] == "model.safetensors.index.json"
    assert sorted(export["shards"]) == shards
    _check_default_layer(index, "sharded-bert", model, classifier=False)


def test_a_folder_of_models_takes_its_checkpoint_folders_beside_onnx_files(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
    zoo = tmp_path / "zoo"
    for name, classifier in (("bert-a", True), ("nested/bert-b", False)):
        (zoo / name).mkdir(parents=True)
        _bert_checkpoint(zoo / name, classifier)
    (zoo / "onnx").mkdir()
    tiny_encoder(zoo / "onnx" / "enc.onnx")
    write_tokenizer(zoo / "onnx")
    index = tmp_path / "i.db"
    added = zooindex.add(zoo, index=index)
    assert sorted((a.name, a.status) for a in added) == [
        ("bert-a", "added"), ("bert-b", "added"), ("enc", "added")]
    assert zooindex.show("bert-b", index=index)["source"]["export"]["kind"] == "text"
    # a folder holding checkpoint folders only is no longer "no .onnx files"
    only = tmp_path / "only"
    (only / "x").mkdir(parents=True)
    _bert_checkpoint(only / "x", classifier=False)
    [one] = zooindex.add(only, index=index)
    assert (one.name, one.status) == ("x", "added")


def test_exporting_on_add_draws_no_bar_of_transformers_own(tmp_path, monkeypatch, run):
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    _bert_checkpoint(folder, classifier=False)
    code, out, err = run("add", folder, "--index", tmp_path / "i.db")
    assert code == 0 and "added     tiny-bert" in out + err
    assert "Loading weights" not in err  # (the bar save_pretrained drew above stays)
    assert hf_logging.is_progress_bar_enabled()  # left as it was found
