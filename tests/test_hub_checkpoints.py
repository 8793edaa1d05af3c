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
    features, logits = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        expected = classifier_input(model, torch.from_numpy(x)).numpy()
        expected_logits = model(pixel_values=torch.from_numpy(x)).logits.numpy()
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE, rtol=0)

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


def test_a_second_add_exports_nothing(fake_hub, tmp_path, monkeypatch):
    files = saved(classifier("resnet"), tmp_path / "r",
                  {"preprocessor_config.json": json_file(PREPROCESSOR)})
    add_repo(fake_hub, "acme/resnet", files)
    [first] = zoo.add("hf://acme/resnet", index=tmp_path / "zoo.db")
    before = fake_hub.count("GET", "model.safetensors")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("zooindex.export.from_torch", no_export)
    [again] = zoo.add("hf://acme/resnet", index=tmp_path / "zoo.db")
    assert again.status == "unchanged" and again.sha256 == first.sha256
    assert fake_hub.count("GET", "model.safetensors") == before  # nor downloaded again


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

def _timm():
    """timm, or a skip: it imports torchvision, whose build must match torch's."""
    try:
        import timm
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"timm cannot be imported here: {type(exc).__name__}: {exc}")
    return timm


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "test_vit"])
def test_timm_repo_is_exported_and_its_default_layer_is_the_pre_logits(fake_hub, tmp_path,
                                                                       arch):
    timm = _timm()
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=LABELS).eval()
    save_for_hf(model, tmp_path / arch, safe_serialization=True)
    files = {p.name: p.read_bytes() for p in (tmp_path / arch).iterdir()}
    add_repo(fake_hub, f"timm/{arch}", files, tags=("timm",))
    [added] = zoo.add(f"hf://timm/{arch}", index=tmp_path / "zoo.db")
    shown = zoo.show(arch, index=tmp_path / "zoo.db")
    export = shown["source"]["export"]
    assert export["library"] == "timm" and export["architecture"] == arch
    assert shown["source"]["preprocessing_from"] == "config.json"
    side = model.pretrained_cfg["input_size"][-1]
    assert export["sample_shape"] == list(model.pretrained_cfg["input_size"])
    x = sample(2, side=side)
    features, logits = run_layer(added.path, added.default_layer, x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        expected = model.forward_head(model.forward_features(t), pre_logits=True).numpy()
        expected_logits = model(t).numpy()
    np.testing.assert_allclose(features, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=TOLERANCE, rtol=0)


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
