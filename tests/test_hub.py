"""zooindex.hub against a fake hub on 127.0.0.1, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support.hf_server import FakeHub, FakeRepo, point_client_at
from zooindex import hub
from zooindex.errors import DependencyError, DownloadError, ModelError

pytest.importorskip("huggingface_hub")

COMMIT = "a" * 40
V1 = "b" * 40


def tiny_model(seed: int = 0) -> onnx.ModelProto:
    """y = x @ W with a seeded 4x3 weight, so different seeds give different bytes."""
    weight = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def model_bytes(seed: int = 0) -> bytes:
    return tiny_model(seed).SerializeToString()


def with_external_data(tmp_path, location: str) -> tuple[bytes, bytes]:
    """The .onnx bytes and the weight file bytes of a model whose W lives in ``location``."""
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    onnx.save(tiny_model(3), folder / "m.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location=location, size_threshold=0)
    return (folder / "m.onnx").read_bytes(), (folder / location).read_bytes()


def pointing_at(location: str) -> bytes:
    """A model whose weight claims to live at ``location``; nothing is written there."""
    model = tiny_model(4)
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "48")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    with FakeHub() as server:
        point_client_at(monkeypatch, server.endpoint, tmp_path / "hf_home")
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
        server.add(FakeRepo("acme/tiny", {"README.md": b"# tiny\n", "model.onnx": model_bytes(0)},
                            commit=COMMIT, revisions={"v1": V1}, downloads=50,
                            tags=("onnx", "vision", "license:mit"), license="apache-2.0"))
        server.add(FakeRepo("acme/multi", {"onnx/model.onnx": model_bytes(1),
                                           "onnx/model_fp16.onnx": model_bytes(2)},
                            commit=COMMIT, downloads=80, pipeline="feature-extraction"))
        yield server


def cache(tmp_path):
    return tmp_path / "cache"


def test_fetch_downloads_into_the_commit_folder_and_records_provenance(fake_hub, tmp_path):
    [got] = hub.fetch("hf://acme/tiny")
    expected = cache(tmp_path) / "hf" / "acme--tiny" / COMMIT / "model.onnx"
    assert got.path == expected
    assert not got.path.is_symlink()  # ONNX refuses external data through symlinks
    assert got.path.read_bytes() == model_bytes(0)
    assert got.name == "tiny"
    assert got.source == {
        "hub": "hf", "repo": "acme/tiny", "revision": None, "commit": COMMIT,
        "file": "model.onnx", "license": "apache-2.0", "tags": ["onnx", "vision", "license:mit"],
        "pipeline": "image-classification", "external_data": [],
        "url": f"{fake_hub.endpoint}/acme/tiny/resolve/{COMMIT}/model.onnx"}
    # README.md is not a model: only the .onnx file is asked for
    assert fake_hub.count("GET", "/resolve/") == 1


def test_second_fetch_reuses_the_cache_without_downloading(fake_hub):
    first = hub.fetch("hf://acme/tiny")
    downloads = fake_hub.count("GET", "/resolve/") + fake_hub.count("HEAD", "/resolve/")
    again = hub.fetch("hf://acme/tiny")
    assert again == first
    # only the listing is asked for again (to resolve 'main' to a commit); no file request
    assert fake_hub.count("GET", "/resolve/") + fake_hub.count("HEAD", "/resolve/") == downloads
    assert fake_hub.count("GET", "/api/models/acme/tiny") == 2


def test_cache_dir_argument_overrides_the_default(fake_hub, tmp_path):
    [got] = hub.fetch("hf://acme/tiny", cache_dir=tmp_path / "elsewhere")
    assert got.path.is_relative_to(tmp_path / "elsewhere" / "hf")


def test_several_onnx_files_get_the_file_stem_in_their_names(fake_hub):
    got = hub.fetch("hf://acme/multi")
    assert [f.name for f in got] == ["multi-model", "multi-model_fp16"]
    assert [f.source["file"] for f in got] == ["onnx/model.onnx", "onnx/model_fp16.onnx"]
    assert [f.path.read_bytes() for f in got] == [model_bytes(1), model_bytes(2)]


def test_named_path_fetches_only_that_file(fake_hub):
    [got] = hub.fetch("hf://acme/multi/onnx/model_fp16.onnx")
    assert got.name == "multi-model_fp16"
    assert got.path.read_bytes() == model_bytes(2)
    assert fake_hub.count("GET", "/resolve/") == 1
    assert fake_hub.count("GET", "model_fp16.onnx") == 1


def test_revision_is_pinned_to_its_commit(fake_hub, tmp_path):
    [got] = hub.fetch(hub.HubRef("acme/tiny", revision="v1"))
    assert got.source["revision"] == "v1" and got.source["commit"] == V1
    assert got.path == cache(tmp_path) / "hf" / "acme--tiny" / V1 / "model.onnx"
    assert fake_hub.count("GET", f"/acme/tiny/resolve/{V1}/model.onnx") == 1
    assert fake_hub.count("GET", "/resolve/main/") == 0


def test_gated_repo_says_how_to_get_access(fake_hub):
    fake_hub.add(FakeRepo("acme/gated", {"model.onnx": model_bytes()}, gated=True))
    with pytest.raises(DownloadError) as info:
        hub.fetch("hf://acme/gated", token="hf_not_a_real_token")
    message = str(info.value)
    assert message == ("hf://acme/gated is gated: accept its terms on the hub and log in "
                       "with `hf auth login`")
    assert "hf_not_a_real_token" not in repr(info.value.__dict__) + message


def test_missing_repo_revision_and_file_are_named(fake_hub):
    with pytest.raises(DownloadError, match="repo hf://acme/nothing not found on the hub"):
        hub.fetch("hf://acme/nothing")
    with pytest.raises(DownloadError, match="revision 'v9' not found in hf://acme/tiny"):
        hub.fetch("hf://acme/tiny@v9")
    with pytest.raises(DownloadError,
                       match=r"file 'other.onnx' not in hf://acme/tiny .*ONNX files: model.onnx"):
        hub.fetch("hf://acme/tiny/other.onnx")
    assert fake_hub.count("GET", "/resolve/") == 0


def test_repo_without_onnx_files_is_refused(fake_hub):
    fake_hub.add(FakeRepo("acme/torch", {"pytorch_model.bin": b"\x80\x04N."}))
    with pytest.raises(DownloadError, match="has no .onnx files"):
        hub.fetch("hf://acme/torch")
    assert fake_hub.count("GET", "/resolve/") == 0  # the pickle is never downloaded


def test_sha256_mismatch_with_the_listing_is_refused(fake_hub, tmp_path):
    fake_hub.add(FakeRepo("acme/tampered", {"model.onnx": model_bytes(0)}, commit=COMMIT,
                          served={"model.onnx": model_bytes(9)}))
    listed = hashlib.sha256(model_bytes(0)).hexdigest()
    sent = hashlib.sha256(model_bytes(9)).hexdigest()
    with pytest.raises(DownloadError, match=f"sha256 mismatch .*expected {listed}, got {sent}"):
        hub.fetch("hf://acme/tampered")
    assert not (cache(tmp_path) / "hf" / "acme--tampered" / COMMIT / "model.onnx").exists()


def test_oversize_file_is_refused_before_downloading(fake_hub):
    fake_hub.add(FakeRepo("acme/huge", {"model.onnx": model_bytes()},
                          listed_size={"model.onnx": 5_000_000_000}))
    with pytest.raises(DownloadError, match="5000000000 bytes, over the limit of 2000000000"):
        hub.fetch("hf://acme/huge")
    with pytest.raises(DownloadError, match="over the limit of 100"):
        hub.fetch("hf://acme/tiny", max_bytes=100)
    assert fake_hub.count("GET", "/resolve/") + fake_hub.count("HEAD", "/resolve/") == 0


def test_external_data_is_fetched_beside_the_model(fake_hub, tmp_path):
    graph, weights = with_external_data(tmp_path, "model.onnx.data")
    fake_hub.add(FakeRepo("acme/big", {"onnx/model.onnx": graph, "onnx/model.onnx.data": weights,
                                       "onnx/unused.data": b"not referenced"}, commit=COMMIT))
    [got] = hub.fetch("hf://acme/big")
    assert got.source["external_data"] == ["onnx/model.onnx.data"]
    assert fake_hub.count("GET", "unused.data") == 0  # only what the graph names
    # the weights load from the plain file next to the model
    loaded = onnx.load(str(got.path))
    expected = numpy_helper.to_array(tiny_model(3).graph.initializer[0])
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), expected)


@pytest.mark.parametrize("location", ["../escape.data", "/etc/passwd", "a/../../x.data"])
def test_external_data_outside_the_model_folder_is_refused(fake_hub, location):
    fake_hub.add(FakeRepo("acme/evil", {"onnx/model.onnx": pointing_at(location)}))
    with pytest.raises(DownloadError, match="outside its folder; refusing it"):
        hub.fetch("hf://acme/evil")
    assert fake_hub.count("GET", "escape") + fake_hub.count("GET", "passwd") == 0


def test_external_data_missing_from_the_repo_is_reported(fake_hub):
    fake_hub.add(FakeRepo("acme/partial", {"model.onnx": pointing_at("weights.data")}))
    with pytest.raises(DownloadError, match="needs external data 'weights.data'"):
        hub.fetch("hf://acme/partial")


def test_search_lists_only_repos_with_onnx_files(fake_hub):
    fake_hub.add(FakeRepo("acme/tagged-only", {"weights.bin": b"0"}, downloads=1000))
    fake_hub.add(FakeRepo("other/pytorch", {"model.onnx": model_bytes()}, tags=("pytorch",),
                          downloads=999))
    found = hub.search("")
    assert [r["repo"] for r in found] == ["acme/multi", "acme/tiny"]  # most downloaded first
    assert found[1] == {"repo": "acme/tiny", "downloads": 50, "likes": 0,
                        "license": "apache-2.0", "onnx_files": ["model.onnx"],
                        "export": False, "weights": None, "pipeline": "image-classification"}
    assert [r["repo"] for r in hub.search("tiny")] == ["acme/tiny"]
    assert [r["repo"] for r in hub.search("", task="feature-extraction")] == ["acme/multi"]
    assert [r["repo"] for r in hub.search("", limit=1)] == ["acme/multi"]
    assert "other/pytorch" in [r["repo"] for r in hub.search("", library=None)]


@pytest.mark.parametrize("text, expected", [
    ("hf://acme/tiny", hub.HubRef("acme/tiny", None, None)),
    ("hf://acme/tiny/", hub.HubRef("acme/tiny", None, None)),
    ("hf://acme/tiny@v1.0", hub.HubRef("acme/tiny", "v1.0", None)),
    (f"hf://acme/tiny@{COMMIT}/onnx/m.onnx", hub.HubRef("acme/tiny", COMMIT, "onnx/m.onnx")),
    ("hf://acme/tiny/model.onnx", hub.HubRef("acme/tiny", None, "model.onnx")),
    ("hf://acme/tiny@refs/pr/3/a/m.onnx", hub.HubRef("acme/tiny", "refs/pr/3", "a/m.onnx")),
])
def test_parse_ref_round_trips(text, expected):
    ref = hub.parse_ref(text)
    assert ref == expected
    assert hub.parse_ref(str(ref)) == ref
    assert hub.is_ref(text)


@pytest.mark.parametrize("text", [
    "acme/tiny", "hf://", "hf://acme", "hf://acme/tiny@", "hf://acme/ti ny",
    "hf://acme/tiny/weights.bin", "hf://acme/tiny/../x.onnx", "hf://acme/tiny//m.onnx",
    "hf://ac..me/tiny",
])
def test_parse_ref_rejects_bad_syntax_with_the_expected_form(text):
    with pytest.raises(DownloadError, match=r"hf://OWNER/REPO\[@REVISION\]\[/PATH.onnx\]"):
        hub.parse_ref(text)
    assert hub.is_ref(text) == text.startswith("hf://")


def test_unreachable_hub_is_a_download_error(tmp_path, monkeypatch):
    with FakeHub() as gone:
        endpoint = gone.endpoint
    point_client_at(monkeypatch, endpoint, tmp_path / "hf_home")
    with pytest.raises(DownloadError, match="could not reach hf://acme/tiny"):
        hub.fetch("hf://acme/tiny", cache_dir=tmp_path)


def test_file_that_is_not_onnx_is_a_model_error(fake_hub):
    fake_hub.add(FakeRepo("acme/broken", {"model.onnx": b"<html>rate limited</html>"}))
    with pytest.raises(ModelError, match="hf://acme/broken/model.onnx is not a readable ONNX"):
        hub.fetch("hf://acme/broken")


def test_hub_ref_built_in_code_follows_the_same_rules(fake_hub):
    with pytest.raises(DownloadError, match="'README.md' in hf://acme/tiny/README.md is not"):
        hub.fetch(hub.HubRef("acme/tiny", path="README.md"))
    with pytest.raises(DownloadError, match="bad repo"):
        hub.fetch(hub.HubRef("acme/../tiny"))
    assert fake_hub.requests == []


def test_listed_file_name_leaving_the_cache_folder_is_refused(fake_hub):
    fake_hub.add(FakeRepo("acme/sly", {"../../sly.onnx": model_bytes()}))
    with pytest.raises(DownloadError, match="lists a file named '../../sly.onnx'"):
        hub.fetch("hf://acme/sly")
    assert fake_hub.count("GET", "/resolve/") == 0


def test_missing_client_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now fails
    with pytest.raises(DependencyError, match=r"pip install 'zooindex\[hub\]'"):
        hub.fetch("hf://acme/tiny")
    with pytest.raises(DependencyError):
        hub.search("resnet")
