"""Remote models end to end: `add hf://...`, `add --manifest`, then filters on ls/search."""

import hashlib
import json

import numpy as np
import pytest

import zooindex
from support.data import clustered
from support.hf_server import FakeHub, FakeRepo, StaticServer, point_client_at
from support.onnx_factory import linear_features, mlp
from zooindex.cli import main
from zooindex.errors import DownloadError

pytest.importorskip("huggingface_hub")
COMMIT = "c" * 40


def features_model(dims, seed=0):
    w = np.zeros((8, len(dims)), dtype=np.float32)
    for j, d in enumerate(dims):
        w[d, j] = 1.0
    return linear_features(w, classes=3, seed=seed).SerializeToString()


@pytest.fixture
def hub_index(tmp_path, monkeypatch):
    with FakeHub() as server:
        point_client_at(monkeypatch, server.endpoint, tmp_path / "hf_home")
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
        server.add(FakeRepo("acme/good", {"model.onnx": features_model([0, 1])},
                            commit=COMMIT, tags=("onnx", "vision"), license="apache-2.0",
                            pipeline="image-classification", downloads=10))
        server.add(FakeRepo("acme/gated", {"model.onnx": features_model([2, 3])},
                            commit=COMMIT, gated=True))
        x, y = clustered()
        np.savez(tmp_path / "t.npz", x=x, y=y)
        yield server, tmp_path, tmp_path / "index.db"


def test_add_hf_records_provenance_and_ranks(hub_index, capsys):
    server, folder, index = hub_index
    added = zooindex.add("hf://acme/good", index=index)
    assert [a.name for a in added] == ["good"] and added[0].status == "added"
    src = zooindex.show("good", index=index)["source"]
    assert src["hub"] == "hf" and src["repo"] == "acme/good" and src["commit"] == COMMIT
    assert src["license"] == "apache-2.0" and "vision" in src["tags"]
    assert src["pipeline"] == "image-classification"
    # same content again: a no-op, and nothing downloaded a second time
    files_before = server.count("GET", "/resolve/")
    assert zooindex.add("hf://acme/good", index=index)[0].status == "unchanged"
    assert server.count("GET", "/resolve/") == files_before
    # a local model beside it; filters narrow by source, hub tag, size and name
    local = folder / "local.onnx"
    local.write_bytes(features_model([5, 6]))
    zooindex.add(local, index=index, tags={"team": "ml"})
    main(["ls", "--index", str(index), "--source", "hf", "--json"])
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["good"]
    main(["ls", "--index", str(index), "--tag", "team=ml", "--json"])
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["local"]
    main(["ls", "--index", str(index), "--tag", "tag=vision", "--json"])
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["good"]
    main(["search", "--index", str(index), str(folder / "t.npz"), "--name", "loc*", "--json"])
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["results"]] == ["local"]
    with pytest.raises(SystemExit):  # no model that small: a one-line error
        main(["search", "--index", str(index), str(folder / "t.npz"), "--max-params", "1",
              "--json"])
    out, err = capsys.readouterr()
    assert out == "" and "no indexed model matches the filters" in err


def test_gated_repo_is_a_one_line_error_and_adds_nothing(hub_index, capsys):
    _, _, index = hub_index
    with pytest.raises(SystemExit):
        main(["add", "--index", str(index), "hf://acme/gated"])
    err = capsys.readouterr().err
    assert "gated" in err and len(err.strip().splitlines()) == 1
    assert not index.exists()  # nothing was added, not even an empty index
    with pytest.raises(DownloadError):
        zooindex.add("hf://acme/missing", index=index)


def test_add_manifest_checks_sha_and_keeps_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
    good = mlp(input_dim=8, hidden=(6, 4), classes=3).SerializeToString()
    entries = [{"model": "MLP", "model_path": "vision/mlp-17.onnx", "onnx_version": "1.14",
                "opset_version": 17,
                "metadata": {"model_sha": hashlib.sha256(good).hexdigest(),
                             "model_bytes": len(good), "tags": ["vision", "tiny"],
                             "io_ports": {}}}]
    with StaticServer() as server:
        server.routes["/zoo/ONNX_HUB_MANIFEST.json"] = json.dumps(entries).encode()
        server.routes["/zoo/vision/mlp-17.onnx"] = good
        index = tmp_path / "i.db"
        added = zooindex.add(manifest=server.url("/zoo/ONNX_HUB_MANIFEST.json"), index=index)
        assert [a.name for a in added] == ["mlp-17"]
        src = zooindex.show("mlp-17", index=index)["source"]
        assert src["hub"] == "manifest" and src["tags"] == ["vision", "tiny"]
        # a tampered file on the server is refused by its sha256, and nothing is added
        server.routes["/zoo/vision/mlp-17.onnx"] = good[:-1] + b"\x00"
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache2"))
        with pytest.raises(DownloadError, match="sha256"):
            zooindex.add(manifest=server.url("/zoo/ONNX_HUB_MANIFEST.json"),
                         index=tmp_path / "j.db")
        assert not (tmp_path / "j.db").exists()
