"""The command line: one-line errors, JSON for scripts, help for every command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zooindex

from support.data import clustered
from support.onnx_factory import cnn_no_dense, labels_only, linear_features, save
from zooindex.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(tmp_path):
    w = np.zeros((8, 2), dtype=np.float32)
    w[0, 0] = w[1, 1] = 1
    save(linear_features(w, classes=3), tmp_path / "good.onnx")
    w2 = np.zeros((8, 2), dtype=np.float32)
    w2[5, 0] = w2[6, 1] = 1
    save(linear_features(w2, classes=3), tmp_path / "noise.onnx")
    x, y = clustered()
    np.savez(tmp_path / "t.npz", x=x, y=y)
    return tmp_path, tmp_path / "index.db"


def all_commands(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("command", list(all_commands()), ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(command, run):
    code, out, _ = run(*command, "--help")
    assert code == 0 and "Usage:" in out
    readme = (ROOT / "README.md").read_text()
    assert f"zooindex {' '.join(command)}" in readme, f"README lacks `zooindex {' '.join(command)}`"


def test_search_json_is_ranked_and_alone_on_stdout(run, setup):
    folder, index = setup
    assert run("add", "--index", index, folder)[0] == 0
    code, out, err = run("search", "--index", index, folder / "t.npz", "--json")
    assert code == 0
    doc = json.loads(out)
    rows = doc["results"]
    assert [r["model"] for r in rows] == ["good", "noise"]
    assert [r["rank"] for r in rows] == [1, 2]
    assert {"rank", "model", "score", "layer", "width", "components"} <= set(rows[0])
    # the default scorer is the recommended one, LogME; each row carries its score
    assert doc["samples"] == 120 and doc["scorers"] == ["logme"] and doc["dim"] == 10
    assert all(r["logme"] == r["score"] for r in rows)
    assert rows[0]["score"] > rows[1]["score"]
    assert doc["metric"] == "cosine" and doc["zooindex"] == zooindex.__version__
    assert doc["stats"]["ranked"] == 2 and doc["stats"]["run"] == 2
    # the ensemble, when named, carries its members beside the combined score
    code, out, _ = run("search", "--index", index, folder / "t.npz", "--json",
                       "--scorer", "ensemble")
    assert code == 0
    doc = json.loads(out)
    rows = doc["results"]
    assert doc["scorers"] == ["ensemble"] and [r["model"] for r in rows] == ["good", "noise"]
    assert {"ensemble", "logme", "sfda", "knn", "ncti-sei"} <= set(rows[0])
    assert rows[0]["ensemble"] == rows[0]["score"] == 1.0  # first on every member


def test_search_table_and_csv(run, setup):
    folder, index = setup
    run("add", "--index", index, folder)
    code, out, _ = run("search", "--index", index, folder / "t.npz")
    assert code == 0 and re.search(r"1\s+good", out)
    # the default (LogME alone) has no member columns; the confidence columns follow
    assert out.splitlines()[0].split()[:6] == ["rank", "model", "score", "ranks", "first",
                                               "layer"]
    code, out, _ = run("search", "--index", index, folder / "t.npz", "--csv")
    assert out.splitlines()[0].startswith("rank,model,score")
    assert out.splitlines()[0].endswith(",logme")
    # a named ensemble's members are columns beside its score
    code, out, _ = run("search", "--index", index, folder / "t.npz", "--scorer", "ensemble")
    assert code == 0 and re.search(r"1\s+good", out)
    assert out.splitlines()[0].split()[:7] == ["rank", "model", "score", "logme", "sfda",
                                               "knn", "ncti-sei"]
    code, out, _ = run("search", "--index", index, folder / "t.npz", "--csv",
                       "--scorer", "ensemble")
    assert out.splitlines()[0].startswith("rank,model,score")
    assert out.splitlines()[0].endswith("ensemble,logme,sfda,knn,ncti-sei")


def test_the_search_header_names_a_combinations_members(run, setup):
    from zooindex.estimators.combine import ENSEMBLE_MEMBERS

    folder, index = setup
    run("add", "--index", index, folder)
    code, _, err = run("search", "--index", index, folder / "t.npz", "--scorer", "ensemble")
    assert code == 0 and f"ensemble ({', '.join(ENSEMBLE_MEMBERS)}), D=10" in err
    code, _, err = run("search", "--index", index, folder / "t.npz", "--scorer",
                       "ensemble:knn,logme")
    assert code == 0 and "; ensemble:knn,logme, D=10" in err


@pytest.mark.parametrize("content", [b"not onnx at all", b"\x08\x07\x12\x03abc" * 3, b""])
def test_bad_model_file_is_one_line_error_and_index_unchanged(run, setup, content):
    folder, index = setup
    run("add", "--index", index, folder / "good.onnx")
    bad = folder / "bad.onnx"
    bad.write_bytes(content)
    code, out, err = run("add", "--index", index, bad)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "bad.onnx" in err
    code, out, _ = run("ls", "--index", index, "--json")
    assert [m["name"] for m in json.loads(out)] == ["good"]


def test_truncated_model_is_refused(run, setup):
    folder, index = setup
    data = (folder / "good.onnx").read_bytes()
    (folder / "cut.onnx").write_bytes(data[: len(data) // 2])
    code, _, err = run("add", "--index", index, folder / "cut.onnx")
    assert code == 1 and "cut.onnx" in err and len(err.strip().splitlines()) == 1


def test_no_dense_layer_message_says_layer_and_lists_candidates(run, setup):
    folder, index = setup
    save(labels_only(cnn_no_dense()), folder / "nodense.onnx")
    run("add", "--index", index, folder / "nodense.onnx")
    code, out, err = run("search", "--index", index, folder / "t.npz", "--model", "nodense")
    assert "--layer" in err and "zooindex layers nodense" in err


def test_unknown_layer_is_a_one_line_error_and_inputs_alone_rank_without_labels(run, setup):
    folder, index = setup
    run("add", "--index", index, folder / "good.onnx")
    code, _, err = run("add", "--index", index, "--name", "g2", "--layer", "fc9",
                       folder / "good.onnx")
    assert code == 1 and "fc9" in err and "candidates" in err
    x, _ = clustered()
    np.savez(folder / "nolabels.npz", x=x)
    code, out, err = run("search", "--index", index, folder / "nolabels.npz")
    assert code == 0 and "no labels" in err.splitlines()[0] and "good" in out
    assert "note: target" in err and "has no labels: ranked by cluster-silhouette" in err
    assert "an unlabeled ranking is weak" in err


def test_debug_variable_shows_the_traceback(run, setup, monkeypatch):
    folder, index = setup
    (folder / "bad.onnx").write_bytes(b"junk")
    monkeypatch.setenv("ZOOINDEX_DEBUG", "1")
    from zooindex.errors import ModelError

    with pytest.raises(ModelError):
        main(["add", "--index", str(index), str(folder / "bad.onnx")])


def test_layers_ls_show_rm_scorers(run, setup):
    folder, index = setup
    run("add", "--index", index, folder, "--tag", "team=vision")
    code, out, _ = run("layers", "--index", index, "good")
    assert code == 0 and "*" in out
    code, out, _ = run("ls", "--index", index)
    assert "team=vision" in out and "ok" in out
    code, out, _ = run("show", "--index", index, "good", "--json")
    assert json.loads(out)["tags"] == {"team": "vision"}
    code, out, _ = run("rm", "--index", index, "noise")
    assert code == 0
    code, out, err = run("rm", "--index", index, "noise")
    assert code == 1 and "not in the index" in err
    code, out, _ = run("scorers")
    assert "silhouette" in out


def test_help_is_fast_and_imports_no_numpy():
    code = ("import sys, zooindex.cli; "
            "heavy = [m for m in ('numpy', 'onnx', 'onnxruntime', 'sklearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


@pytest.mark.slow
def test_add_and_search_at_once_from_two_processes(setup, tmp_path):
    folder, index = setup
    env = dict(os.environ, ZOOINDEX_INDEX=str(index))
    subprocess.run([sys.executable, "-m", "zooindex.cli", "add", str(folder / "good.onnx")],
                   env=env, check=True, capture_output=True)
    more = tmp_path / "more"
    more.mkdir()
    for i in range(6):
        w = np.zeros((8, 2), dtype=np.float32)
        w[i % 8, 0] = w[(i + 3) % 8, 1] = 1
        save(linear_features(w, classes=3), more / f"m{i}.onnx")
    procs = [subprocess.Popen([sys.executable, "-m", "zooindex.cli", "add", str(more)],
                              env=env, stderr=subprocess.PIPE, text=True),
             subprocess.Popen([sys.executable, "-m", "zooindex.cli", "search",
                               str(folder / "t.npz"), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert json.loads(results[1][0])["results"][0]["model"] in {"good", *(f"m{i}" for i in range(6))}


def test_cache_info_and_clear(run, setup):
    folder, index = setup
    run("add", "--index", index, folder)
    run("search", "--index", index, folder / "t.npz", "--layer", "all")
    code, out, _ = run("cache", "info", "--index", index, "--json")
    stats = json.loads(out)
    files = list(Path(stats["folder"]).iterdir())
    assert code == 0 and stats["folder"] == f"{index}-activations"
    assert stats["activations"] == len(files) > 2  # one file per model x layer
    assert stats["activation_bytes"] == sum(f.stat().st_size for f in files)
    code, out, _ = run("cache", "info", "--index", index)
    assert code == 0 and out.startswith(f"{len(files)} cached activations, ")
    assert f"in {index}-activations;" in out
    code, out, _ = run("cache", "clear", "--index", index)
    assert code == 0 and out.startswith(f"cleared {len(files)} cached activations")
    assert list(Path(stats["folder"]).iterdir()) == []
    code, out, _ = run("search", "--index", index, folder / "t.npz", "--json")
    assert code == 0 and not any(r["cached"] for r in json.loads(out)["results"])
