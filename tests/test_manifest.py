"""ONNX Model Zoo manifests: reading, checking, and fetching entries from a folder or HTTP."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from onnx import TensorProto, helper

from support.hf_server import StaticServer, forbid_remote_connections
from zooindex.errors import DownloadError
from zooindex.manifest import MANIFEST_NAME, ManifestEntry, fetch_entry, read_manifest

PORTS = {"inputs": [{"name": "x", "shape": [1, 4], "type": "tensor(float)"}],
         "outputs": [{"name": "y", "shape": [1, 4], "type": "tensor(float)"}]}


def model_bytes(op: str) -> bytes:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


RELU, SIGMOID = model_bytes("Relu"), model_bytes("Sigmoid")


def entry(model: str, path: str, data: bytes, opset=13, **metadata) -> dict:
    meta = {"model_sha": hashlib.sha256(data).hexdigest(), "model_bytes": len(data),
            "tags": ["vision", "toy"], "io_ports": PORTS, **metadata}
    return {"model": model, "model_path": path, "onnx_version": "1.14",
            "opset_version": opset, "metadata": meta}


MANIFEST = [entry("Relu", "vision/relu/relu-13.onnx", RELU),
            entry("Sigmoid", "text/sigmoid-13.onnx", SIGMOID)]


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A zoo folder with two models and their manifest; the cache goes to tmp_path too."""
    forbid_remote_connections(monkeypatch)
    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "zoo"
    (root / "vision" / "relu").mkdir(parents=True)
    (root / "text").mkdir()
    (root / "vision" / "relu" / "relu-13.onnx").write_bytes(RELU)
    (root / "text" / "sigmoid-13.onnx").write_bytes(SIGMOID)
    (root / MANIFEST_NAME).write_text(json.dumps(MANIFEST))
    return root


@pytest.fixture
def served(zoo):
    """The same zoo behind HTTP under /zoo/."""
    with StaticServer() as server:
        for path in zoo.rglob("*"):
            if path.is_file():
                server.routes["/zoo/" + path.relative_to(zoo).as_posix()] = path.read_bytes()
        yield server


def cached(tmp_path) -> list:
    folder = tmp_path / "cache"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_reads_entries_from_a_manifest_file(zoo):
    entries, base = read_manifest(str(zoo / MANIFEST_NAME))
    assert base == str(zoo.resolve())
    assert [e.model for e in entries] == ["Relu", "Sigmoid"]
    relu = entries[0]
    assert relu.model_path == "vision/relu/relu-13.onnx"
    assert relu.opset == 13
    assert relu.sha256 == hashlib.sha256(RELU).hexdigest()
    assert relu.size == len(RELU)
    assert relu.tags == ("vision", "toy")
    assert relu.io_ports == PORTS
    assert relu.manifest == str((zoo / MANIFEST_NAME).resolve())


def test_a_folder_or_file_url_reads_the_same_manifest(zoo):
    by_file, base = read_manifest(str(zoo / MANIFEST_NAME))
    assert read_manifest(str(zoo)) == (by_file, base)
    assert read_manifest((zoo / MANIFEST_NAME).as_uri()) == (by_file, base)


def test_fetches_an_entry_from_a_folder_into_the_cache(zoo, tmp_path):
    entries, base = read_manifest(str(zoo))
    got = fetch_entry(entries[1], base)
    sha = hashlib.sha256(SIGMOID).hexdigest()
    assert got.path == tmp_path / "cache" / sha / "sigmoid-13.onnx"
    assert got.path.read_bytes() == SIGMOID
    assert got.name == "sigmoid-13"
    assert got.source == {"hub": "manifest", "manifest": str((zoo / MANIFEST_NAME).resolve()),
                          "model": "Sigmoid", "model_path": "text/sigmoid-13.onnx",
                          "opset": 13, "tags": ["vision", "toy"],
                          "url": str((zoo / "text" / "sigmoid-13.onnx").resolve())}


def test_fetches_over_http_and_reuses_the_cache(served, tmp_path):
    entries, base = read_manifest(served.url(f"/zoo/{MANIFEST_NAME}"))
    assert base == served.url("/zoo/")
    first = fetch_entry(entries[0], base, cache_dir=tmp_path / "mine")
    assert first.path == tmp_path / "mine" / hashlib.sha256(RELU).hexdigest() / "relu-13.onnx"
    assert first.source["url"] == served.url("/zoo/vision/relu/relu-13.onnx")
    assert first.source["manifest"] == served.url(f"/zoo/{MANIFEST_NAME}")
    again = fetch_entry(entries[0], base, cache_dir=tmp_path / "mine")
    assert again == first
    # manifest once, model once: the known sha256 found the cached file the second time
    assert served.hits == [f"/zoo/{MANIFEST_NAME}", "/zoo/vision/relu/relu-13.onnx"]


def test_model_path_is_quoted_into_the_url(served, tmp_path):
    served.routes["/zoo/odd%20name%23.onnx"] = RELU
    odd = ManifestEntry("Odd", "odd name#.onnx", 13, None, None, (), None)
    got = fetch_entry(odd, served.url("/zoo/"))
    assert got.path.read_bytes() == RELU
    assert got.path.name == "odd name#.onnx"


def test_sha256_mismatch_is_refused_and_nothing_is_cached(zoo, tmp_path):
    (zoo / "text" / "sigmoid-13.onnx").write_bytes(RELU)  # the file changed under the manifest
    entries, base = read_manifest(str(zoo))
    with pytest.raises(DownloadError, match="sha256 mismatch .*sigmoid-13.onnx: expected "
                       + hashlib.sha256(SIGMOID).hexdigest()):
        fetch_entry(entries[1], base)
    assert cached(tmp_path) == []


def test_listed_size_bounds_the_download(served, tmp_path):
    small = ManifestEntry("Relu", "vision/relu/relu-13.onnx", 13, None, 10, (), None)
    with pytest.raises(DownloadError, match="over the limit of 10"):
        fetch_entry(small, served.url("/zoo/"))
    big = ManifestEntry("Relu", "vision/relu/relu-13.onnx", 13, None, 10**12, (), None)
    hits = len(served.hits)
    with pytest.raises(DownloadError, match="1000000000000 bytes, over the limit"):
        fetch_entry(big, served.url("/zoo/"))
    assert len(served.hits) == hits  # refused before any request
    assert cached(tmp_path) == []


@pytest.mark.parametrize("model_path", [
    "../outside.onnx", "vision/../../outside.onnx", "/etc/passwd", "C:/models/m.onnx",
    "http://elsewhere.example/m.onnx", "vision\\..\\m.onnx", "~/m.onnx",
])
def test_model_path_leaving_the_base_is_refused(served, zoo, model_path):
    bad = ManifestEntry("Evil", model_path, 13, None, None, (), None)
    for base in (served.url("/zoo/"), str(zoo), zoo.as_uri()):
        with pytest.raises(DownloadError, match="not a relative path inside the manifest's"):
            fetch_entry(bad, base)
    assert served.hits == []


def test_symbolic_link_out_of_a_folder_base_is_refused(zoo, tmp_path):
    (tmp_path / "secret.onnx").write_bytes(RELU)
    try:
        os.symlink(tmp_path / "secret.onnx", zoo / "link.onnx")
    except OSError:
        pytest.skip("symbolic links not available here")
    linked = ManifestEntry("Link", "link.onnx", 13, None, None, (), None)
    with pytest.raises(DownloadError, match="leads outside"):
        fetch_entry(linked, str(zoo))


@pytest.mark.parametrize("content, complaint", [
    ("{not json", "is not valid JSON"),
    ('{"model": "x"}', "holds a JSON dict, not the list"),
    ('["x"]', "entry 0 is a JSON str"),
    (json.dumps([{"model_path": "a.onnx"}]), "entry 0 has no 'model' name"),
    (json.dumps([MANIFEST[0], {"model": "B"}]), r"entry 1 \('B'\) has no 'model_path'"),
    (json.dumps([entry("B", "b.onnx", RELU, opset="13")]), "'opset_version' is '13'"),
    (json.dumps([entry("B", "b.onnx", RELU, model_sha="abc")]), "'metadata.model_sha'.*64 hex"),
    (json.dumps([entry("B", "b.onnx", RELU, model_bytes=-1)]), "'metadata.model_bytes' is -1"),
    (json.dumps([entry("B", "b.onnx", RELU, tags="vision")]), "'metadata.tags' must be a list"),
    (json.dumps([entry("B", "b.onnx", RELU, io_ports=[1])]), "'metadata.io_ports' must be"),
    (json.dumps([{"model": "B", "model_path": "b.onnx", "metadata": []}]), "'metadata' is a JSON"),
])
def test_malformed_manifests_say_what_is_wrong(tmp_path, content, complaint):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DownloadError, match=complaint):
        read_manifest(str(path))


def test_minimal_entry_without_metadata_is_accepted(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"model": "M", "model_path": "m.onnx"}]))
    [only], _ = read_manifest(str(path))
    assert (only.opset, only.sha256, only.size, only.tags, only.io_ports) == (None, None, None,
                                                                              (), None)


def test_missing_manifest_and_unreachable_url_are_download_errors(tmp_path, served):
    with pytest.raises(DownloadError, match="not found; give a manifest file"):
        read_manifest(str(tmp_path / "nowhere.json"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        read_manifest(served.url("/elsewhere/ONNX_HUB_MANIFEST.json"))
