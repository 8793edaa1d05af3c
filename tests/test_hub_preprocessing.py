"""Preprocessing fetched with a hub model: the fake hub serves config files beside the ONNX."""

from __future__ import annotations

import pytest

from support import onnx_factory
from support.hf_server import FakeRepo, json_file
from support.hub_configs import CLIP, CONVNEXT, TIMM, VIT
from zooindex import hub
from zooindex.adapt import Preprocessing
from zooindex.hubconfig import from_hf_preprocessor_config, from_timm_config

pytest.importorskip("huggingface_hub")

COMMIT = "c" * 40
TRANSFORMERS_CONFIG = {"architectures": ["ViTForImageClassification"], "hidden_size": 768}


def model_bytes(seed: int = 0) -> bytes:
    return onnx_factory.cnn(input_shape=(3, 8, 8), seed=seed).SerializeToString()


def add(server, repo_id: str, files: dict, **kwargs) -> FakeRepo:
    return server.add(FakeRepo(repo_id, {
        name: json_file(content) if isinstance(content, (dict, list)) else content
        for name, content in files.items()}, commit=COMMIT, **kwargs))


def test_hf_preprocessor_config_comes_with_the_model(fake_hub, tmp_path):
    add(fake_hub, "acme/clip", {"model.onnx": model_bytes(), "config.json": TRANSFORMERS_CONFIG,
                                "preprocessor_config.json": CLIP})
    [got] = hub.fetch("hf://acme/clip")
    assert isinstance(got, hub.HubFetched)
    assert got.preprocessing == from_hf_preprocessor_config(CLIP)
    assert (got.preprocessing_from, got.preprocessing_note) == ("preprocessor_config.json", None)
    # downloaded at the pinned commit into the model's commit folder; config.json, which
    # comes after it, is not needed
    folder = tmp_path / "cache" / "hf" / "acme--clip" / COMMIT
    assert (folder / "preprocessor_config.json").read_bytes() == json_file(CLIP)
    assert fake_hub.count("GET", f"/acme/clip/resolve/{COMMIT}/preprocessor_config.json") == 1
    assert fake_hub.count("GET", "config.json") == 1
    # the provenance record is the one every hub model has
    assert "preprocessing" not in got.source


def test_timm_config_json_is_read_when_there_is_no_hf_one(fake_hub):
    add(fake_hub, "timm/resnet50-onnx", {"model.onnx": model_bytes(), "config.json": TIMM})
    [got] = hub.fetch("hf://timm/resnet50-onnx")
    assert got.preprocessing == from_timm_config(TIMM)
    assert got.preprocessing_from == "config.json"


def test_the_nearest_config_describes_each_model(fake_hub):
    add(fake_hub, "acme/two", {"preprocessor_config.json": VIT,
                               "onnx/model.onnx": model_bytes(1),
                               "onnx/preprocessor_config.json": CONVNEXT,
                               "other/model.onnx": model_bytes(2)})
    near, far = hub.fetch("hf://acme/two")
    assert (near.preprocessing_from, far.preprocessing_from) == \
        ("onnx/preprocessor_config.json", "preprocessor_config.json")
    assert near.preprocessing == from_hf_preprocessor_config(CONVNEXT)
    assert far.preprocessing == from_hf_preprocessor_config(VIT)


def test_a_config_shared_by_several_models_is_fetched_once(fake_hub):
    add(fake_hub, "acme/variants", {"onnx/model.onnx": model_bytes(1),
                                    "onnx/model_fp16.onnx": model_bytes(2),
                                    "preprocessor_config.json": VIT})
    got = hub.fetch("hf://acme/variants")
    assert [f.preprocessing for f in got] == [from_hf_preprocessor_config(VIT)] * 2
    assert fake_hub.count("GET", "preprocessor_config.json") == 1


def test_a_second_fetch_downloads_no_config_again(fake_hub):
    add(fake_hub, "acme/clip", {"model.onnx": model_bytes(), "preprocessor_config.json": CLIP})
    first = hub.fetch("hf://acme/clip")
    files = fake_hub.count("GET", "/resolve/") + fake_hub.count("HEAD", "/resolve/")
    assert hub.fetch("hf://acme/clip") == first
    assert fake_hub.count("GET", "/resolve/") + fake_hub.count("HEAD", "/resolve/") == files


def test_repos_without_a_preprocessing_config(fake_hub):
    add(fake_hub, "acme/bare", {"model.onnx": model_bytes()})
    add(fake_hub, "acme/transformers", {"model.onnx": model_bytes(),
                                        "config.json": TRANSFORMERS_CONFIG})
    [bare] = hub.fetch("hf://acme/bare")
    [plain] = hub.fetch("hf://acme/transformers")
    for got in (bare, plain):
        assert (got.preprocessing, got.preprocessing_from, got.preprocessing_note) == \
            (None, None, None)


@pytest.mark.parametrize("content,listed,note", [
    (b"{not json", None, "preprocessor_config.json is not valid JSON (JSONDecodeError); "
                         "not used"),
    (json_file({"resample": 9}), None,
     "preprocessor_config.json: resample 9 is not a Pillow filter code"),
    (json_file(CLIP), 50_000_000, "preprocessor_config.json is 50000000 bytes, over the "
                                  "4194304 allowed for a config file; not read"),
])
def test_a_config_that_cannot_be_used_is_passed_over_with_a_note(fake_hub, content, listed,
                                                                  note):
    add(fake_hub, "acme/odd", {"model.onnx": model_bytes(), "preprocessor_config.json": content,
                               "config.json": TIMM},
        listed_size={} if listed is None else {"preprocessor_config.json": listed})
    [got] = hub.fetch("hf://acme/odd")
    # the model is fetched, and the next config in line (timm's) describes it
    assert got.path.exists()
    assert got.preprocessing == from_timm_config(TIMM)
    assert got.preprocessing_from == "config.json"
    assert got.preprocessing_note is None
    add(fake_hub, "acme/odd-only", {"model.onnx": model_bytes(),
                                    "preprocessor_config.json": content},
        listed_size={} if listed is None else {"preprocessor_config.json": listed})
    [alone] = hub.fetch("hf://acme/odd-only")
    assert alone.preprocessing is None
    assert alone.preprocessing_note.startswith(note)
    if listed is not None:  # refused before downloading
        assert fake_hub.count("GET", "odd-only/resolve") == 1


def test_user_flags_override_what_the_hub_says(fake_hub):
    add(fake_hub, "acme/clip", {"model.onnx": model_bytes(), "preprocessor_config.json": CLIP})
    [got] = hub.fetch("hf://acme/clip")
    prep = got.preprocessing.merged(Preprocessing(interpolation="bilinear", crop="none"))
    assert (prep.interpolation, prep.crop, prep.resize_size, prep.mean) == \
        ("bilinear", "none", None, tuple(CLIP["image_mean"]))


def test_add_records_the_hub_preprocessing_and_user_flags_win(fake_hub, tmp_path):
    import zooindex

    add(fake_hub, "acme/clip", {"model.onnx": model_bytes(), "preprocessor_config.json": CLIP})
    index = tmp_path / "i.db"
    [added] = zooindex.add("hf://acme/clip", index=index)
    shown = zooindex.show(added.name, index=index)
    want = from_hf_preprocessor_config(CLIP)
    assert Preprocessing.from_dict(shown["preprocessing"]) == want
    assert shown["source"]["preprocessing_from"] == "preprocessor_config.json"
    assert shown["preprocessing_applied"] == want.describe(shown["input_shape"])
    # what the user says at add wins over the repository's config
    [again] = zooindex.add("hf://acme/clip", index=index, replace=True,
                           interpolation="nearest", antialias=False)
    prep = Preprocessing.from_dict(zooindex.show(again.name, index=index)["preprocessing"])
    assert (prep.interpolation, prep.antialias, prep.mean) == \
        ("nearest", False, tuple(CLIP["image_mean"]))


def test_add_with_a_preset_from_the_command_line(tmp_path, capsys):
    import json

    from zooindex.cli import main

    path = tmp_path / "m.onnx"
    path.write_bytes(model_bytes())
    main(["add", "--index", str(tmp_path / "i.db"), str(path), "--preset", "imagenet",
          "--crop-pct", "0.9"])
    capsys.readouterr()
    main(["show", "--index", str(tmp_path / "i.db"), "m", "--json"])
    shown = json.loads(capsys.readouterr().out)
    prep = Preprocessing.from_dict(shown["preprocessing"])
    assert prep == Preprocessing(preset="imagenet", crop_pct=0.9)
    assert "0.485" in shown["preprocessing_applied"] or "imagenet" in \
        shown["preprocessing_applied"]
