"""Text targets and text models, on a tiny encoder built with onnx.helper (no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zooindex
from zooindex.errors import EstimatorError, ModelError, TargetError, ZooIndexError
from zooindex.target import load_target

from support.text_models import WORDS, reference_hidden_states, tiny_encoder, write_tokenizer

POSITIVE = "good great nice fine fun love".split()
NEGATIVE = "bad awful terrible poor boring hate".split()
FILLER = "the a movie film plot actor story".split()


def reviews(n: int = 40, seed: int = 0):
    """``n`` short reviews of varied lengths, labelled pos/neg by their words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(POSITIVE if i % 2 else NEGATIVE, 2, replace=False))
        words += list(rng.choice(FILLER, 1 + i % 4, replace=False))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append("pos" if i % 2 else "neg")
    return texts, labels


def write_csv(path, texts, labels, header=("text", "label"), delimiter=","):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(zip(texts, labels))
    return path


@pytest.fixture
def encoder(tmp_path):
    folder = tmp_path / "encoder"
    folder.mkdir()
    tiny_encoder(folder / "tiny.onnx")
    write_tokenizer(folder)
    return folder / "tiny.onnx"


# -- targets -------------------------------------------------------------------------

def test_csv_tsv_and_jsonl_read_alike(tmp_path):
    texts, labels = reviews(12)
    csv_path = write_csv(tmp_path / "r.csv", texts, labels)
    tsv_path = write_csv(tmp_path / "r.tsv", texts, labels, delimiter="\t")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": l}) + "\n"
                             for t, l in zip(texts, labels)))
    got = [load_target(p) for p in (csv_path, tsv_path, jsonl)]
    for target in got:
        assert target.kind == "text"
        assert target.x.tolist() == texts
        assert target.classes == ("neg", "pos")
        assert target.y.tolist() == [1 if l == "pos" else 0 for l in labels]
    # the same texts and labels are the same target, whatever the file format
    assert got[0].key == got[1].key == got[2].key


def test_columns_are_chosen_by_name_and_by_flag(tmp_path):
    texts, labels = reviews(8)
    path = write_csv(tmp_path / "r.csv", texts, labels, header=("sentence", "y"))
    assert load_target(path).x.tolist() == texts
    other = write_csv(tmp_path / "o.csv", texts, labels, header=("body", "stars"))
    target = load_target(other, text_column="body", label_column="stars")
    assert target.x.tolist() == texts
    # choosing columns is part of what the target is
    assert target.key != load_target(path).key
    with pytest.raises(TargetError, match="column 'nope' is not in .*its columns: body, stars"):
        load_target(other, text_column="nope")
    with pytest.raises(TargetError, match="no text column .* pass --text-column"):
        load_target(other)


def test_sentence_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"sentence1": f"good movie {i}", "sentence2": "a film", "label": i % 2}
            for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    target = load_target(path)
    assert target.x.shape == (6, 2)
    assert target.x[1].tolist() == ["good movie 1", "a film"]
    single = load_target(path, text_column="sentence1")
    assert single.x.shape == (6, 2)  # sentence1 brings its pair along
    assert load_target(x=target.x, y=target.y).key != load_target(
        x=target.x[:, 0], y=target.y).key


@pytest.mark.parametrize("content,message", [
    ("text,label\nhello,a\n ,b\nyes,a\nno,b\n", "row 1 .* empty text"),
    ("text,label\nhello,a\nworld,a\n", "1 class"),
    ("words,label\nhello,a\n", "no text column"),
    ("text,label\nhello,\nworld,b\n", "row 0 .* no label"),
    ("text,label\n", "no rows"),
])
def test_bad_text_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TargetError, match=message) as err:
        load_target(path)
    assert "\n" not in str(err.value)


def test_non_utf8_bytes_are_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9,a\nb\u00e4d,b\n".encode("latin-1"))
    with pytest.raises(TargetError, match="not UTF-8 .*line 2"):
        load_target(path)


def test_parquet_reads_as_the_same_target_as_its_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts, labels = reviews(10)
    csv = load_target(write_csv(tmp_path / "r.csv", texts, labels))
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts,
                             "label": labels}), path)
    parquet = load_target(path)
    assert parquet.x.tolist() == texts and parquet.key == csv.key
    # pairs and a real-valued label, by column name
    pq.write_table(pa.table({"premise": texts, "hypothesis": texts[::-1],
                             "score": [i / 4 for i in range(len(texts))]}), path)
    pairs = load_target(path, label_column="score")
    assert pairs.x.shape == (len(texts), 2) and pairs.regression
    assert pairs.x[0].tolist() == [texts[0], texts[-1]]
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(TargetError, match="cannot read .* as Parquet") as err:
        load_target(path)
    assert "\n" not in str(err.value)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "r.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ZooIndexError, match=r"zooindex\[text\]"):
        load_target(path)


def test_npz_of_strings_and_the_text_fingerprint(tmp_path):
    texts, labels = reviews(10)
    np.savez(tmp_path / "t.npz", x=np.array(texts), y=np.array(labels))
    target = load_target(tmp_path / "t.npz")
    assert target.kind == "text" and target.x.tolist() == texts
    assert target.key == load_target(x=texts, y=labels).key
    # one changed character, or texts split differently, is another target
    changed = list(texts)
    changed[3] = changed[3] + "!"
    assert load_target(x=changed, y=labels).key != target.key
    joined = [texts[0] + texts[1]] + texts[2:] + [""]
    assert joined != texts  # same characters overall, other texts
    with pytest.raises(TargetError, match="empty"):
        load_target(x=joined, y=labels)


def test_real_valued_labels_make_a_regression_target(tmp_path):
    texts, _ = reviews(10)
    values = np.linspace(0.5, 4.5, 10)
    target = load_target(x=texts, y=values)
    assert target.regression and target.classes == () and target.y.dtype == np.float64
    whole = load_target(x=texts, y=np.arange(10) % 2 * 1.0)
    assert not whole.regression  # whole numbers are class labels


# -- models ----------------------------------------------------------------------------

def test_add_finds_hidden_states_tokenizer_and_default(encoder, tmp_path):
    index = tmp_path / "i.db"
    added = zooindex.add(encoder, index=index)
    assert added[0].status == "added"
    record = zooindex.show("tiny", index=index)
    hidden = [l["name"] for l in record["layers"] if l["kind"] == "hidden"]
    assert hidden == ["h0", "h1", "h2"]
    assert record["default_layer"] == "h2"
    assert "last hidden state" in record["default_reason"]
    text = record["source"]["text"]
    assert text["inputs"] == ["input_ids", "attention_mask"]
    assert text["max_length"] == 512 and text["max_length_from"] == "the default"
    assert len(text["tokenizer_sha256"]) == 64


def test_a_text_model_without_a_tokenizer_is_refused(tmp_path):
    tiny_encoder(tmp_path / "alone.onnx")
    with pytest.raises(ModelError, match="no tokenizer.json beside it.*--tokenizer"):
        zooindex.add(tmp_path / "alone.onnx", index=tmp_path / "i.db")
    elsewhere = tmp_path / "tok"
    elsewhere.mkdir()
    write_tokenizer(elsewhere, max_length=16)
    added = zooindex.add(tmp_path / "alone.onnx", index=tmp_path / "i.db",
                         tokenizer=elsewhere)
    record = zooindex.show("alone", index=tmp_path / "i.db")
    assert added[0].status == "added"
    assert record["source"]["text"]["max_length"] == 16


def _features(encoder, texts, **options):
    from zooindex.catalogue import inspect_file
    from zooindex.text.run import run_text_model as run_model

    record = inspect_file(encoder)
    layers = options.pop("layers", ["h0", "h1", "h2"])
    return run_model(record, np.array(texts), layers, **options).features


def _ids(text):
    return [2] + [WORDS.index(w) if w in WORDS else 1 for w in text.lower().split()] + [3]


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_features_are_the_pooled_hidden_states(encoder, pooling):
    texts = ["good movie", "a very very boring film with no plot", "fun", "the actor was fine"]
    got = _features(encoder, texts, batch_size=3, pooling=pooling)
    for i, text in enumerate(texts):
        states = reference_hidden_states(_ids(text))
        for layer, state in zip(["h0", "h1", "h2"], states):
            want = state.mean(0) if pooling == "mean" else state[0]
            # float32 graph against a float64 reference of a few operations: 1e-5
            np.testing.assert_allclose(got[layer][i], want, rtol=0, atol=1e-5)


def test_layer_mean_averages_the_block_outputs(encoder):
    from zooindex.text import LAYER_MEAN

    texts = ["good movie", "bad plot", "nice story"]
    got = _features(encoder, texts, layers=[LAYER_MEAN, "h1", "h2"])
    np.testing.assert_allclose(got[LAYER_MEAN], (got["h1"] + got["h2"]) / 2, atol=1e-6)


def test_padding_and_batch_order_do_not_change_features(encoder):
    texts, _ = reviews(9)
    one_by_one = _features(encoder, texts, batch_size=1)
    batched = _features(encoder, texts, batch_size=4)
    for layer in one_by_one:
        np.testing.assert_allclose(batched[layer], one_by_one[layer], atol=1e-5)


def test_truncation_to_the_maximum_length(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    tiny_encoder(folder / "short.onnx")
    write_tokenizer(folder, max_length=4)
    long_text = "good bad movie film great awful"
    got = _features(folder / "short.onnx", [long_text, "fun"])
    want = reference_hidden_states(_ids(long_text)[:3] + [3])[2].mean(0)
    np.testing.assert_allclose(got["h2"][0], want, atol=1e-5)


def test_a_changed_tokenizer_is_refused(encoder, tmp_path):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    tokenizer = encoder.parent / "tokenizer.json"
    doc = json.loads(tokenizer.read_text())
    doc["normalizer"] = None
    tokenizer.write_text(json.dumps(doc))
    texts, labels = reviews(12)
    ranking = zooindex.search(load_target(x=texts, y=labels), index=index)
    assert ranking.results[0].status == "skipped"
    assert "changed since the model was added" in ranking.results[0].reason


# -- searches ---------------------------------------------------------------------------

def test_search_ranks_text_models_from_python_and_the_cli(encoder, tmp_path, run):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    other = tmp_path / "other"
    other.mkdir()
    tiny_encoder(other / "tiny2.onnx", seed=5, hidden=6, blocks=3)
    write_tokenizer(other)
    zooindex.add(other / "tiny2.onnx", index=index)
    texts, labels = reviews(30)
    target = write_csv(tmp_path / "reviews.csv", texts, labels)
    ranking = zooindex.search(target, index=index, confidence=False)
    assert [r.status for r in ranking.results] == ["ok", "ok"]
    assert {r.layer for r in ranking.results} == {"h2", "last_hidden_state"}
    code, out, err = run("search", target, "--index", index, "--no-confidence")
    assert code == 0, err
    assert "tiny " in out and "tiny2" in out
    mean = zooindex.search(target, index=index, confidence=False, layer_aggregation="mean")
    assert {r.layer for r in mean.results} == {"::layermean"}
    best = zooindex.search(target, index=index, confidence=False, layer_aggregation="best")
    assert sorted(r.model for r in best.results) == ["tiny", "tiny2"]
    from zooindex.options import SearchOptions
    from zooindex.text import choose_layers
    from zooindex.text.run import block_outputs

    with zooindex.index.opened(index) as idx:
        for name, blocks in (("tiny", 2), ("tiny2", 3)):
            record = idx.catalogue.get_model(name)
            hidden = sorted((l for l in record.layers if l.kind == "hidden"),
                            key=lambda l: l.position)
            scored = [l.name for l in choose_layers(record,
                                                    SearchOptions(layer_aggregation="best"))]
            # every block's output, the embeddings' output (hidden_states[0]) left out
            assert scored == block_outputs(record) == [l.name for l in hidden[1:]]
            assert len(scored) == blocks
            [row] = [r for r in best.results if r.model == name]
            assert row.layer in scored


def test_a_mixed_zoo_leaves_the_other_kind_out_with_a_note(encoder, tmp_path):
    from support.data import three_model_zoo

    (tmp_path / "images").mkdir()
    made = three_model_zoo(tmp_path / "images")
    index = tmp_path / "i.db"
    zooindex.add(made["folder"], index=index)
    zooindex.add(encoder, index=index)
    texts, labels = reviews(20)
    ranking = zooindex.search(load_target(x=texts, y=labels), index=index, confidence=False)
    assert [r.model for r in ranking.results] == ["tiny"]
    assert any("3 image models left out: the target holds texts" in n for n in ranking.notes)


def test_regression_search_and_refused_scorers(encoder, tmp_path):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    texts, _ = reviews(30)
    values = np.array([sum(w in POSITIVE for w in t.split()) + 0.1 * i
                       for i, t in enumerate(texts)])
    ranking = zooindex.search(load_target(x=texts, y=values), index=index,
                              scorers=("logme", "knn"))
    assert set(ranking.results[0].scores) == {"logme", "knn"}
    with pytest.raises(ZooIndexError, match="needs class labels.*--scorer logme or knn"):
        zooindex.search(load_target(x=texts, y=values), index=index, scorers=("hscore",))


# -- regression estimators ----------------------------------------------------------------

def test_logme_regression_is_the_class_form_on_one_column():
    from zooindex.estimators.logme import class_evidences
    from zooindex.estimators.regression import logme_regression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 5))
    labels = np.arange(30) % 2
    evidences, _, _ = class_evidences(features, labels)
    # a regression on the indicator of class 1 is LogME's evidence for that class
    assert logme_regression(features, (labels == 1).astype(float)) == \
        pytest.approx(evidences[1], rel=1e-10)


def test_knn_regression_by_hand():
    from zooindex.estimators.regression import knn_regression

    # points on a line, values equal to the position: each point's 5 nearest others are
    # its neighbours on both sides; at the ends they lie on one side
    x = np.arange(12, dtype=float)[:, None]
    got = knn_regression(x, x[:, 0], dim=1)
    predicted = []
    for i in range(12):
        order = np.argsort(np.abs(x[:, 0] - i), kind="stable")
        predicted.append(x[[j for j in order if j != i][:5], 0].mean())
    assert got == pytest.approx(np.corrcoef(x[:, 0], predicted)[0, 1], rel=1e-12)
    with pytest.raises(EstimatorError, match="2 distinct"):
        knn_regression(x, np.ones(12))


def test_check_reports_a_moved_tokenizer(encoder, tmp_path, run):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    assert zooindex.check(index=index).ok
    tokenizer = encoder.parent / "tokenizer.json"
    tokenizer.rename(tmp_path / "elsewhere.json")
    report = zooindex.check(index=index)
    assert report.models[0]["tokenizer_status"] == "missing"
    assert any("tokenizer" in p and "is missing (moved?)" in p for p in report.problems)
    code, out, err = run("check", "--index", index)
    assert code != 0 and "tokenizer" in out + err


def test_adding_again_records_where_the_tokenizer_moved(encoder, tmp_path):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    moved = tmp_path / "moved"
    moved.mkdir()
    (encoder.parent / "tokenizer.json").rename(moved / "tokenizer.json")
    again = zooindex.add(encoder, index=index, tokenizer=moved / "tokenizer.json")
    assert again[0].status == "unchanged"
    record = zooindex.show("tiny", index=index)
    assert record["source"]["text"]["tokenizer"] == str((moved / "tokenizer.json").resolve())
    assert zooindex.check(index=index).ok


def test_report_shows_a_text_target_by_its_texts(encoder, tmp_path, run):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    texts, labels = reviews(20)
    target = write_csv(tmp_path / "reviews.csv", texts, labels)
    code, out, err = run("report", target, "--index", index, "-o", tmp_path / "r.html",
                         "--dims", "2,3", "--no-confidence")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "samples per class: neg 10, pos 10" in page
    assert f"<td>neg</td><td>{texts[0]}</td>" in page


def test_features_and_an_unlabeled_text_target(encoder, tmp_path):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    texts, labels = reviews(20)
    feats = zooindex.features(load_target(x=texts, y=labels), "tiny", index=index)
    assert feats.shape == (20, 8) and feats.dtype == np.float32
    # the default layer's features, cached by the first call, come back the same
    again = zooindex.features(load_target(x=texts, y=labels), "tiny", index=index)
    np.testing.assert_array_equal(again, feats)
    path = tmp_path / "unlabeled.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ranking = zooindex.search(path, index=index)
    assert ranking.results[0].status == "ok"
    assert ranking.scorers == ["cluster-silhouette"]


def test_the_cli_names_a_regression_target(encoder, tmp_path, run):
    index = tmp_path / "i.db"
    zooindex.add(encoder, index=index)
    texts, _ = reviews(20)
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps({"sentence": t, "score": 0.25 * i})
                            + "\n" for i, t in enumerate(texts)))
    code, out, err = run("search", path, "--label-column", "score", "--index", index,
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["task"] == "regression" and doc["scorers"] == ["logme"]
    code, out, err = run("search", path, "--label-column", "score", "--index", index)
    assert "real-valued labels (regression)" in out + err


def test_a_text_models_activations_are_read_back_by_a_search_with_another_scorer(tmp_path):
    index = tmp_path / "i.db"
    for i in range(2):
        folder = tmp_path / f"enc{i}"
        folder.mkdir()
        tiny_encoder(folder / f"enc{i}.onnx", seed=i, hidden=8, blocks=2)
        write_tokenizer(folder)
        zooindex.add(folder / f"enc{i}.onnx", index=index)
    rng = np.random.default_rng(0)
    words = (["good", "great", "fun"], ["bad", "awful", "boring"])
    texts = [" ".join(rng.choice(words[c], 3)) + " film" for c in [0, 1] * 30]
    target = tmp_path / "reviews.csv"
    target.write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in
                                                zip(texts, [0, 1] * 30)))
    first = zooindex.search(str(target), index=index, scorers=["knn"])
    # cached under the tokenizer and pooling key the search looks them up by
    second = zooindex.search(str(target), index=index, scorers=["logme"])
    assert first.stats["run"] == 2
    assert second.stats["run"] == 0 and second.stats["from_activations"] == 2


@pytest.mark.parametrize("config, expected", [
    ({"model_type": "bert", "max_position_embeddings": 512}, 512),
    # RoBERTa's positions start after the padding index: 514 - (1 + 1)
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 0}, 513),
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": None}, 512),
    ({"model_type": "deberta-v2", "max_position_embeddings": 512,
      "position_biased_input": False}, None),
    ({"model_type": "bert"}, None)])
def test_the_most_tokens_a_config_allows_from_a_dict_or_a_config_object(config, expected):
    from types import SimpleNamespace

    from zooindex.text.tokenizer import max_positions

    assert max_positions(config) == expected
    assert max_positions(SimpleNamespace(**config)) == expected
