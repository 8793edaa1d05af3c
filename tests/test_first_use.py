"""What a new user runs into: honest summaries, refusals in one line, nothing created by
mistake, partial adds, and an API that shows itself."""

import json
import os
import pydoc
import stat

import numpy as np
import pytest

import zooindex
from support.onnx_factory import mlp, save
from zooindex.audit import check


def _summary(err: str) -> str:
    return next(line for line in err.splitlines() if " models ranked" in line)


def test_the_summary_counts_the_whole_search_whatever_top_shows(run, zoo):
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--top", "1")
    assert code == 0 and len(out.strip().splitlines()) == 3  # header, rule, one row
    assert _summary(err).startswith("3 of 3 models ranked, 0 skipped")
    assert "3 run on CPUExecutionProvider" in _summary(err)
    assert "showing the top 1" in _summary(err)
    # a layer sweep: rows are model/layer pairs, models are counted as models
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--layer", "all",
                         "--top", "2")
    pairs = sum(len(zooindex.layers(m, index=zoo["index"])) for m in ("good", "noise",
                                                                       "mixed"))
    assert f"3 of 3 models ranked ({pairs} model/layer rows)" in _summary(err)
    # hscore from the activations the first search cached: no model runs
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--scorer",
                         "hscore")
    assert "0 run, 3 scored from cached activations, 0 from cached scores" in _summary(err)
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--scorer",
                         "hscore")
    assert "0 run, 0 scored from cached activations, 3 from cached scores" in _summary(err)


@pytest.mark.parametrize("top", ["0", "-1"])
def test_top_must_be_positive(run, zoo, top):
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--top", top)
    assert code == 2 and out == "" and "--top" in err
    with pytest.raises(zooindex.ZooIndexError, match="--top"):
        zooindex.search(zoo["target"], index=zoo["index"], top=int(top))


def test_json_and_csv_are_exclusive(run, zoo):
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--json", "--csv")
    assert code == 2 and out == "" and "exclusive" in err


def test_a_search_that_ranks_nothing_fails_in_one_line_and_leaves_no_orphan(run, zoo,
                                                                             tmp_path):
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--layer",
                         "nosuch")
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: no model was ranked for {zoo['target']}: no layer 'nosuch' "
                      "(see `zooindex layers MODEL`) (all 3 models)"]
    assert "candidates" not in err  # no candidate list repeated per model
    # a target that fits no model: the reason once
    np.savez(tmp_path / "v.npz", x=np.ones((20, 100), np.float32), y=np.arange(20) % 2)
    code, out, err = run("search", "--index", zoo["index"], tmp_path / "v.npz")
    assert code == 1 and "(all 3 models)" in err.splitlines()[-1]
    assert check(index=zoo["index"]).ok  # no target row without numbers


def test_read_commands_refuse_a_missing_index_and_create_nothing(run, zoo, tmp_path):
    typo = tmp_path / "zoo-typo.db"
    for args in (["search", zoo["target"]], ["ls"], ["layers", "good"], ["cache", "info"],
                 ["check"], ["show", "good"]):
        code, out, err = run(*args, "--index", typo)
        assert code == 1 and f"no index at {typo}" in err, args
        assert not typo.exists()
    code, out, err = run("add", "--index", tmp_path / "no" / "such" / "dir" / "z.db",
                         zoo["folder"] / "good.onnx")
    assert code == 1 and "does not exist" in err and not (tmp_path / "no").exists()


def test_add_says_where_it_creates_the_index(run, zoo, tmp_path):
    index = tmp_path / "new.db"
    code, out, err = run("add", "--index", index, zoo["folder"] / "good.onnx")
    assert code == 0 and f"created the index {index}" in err
    code, out, err = run("add", "--index", index, zoo["folder"] / "noise.onnx")
    assert code == 0 and "created" not in err


def test_add_keep_going_adds_the_good_files_and_reports_the_bad(run, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for seed in range(2):
        save(mlp(seed=seed), folder / f"m{seed}.onnx")
    (folder / "cut.onnx").write_bytes((folder / "m0.onnx").read_bytes()[:100])
    index = tmp_path / "i.db"
    code, out, err = run("add", "--index", index, folder)
    assert code == 1 and "cut.onnx" in err and not index.exists()  # all or nothing
    code, out, err = run("add", "--index", index, folder, "--keep-going")
    assert code == 1
    assert [line.split()[:2] for line in out.splitlines()] == [["added", "m0"],
                                                               ["added", "m1"]]
    assert err.count("failed") == 1 and "cut.onnx" in err
    assert [m["name"] for m in zooindex.ls(index=index)] == ["m0", "m1"]


def test_report_out_errors_are_one_line_and_create_no_folder(run, zoo, tmp_path):
    code, out, err = run("report", "--index", zoo["index"], zoo["target"], "--out",
                         tmp_path / "missing" / "r.html")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "missing").exists()
    (tmp_path / "plain").write_text("a file")
    code, out, err = run("report", "--index", zoo["index"], zoo["target"], "--out",
                         tmp_path / "plain" / "r.html")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "is a file" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        code, out, err = run("report", "--index", zoo["index"], zoo["target"], "--out",
                             locked / "r.html")
        assert code == 1 and len(err.strip().splitlines()) == 1 and "permission" in err


def test_the_api_shows_itself(zoo):
    api = {"add", "layers", "ls", "show", "rm", "search", "features", "evaluate", "report",
           "check", "cache_info", "cache_clear", "hub_search", "scorers"}
    assert api <= set(dir(zooindex))
    text = pydoc.render_doc(zooindex, renderer=pydoc.plaintext)
    for name in api:
        assert f"{name}(" in text, name
    assert zooindex.cache_info(index=zoo["index"])["activations"] == 0
    assert zooindex.check(index=zoo["index"]).ok
    report = zooindex.report(zoo["target"], out=zoo["index"].parent / "r.png",
                             index=zoo["index"], top=1, dims=(2,))
    assert report.exists()


def test_search_json_carries_its_context(run, zoo):
    code, out, err = run("search", "--index", zoo["index"], zoo["target"], "--json",
                         "--dim", "3", "--classes", "0,2")
    doc = json.loads(out)
    assert doc["samples"] == 80 and doc["classes"] == [0, 2] and doc["dim"] == 3
    assert doc["scorers"] == ["logme"] and doc["layer"] is None  # the default scorer
    assert [r["rank"] for r in doc["results"]] == [1, 2, 3]


def test_add_output_chooses_the_class_scores_and_layers_explains_the_default(run,
                                                                           tmp_path):
    from test_graph import detector  # box regression first, then class logits

    save(detector(softmax=False), tmp_path / "det.onnx")
    index = tmp_path / "i.db"
    assert zooindex.add(tmp_path / "det.onnx", index=index)[0].status == "added"
    assert zooindex.show("det", index=index)["output_name"] == "boxes"  # no softmax
    code, out, err = run("add", "--index", index, tmp_path / "det.onnx", "--replace",
                         "--output", "logits")
    assert code == 0
    shown = zooindex.show("det", index=index)
    assert shown["output_name"] == "logits"
    assert shown["default_reason"] == ("input of the final classifier Gemm (5 -> 2): "
                                       "hidden dense layer (Relu)")
    code, out, err = run("layers", "--index", index, "det")
    assert out.strip().splitlines()[-1] == ("default (*) trunk: input of the final "
                                            "classifier Gemm (5 -> 2): hidden dense layer "
                                            "(Relu)")


def test_a_layer_sweep_caches_narrow_layers_and_says_what_the_cache_holds(run, zoo,
                                                                           monkeypatch):
    monkeypatch.setenv("ZOOINDEX_CACHE_SWEEP_BYTES", "1000")  # (120 x 8) x 4 bytes: over
    ranking = zooindex.search(zoo["target"], index=zoo["index"], layer="all")
    assert len(ranking.ranked) > 3  # every layer was scored
    with zooindex.Index(zoo["index"]) as idx:
        rows = list(idx.db.execute("SELECT layer FROM activations"))
        layers = {r[0] for r in rows}
    defaults = {zooindex.show(m, index=zoo["index"])["default_layer"]
                for m in ("good", "noise", "mixed")}
    narrow = {r.layer for r in ranking.ranked if r.width * 120 * 4 <= 1000}
    assert layers == defaults | narrow  # the default always, others up to the limit
    code, out, err = run("cache", "info", "--index", zoo["index"])
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{len(rows)} cached activations")
    assert len(lines) == 2 and "entries of 3 models" in lines[1]
    assert str(zoo["target"]) in lines[1]
