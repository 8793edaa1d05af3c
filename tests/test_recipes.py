"""The zoo recipes: networks, training, ONNX export and the resumable zoo builder.

Everything runs on tiny synthetic data (a few hundred 28x28 images, one short epoch of the
narrow demo network), so the file stays fast; the real data sets are never touched.
"""

import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the zoo recipes need PyTorch (pip install torch)")
ort = pytest.importorskip("onnxruntime", reason="checking exported models needs onnxruntime")
onnx = pytest.importorskip("onnx", reason="exporting models needs onnx")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # models/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(REPO))

from models import build_zoo, data  # noqa: E402
from models.export import INPUT_NAME, OPSET, to_onnx  # noqa: E402
from models.nets import Probabilities, Widths, build_net, features, parameter_count  # noqa: E402
from models.recipes import DEMO, PAPER, SEEDS, SETS, TRAINING, Recipe, Training  # noqa: E402
from models.train import accuracy, as_input, train  # noqa: E402

TINY = Widths(conv=(4, 8), dense=16)
METADATA_KEYS = {"zooindex.layout", "zooindex.scale", "zooindex.source_dataset",
                 "zooindex.source_classes", "zooindex.source_accuracy",
                 "zooindex.architecture", "zooindex.recipe_seed"}


def synthetic_split(n, seed, classes=10):
    """Images whose class shows as a bright 4x4 block at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):
        row, col = 4 + 6 * (label // 4), 4 + 6 * (label % 4)
        x[i, row:row + 4, col:col + 4] = 255
    return data.Split(x, y.astype(np.int64), tuple(f"c{k}" for k in range(classes)))


def fake_loader(dataset, split):
    return synthetic_split(300 if split == "train" else 100, seed=0 if split == "train" else 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks gain nothing from threads, and lose much when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# --- recipes --------------------------------------------------------------------------


def test_paper_set_is_the_23_models_of_section_4():
    names = [r.name for r in PAPER]
    assert len(names) == len(set(names)) == 23
    assert {"mnist-all", "mnist-0-4", "fashion-5-9-lite", "cifar10-0-4-512"} <= set(names)
    by_arch = {a: sum(r.architecture == a for r in PAPER) for a in ("paper", "lite", "paper-512")}
    assert by_arch == {"paper": 9, "lite": 9, "paper-512": 5}
    # Table 6 has no 512-unit MNIST models, nor F5-9
    assert not any(r.architecture == "paper-512" and r.dataset == "mnist" for r in PAPER)
    assert "fashion-5-9-512" not in names


def test_seed_set_is_table_1_from_two_more_seeds():
    names = [r.name for r in SEEDS]
    assert len(names) == len(set(names)) == 18
    assert {"mnist-all-seed1", "cifar10-5-9-seed2"} <= set(names)
    assert all(r.architecture == "paper" and r.seed in (1, 2) for r in SEEDS)
    assert not set(names) & {r.name for r in PAPER}


def test_every_set_has_a_training_recipe():
    assert set(TRAINING) == set(SETS)
    for training in TRAINING.values():
        assert training.lr == 0.001 and training.batch_size == 100 and training.epochs >= 1
    # the seeds are trained exactly as the models they repeat
    assert TRAINING["seeds"] == TRAINING["paper"]
    # 300 images in batches of 100 is 3 steps an epoch; 301 images is 4
    assert Training(epochs=2).steps(300) == 6 and Training(epochs=2).steps(301) == 8


def test_demo_set_names_and_class_labels():
    assert [r.name for r in DEMO] == ["mnist-all", "mnist-5-9", "fashion-all", "fashion-0-4",
                                      "cifar10-all", "cifar10-0-4"]
    assert Recipe("mnist", (0, 9), "paper").class_label == "0-9"
    assert Recipe("mnist", (5, 9), "paper").num_classes == 5


# --- networks -------------------------------------------------------------------------


def test_paper_net_parameter_count_matches_figure_1():
    # conv1: 32*(5*5*1)+32 = 832; conv2: 64*(5*5*32)+64 = 51,264;
    # dense: (7*7*64)*1024+1024 = 3,212,288; logits: 1024*10+10 = 10,250 -> 3,274,634
    assert parameter_count(build_net(Widths(), 10)) == 3_274_634
    # lite drops conv2/pool2: dense sees 14*14*32 = 6272 inputs:
    # 832 + (6272*1024+1024) + 10,250 = 6,434,634
    assert parameter_count(build_net(Widths(conv=(32,)), 10)) == 6_434_634


def test_scored_dense_layer_has_the_configured_width():
    net = build_net(Widths(conv=(8, 16), dense=64), 5).eval()
    x = torch.rand(3, 1, 28, 28)
    assert features(net)(x).shape == (3, 64)
    assert net(x).shape == (3, 5)


# --- data helpers ---------------------------------------------------------------------


def test_to_grey_uses_luminance_then_bilinear_resize():
    # a flat colour (100, 200, 50) has luminance 0.299*100 + 0.587*200 + 0.114*50 = 153.0
    flat = np.empty((2, 32, 32, 3), dtype=np.uint8)
    flat[...] = (100, 200, 50)
    grey = data.to_grey(flat)
    assert grey.shape == (2, 28, 28) and grey.dtype == np.uint8
    assert np.all(grey == 153)
    # a grey ramp 4*column: bilinear with half-pixel centres samples source column
    # (j + 0.5) * 32/28 - 0.5, so output column j is 4 * that, e.g. j=0 -> 0.286 -> 0,
    # j=7 -> 4*8.071 = 32.29 -> 32, j=27 -> 4*30.93 = 123.7 -> 124
    ramp = np.repeat((4 * np.arange(32, dtype=np.uint8))[None, None, :, None], 3, axis=3)
    ramp = np.repeat(ramp, 32, axis=1)
    row = data.to_grey(ramp)[0, 10]
    assert row[0] == 0 and row[7] == 32 and row[27] == 124


def test_select_classes_keeps_a_range_and_relabels_from_zero():
    split = synthetic_split(20, seed=0)
    high = data.select_classes(split, (5, 9))
    assert sorted(set(high.y.tolist())) == [0, 1, 2, 3, 4]
    assert high.class_names == ("c5", "c6", "c7", "c8", "c9")
    assert len(high.y) == 10  # labels 0..9 twice each -> 2 of each of 5..9


def test_stratified_sample_is_balanced_and_seeded():
    split = data.select_classes(synthetic_split(200, seed=0), (0, 4))
    a = data.stratified_sample(split, 7, seed=3)
    b = data.stratified_sample(split, 7, seed=3)
    assert np.bincount(a.y).tolist() == [7] * 5
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    with pytest.raises(ValueError, match="fewer than"):
        data.stratified_sample(split, 1000, seed=0)


# --- training -------------------------------------------------------------------------


def test_training_is_seeded_and_learns_an_easy_task():
    split = synthetic_split(200, seed=0, classes=2)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        net = build_net(TINY, 2)
        train(net, split.x, split.y, epochs=3, seed=0, batch_size=25, lr=0.01)
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])
    test = synthetic_split(50, seed=9, classes=2)
    assert accuracy(net, test.x, test.y) == 1.0


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum"])
def test_an_interrupted_run_resumes_exactly(tmp_path, optimizer):
    # 3 epochs of 8 batches; interrupted after 5 steps (inside the first epoch) and again
    # after 11 more (inside the third: a new order was drawn in between), then resumed:
    # the weights equal those of an uninterrupted run bit for bit
    split = synthetic_split(200, seed=0, classes=4)
    training = Training(optimizer, 0.01, 25, epochs=3)

    def fresh():
        torch.manual_seed(3)
        return build_net(TINY, 4)

    straight = fresh()
    run = train(straight, split.x, split.y, seed=3, training=training)
    assert run.finished and run.steps == 24 and run.resumed_at == 0
    checkpoint = tmp_path / "ck" / "net.pt"
    first = train(fresh(), split.x, split.y, seed=3, training=training,
                  checkpoint=checkpoint, stop_after=5)
    assert not first.finished and first.steps == 5 and checkpoint.exists()
    second = train(fresh(), split.x, split.y, seed=3, training=training,
                   checkpoint=checkpoint, stop_after=11)
    assert second.resumed_at == 5 and second.steps == 16
    resumed = fresh()
    last = train(resumed, split.x, split.y, seed=3, training=training, checkpoint=checkpoint)
    assert last.finished and last.resumed_at == 16
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # a checkpoint of another recipe (another learning rate) is not used
    other = train(fresh(), split.x, split.y, seed=3, checkpoint=checkpoint,
                  training=Training(optimizer, 0.02, 25, epochs=3), stop_after=2)
    assert other.resumed_at == 0


# --- export ---------------------------------------------------------------------------


def test_export_matches_torch_has_dynamic_batch_and_metadata():
    torch.manual_seed(1)
    net = build_net(TINY, 5)
    model = to_onnx(net, {"zooindex.layout": "NCHW", "zooindex.scale": "1"}, doc="tiny")
    assert model.opset_import[0].version == OPSET
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    assert {p.key: p.value for p in model.metadata_props} == {"zooindex.layout": "NCHW",
                                                              "zooindex.scale": "1"}
    assert len(model.graph.initializer) > 0  # weights inside the file
    images = synthetic_split(7, seed=2).x
    sess = session(model)
    with torch.no_grad():
        expected = Probabilities(net).eval()(as_input(images)).numpy()
    for batch in (images[:1], images):  # two batch sizes through the same file
        got = sess.run(None, {INPUT_NAME: as_input(batch).numpy()})[0]
        np.testing.assert_allclose(got, expected[:len(batch)], atol=1e-4)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)  # probabilities
    # the scored dense layer is findable by its module name
    assert any("relu_dense" in out for node in model.graph.node for out in node.output)


# --- builder --------------------------------------------------------------------------


def test_build_writes_models_manifest_and_target_then_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(build_zoo, "TARGET_PER_CLASS", 10)  # the fake test split has 10 per class
    recipes = [Recipe("fashion-mnist", (0, 9), "demo"), Recipe("fashion-mnist", (0, 4), "demo")]
    manifest = build_zoo.build(recipes, tmp_path, Training(epochs=1), load=fake_loader, with_target=True,
                               threads=1)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".checkpoints", "fashion-0-4-target.npz", "fashion-0-4.onnx", "fashion-all.onnx",
        "manifest.json"]
    assert sorted(p.name for p in (tmp_path / ".checkpoints").iterdir()) == [
        "fashion-0-4.pt", "fashion-all.pt"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    entry = manifest["models"]["fashion-0-4"]
    assert entry["sha256"] == build_zoo.sha256(tmp_path / "fashion-0-4.onnx")
    assert entry["classes"] == "0-4" and entry["architecture"] == "demo"
    assert entry["train_samples"] == 150 and entry["test_samples"] == 50  # 5 of 10 classes
    assert entry["parameters"] == parameter_count(build_net(Widths((8, 16), 64), 5))
    assert 0.0 <= entry["test_accuracy"] <= 1.0 and entry["epochs"] == 1

    model = onnx.load(str(tmp_path / "fashion-0-4.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert METADATA_KEYS <= set(props)
    assert props["zooindex.source_classes"] == "0-4"
    assert props["zooindex.source_dataset"] == "fashion-mnist"
    assert float(props["zooindex.source_accuracy"]) == pytest.approx(entry["test_accuracy"])
    probs = session(model).run(None, {INPUT_NAME: np.zeros((3, 1, 28, 28), np.float32)})[0]
    assert probs.shape == (3, 5)

    with np.load(tmp_path / "fashion-0-4-target.npz") as target:
        assert target["x"].dtype == np.uint8 and target["x"].shape == (50, 28, 28)
        assert np.bincount(target["y"]).tolist() == [10] * 5  # fake test split: 10 per class

    def must_not_train(*args, **kwargs):
        raise AssertionError("a built model was trained again")

    monkeypatch.setattr(build_zoo, "build_model", must_not_train)
    monkeypatch.setattr(build_zoo, "build_target", must_not_train)
    assert build_zoo.build(recipes, tmp_path, Training(epochs=1), load=fake_loader,
                           with_target=True, threads=1) == manifest


def test_build_redoes_a_model_whose_file_is_missing(tmp_path):
    recipe = Recipe("mnist", (5, 9), "demo")
    first = build_zoo.build([recipe], tmp_path, Training(epochs=1), load=fake_loader, threads=1)
    (tmp_path / "mnist-5-9.onnx").unlink()
    second = build_zoo.build([recipe], tmp_path, Training(epochs=1), load=fake_loader, threads=1)
    assert (tmp_path / "mnist-5-9.onnx").exists()
    # same seed, same data: the rebuilt model is the same model
    assert second["models"]["mnist-5-9"]["test_accuracy"] == \
        first["models"]["mnist-5-9"]["test_accuracy"]


def write_idx_folder(folder, seed):
    """An MNIST-style folder of gzipped IDX files holding synthetic images."""
    folder.mkdir(parents=True)
    for prefix, n in (("train", 200), ("t10k", 100)):
        split = synthetic_split(n, seed)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">4B3I", 0, 0, 0x08, 3, n, 28, 28) + split.x.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">4BI", 0, 0, 0x08, 1, n) + split.y.astype(np.uint8).tobytes())


def test_command_line_reads_the_data_folder_through_zooindex_readers(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(build_zoo, "TARGET_PER_CLASS", 10)
    pytest.importorskip("zooindex.readers", reason="the zoo reads data through zooindex")
    write_idx_folder(tmp_path / "data" / "mnist", seed=0)
    write_idx_folder(tmp_path / "data" / "fashion-mnist", seed=1)
    out = tmp_path / "out"
    assert build_zoo.main(["--set", "demo", "--only", "mnist-5-9", "--epochs", "1",
                           "--threads", "1", "--data", str(tmp_path / "data"),
                           "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["models"]) == ["mnist-5-9"]
    assert manifest["models"]["mnist-5-9"]["class_names"] == ["5", "6", "7", "8", "9"]
    assert "fashion-0-4-target" in manifest["targets"]
    assert "mnist-5-9.onnx" in capsys.readouterr().out


def test_command_line_rejects_unknown_model_names(capsys):
    with pytest.raises(SystemExit):
        build_zoo.parse_args(["--set", "demo", "--only", "mnist-0-4-lite"])
    assert "choose from: mnist-all" in capsys.readouterr().err


def test_every_set_has_default_epochs_and_output_folder():
    for name in SETS:
        assert build_zoo.EPOCHS[name] >= 1 and name in build_zoo.DEFAULT_OUT


def test_a_model_built_with_another_recipe_is_trained_again(tmp_path):
    recipe = Recipe("mnist", (5, 9), "demo")
    first = build_zoo.build([recipe], tmp_path, Training(epochs=1), load=fake_loader,
                            threads=1)
    entry = first["models"]["mnist-5-9"]
    assert entry["training"] == {"optimizer": "adam", "lr": 0.001, "batch_size": 100,
                                 "epochs": 1}
    assert entry["steps"] == 2 and entry["device"] == "cpu"  # 150 images, batch 100
    again = build_zoo.build([recipe], tmp_path, Training("sgd", epochs=1), load=fake_loader,
                            threads=1)
    assert again["models"]["mnist-5-9"]["optimizer"] == "sgd"


def test_build_resumes_a_model_from_its_checkpoint(tmp_path, monkeypatch):
    from models import train as train_module

    recipe = Recipe("mnist", (0, 9), "demo")
    training = Training(epochs=2)  # 300 images: 6 steps
    straight = build_zoo.build([recipe], tmp_path / "a", training, load=fake_loader,
                               threads=1)["models"]["mnist-all"]
    # the first build dies after 4 steps, leaving its checkpoint; the next one resumes it
    real_train = train_module.train

    def dies(*args, **kwargs):
        real_train(*args, **kwargs, stop_after=4)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", dies)
    with pytest.raises(KeyboardInterrupt):
        build_zoo.build([recipe], tmp_path / "b", training, load=fake_loader, threads=1)
    assert (tmp_path / "b" / ".checkpoints" / "mnist-all.pt").exists()
    monkeypatch.setattr(train_module, "train", real_train)
    resumed = build_zoo.build([recipe], tmp_path / "b", training, load=fake_loader,
                              threads=1)["models"]["mnist-all"]
    assert resumed["sha256"] == straight["sha256"]  # the very same model file


def test_more_epochs_continue_from_the_last_checkpoint(tmp_path):
    # one epoch, then the recipe asks for two: the second build trains one more epoch
    # from the first's final state, and the model equals one trained two epochs straight
    recipe = Recipe("mnist", (0, 9), "demo")
    straight = build_zoo.build([recipe], tmp_path / "a", Training(epochs=2), load=fake_loader,
                               threads=1)["models"]["mnist-all"]
    build_zoo.build([recipe], tmp_path / "b", Training(epochs=1), load=fake_loader, threads=1)
    longer = build_zoo.build([recipe], tmp_path / "b", Training(epochs=2), load=fake_loader,
                             threads=1)["models"]["mnist-all"]
    assert longer["sha256"] == straight["sha256"] and longer["epochs"] == 2
    # a checkpoint past the asked-for length is not used
    shorter = build_zoo.build([recipe], tmp_path / "b", Training(epochs=1),
                              load=fake_loader, threads=1)["models"]["mnist-all"]
    assert shorter["steps"] == 3 and shorter["sha256"] != straight["sha256"]


def test_readme_table_is_generated_between_its_markers(tmp_path):
    manifest = {"models": {
        "mnist-all-seed1": {"seed": 1, "optimizer": "adam", "learning_rate": 0.001,
                            "batch_size": 100, "epochs": 5, "steps": 3000, "device": "cpu",
                            "train_seconds": 1800.0, "test_accuracy": 0.99},
        "mnist-all": {"seed": 0, "optimizer": "adam", "learning_rate": 0.001,
                      "batch_size": 100, "epochs": 5, "steps": 3000, "device": "cpu",
                      "train_seconds": 1800.0, "test_accuracy": 0.9912}}}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{build_zoo.README_BEGIN}\nold\n{build_zoo.README_END}\nafter\n")
    build_zoo.update_readme(readme, manifest)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    rows = [l for l in text.splitlines() if l.startswith("| mnist")]
    assert rows[0].startswith("| mnist-all | 0 | adam lr 0.001, batch 100, 5 epochs | 3000 |")
    assert rows[0].endswith("| 0.9912 |") and rows[1].startswith("| mnist-all-seed1 | 1 |")
    assert "| **all 2** | | | 6000 | | 3600 (1.0 h) | |" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        build_zoo.update_readme(readme, manifest)
