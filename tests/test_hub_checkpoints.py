"""Checkpoints as the hubs hold them (transformers, timm), exported to ONNX on add.

Tiny random checkpoints are written in the test by the libraries themselves
(``save_pretrained``; timm's ``save_for_hf``), served by the fake hub on 127.0.0.1 or
read from a folder, added, and then checked value for value: the exported model's
default layer must hold what the PyTorch model's classifier reads (its pooled features)
and its output the PyTorch logits, both to 1e-4 (float32 through two runtimes whose
kernels sum in different orders; the values are O(1)).
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import onnx
import pytest

from support.hf_server import FakeRepo, json_file
from zooindex import checkpoints, graph, hub, zoo
from zooindex.errors import DependencyError, DownloadError, ModelError

pytest.importorskip("huggingface_hub")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.torch

COMMIT = "c" * 40
SIDE = 32
LABELS = 5
PREPROCESSOR = {"do_resize": True, "size": {"height": SIDE, "width": SIDE},
                "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5], "do_rescale": True, "rescale_factor": 1 / 255}
TOLERANCE = 1e-4


def transformers_config(kind: str):
    """Tiny configs (hidden sizes 8-16, one or two blocks) of five families."""
    small = dict(num_labels=LABELS)
    vit_like = dict(image_size=SIDE, patch_size=8, hidden_size=16, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=32, **small)
    return {
        "vit": lambda: transformers.ViTConfig(**vit_like),
        "deit": lambda: transformers.DeiTConfig(**vit_like),
        "resnet": lambda: transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                                                    depths=[1, 1], layer_type="basic", **small),
        "convnext": lambda: transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                                        **small),
        "swin": lambda: transformers.SwinConfig(image_size=SIDE, patch_size=4, embed_dim=8,
                                                depths=[1, 1], num_heads=[1, 2],
                                                window_size=4, **small),
    }[kind]()


TRANSFORMERS_KINDS = ("vit", "deit", "resnet", "convnext", "swin")


def saved(model, folder, files=None) -> dict:
    """``save_pretrained`` into ``folder`` (plus ``files``): the repo's files as bytes."""
    model.save_pretrained(folder)
    for name, content in (files or {}).items():
        (folder / name).write_bytes(content)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def config_of(kind: str):
    config = transformers_config(kind)
    config.architectures = []  # from_config looks the class up among these
    return config


def classifier(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return transformers.AutoModelForImageClassification.from_config(config_of(kind)).eval()


def classifier_input(model, x):
    """What the classification head of a transformers model receives."""
    base = getattr(model, model.base_model_prefix)
    out = base(pixel_values=x)
    if model.config.model_type in ("vit", "deit"):  # the class token after the last norm
        return out.last_hidden_state[:, 0]
    return out.pooler_output.flatten(1)


def sample(seed: int = 1, n: int = 3, side: int = SIDE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, side, side)).astype(np.float32)


def run_layer(path, layer: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the default layer's values, the graph's first output) for ``x``."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    output = model.graph.output[0].name
    exposed = graph.expose(model, [layer])
    session = ort.InferenceSession(exposed.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {session.get_inputs()[0].name: x})))
    return got[layer].reshape(len(x), -1), got[output]


def add_repo(server, repo: str, files: dict, **kw) -> FakeRepo:
    return server.add(FakeRepo(repo, files, commit=COMMIT, tags=kw.pop("tags", ("transformers",)),
                               **kw))


def same_as_torch(added, model, x) -> None:
    """The exported model's default layer and logits equal the transformers classifier's
    input and logits on ``x``, to TOLERANCE."""
    features, logits = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        expected = classifier_input(model, torch.from_numpy(x)).numpy()
        expected_logits = model(pixel_values=torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE, rtol=0)


# -- transformers ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TRANSFORMERS_KINDS)
def test_transformers_repo_is_exported_on_add_and_its_default_layer_is_the_pooled_features(
        fake_hub, tmp_path, kind):
    model = classifier(kind)
    files = saved(model, tmp_path / kind, {"preprocessor_config.json": json_file(PREPROCESSOR)})
    add_repo(fake_hub, f"acme/{kind}", files)
    [added] = zoo.add(f"hf://acme/{kind}", index=tmp_path / "zoo.db")
    assert added.status == "added" and added.name == kind
    folder = tmp_path / "cache" / "hf" / f"acme--{kind}" / COMMIT
    assert added.path == str(folder / "zooindex-export" / "model.onnx")

    x = sample()
    same_as_torch(added, model, x)

    shown = zoo.show(kind, index=tmp_path / "zoo.db")
    export = shown["source"]["export"]
    assert export["library"] == "transformers" and export["architecture"] == kind
    assert export["class"] == type(model).__name__
    assert export["opset"] == 17 and export["dynamic_batch"] is True
    assert export["sample_shape"] == [3, SIDE, SIDE]
    assert export["weights"] == "model.safetensors" and export["pickle"] is False
    assert export["weights_sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert export["versions"]["transformers"] == transformers.__version__
    assert shown["source"]["preprocessing_from"] == "preprocessor_config.json"
    assert shown["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    # the batch axis is free, as in zooindex.export's own files
    batch = onnx.load(added.path).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value


def add_twice(fake_hub, ref: str, index, monkeypatch):
    """Add ``ref`` twice: the second add must neither export (``from_torch`` raises from
    then on) nor download the weights again, and finds the model unchanged. Returns the
    first."""
    [first] = zoo.add(ref, index=index)
    before = fake_hub.count("GET", "model.safetensors")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("zooindex.export.from_torch", no_export)
    [again] = zoo.add(ref, index=index)
    assert again.status == "unchanged" and again.sha256 == first.sha256
    assert fake_hub.count("GET", "model.safetensors") == before  # nor downloaded again
    return first


def test_a_second_add_exports_nothing(fake_hub, tmp_path, monkeypatch):
    files = saved(classifier("resnet"), tmp_path / "r",
                  {"preprocessor_config.json": json_file(PREPROCESSOR)})
    add_repo(fake_hub, "acme/resnet", files)
    add_twice(fake_hub, "hf://acme/resnet", tmp_path / "zoo.db", monkeypatch)


def test_a_local_save_pretrained_folder_is_exported_into_the_cache(tmp_path):
    model = classifier("vit", seed=3)
    folder = tmp_path / "my-vit"
    files = saved(model, folder, {"preprocessor_config.json": json_file(PREPROCESSOR)})
    [added] = zoo.add(folder, index=tmp_path / "zoo.db", cache_dir=tmp_path / "cache")
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert added.path == str(tmp_path / "cache" / "checkpoints" / digest / "model.onnx")
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # the folder is untouched
    shown = zoo.show("my-vit", index=tmp_path / "zoo.db")
    assert shown["source"]["hub"] == "local" and shown["source"]["path"] == str(folder)
    assert shown["preprocessing"]["input_size"] == [SIDE, SIDE]
    x = sample(5)
    features, _ = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        expected = classifier_input(model, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)


def test_a_feature_extraction_checkpoint_exports_its_pooled_output(fake_hub, tmp_path):
    torch.manual_seed(4)
    model = transformers.AutoModel.from_config(config_of("convnext")).eval()
    files = saved(model, tmp_path / "fe", {"preprocessor_config.json": json_file(PREPROCESSOR)})
    add_repo(fake_hub, "acme/features", files, pipeline="image-feature-extraction")
    [added] = zoo.add("hf://acme/features", index=tmp_path / "zoo.db")
    export = zoo.show("features", index=tmp_path / "zoo.db")["source"]["export"]
    assert export["class"] == "ConvNextModel" and export["output"] == "features"
    x = sample(6)
    _, output = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(x)).pooler_output.numpy()
    np.testing.assert_allclose(output, expected, atol=TOLERANCE, rtol=0)


# -- safety ----------------------------------------------------------------------------------

def test_pickled_weights_are_refused_unless_allowed(fake_hub, tmp_path):
    model = classifier("resnet", seed=7)
    files = saved(model, tmp_path / "p", {"preprocessor_config.json": json_file(PREPROCESSOR)})
    buffer = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), buffer)
    files = {n: b for n, b in files.items() if n != "model.safetensors"}
    files["pytorch_model.bin"] = buffer.read_bytes()
    add_repo(fake_hub, "acme/pickled", files)
    with pytest.raises(DownloadError, match=r"only pickled weights \(pytorch_model.bin\).*"
                                            r"--allow-pickle"):
        hub.fetch("hf://acme/pickled")
    assert fake_hub.count("GET", "pytorch_model.bin") == 0  # refused before downloading
    with pytest.warns(UserWarning, match="reading pickled weights pytorch_model.bin"):
        [added] = zoo.add("hf://acme/pickled", index=tmp_path / "zoo.db", allow_pickle=True)
    export = zoo.show("pickled", index=tmp_path / "zoo.db")["source"]["export"]
    assert export["pickle"] is True and export["weights"] == "pytorch_model.bin"
    x = sample(8)
    features, _ = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        expected = classifier_input(model, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)


def test_a_config_outside_the_libraries_registries_is_refused_and_no_code_is_fetched(
        fake_hub, tmp_path):
    files = saved(classifier("vit"), tmp_path / "rc")
    config = json.loads(files["config.json"])
    config.update(model_type="acme-net", auto_map={"AutoModel": "modeling_acme.AcmeNet"})
    files["config.json"] = json_file(config)
    files["modeling_acme.py"] = b"raise SystemExit('repository code ran')\n"
    add_repo(fake_hub, "acme/remote-code", files)
    with pytest.raises(ModelError, match="model_type 'acme-net' .* not a transformers "
                                         "architecture .* never runs a repository's own code"):
        hub.fetch("hf://acme/remote-code")
    assert fake_hub.count("GET", "modeling_acme.py") == 0


def test_checkpoint_sizes_are_capped_before_downloading(fake_hub, tmp_path):
    files = saved(classifier("resnet"), tmp_path / "big")
    add_repo(fake_hub, "acme/big", files)
    limit = len(files["model.safetensors"]) - 1
    with pytest.raises(DownloadError, match=r"model.safetensors is \d+ bytes, over the limit"):
        hub.fetch("hf://acme/big", max_bytes=limit)
    assert fake_hub.count("GET", "model.safetensors") == 0


def test_a_repo_with_neither_onnx_nor_checkpoint_is_refused(fake_hub):
    add_repo(fake_hub, "acme/empty", {"README.md": b"# nothing\n", "config.json": b"{}"})
    with pytest.raises(DownloadError, match="has no .onnx files and no model.safetensors"):
        hub.fetch("hf://acme/empty")
    fake_hub.add(FakeRepo("acme/other", {"config.json": json_file({"hello": 1}),
                                         "model.safetensors": b"0" * 16}, commit=COMMIT))
    with pytest.raises(DownloadError, match="neither a transformers nor a timm config"):
        hub.fetch("hf://acme/other")


def test_without_the_export_extra_the_error_names_it(fake_hub, tmp_path, monkeypatch):
    files = saved(classifier("resnet"), tmp_path / "r")
    add_repo(fake_hub, "acme/resnet", files)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    with pytest.raises(DependencyError, match=r"zooindex\[export\]") as info:
        hub.fetch("hf://acme/resnet")
    assert info.value.package == "transformers"


# -- hub search ------------------------------------------------------------------------------

@pytest.fixture
def search_hub(fake_hub, tmp_path):
    files = saved(classifier("resnet"), tmp_path / "s",
                  {"preprocessor_config.json": json_file(PREPROCESSOR)})
    add_repo(fake_hub, "acme/ckpt", files, downloads=30)
    pickled = {n: b for n, b in files.items() if n != "model.safetensors"}
    pickled["pytorch_model.bin"] = b"not really a pickle"
    add_repo(fake_hub, "acme/pickle-only", pickled, downloads=20)
    add_repo(fake_hub, "acme/card-only", {"README.md": b"# card\n"}, downloads=90)
    onnx_model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])]))
    add_repo(fake_hub, "acme/exported", {"model.onnx": onnx_model.SerializeToString()},
             tags=("transformers", "onnx"), downloads=10)
    return fake_hub


def test_hub_search_lists_checkpoints_to_export_with_library_transformers(search_hub):
    found = hub.search("", library="transformers")
    assert [(r["repo"], r["export"], r["weights"]) for r in found] == [
        ("acme/ckpt", True, "model.safetensors"), ("acme/exported", False, None)]
    assert [r["repo"] for r in hub.search("", library="onnx")] == ["acme/exported"]
    with_pickle = hub.search("", library="transformers", allow_pickle=True)
    assert ("acme/pickle-only", "pytorch_model.bin") in [(r["repo"], r["weights"])
                                                         for r in with_pickle]
    with pytest.raises(DownloadError, match="library 'keras' is not one of onnx, transformers"):
        hub.search("", library="keras")


def test_cli_hub_search_marks_exports_and_add_takes_them(search_hub, run, tmp_path):
    index = tmp_path / "zoo.db"
    code, out, err = run("hub", "search", "ckpt", "--library", "transformers", "--add",
                         "--index", index)
    assert code == 0, err
    assert "acme/ckpt" in out and "export" in out.splitlines()[0]
    assert "added     ckpt" in err
    code, out, _ = run("show", "ckpt", "--index", index, "--json")
    assert code == 0 and json.loads(out)["source"]["export"]["library"] == "transformers"


def test_cli_add_refuses_pickled_weights_without_the_flag(search_hub, run, tmp_path):
    code, _, err = run("add", "hf://acme/pickle-only", "--index", tmp_path / "zoo.db")
    assert code == 1 and "--allow-pickle" in err and len(err.strip().splitlines()) == 1


# -- timm ------------------------------------------------------------------------------------

TIMM_ARCHS = ("test_resnet", "test_efficientnet", "test_vit")


def _timm():
    """timm, or a skip: it imports torchvision, whose build must match torch's."""
    try:
        import timm
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"timm cannot be imported here: {type(exc).__name__}: {exc}")
    return timm


def timm_model(arch: str, seed: int = 0):
    """A tiny random timm model (timm's own test_* configurations, 160x160)."""
    timm = _timm()
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=LABELS).eval()


def timm_saved(model, folder) -> dict:
    """The repo files timm's ``push_to_hub`` uploads (``save_for_hf``: config.json with
    the pretrained_cfg, and model.safetensors), as bytes."""
    from timm.models import save_for_hf

    save_for_hf(model, folder, safe_serialization=True)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def pre_logits(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(what a timm model's classifier reads, its logits) for ``x``."""
    with torch.no_grad():
        t = torch.from_numpy(x)
        features = model.forward_head(model.forward_features(t), pre_logits=True)
        return features.numpy(), model(t).numpy()


@pytest.mark.parametrize("arch", TIMM_ARCHS)
def test_timm_repo_is_exported_and_its_default_layer_is_the_pre_logits(fake_hub, tmp_path,
                                                                       arch):
    model = timm_model(arch)  # skips without timm
    from timm.data import resolve_data_config

    files = timm_saved(model, tmp_path / arch)
    add_repo(fake_hub, f"timm/{arch}", files, tags=("timm",))
    [added] = zoo.add(f"hf://timm/{arch}", index=tmp_path / "zoo.db")
    folder = tmp_path / "cache" / "hf" / f"timm--{arch}" / COMMIT
    assert added.status == "added" and added.path == str(folder / "zooindex-export" /
                                                          "model.onnx")
    shown = zoo.show(arch, index=tmp_path / "zoo.db")
    export = shown["source"]["export"]
    assert export["library"] == "timm" and export["architecture"] == arch
    assert export["class"] == type(model).__name__ and export["num_classes"] == LABELS
    assert export["opset"] == 17 and export["dynamic_batch"] is True
    assert export["weights"] == "model.safetensors" and export["pickle"] is False
    assert export["weights_sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert export["versions"] == {"torch": torch.__version__, "timm": _timm().__version__}
    cfg = model.pretrained_cfg
    assert export["sample_shape"] == list(cfg["input_size"]) and export["tag"] == cfg["tag"]

    # the preprocessing is the one timm itself resolves for the model
    assert shown["source"]["preprocessing_from"] == "config.json"
    prep, data = shown["preprocessing"], resolve_data_config({}, model=model)
    assert prep["input_size"] == list(data["input_size"][1:])
    assert prep["mean"] == list(data["mean"]) and prep["std"] == list(data["std"])
    assert prep["crop_pct"] == data["crop_pct"] and prep["crop"] == data["crop_mode"]
    assert prep["interpolation"] == data["interpolation"]

    x = sample(2, side=cfg["input_size"][-1])
    features, logits = run_layer(added.path, added.default_layer, x)
    expected, expected_logits = pre_logits(model, x)
    assert features.shape == (len(x), model.num_features)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE, rtol=0)
    batch = onnx.load(added.path).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value


def test_a_second_timm_add_exports_and_downloads_nothing(fake_hub, tmp_path, monkeypatch):
    files = timm_saved(timm_model("test_resnet"), tmp_path / "r")
    add_repo(fake_hub, "timm/test_resnet", files, tags=("timm",))
    first = add_twice(fake_hub, "hf://timm/test_resnet", tmp_path / "zoo.db", monkeypatch)
    # a fresh index over the same cache finds the export too
    [other] = zoo.add("hf://timm/test_resnet", index=tmp_path / "other.db")
    assert other.status == "added" and other.path == first.path


def test_a_local_timm_folder_is_exported_into_the_cache(tmp_path):
    model = timm_model("test_efficientnet", seed=2)
    folder = tmp_path / "my-effnet"
    files = timm_saved(model, folder)
    [added] = zoo.add(folder, index=tmp_path / "zoo.db", cache_dir=tmp_path / "cache")
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert added.path == str(tmp_path / "cache" / "checkpoints" / digest / "model.onnx")
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    shown = zoo.show("my-effnet", index=tmp_path / "zoo.db")
    assert shown["source"]["export"]["library"] == "timm"
    assert shown["preprocessing"]["interpolation"] == "bicubic"  # test_efficientnet's
    x = sample(9, side=160)
    features, _ = run_layer(added.path, added.default_layer, x)
    np.testing.assert_allclose(features, pre_logits(model, x)[0], atol=TOLERANCE, rtol=0)


def test_a_timm_feature_extractor_without_a_classifier_exports_its_pooled_features(tmp_path):
    timm = _timm()
    torch.manual_seed(3)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0).eval()
    files = timm_saved(model, tmp_path / "features")
    assert json.loads(files["config.json"])["num_classes"] == 0
    [added] = zoo.add(tmp_path / "features", index=tmp_path / "zoo.db",
                      cache_dir=tmp_path / "cache")
    export = zoo.show("features", index=tmp_path / "zoo.db")["source"]["export"]
    assert export["num_classes"] == 0
    x = sample(10, side=160)
    features, output = run_layer(added.path, added.default_layer, x)
    expected, _ = pre_logits(model, x)
    assert expected.shape == (len(x), model.num_features)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(output, expected, atol=TOLERANCE, rtol=0)


def test_timm_hub_search_lists_timm_checkpoints(fake_hub, tmp_path, run):
    files = timm_saved(timm_model("test_vit"), tmp_path / "v")
    add_repo(fake_hub, "timm/test_vit", files, tags=("timm",), downloads=40)
    add_repo(fake_hub, "acme/vit-tr", saved(classifier("vit"), tmp_path / "t"), downloads=50)
    found = hub.search("", library="timm")
    assert [(r["repo"], r["export"], r["weights"]) for r in found] == [
        ("timm/test_vit", True, "model.safetensors")]
    code, out, err = run("hub", "search", "vit", "--library", "timm", "--add",
                         "--index", tmp_path / "zoo.db")
    assert code == 0, err
    assert "timm/test_vit" in out and "acme/vit-tr" not in out
    assert "added     test_vit" in err


def test_timm_config_is_read_as_timm_reads_a_hub_repo():
    config = {"architecture": "vit_tiny", "num_classes": 7, "num_features": 192,
              "global_pool": "token",
              "model_args": {"in_chans": 1, "img_size": 96},
              "pretrained_cfg": {"tag": "x", "input_size": [3, 224, 224], "num_classes": 1000,
                                 "fixed_input_size": True, "hf_hub_id": "timm/other",
                                 "url": "https://example.invalid/w.pth"}}
    arch, pretrained, args = checkpoints.timm_model_config(config)
    assert arch == "vit_tiny" and args == {"in_chans": 1, "img_size": 96}
    # the top-level num_classes wins; in_chans and a fixed model's img_size set the input;
    # where weights would come from is dropped (nothing is loaded but the repo's own)
    assert pretrained == {"tag": "x", "input_size": [1, 96, 96], "num_classes": 7,
                          "fixed_input_size": True}
    assert checkpoints.LIBRARIES["timm"].sample_shape(config, None) == (1, 96, 96)
    # the older single-dict form
    old = {"architecture": "resnet18", "num_classes": 10, "num_features": 512,
           "input_size": [3, 128, 128], "labels": ["a", "b"]}
    assert checkpoints.timm_model_config(old) == (
        "resnet18", {"num_classes": 10, "input_size": [3, 128, 128],
                     "label_names": ["a", "b"]}, {})
    for key in ("checkpoint_path", "pretrained", "features_only", "pretrained_cfg_overlay"):
        with pytest.raises(ModelError, match=f"model_args in config.json set {key}, which "
                                             "would load other weights"):
            checkpoints.timm_model_config({**config, "model_args": {key: "/etc/passwd"}})


def test_without_timm_the_error_names_the_timm_extra(fake_hub, monkeypatch):
    config = {"architecture": "resnet50", "num_classes": 1000,
              "pretrained_cfg": {"input_size": [3, 224, 224]}}
    add_repo(fake_hub, "timm/resnet50.a1_in1k", {"config.json": json_file(config),
                                                  "model.safetensors": b"0" * 64},
             tags=("timm",))
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails
    with pytest.raises(DependencyError, match=r"needs timm: pip install 'zooindex\[timm\]'") \
            as info:
        hub.fetch("hf://timm/resnet50.a1_in1k")
    assert info.value.package == "timm"


def test_timm_folder_detection_and_shape_without_importing_timm():
    config = {"architecture": "resnet50", "num_classes": 1000, "num_features": 2048,
              "pretrained_cfg": {"input_size": [3, 224, 224], "crop_pct": 0.95}}
    assert checkpoints.library_of(config) == "timm"
    assert checkpoints.library_of({"model_type": "vit", "architectures": ["X"]}) == \
        "transformers"
    assert checkpoints.library_of({"hello": 1}) is None
    # the preprocessing's input size wins over the config's, which wins over 224
    assert checkpoints.LIBRARIES["timm"].sample_shape(config, (160, 160)) == (3, 160, 160)
    assert checkpoints.LIBRARIES["timm"].sample_shape(config, None) == (3, 224, 224)
    assert checkpoints.LIBRARIES["transformers"].sample_shape({"image_size": 384}, None) == \
        (3, 384, 384)
    assert checkpoints.LIBRARIES["transformers"].sample_shape({}, None) == (3, 224, 224)


# -- sharded checkpoints ---------------------------------------------------------------------

SHARD = 16 * 1024  # bytes: the tiny models below come in two shards or more


def manifest_sha256(files: dict) -> str:
    """sha256 of the ``sha256sum``-style manifest of a checkpoint's shards."""
    shards = sorted(n for n in files if n.startswith("model-") and n.endswith(".safetensors"))
    lines = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in shards)
    return hashlib.sha256(lines.encode()).hexdigest()


def sharded_transformers(tmp_path, kind="resnet", seed=11):
    model = classifier(kind, seed=seed)
    folder = tmp_path / f"sharded-{kind}"
    model.save_pretrained(folder, max_shard_size=SHARD)
    (folder / "preprocessor_config.json").write_bytes(json_file(PREPROCESSOR))
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return model, files


def test_a_sharded_transformers_repo_is_fetched_whole_and_exported(fake_hub, tmp_path):
    model, files = sharded_transformers(tmp_path)
    shards = [n for n in files if n.startswith("model-")]
    assert "model.safetensors" not in files and len(shards) >= 2
    add_repo(fake_hub, "acme/sharded", files)
    assert [(r["repo"], r["export"], r["weights"]) for r in
            hub.search("sharded", library="transformers")] == [
        ("acme/sharded", True, "model.safetensors.index.json")]
    [added] = zoo.add("hf://acme/sharded", index=tmp_path / "zoo.db")
    for name in shards:
        assert fake_hub.count("GET", name) == 1
    export = zoo.show("sharded", index=tmp_path / "zoo.db")["source"]["export"]
    assert export["weights"] == "model.safetensors.index.json"
    assert export["shards"] == {n: hashlib.sha256(files[n]).hexdigest() for n in sorted(shards)}
    assert export["weights_sha256"] == manifest_sha256(files)
    x = sample(12)
    same_as_torch(added, model, x)


def test_a_sharded_timm_repo_is_fetched_whole_and_exported(fake_hub, tmp_path):
    from huggingface_hub import save_torch_state_dict

    model = timm_model("test_vit", seed=12)
    folder = tmp_path / "sharded-vit"
    timm_saved(model, folder)
    (folder / "model.safetensors").unlink()
    save_torch_state_dict(model.state_dict(), folder, max_shard_size=SHARD)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    assert len([n for n in files if n.startswith("model-")]) >= 2
    add_repo(fake_hub, "timm/sharded-vit", files, tags=("timm",))
    [added] = zoo.add("hf://timm/sharded-vit", index=tmp_path / "zoo.db")
    export = zoo.show("sharded-vit", index=tmp_path / "zoo.db")["source"]["export"]
    assert export["library"] == "timm" and export["weights_sha256"] == manifest_sha256(files)
    x = sample(13, side=160)
    features, logits = run_layer(added.path, added.default_layer, x)
    expected, expected_logits = pre_logits(model, x)
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE, rtol=0)
    # and the same folder, added from disk, lands under the same weights digest
    [local] = zoo.add(folder, index=tmp_path / "zoo.db", name="local-vit",
                      cache_dir=tmp_path / "cache")
    assert local.path == str(tmp_path / "cache" / "checkpoints" / manifest_sha256(files) /
                             "model.onnx")


def test_the_size_cap_holds_for_the_shards_together(fake_hub, tmp_path):
    _, files = sharded_transformers(tmp_path)
    shards = [n for n in files if n.startswith("model-")]
    add_repo(fake_hub, "acme/sharded", files)
    limit = sum(len(files[n]) for n in shards) - 1  # each shard alone is under it
    assert max(len(files[n]) for n in shards) <= limit
    with pytest.raises(DownloadError, match=rf"{len(shards)} weight shards are \d+ bytes "
                                            rf"together, over the limit of {limit}"):
        hub.fetch("hf://acme/sharded", max_bytes=limit)
    assert fake_hub.count("GET", "model-") == 0


def test_a_shard_index_that_points_outside_or_at_absent_files_is_refused(fake_hub, tmp_path):
    _, files = sharded_transformers(tmp_path)
    index = json.loads(files["model.safetensors.index.json"])
    tensor = next(iter(index["weight_map"]))
    bad = {**index, "weight_map": {**index["weight_map"], tensor: "../../secret.safetensors"}}
    add_repo(fake_hub, "acme/escape", {**files, "model.safetensors.index.json": json_file(bad)})
    with pytest.raises(DownloadError, match=r"maps '.*' to '../../secret.safetensors', not a "
                                            r"\.safetensors file beside it"):
        hub.fetch("hf://acme/escape")
    shard = next(n for n in files if n.startswith("model-"))
    add_repo(fake_hub, "acme/incomplete", {n: b for n, b in files.items() if n != shard})
    with pytest.raises(DownloadError, match=rf"names shards the repo does not have .*{shard}"):
        hub.fetch("hf://acme/incomplete")
    assert fake_hub.count("GET", "model-") == 0
