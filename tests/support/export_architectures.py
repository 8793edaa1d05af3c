"""Export real torchvision and timm architectures into the tests' weightless ONNX fixtures.

Not part of the test suite: it needs torchvision and timm, which the test environment
lacks (torchvision's wheels on PyPI are CUDA builds that do not import beside the CPU
torch of ``make dev``). Run it from a separate environment, for instance::

    python3 -m venv /tmp/venv-tv
    /tmp/venv-tv/bin/pip install torch torchvision timm onnx onnxscript onnxruntime
    /tmp/venv-tv/bin/python tests/support/export_architectures.py [--check] [NAME ...]

Each architecture (random weights, 224x224, batch dynamic) is exported with both torch
exporters: TorchScript (``dynamo=False``, opset 17) and dynamo (its default opset). The
fixture keeps the exporter's graph as written, every tensor of up to 1,024 values
(reshape targets, axes) included, and turns every larger one into external data in a
file that does not exist (``weights.absent``), since ``graph.inspect`` never reads
weights; node doc strings and metadata (dynamo's stack traces) are dropped. Each is
written gzip-compressed to ``tests/fixtures/architectures/<source>-<name>-<exporter>.onnx.gz``.

``--check`` also runs every exported model, weights included, with onnxruntime: the
default layer zooindex picks must equal the input of the classifier module in PyTorch
(by a forward pre-hook), and the class-score output the model's output. It prints the
table of what was checked.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "architectures"
sys.path.insert(0, str(ROOT))

# torchvision builder -> the classifier module, whose input is the representation
TORCHVISION = {
    "resnet50": "fc", "mobilenet_v2": "classifier.1", "mobilenet_v3_large": "classifier.3",
    "efficientnet_b0": "classifier.1", "densenet121": "classifier",
    "convnext_tiny": "classifier.2", "regnet_y_400mf": "fc", "vgg16": "classifier.6",
    "vit_b_16": "heads.head", "swin_t": "head", "squeezenet1_0": "classifier.1",
}
# timm model names (":avg" asks for global average pooling and fc_norm instead of the
# class token); the classifier is model.get_classifier()
TIMM = [
    "resnet50", "convnext_tiny", "vit_base_patch16_224", "deit_small_patch16_224",
    "deit_small_distilled_patch16_224", "efficientnet_b0", "mobilenetv3_large_100",
    "swin_tiny_patch4_window7_224", "vit_small_patch16_224:avg",
]
EXPORTERS = ("torchscript", "dynamo")
SMALL = 1024  # values: tensors up to this size keep their data


def build(source: str, name: str):
    """The model in eval mode and its classifier module."""
    if source == "torchvision":
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        return model.eval(), model.get_submodule(TORCHVISION[name])
    import timm

    base, _, pool = name.partition(":")
    model = timm.create_model(base, pretrained=False, **({"global_pool": pool} if pool else {}))
    head = model.get_classifier()
    return model.eval(), head[0] if isinstance(head, tuple) else head


def export(model, path: Path, exporter: str) -> None:
    import torch

    example = torch.zeros(2, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], dynamic_axes={"input": {0: "batch"}})
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=True,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))


def weightless(model):
    """``model`` with every tensor over SMALL values pointing at an absent file."""
    import onnx

    from zooindex.graph import all_tensors

    for tensor in all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or np.prod(tensor.dims) > SMALL:
            for field in ("raw_data", "float_data", "int32_data", "int64_data",
                          "double_data", "uint64_data", "string_data", "external_data"):
                tensor.ClearField(field)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value="weights.absent")
    nodes = list(model.graph.node)
    for function in model.functions:
        nodes += list(function.node)
    for node in nodes:
        node.doc_string = ""
        del node.metadata_props[:]
    model.graph.doc_string = ""
    return model


def check(folder: Path, model, head, name: str) -> str:
    """Run the export with its weights: is the default layer the classifier's input?"""
    import onnxruntime
    import torch

    from zooindex import graph

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    seen = {}
    hook = head.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        want_out = model(torch.from_numpy(x)).numpy()
    hook.remove()
    proto = graph.load(folder / "model.onnx", load_weights=True, check=False)
    info = graph.inspect(proto)
    session = onnxruntime.InferenceSession(
        graph.expose(proto, [info.default_layer]).SerializeToString(),
        providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {info.input_name: x})))
    features = got[info.default_layer].reshape(2, -1)
    want = seen["x"].numpy().reshape(2, -1)
    same = features.shape == want.shape and np.allclose(features, want, atol=1e-3, rtol=1e-3)
    scores = info.output_name is not None and np.allclose(
        got[info.output_name].reshape(2, -1), want_out.reshape(2, -1), atol=1e-3, rtol=1e-3)
    return f"{'ok' if same else 'DIFFERS'} / {'ok' if scores else 'DIFFERS'}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these (e.g. resnet50, vit_b_16)")
    parser.add_argument("--check", action="store_true", help="run each export and compare")
    args = parser.parse_args(argv)

    import onnx

    from zooindex import graph

    FIXTURES.mkdir(parents=True, exist_ok=True)
    wanted = [("torchvision", n) for n in TORCHVISION] + [("timm", n) for n in TIMM]
    if args.names:
        wanted = [(s, n) for s, n in wanted if n in args.names or n.split(":")[0] in args.names]
    print("| architecture | exporter | default layer op | kind | width | class scores "
          "| unknown widths | checked by value (features / scores) |")
    print("|---|---|---|---|---|---|---|---|")
    for source, name in wanted:
        for exporter in EXPORTERS:
            tag = f"{source}-{name.replace(':', '-')}-{exporter}"
            model, head = build(source, name)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                export(model, folder / "model.onnx", exporter)
                proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
                info = graph.inspect(proto)
                value = check(folder, model, head, name) if args.check else "-"
            light = weightless(proto)
            (FIXTURES / f"{tag}.onnx.gz").write_bytes(
                gzip.compress(light.SerializeToString(), mtime=0))
            layer = graph.resolve_layer(info, None)
            unknown = sum(l.width is None for l in info.layers)
            print(f"| {source} {name} | {exporter} | {layer.op} | {layer.kind} | {layer.width} "
                  f"| {'yes' if info.output_name else 'no'} | {unknown} of {len(info.layers)} "
                  f"| {value} |", flush=True)
            print(f"|  | reason | {info.default_reason} | | | | | |", flush=True)


if __name__ == "__main__":
    main()
