"""ONNX graph work: load and check a model, list its candidate layers, expose a layer.

The core is pure: :func:`inspect`, :func:`expose` and :func:`resolve_layer` take an
in-memory ``onnx.ModelProto`` and never touch files. :func:`load` is the thin edge that
reads a file and refuses anything unsound. By concern:

* :mod:`~zooindex.graph.loading`: the file edge, and the safety checks of external
  weight files (never read from outside the model's folder);
* :mod:`~zooindex.graph.proto`: the one tensor walker (:func:`all_tensors`), the
  structural checks, the graph's topology;
* :mod:`~zooindex.graph.shapes`: per-sample shapes by ONNX shape inference;
* :mod:`~zooindex.graph.units`: layers recognised by structure (conv, pool, dense);
* :mod:`~zooindex.graph.heads`: the class-score output and the classifier behind it;
* :mod:`~zooindex.graph.representation`: the walk back from the classifier to the
  representation it reads, the default layer, and the one-line reason for it;
* :mod:`~zooindex.graph.info`: :func:`inspect`, which puts these together, and
  :func:`default_feeds` for a model's extra inputs;
* :mod:`~zooindex.graph.exposing`: :func:`expose`, a copy with layers as outputs.

Checked on torchvision (ResNet, MobileNetV2/V3, EfficientNet, DenseNet, ConvNeXt,
RegNet, VGG, ViT, Swin, SqueezeNet) and timm (ResNet, ConvNeXt, ViT, DeiT, distilled
DeiT, EfficientNet, MobileNetV3, Swin) with both torch exporters; the tests hold
weightless copies of those graphs (tests/fixtures/architectures).
"""

from .exposing import expose, exposed_bytes
from .info import ModelInfo, default_feeds, inspect, resolve_layer
from .loading import MAX_PROTO_BYTES, check_external_data, external_files, load, load_serialized
from .proto import all_tensors
from .units import ACTIVATIONS, POOLS

# Package-private helpers that zooindex.export and the tests reach through ``graph.``
from .loading import _short  # noqa: F401
from .proto import _dims, _Topology  # noqa: F401
from .shapes import _value_types  # noqa: F401
from .units import _find_units  # noqa: F401

__all__ = [
    "ACTIVATIONS", "MAX_PROTO_BYTES", "POOLS", "ModelInfo", "all_tensors",
    "check_external_data", "default_feeds", "expose", "exposed_bytes", "external_files",
    "inspect", "load", "load_serialized", "resolve_layer",
]
