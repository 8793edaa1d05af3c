"""The default layer of real architectures: the representation entering the classifier.

Two kinds of graphs, both from the torch exporters (TorchScript, ``dynamo=False``; and
``dynamo=True``):

* weightless copies of real torchvision and timm models at 224x224, in
  ``tests/fixtures/architectures`` (written by ``tests/support/export_architectures.py``,
  which needs torchvision and timm and also checked each default layer by value against
  PyTorch). Their large tensors point at an absent file: ``graph.inspect`` never reads
  weights. These test the exporters' real graph structure without torchvision, timm or
  hundreds of megabytes of weights;
* small models written here with plain torch, whose heads follow those families' module
  structure (``support.architectures``), exported during the test and run: the default
  layer must hold exactly what the classifier module receives in PyTorch.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from support.onnx_factory import run
from zooindex import graph
from zooindex.errors import ModelError

FIXTURES = Path(__file__).parent / "fixtures" / "architectures"
EXPORTERS = ("torchscript", "dynamo")

# architecture: (kind, op, width) of the default layer; ops differ between exporters,
# written "torchscript op/dynamo op" where they do
REAL = {
    "torchvision-resnet50": ("pool", "GlobalAveragePool/ReduceMean", 2048),
    "torchvision-mobilenet_v2": ("pool", "GlobalAveragePool/ReduceMean", 1280),
    "torchvision-mobilenet_v3_large": ("dense", "HardSwish", 1280),
    "torchvision-efficientnet_b0": ("pool", "GlobalAveragePool/ReduceMean", 1280),
    "torchvision-densenet121": ("pool", "GlobalAveragePool/ReduceMean", 1024),
    "torchvision-convnext_tiny": ("norm", "LayerNormalization", 768),
    "torchvision-regnet_y_400mf": ("pool", "GlobalAveragePool/ReduceMean", 440),
    "torchvision-vgg16": ("dense", "Relu", 4096),
    "torchvision-vit_b_16": ("token", "Gather", 768),
    # dynamo writes torch.flatten of the pooled map as an as_strided Gather: same values
    "torchvision-swin_t": ("pool/feature", "GlobalAveragePool/Gather", 768),
    # the 1x1 conv classifier reads the last Fire module's concatenated 512x13x13 map
    "torchvision-squeezenet1_0": ("feature", "Concat", 512 * 13 * 13),
    "timm-resnet50": ("pool", "GlobalAveragePool/ReduceMean", 2048),
    "timm-convnext_tiny": ("norm", "LayerNormalization", 768),
    "timm-vit_base_patch16_224": ("token", "Gather", 768),
    "timm-vit_small_patch16_224-avg": ("norm", "LayerNormalization", 384),
    "timm-deit_small_patch16_224": ("token", "Gather", 384),
    "timm-deit_small_distilled_patch16_224": ("token", "Gather", 384),
    "timm-efficientnet_b0": ("pool", "GlobalAveragePool/ReduceMean", 1280),
    # timm's MobileNetV3 pools first, then a 1x1 conv_head + Hardswish, then Linear
    "timm-mobilenetv3_large_100": ("conv", "HardSwish", 1280),
    "timm-swin_tiny_patch4_window7_224": ("pool", "ReduceMean", 768),
}
# TorchScript exports of Swin pad each window by amounts computed with Mod and Where
# from the input's shape, which ONNX shape inference does not propagate: the widths
# inside the later stages stay unknown (the default layer's is known)
UNKNOWN_WIDTHS = {"torchvision-swin_t-torchscript": 23,
                  "timm-swin_tiny_patch4_window7_224-torchscript": 23}


def _pick(text: str, exporter: str) -> str:
    parts = text.split("/")
    return parts[EXPORTERS.index(exporter)] if len(parts) == 2 else text


def _fixture(name: str) -> onnx.ModelProto:
    return onnx.load_model_from_string(gzip.decompress((FIXTURES / f"{name}.onnx.gz").read_bytes()))


def test_every_fixture_has_its_expectation():
    on_disk = sorted(p.name[: -len(".onnx.gz")] for p in FIXTURES.glob("*.onnx.gz"))
    assert on_disk == sorted(f"{a}-{e}" for a in REAL for e in EXPORTERS)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("architecture", sorted(REAL))
def test_real_architectures(architecture, exporter):
    name = f"{architecture}-{exporter}"
    model = _fixture(name)
    info = graph.inspect(model)
    kind, op, width = (_pick(v, exporter) if isinstance(v, str) else v
                       for v in REAL[architecture])
    layer = graph.resolve_layer(info, None)
    assert (layer.kind, layer.op, layer.width) == (kind, op, width)
    # the class scores are the model's one output, logits
    assert info.output_name == model.graph.output[0].name and not info.output_is_probs
    classes = 1000
    assert info.default_reason.startswith("input of the ")
    assert f"({layer.shape[0] if architecture.endswith('squeezenet1_0') else width} -> " \
        f"{classes}" in info.default_reason
    unknown = [l.name for l in info.layers if l.width is None]
    assert len(unknown) == UNKNOWN_WIDTHS.get(name, 0), unknown
    assert info.input_shape[1:] == (3, 224, 224) and isinstance(info.input_shape[0], str)


def test_a_weightless_fixture_loads_and_refuses_to_run(tmp_path):
    path = tmp_path / "vit.onnx"
    path.write_bytes(gzip.decompress(
        (FIXTURES / "torchvision-vit_b_16-torchscript.onnx.gz").read_bytes()))
    model = graph.load(path)  # checked, weights left where they are (absent)
    assert graph.inspect(model).default_layer is not None
    assert graph.external_files(model) == ["weights.absent"]
    with pytest.raises(ModelError, match="'weights.absent' of tensor .* does not exist"):
        graph.load(path, check_files=True)


def test_vit_widths_need_the_batch_fixed_and_rows_that_are_not_samples_are_left_out():
    # torchvision's MultiheadAttention, in TorchScript exports, projects the inputs on
    # (tokens, batch, 3 x width) and the outputs on (tokens x batch, width) rows, with
    # reshape targets computed from the input's shape: shape inference with a symbolic
    # batch cannot tell where the batch is, nor the MLP's batch axis
    model = _fixture("torchvision-vit_b_16-torchscript")
    info = graph.inspect(model)
    units = graph._find_units(graph._Topology(model.graph))
    first = graph._value_types(model)
    unsure = [u for u in units if graph._dims(first[u.tensor])[0] != info.input_shape[0]]
    assert len(unsure) == 12 * 4 + 1  # per block: in, out projection, 2 MLP; and the head
    listed = {l.name: l for l in info.layers}
    # the MLP layers (and the head) are per sample, with every size known...
    mlp = [listed[u.tensor] for u in unsure if u.tensor in listed and u.op == "MatMul+Add"]
    assert sorted({l.shape for l in mlp}) == [(197, 768), (197, 3072)] and len(mlp) == 24
    # ...the attention projections, whose rows are not samples, are not candidates
    assert sum(u.tensor not in listed for u in unsure) == 24
    assert all(l.width is not None for l in info.layers)


# ---------------------------------------------------------------------------
# small models with the families' heads, exported here and run


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="exporting the heads needs torch")


@pytest.fixture(scope="module")
def architectures(torch):
    from support import architectures

    return architectures


def _export(torch, model, path, exporter, opset=17):
    example = torch.zeros((2, 3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if exporter == "dynamo":
            pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    return graph.load(path, load_weights=True)


# dynamo exports take about a second each (the real fixtures above cover every family's
# dynamo graph): here those whose graphs differ most from TorchScript's (ReduceMean +
# Reshape pooling, select of the class token, two outputs)
HEADS = [(name, "torchscript") for name in (
    "resnet", "mobilenet_v3", "efficientnet", "convnext", "vgg", "vit", "timm_vit_avg",
    "squeezenet", "feature_extractor", "detector")] + \
    [(name, "dynamo") for name in ("resnet", "vit", "detector")]


@pytest.mark.torch
@pytest.mark.parametrize("name, exporter", HEADS)
def test_heads_default_layer_holds_what_the_classifier_reads(torch, architectures, tmp_path,
                                                               name, exporter):
    net, classifier = architectures.build(name)
    _, _, kind, width, has_scores = architectures.MODELS[name]
    model = _export(torch, net, tmp_path / "m.onnx", exporter)
    info = graph.inspect(model)
    layer = graph.resolve_layer(info, None)
    assert (layer.kind, layer.width) == (kind, width)
    assert all(l.width is not None for l in info.layers), info.layers
    assert (info.output_name is not None) == has_scores

    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    seen = {}
    hook = classifier.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    hook.remove()
    got = run(graph.expose(model, [info.default_layer]), {info.input_name: x})
    np.testing.assert_allclose(got[info.default_layer].reshape(3, -1),
                               seen["x"].numpy().reshape(3, -1), atol=1e-5)
    if has_scores:
        scores = out[1] if name == "detector" else out  # the detector's second output
        np.testing.assert_allclose(got[info.output_name], scores.numpy(), atol=1e-5)
        assert info.output_is_probs is (name == "detector")


@pytest.mark.torch
def test_a_layer_norm_written_op_by_op_is_a_norm(torch, architectures, tmp_path):
    # before opset 17, TorchScript writes layer_norm as ReduceMean, Sub, Pow, ..., Div,
    # Mul, Add: ConvNeXt's head then reads the final Add
    net, classifier = architectures.build("convnext")
    model = _export(torch, net, tmp_path / "m.onnx", "torchscript", opset=16)
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    layer = graph.resolve_layer(graph.inspect(model), None)
    assert (layer.kind, layer.op, layer.width) == ("norm", "Add", 8)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_a_free_image_size_leaves_the_pooled_width_known(torch, architectures, tmp_path, name):
    # exported with height and width free: the convolution maps' widths depend on the
    # image size (unknown until a target comes), the representation's do not
    net, _ = architectures.build(name)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros((2, 3, 32, 32)),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})
    info = graph.inspect(graph.load(path))
    assert info.input_shape == ("batch", 3, "height", "width")
    layer = graph.resolve_layer(info, None)
    assert (layer.kind, layer.width) == architectures.MODELS[name][2:4]
    assert {l.kind for l in info.layers if l.width is None} == {"input", "conv"}
