"""ONNX graph work: load and check a model, list its candidate layers, expose a layer.

The core is pure: :func:`inspect`, :func:`expose` and :func:`resolve_layer` take an
in-memory ``onnx.ModelProto`` and never touch files. :func:`load` is the thin edge that
reads a file, refuses anything that is not a sound ONNX model, and refuses external
weight files that would be read from outside the model's folder (every tensor of the
model, function bodies included, is walked by :func:`all_tensors`).

Layers are recognised by graph structure, never by node or tensor names, because every
exporter (PyTorch, TensorFlow, scikit-learn) names things its own way:

* the model input (kind ``"input"``);
* convolutions (kind ``"conv"``), taken after a following activation when the
  convolution feeds only that activation;
* pooling layers (kind ``"pool"``);
* dense layers (kind ``"dense"``): ``Gemm``, ``MatMul`` with a constant weight followed
  by an ``Add`` of a constant bias (op ``"MatMul+Add"``), or such a ``MatMul`` alone,
  again taken after a following activation;
* the default layer, whatever makes it (see below).

A ``BatchNormalization`` fed only by a convolution or dense layer is absorbed before the
activation, since unfused exports put it there and its output is what the next layer
sees. ``Layer.op`` is the operator that produces the layer's tensor (``"Relu"`` for a
convolution taken after its ReLU), except that a dense layer ending in its bias ``Add``
reads ``"MatMul+Add"``. A candidate is a tensor with one row per sample: tensors whose
first axis is not the batch (the ``(tokens, batch, width)`` internals of
``nn.MultiheadAttention`` in TorchScript exports) are left out, since their rows are not
the samples'. Widths come from ONNX shape inference, and where it leaves sizes open
(reshape targets computed from the input's shape, as in ViTs), from a second pass with
the batch size fixed (:class:`_Shapes`); sizes that depend on other free input sizes, or
on shape arithmetic ONNX cannot propagate (torchvision Swin's padding in TorchScript
exports), stay unknown (``dim`` ``None``).

The default layer is the representation that enters the final classifier, the paper's
"last hidden layer" generalised beyond dense heads:

1. The class-score output is the graph output that traces back, through head operators
   (Softmax, LogSoftmax, Dropout, Flatten, Reshape, Cast, ...), a scaling by a constant,
   or an average of several heads, to a classifier: a dense layer (Gemm; MatMul + Add;
   MatMul), bare or with a sigmoid, or a 1x1 convolution whose scores are pooled over
   all positions (SqueezeNet). A dense layer with another activation (a tanh pooler)
   makes features, not scores. Among several such outputs, one behind a Softmax or
   LogSoftmax wins (a detector's class scores over its box regression), then float
   tensors, then graph order; ``inspect(..., output_name=...)`` overrides the choice.
2. The default layer is the classifier's data input, walked back through operators that
   only move each sample's values (Identity, Dropout, Flatten, and Reshape, Squeeze,
   Unsqueeze or Transpose that keep the batch axis and the values per sample): the
   walk ends at the operator that made the representation, which names it. Its kind is
   that of a recognised layer (``"dense"`` for the paper's CNN and MobileNetV3's and
   VGG's hidden Linear + activation; ``"conv"``), else ``"pool"`` (GlobalAveragePool,
   ReduceMean: ResNet, EfficientNet, DenseNet, RegNet, MobileNetV2, Swin), ``"norm"``
   (LayerNormalization or a normalisation written op by op: ConvNeXt, ViTs with a
   pooled ``fc_norm``), ``"token"`` (a Gather or Slice along the sequence: the class
   token of ViT and DeiT), or ``"feature"`` (anything else, e.g. a Concat). It is added
   to the candidates when it is not one already.
3. For a 1x1 convolution classifier, the default is the feature map the convolution
   reads: every position is classified on its own and the scores pooled afterwards, so
   the map is the representation the classifier sees (SqueezeNet 1.0: 512x13x13); no
   tensor of the graph holds a pooled version of it.
4. A model with no classifier (a feature extractor whose output is the embedding) takes
   its first float output, walked back the same way, and has ``output_name`` ``None``.
   A model with neither a classifier nor a float output of one row per sample has no
   default.

``ModelInfo.default_reason`` says which case applied in one line, e.g. "input of the
final classifier Gemm (2048 -> 1000): pooled features (GlobalAveragePool), through
Flatten". Checked on torchvision (ResNet, MobileNetV2/V3, EfficientNet, DenseNet,
ConvNeXt, RegNet, VGG, ViT, Swin, SqueezeNet) and timm (ResNet, ConvNeXt, ViT, DeiT,
distilled DeiT, EfficientNet, MobileNetV3, Swin) with both torch exporters; the tests
hold weightless copies of those graphs (tests/fixtures/architectures).

A model with several data inputs is inspected for the one named by ``input_name``; the
others are recorded so that the runner can feed them neutral values
(:func:`default_feeds`).
"""

from __future__ import annotations

import math
import os
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from .errors import LayerError, ModelError
from .layer import Layer, choose, listing

ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Gelu", "HardSigmoid", "Clip",
    "PRelu", "HardSwish", "Softplus", "Mish",
})
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})

# Operators between the final classifier and the class-score output that keep the
# classifier's identity (ZipMap is scikit-learn's label -> probability dictionary).
_HEAD_OPS = frozenset({
    "Softmax", "LogSoftmax", "Identity", "Dropout", "Flatten", "Reshape", "Cast",
    "Squeeze", "Unsqueeze", "ZipMap",
})
_SCORE_OPS = frozenset({"Softmax", "LogSoftmax"})
# Pooling over all positions: after a 1x1 convolution classifier (SqueezeNet), and, with
# the local pools, the kind "pool" of a representation they produce.
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"})
_NORMS = frozenset({
    "LayerNormalization", "BatchNormalization", "GroupNormalization",
    "InstanceNormalization", "LpNormalization", "RMSNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization",
})
# Operators that may pass each sample's values on unchanged, at most laid out anew; the
# walk from the classifier back to its representation goes through them (see
# _moves_values for the conditions on each).
_LAYOUT_OPS = frozenset({
    "Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
})
# How a reason names a representation of each kind.
_KIND_TEXT = {
    "input": "the model input", "conv": "convolution output", "pool": "pooled features",
    "dense": "hidden dense layer", "norm": "normalised features",
    "token": "one token of the sequence", "feature": "features",
}
# The batch size of the second shape-inference pass (see _Shapes): an odd prime, so that
# a first axis of that size is the batch rather than a channel, head or token count.
_PROBE_BATCH = 13
_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
})
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Initializers up to this many elements stay in the copy used for shape inference, so
# that Reshape targets and similar small constants still drive it; larger ones travel
# as typed inputs, which keeps inference cheap and independent of the weights.
_SMALL_INITIALIZER = 1024
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one serialized message
# Declared tensor shapes beyond this many values are corrupt (2^36 float32 = 256 GiB)
_MAX_DECLARED_VALUES = 2**36
# bytes per value of fixed-size tensor types, for checking external data ranges
_ITEMSIZE = {t: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)).itemsize
             for t in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                       onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
                       onnx.TensorProto.UINT8, onnx.TensorProto.INT16,
                       onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
                       onnx.TensorProto.UINT32, onnx.TensorProto.INT64,
                       onnx.TensorProto.UINT64, onnx.TensorProto.BOOL)}
_ITEMSIZE[onnx.TensorProto.BFLOAT16] = 2


@dataclass(frozen=True)
class ModelInfo:
    """What zooindex needs to know about a model, read from its graph alone.

    ``input_shape`` keeps the batch dimension; sizes are ints, ``str`` for symbolic
    dimensions and ``None`` for dimensions that are neither. ``extra_inputs`` holds
    ``(name, shape, dtype)`` for every data input other than the one the target feeds
    (see :func:`default_feeds`); ``shape`` reads like ``input_shape``, or ``None`` when
    even the rank is unknown, and ``dtype`` is ``None`` for non-tensor inputs.

    ``default_layer`` is the representation entering the final classifier (see the
    module's docstring), one of ``layers``, or ``None``; ``default_reason`` says in one
    line why, e.g. "input of the final classifier Gemm (2048 -> 1000): pooled features
    (GlobalAveragePool), through Flatten". ``output_name`` is the graph output carrying
    class scores, ``None`` when the model has none (a feature extractor);
    ``output_is_probs`` says whether a softmax is already applied to it.
    """

    input_name: str
    input_shape: tuple
    input_dtype: str
    opset: int
    params: int
    layers: tuple[Layer, ...]
    default_layer: str | None
    default_reason: str
    output_name: str | None
    output_is_probs: bool
    metadata: dict
    external_data: bool
    extra_inputs: tuple = ()


@dataclass(frozen=True)
class _Unit:
    """A recognised layer: its chain of tensors from the main op to the candidate."""

    kind: str
    op: str
    tensor: str
    position: int
    data_input: str | None
    chain: tuple[str, ...]
    activation: str | None


class _Topology:
    """Producer, consumers and constant-ness of every tensor of a graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer: dict[str, tuple[int, onnx.NodeProto]] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.outputs = {o.name for o in graph.output}
        self.initializers = {t.name for t in graph.initializer}
        self.initializers.update(t.values.name for t in graph.sparse_initializer)
        self.initializer_dims = {t.name: tuple(t.dims) for t in graph.initializer}
        # Constant folding by propagation: weights reached through Cast, Transpose or
        # DequantizeLinear of initializers are still weights.
        self.constant = set(self.initializers)
        for index, node in enumerate(graph.node):
            for name in node.output:
                if name:
                    self.producer[name] = (index, node)
            for name in set(node.input):
                if name:
                    self.consumers[name].append(node)
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant" or (inputs and all(n in self.constant for n in inputs)):
                self.constant.update(name for name in node.output if name)

    def node_of(self, tensor: str) -> onnx.NodeProto | None:
        found = self.producer.get(tensor)
        return None if found is None else found[1]

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The one node reading ``tensor``, if nothing else (graph output included) does."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def small_ints(self, tensor: str) -> list[int] | None:
        """The values of a small integer constant (an initializer or a Constant node)."""
        value = next((t for t in self.graph.initializer if t.name == tensor), None)
        if value is None:
            node = self.node_of(tensor)
            if node is None or node.op_type != "Constant":
                return None
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is None:
                ints = next((list(a.ints) for a in node.attribute if a.name == "value_ints"), None)
                return ints if ints is not None else next(
                    ([a.i] for a in node.attribute if a.name == "value_int"), None)
        if (value.data_location == onnx.TensorProto.EXTERNAL
                or _tensor_elements(value) > _SMALL_INITIALIZER
                or value.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)):
            return None
        return [int(v) for v in onnx.numpy_helper.to_array(value).ravel()]


# ---------------------------------------------------------------------------
# loading (the file edge)


def load(path, *, load_weights: bool = False, check_files: bool = False,
         check: bool = True) -> onnx.ModelProto:
    """Read and check the ONNX model at ``path``; see :func:`load_serialized`."""
    return load_serialized(path, load_weights=load_weights, check_files=check_files,
                           check=check)[0]


def load_serialized(path, *, load_weights: bool = False, check_files: bool = False,
                    check: bool = True) -> tuple[onnx.ModelProto, bytes | None]:
    """Read and check the ONNX model at ``path``: the model, and the file's bytes.

    The bytes are ``None`` when the model keeps weights in external files (they are not
    in the file), so that :func:`exposed_bytes` can append to them where they are whole.

    ``check=False`` skips the ONNX checker (about 10 ms for a 13 MB model), for a file
    already checked when it was indexed: onnxruntime refuses what the checker would.
    The structural checks and those of external weight locations always run.

    Weights kept in external files are left unread unless ``load_weights`` is true, so
    that listing layers or checking a large model costs little memory; their locations
    are checked either way (see :func:`check_external_data`). With ``load_weights`` or
    ``check_files``, the weight files must also exist and be long enough (a stat, no
    read), so that a model is not indexed without the weights it can never run without.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"model file '{path}' not found", path=path)
    if os.path.isdir(path):
        raise ModelError(f"'{path}' is not a valid ONNX model: it is a directory; "
                         "pass the .onnx file", path=path)
    # A FIFO or a device would block or never end, and protobuf cannot parse more than
    # 2 GiB: refuse both before reading a byte.
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"'{path}' is not a valid ONNX model: it is not a regular file "
                         "(a pipe, device or socket); pass the .onnx file itself", path=path)
    if st.st_size == 0:
        raise ModelError(f"'{path}' is not a valid ONNX model: the file is empty "
                         "(an interrupted download or copy?)", path=path)
    if st.st_size > MAX_PROTO_BYTES:
        raise ModelError(f"'{path}' is not a valid ONNX model: it is {st.st_size:,} bytes, "
                         "over the 2 GiB limit of a protobuf file; save the weights as "
                         "external data (onnx.save_model(..., save_as_external_data=True))",
                         path=path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        model = onnx.load_model_from_string(raw)
    except (DecodeError, ValueError, TypeError, RuntimeError, OSError, KeyError) as exc:
        raise ModelError(f"'{path}' is not a valid ONNX model: {_short(exc)}", path=path) from exc
    reason = _structure_problem(model)
    if reason is not None:
        raise ModelError(f"'{path}' is not a valid ONNX model: {reason}", path=path)
    # Before the checker, which would itself open the files that external data names.
    base_dir = os.path.dirname(os.path.abspath(path))
    try:
        check_external_data(model, base_dir, files=load_weights or check_files)
    except ModelError as exc:
        raise ModelError(f"cannot use the external weights of '{path}': {exc}",
                         path=path) from None
    if check:
        try:
            # The checker would look for external weight files relative to the working
            # directory; check a copy that declares those weights as typed inputs instead.
            checked = _weightless_copy(model, keep_small=False) \
                if _has_external_data(model) else model
            onnx.checker.check_model(checked)
        except (onnx.checker.ValidationError, ValueError, RuntimeError, DecodeError) as exc:
            raise ModelError(f"'{path}' is not a valid ONNX model: {_short(exc)}",
                             path=path) from exc
    external = _has_external_data(model)
    if load_weights and external:
        try:
            external_data_helper.load_external_data_for_model(model, base_dir)
        except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
            raise ModelError(f"cannot read the external weights of '{path}': {_short(exc)}; "
                             "keep the weight files next to the model", path=path) from exc
    return model, None if external else raw


def check_external_data(model: onnx.ModelProto, base_dir, *, files: bool = False) -> None:
    """Refuse external-data locations that would read a file outside ``base_dir``.

    A model file is data from elsewhere; an absolute location, a ``..`` step or a
    symlink leading out of the model's folder would let it read arbitrary files.
    With ``files``, each weight file must also exist and hold the tensor's byte range.
    """
    base = os.path.realpath(os.fspath(base_dir))
    for tensor in all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        problem = None
        if not location:
            problem = "has no location"
        elif PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute():
            problem = "is an absolute path"
        elif ".." in PurePosixPath(location).parts or ".." in PureWindowsPath(location).parts:
            problem = "steps out with '..'"
        else:
            target = os.path.realpath(os.path.join(base, location))
            if os.path.commonpath([base, target]) != base:
                problem = "leads outside the model folder through a symlink"
            elif files:
                missing = _external_range_problem(tensor, target)
                if missing is not None:
                    raise ModelError(
                        f"external data file '{location}' of tensor '{tensor.name}' "
                        f"{missing}; copy the model's weight files next to it")
        if problem is not None:
            raise ModelError(
                f"external data file '{location}' of tensor '{tensor.name}' {problem}; "
                f"weight files must sit inside the model folder '{base}'")


def external_files(model: onnx.ModelProto) -> list[str]:
    """The external weight files ``model`` reads, relative to its folder, sorted, once each."""
    return sorted({entry.value for tensor in all_tensors(model)
                   if tensor.data_location == onnx.TensorProto.EXTERNAL
                   for entry in tensor.external_data if entry.key == "location"})


def all_tensors(model: onnx.ModelProto):
    """Every TensorProto ``model`` holds, wherever weights or constants can hide.

    Initializers and sparse initializers (values and indices), and the tensor attributes
    of every node (a ``Constant``'s value, for instance): in the main graph, in the
    subgraphs of control-flow nodes at any depth, and in the body of every local function
    (``model.functions``). Every check of external-data locations walks this one list, so
    that a reference cannot slip past one of them by sitting in a function body.
    """
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _external_range_problem(tensor: onnx.TensorProto, target: str) -> str | None:
    """Why the bytes of an external tensor cannot be at ``target``, or ``None``.

    Only the file's size is read, never its content, so that checking a model with
    gigabytes of weights costs nothing; a tensor that would need more bytes than its
    file holds (a truncated download, or dims that promise 2^40 values) is refused.
    """
    try:
        st = os.stat(target)
    except OSError:
        return "does not exist"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    info = {entry.key: entry.value for entry in tensor.external_data}
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        return "has a non-numeric offset or length"
    if offset < 0 or (length is not None and length < 0):
        return "has a negative offset or length"
    itemsize = _ITEMSIZE.get(tensor.data_type)
    needed = math.prod(tensor.dims) * itemsize if itemsize else length or 0
    if length is not None and itemsize and length != needed:
        return (f"declares {length:,} bytes but the tensor's shape {list(tensor.dims)} "
                f"needs {needed:,}")
    if offset + needed > st.st_size:
        return (f"holds {st.st_size:,} bytes but the tensor needs {needed:,} from offset "
                f"{offset:,} (truncated?)")
    return None


# ---------------------------------------------------------------------------
# the pure core


def inspect(model: onnx.ModelProto, input_name: str | None = None,
            output_name: str | None = None) -> ModelInfo:
    """Describe ``model``: its input, candidate layers, default layer and classifier output.

    A model with several data inputs (a mask, a sequence length, a second modality)
    needs ``input_name`` to say which one takes the target's data; the others are
    listed in ``ModelInfo.extra_inputs`` and get :func:`default_feeds` when it runs.

    ``output_name`` names the graph output that carries class scores, where the rule
    that finds it (see the module's docstring) would pick another; the default layer
    is then the input of the classifier behind that output.
    """
    problem = _structure_problem(model)
    if problem is not None:
        raise ModelError(f"the model is not a valid ONNX model: {problem}")
    graph = model.graph
    topology = _Topology(graph)
    input_info, others = _data_input(graph, topology, input_name)

    input_dims = _dims(input_info.type)
    elem_type = (input_info.type.tensor_type.elem_type
                 if input_info.type.HasField("tensor_type") else 0)
    if not elem_type:
        raise ModelError(f"the model input '{input_info.name}' is not a tensor of a known "
                         "element type; only tensor inputs can be fed")
    input_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name

    shapes = _Shapes(model, input_info)
    units = _find_units(topology)
    unit_of = {tensor: unit for unit in units for tensor in unit.chain}
    layers = [_layer(input_info.name, "input", "input", shapes.sample(input_info.name)[0], 0)]
    for unit in units:
        shape, per_sample = shapes.sample(unit.tensor)
        if per_sample is not False:  # a first axis that is not the batch has no rows to read
            layers.append(_layer(unit.tensor, unit.op, unit.kind, shape, unit.position))

    output_name, head = _class_scores(graph, topology, unit_of, shapes, output_name)
    default, reason = _default_layer(graph, topology, unit_of, shapes, input_info.name,
                                     output_name, head)
    if default is not None and all(layer.name != default.name for layer in layers):
        layers.append(default)
        layers.sort(key=lambda layer: layer.position)

    return ModelInfo(
        input_name=input_info.name,
        input_shape=input_dims if input_dims is not None else (),
        input_dtype=input_dtype,
        opset=_default_opset(model),
        params=_count_params(graph),
        layers=tuple(layers),
        default_layer=default.name if default is not None else None,
        default_reason=reason,
        output_name=output_name,
        output_is_probs=head is not None and head.probs,
        metadata={prop.key: prop.value for prop in model.metadata_props},
        external_data=_has_external_data(model),
        extra_inputs=tuple(_input_spec(value) for value in others),
    )


def default_feeds(info: ModelInfo, batch: int) -> dict[str, np.ndarray]:
    """Zeros for every extra input of ``info``, sized for a batch of ``batch`` samples.

    The extra inputs of a model fed one target (masks, auxiliary features) are given
    their neutral value: zeros of their declared shape, whose first dimension, when it
    is not a fixed size, is the batch's. Any other free size has no value that could
    be called neutral, so such a model is refused.
    """
    feeds = {}
    for name, shape, dtype in info.extra_inputs:
        if dtype is None or shape is None:
            what = "is not a tensor of a known type" if dtype is None else "has no declared shape"
            raise ModelError(
                f"extra model input '{name}' {what}, so zooindex cannot feed it a default "
                f"value; pass --input '{name}' if the target belongs there, or export the "
                "model without that input")
        dims = []
        for axis, size in enumerate(shape):
            if isinstance(size, int) and size >= 0:
                dims.append(size)
            elif axis == 0:
                dims.append(int(batch))
            else:
                raise ModelError(
                    f"extra model input '{name}' has shape {_shape_text(shape)} with a free "
                    f"size at axis {axis}; zooindex feeds extra inputs zeros and cannot choose "
                    "that size; export the model with a fixed size there, or pass --input "
                    f"'{name}' if the target belongs there")
        if np.dtype(dtype).kind not in "biuf":
            raise ModelError(
                f"extra model input '{name}' is of type {dtype}; zooindex can feed zeros "
                "only to numeric and boolean inputs; export the model without that input")
        feeds[name] = np.zeros(dims, dtype=dtype)
    return feeds


def expose(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """Return a copy of ``model`` that also outputs the tensors ``names``.

    Names that already are graph outputs, or are the graph input (whose values the
    caller feeds and so already has), are accepted and not added again. The original
    proto is left untouched.
    """
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(_new_outputs(model, names))
    return exposed


def exposed_bytes(model: onnx.ModelProto, names, serialized: bytes | None = None) -> bytes:
    """``expose(model, names)``, serialized for onnxruntime.

    Given ``serialized``, the bytes ``model`` was parsed from, the new outputs are
    appended to them as a serialized fragment ``ModelProto(graph=GraphProto(output=...))``
    instead: protobuf parsers merge concatenated messages, appending repeated fields, so
    the result reads as the exposed model, without copying and re-serializing the
    weights (for a 13 MB model, 15 ms and two copies of it saved).
    """
    if serialized is None:
        return expose(model, names).SerializeToString()
    fragment = onnx.ModelProto()
    fragment.graph.output.extend(_new_outputs(model, names))
    return serialized + fragment.SerializeToString()


def _new_outputs(model: onnx.ModelProto, names) -> list[onnx.ValueInfoProto]:
    """Typed graph outputs for the tensors ``names`` that are not outputs or inputs yet."""
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input if i.name not in initializers}
    outputs = {o.name for o in graph.output}
    produced = {name for node in graph.node for name in node.output if name}
    unknown = [name for name in names if name not in produced and name not in inputs]
    if unknown:
        candidates = _candidate_layers(model)
        listed = ", ".join(f"'{name}'" for name in unknown)
        where = f"model graph '{graph.name}'" if graph.name else "the model"
        raise LayerError(f"layer {listed} not in {where}; candidates: "
                         f"{listing(candidates)}.",
                         layer=unknown[0], candidates=[c.name for c in candidates])
    wanted = [name for name in names if name not in outputs and name not in inputs]
    types = _value_types(model) if wanted else {}
    new = []
    for name in wanted:
        known = types.get(name)
        if known is not None and known.HasField("tensor_type") and known.tensor_type.elem_type:
            new.append(onnx.helper.make_value_info(name, known))
        else:
            new.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return new


def resolve_layer(info: ModelInfo, layer: str | None, model: str = "model") -> Layer:
    """The layer to extract features from: the default for ``None``/"default", else by
    name (see :func:`zooindex.layer.choose`, the one rule every command uses)."""
    return choose(info.layers, info.default_layer, layer, model, reason=info.default_reason)[0]


# ---------------------------------------------------------------------------
# helpers


def _short(exc: BaseException) -> str:
    """First line of an exception message, trimmed, so errors stay one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return text


def _structure_problem(model) -> str | None:
    """Why ``model`` cannot be a usable model, or ``None``.

    Truncated or foreign protobufs often parse without error into an empty or partial
    ModelProto; these checks are what tells them apart from a model.
    """
    if not isinstance(model, onnx.ModelProto):
        return f"expected an onnx.ModelProto, got {type(model).__name__}"
    if not model.HasField("graph"):
        return "it has no graph"
    graph = model.graph
    if not graph.node:
        return "its graph has no nodes"
    if not graph.output:
        return "its graph has no outputs"
    initializers = {t.name for t in graph.initializer}
    if not any(i.name not in initializers for i in graph.input):
        return "its graph has no inputs"
    for value in (*graph.input, *graph.output, *graph.value_info):
        dims = _dims(value.type) or ()
        sizes = [d for d in dims if isinstance(d, int)]
        if any(d < 0 for d in sizes):
            return f"tensor '{value.name}' declares a negative size {_shape_text(dims)}"
        if math.prod(sizes) > _MAX_DECLARED_VALUES:
            return (f"tensor '{value.name}' declares shape {_shape_text(dims)}, "
                    f"{math.prod(sizes):,} values: its shape information is corrupt")
    return None


def _data_input(graph: onnx.GraphProto, topology: _Topology, input_name: str | None
                ) -> tuple[onnx.ValueInfoProto, list[onnx.ValueInfoProto]]:
    """The input the target feeds, chosen by ``input_name`` when there are several, and the rest.

    Inputs that are also initializers are weights (older exporters list them as inputs).
    """
    inputs = [i for i in graph.input if i.name not in topology.initializers]
    listed = ", ".join(f"'{i.name}'" for i in inputs)
    if input_name is None:
        if len(inputs) > 1:
            raise ModelError(f"the model has several inputs ({listed}); pass --input NAME "
                             "with the one that takes the target data (the others are fed "
                             "zeros)")
        return inputs[0], []
    chosen = [i for i in inputs if i.name == input_name]
    if not chosen:
        raise ModelError(f"input '{input_name}' not in the model; its inputs: {listed}; "
                         "pass --input with one of them")
    return chosen[0], [i for i in inputs if i.name != input_name]


def _input_spec(value: onnx.ValueInfoProto) -> tuple:
    """``(name, shape, dtype)`` of a graph input, as ``ModelInfo.extra_inputs`` holds it."""
    elem_type = (value.type.tensor_type.elem_type
                 if value.type.HasField("tensor_type") else 0)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else None
    return (value.name, _dims(value.type), dtype)


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS:
            return int(opset.version)
    return 1  # the ONNX default when the default domain is not declared


def _tensor_elements(tensor: onnx.TensorProto) -> int:
    return math.prod(tensor.dims)  # dims live in the proto even when the data does not


def _count_params(graph: onnx.GraphProto) -> int:
    total = sum(_tensor_elements(t) for t in graph.initializer)
    total += sum(_tensor_elements(t.values) for t in graph.sparse_initializer)
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            continue
        for attr in node.attribute:
            if attr.name == "value":
                total += _tensor_elements(attr.t)
            elif attr.name == "sparse_value":
                total += _tensor_elements(attr.sparse_tensor.values)
            elif attr.name in ("value_float", "value_int"):
                total += 1
            elif attr.name == "value_floats":
                total += len(attr.floats)
            elif attr.name == "value_ints":
                total += len(attr.ints)
    return total


def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for subgraph in attr.graphs:
                yield from _graph_tensors(subgraph)


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in all_tensors(model))


def _weightless_copy(model: onnx.ModelProto, *, keep_small: bool) -> onnx.ModelProto:
    """A copy of ``model`` whose weights are typed graph inputs instead of data.

    The checker and shape inference then run without the weights being present (external
    data) or copied (large models). External initializers always move; with
    ``keep_small``, only initializers above a small size move, and the small ones keep
    their values so that shape-carrying constants still inform shape inference. Without
    it (the checker's copy), external constants in function bodies become empty tensors.
    """
    graph = model.graph
    light = onnx.GraphProto()
    light.name = graph.name
    light.node.extend(graph.node)
    light.input.extend(graph.input)
    light.output.extend(graph.output)
    light.value_info.extend(graph.value_info)
    light.sparse_initializer.extend(graph.sparse_initializer)
    declared = {i.name for i in graph.input}
    for tensor in graph.initializer:
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if not external and (not keep_small or _tensor_elements(tensor) <= _SMALL_INITIALIZER):
            light.initializer.append(tensor)
        elif tensor.name not in declared:
            light.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    copy.functions.extend(model.functions)
    if not keep_small:
        # The checker would open what a function body's constants name; it needs their
        # types, not their values, and shape inference (keep_small) reads only their dims.
        for function in copy.functions:
            for tensor in _node_tensors(function.node):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    tensor.data_location = onnx.TensorProto.DEFAULT
                    tensor.ClearField("external_data")
                    tensor.ClearField("dims")
                    tensor.dims.append(0)
    copy.graph.CopyFrom(light)
    return copy


def _value_types(model: onnx.ModelProto, probe_batch: int | None = None
                 ) -> dict[str, onnx.TypeProto]:
    """Type and shape of every tensor that shape inference can tell, by name.

    Inference failures are not fatal: the graph's own declarations are used instead and
    the remaining shapes read as unknown. With ``probe_batch``, every graph input whose
    first size is not fixed gets that size, on a copy whose declared intermediate and
    output shapes are dropped, so that shapes computed from the batch (``Shape``,
    ``Gather``, ``Concat`` into a ``Reshape``) become numbers by data propagation.
    """
    light = _weightless_copy(model, keep_small=True)
    if probe_batch is not None:
        for value in light.graph.input:
            dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else ()
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_value = probe_batch
        del light.graph.value_info[:]
        for value in light.graph.output:
            if value.type.HasField("tensor_type"):
                value.type.tensor_type.ClearField("shape")
    inferred = light
    for data_prop in (True, False):
        try:
            inferred = onnx.shape_inference.infer_shapes(light, data_prop=data_prop)
            break
        except Exception:  # inference raises several private types; any means "unknown"
            continue
    graph = inferred.graph
    types: dict[str, onnx.TypeProto] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.HasField("type"):
            types[value.name] = value.type
    return types


class _Shapes:
    """Per-sample shapes of a graph's tensors, by ONNX shape inference.

    The first pass keeps the graph's batch dimension: a tensor whose first size is the
    input's batch size (the same symbol, or the same fixed number) is per sample. Where
    it leaves a size open (a reshape whose target is computed from the input's shape,
    as TorchScript exports of ViTs write) or cannot tell whether the first axis is the
    batch, a second pass with the batch fixed at ``_PROBE_BATCH`` settles it, when the
    input's batch is not a fixed number. A tensor whose first size is then another
    number is not per sample (sequence-first attention internals: ``(tokens, batch,
    width)``), and its rows are not the samples'. Other symbolic sizes (a free image
    height) stay unknown, and so does every size when inference fails on the graph.
    """

    def __init__(self, model: onnx.ModelProto, input_info: onnx.ValueInfoProto):
        self._model = model
        self._types = _value_types(model)
        self._probe: dict[str, onnx.TypeProto] | None = None
        dims = _dims(input_info.type)
        self._batch = dims[0] if dims else None
        self._can_probe = bool(dims) and not isinstance(dims[0], int)

    def sample(self, tensor: str) -> tuple[tuple | None, bool | None]:
        """``(shape per sample, whether the first axis is the batch)``, ``None`` if unknown.

        The shape holds ints, or ``None`` for sizes that stay unknown.
        """
        full = _dims(self._types.get(tensor)) or None
        rest = None if full is None else tuple(d if isinstance(d, int) else None
                                               for d in full[1:])
        if full is not None and full[0] is not None and full[0] == self._batch:
            if None in rest and self._can_probe:
                probed = self._probed(tensor)
                if probed is not None and len(probed) == len(full) and \
                        probed[0] == _PROBE_BATCH:
                    rest = _merged(rest, probed[1:])
            return rest, True
        if not self._can_probe:
            fixed = isinstance(self._batch, int) and full is not None and \
                isinstance(full[0], int)
            return rest, False if fixed else None
        probed = self._probed(tensor)
        if probed is not None and isinstance(probed[0], int):
            if probed[0] != _PROBE_BATCH:
                return _merged(None, probed[1:]), False
            known = rest if rest is not None and len(rest) == len(probed) - 1 else None
            return _merged(known, probed[1:]), True
        return rest, None

    def _probed(self, tensor: str) -> tuple | None:
        if self._probe is None:
            self._probe = _value_types(self._model, probe_batch=_PROBE_BATCH)
        return _dims(self._probe.get(tensor)) or None


def _merged(known: tuple | None, probed: tuple) -> tuple:
    """Sizes of the first pass, completed by the probe pass's numbers where unknown."""
    known = known if known is not None else (None,) * len(probed)
    return tuple(k if k is not None else (p if isinstance(p, int) else None)
                 for k, p in zip(known, probed))


def _dims(type_proto: onnx.TypeProto | None) -> tuple | None:
    """Full shape of a tensor type (ints, str for symbolic, None for unknown), or None."""
    if type_proto is None or not type_proto.HasField("tensor_type"):
        return None
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _layer(name: str, op: str, kind: str, shape: tuple | None, position: int) -> Layer:
    if shape is None:
        return Layer(name, op, kind, (), None, position)
    return Layer(name, op, kind, shape, _count(shape), position)


def _count(shape: tuple | None) -> int | None:
    """Values per sample of a per-sample shape, ``None`` when any size is unknown."""
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)


def _find_units(topology: _Topology) -> list[_Unit]:
    """Recognise conv, pool and dense layers in graph (that is, topological) order."""
    units = []
    for index, node in enumerate(topology.graph.node):
        if node.domain not in _DEFAULT_DOMAINS or not node.output or not node.output[0]:
            continue
        op = node.op_type
        if op == "Conv":
            units.append(_extend(topology, "conv", op, node, index, node.input[0]))
        elif op in POOLS:
            units.append(_Unit("pool", op, node.output[0], index + 1, node.input[0],
                               (node.output[0],), None))
        elif op == "Gemm":
            operands = list(node.input[:2])
            data = next((n for n in operands if n not in topology.constant), operands[0])
            units.append(_extend(topology, "dense", op, node, index, data))
        elif op == "MatMul":
            operands = list(node.input[:2])
            variable = [n for n in operands if n not in topology.constant]
            if len(variable) != 1:
                continue  # two activations multiplied (attention) is not a dense layer
            unit = _extend(topology, "dense", op, node, index, variable[0])
            following = topology.sole_consumer(node.output[0])
            if following is not None and following.op_type == "Add" and \
                    following.domain in _DEFAULT_DOMAINS:
                bias = [n for n in following.input if n != node.output[0]]
                if len(bias) == 1 and bias[0] in topology.constant:
                    add_index = topology.producer[following.output[0]][0]
                    unit = _extend(topology, "dense", "MatMul+Add", following, add_index,
                                   variable[0], chain=(node.output[0],))
            units.append(unit)
    return units


def _extend(topology: _Topology, kind: str, op: str, node: onnx.NodeProto, index: int,
            data_input: str, chain: tuple[str, ...] = ()) -> _Unit:
    """Follow a layer's output through an optional batch norm and activation it alone feeds."""
    tensor = node.output[0]
    chain = chain + (tensor,)
    activation = None
    following = topology.sole_consumer(tensor)
    if following is not None and following.op_type == "BatchNormalization" and \
            following.domain in _DEFAULT_DOMAINS:
        tensor, op = following.output[0], following.op_type
        index = topology.producer[tensor][0]
        chain += (tensor,)
        following = topology.sole_consumer(tensor)
    if following is not None and following.op_type in ACTIVATIONS and \
            following.domain in _DEFAULT_DOMAINS and following.input[0] == tensor:
        tensor, op = following.output[0], following.op_type
        index = topology.producer[tensor][0]
        chain += (tensor,)
        activation = following.op_type
    return _Unit(kind, op, tensor, index + 1, data_input, chain, activation)


@dataclass(frozen=True)
class _Head:
    """The final classifier behind a class-score output, and what lies between them."""

    unit: _Unit
    probs: bool = False   # a Softmax (or scikit-learn's sigmoid pair): probabilities
    scores: bool = False  # a Softmax or LogSoftmax: surely class scores
    pooled: bool = False  # a global pooling after a convolution classifier
    summed: int = 1       # how many classifiers' scores are added up (DeiT's two heads)


def _trace_head(topology: _Topology, unit_of: dict[str, _Unit], tensor: str,
                depth: int = 0) -> _Head | None:
    """The classifier an output comes from through head ops, or ``None``.

    A classifier is a dense layer, bare or with a sigmoid (multi-label), or a 1x1
    convolution (bare, or with a ReLU or sigmoid) whose scores are pooled over all
    positions or cover one position. A dense layer with another activation (a pooler's
    tanh, a ReLU) makes features, not scores. Besides plain chains of head ops, scaling
    by a constant (a temperature) keeps the scores; scores of several classifiers
    averaged (as distilled DeiTs average their class and distillation heads) trace to
    the first of them in graph order; and the two-column probability scikit-learn
    writes for binary classifiers, ``Concat(1 - sigmoid(z), sigmoid(z))``, traces to
    ``z``'s layer and counts as probabilities.
    """
    if depth > 32:
        return None
    unit = unit_of.get(tensor)
    if unit is not None:
        if unit.kind == "dense" and unit.activation in (None, "Sigmoid"):
            return _Head(unit)
        if unit.kind == "conv" and unit.activation in (None, "Relu", "Sigmoid") and \
                _pointwise(topology, unit):
            return _Head(unit)
        if unit.kind == "pool" and unit.op in _GLOBAL_POOLS:
            return _pooled(_trace_head(topology, unit_of, unit.data_input, depth + 1))
        return None
    node = topology.node_of(tensor)
    if node is None or not node.input or node.domain not in _DEFAULT_DOMAINS + ("ai.onnx.ml",):
        return None
    op = node.op_type
    variable = [n for n in node.input if n and n not in topology.constant]
    if op in _HEAD_OPS:
        found = _trace_head(topology, unit_of, node.input[0], depth + 1)
        if found is None:
            return None
        return _Head(found.unit, found.probs or op == "Softmax",
                     found.scores or op in _SCORE_OPS, found.pooled, found.summed)
    if op in _GLOBAL_POOLS:
        return _pooled(_trace_head(topology, unit_of, node.input[0], depth + 1))
    scaled = op == "Mul" or (op == "Div" and variable[:1] == [node.input[0]])
    if scaled and len(variable) == 1:  # by a constant: a temperature, or an average
        summed = topology.node_of(variable[0])
        if summed is not None and summed.op_type in ("Add", "Sum"):
            return _averaged(topology, unit_of, summed, depth + 1)
        return _trace_head(topology, unit_of, variable[0], depth + 1)
    if op == "Mean":
        return _averaged(topology, unit_of, node, depth)
    if op in ("Concat", "Sub"):
        traced = {_trace_head(topology, unit_of, n, depth + 1) for n in variable}
        if len(traced) == 1:
            found = traced.pop()
            if found is not None:
                pair = op == "Concat" and found.unit.activation == "Sigmoid"
                return _Head(found.unit, found.probs or pair, found.scores or pair,
                             found.pooled, found.summed)
    return None


def _averaged(topology: _Topology, unit_of: dict[str, _Unit], node: onnx.NodeProto,
              depth: int) -> _Head | None:
    """The first of the classifiers whose scores ``node`` adds up, when all inputs are.

    Only reached from a Mean, or a sum scaled by a constant: a plain residual ``Add``
    (``h + mlp(h)``) of a feature extractor is not an average of classifiers.
    """
    variable = [n for n in node.input if n and n not in topology.constant]
    traced = [_trace_head(topology, unit_of, n, depth + 1) for n in variable]
    if len(traced) < 2 or not all(traced):
        return None
    first = min(traced, key=lambda found: found.unit.position)
    return _Head(first.unit, all(t.probs for t in traced), all(t.scores for t in traced),
                 first.pooled, sum(t.summed for t in traced))


def _pooled(found: _Head | None) -> _Head | None:
    """A global pooling after a convolution classifier; after anything else, no classifier."""
    if found is None or found.unit.kind != "conv":
        return None
    return _Head(found.unit, found.probs, found.scores, True, found.summed)


def _pointwise(topology: _Topology, unit: _Unit) -> bool:
    """Is the convolution of ``unit`` a 1x1 one, by its attribute or its weight's shape?"""
    node = topology.node_of(unit.chain[0])
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
    if kernel is None and len(node.input) > 1:
        kernel = list(topology.initializer_dims.get(node.input[1], ())[2:])
    return bool(kernel) and all(k == 1 for k in kernel)


def _class_scores(graph: onnx.GraphProto, topology: _Topology, unit_of: dict[str, _Unit],
                  shapes: _Shapes, output_name: str | None) -> tuple[str | None, _Head | None]:
    """The graph output that carries class scores, and the classifier behind it.

    An output qualifies when it traces back to a classifier (:func:`_trace_head`) and
    holds one score vector per sample. Among those, one behind a Softmax or LogSoftmax
    comes first (the class scores of a detector beside its box regression, which comes
    from a dense layer too), then a float tensor (scikit-learn's label outputs are
    int64 and come first in its exports), then graph order. ``output_name`` forces the
    choice; ``(None, None)`` when no output qualifies.
    """
    names = [o.name for o in graph.output]
    if output_name is not None:
        if output_name not in names:
            listed = ", ".join(f"'{n}'" for n in names)
            raise LayerError(f"output '{output_name}' not in the model; its outputs: "
                             f"{listed}; pass --output with the one that holds class scores",
                             layer=output_name, candidates=names)
        return output_name, _trace_head(topology, unit_of, output_name)
    found = []
    for output in graph.output:
        head = _trace_head(topology, unit_of, output.name)
        if head is None:
            continue
        shape, per_sample = shapes.sample(output.name)
        if per_sample is False:
            continue
        spread = None if shape is None or None in shape else sum(d > 1 for d in shape)
        if spread is not None and spread > 1:
            continue  # a score map (segmentation, tokens), not one vector per sample
        if head.unit.kind == "conv" and not head.pooled and spread is None:
            continue  # a convolution's output map, unless it is known to be 1x1
        is_float = (output.type.HasField("tensor_type")
                    and output.type.tensor_type.elem_type in _FLOAT_TYPES)
        found.append(((not head.scores, not is_float), output.name, head))
    if not found:
        return None, None
    _, name, head = min(found, key=lambda entry: entry[0])  # min keeps graph order on ties
    return name, head


def _default_layer(graph: onnx.GraphProto, topology: _Topology, unit_of: dict[str, _Unit],
                   shapes: _Shapes, input_name: str, output_name: str | None,
                   head: _Head | None) -> tuple[Layer | None, str]:
    """The default layer and the one-line reason for it (see the module's docstring)."""
    if head is not None:
        classifier = topology.node_of(head.unit.chain[0])
        source = head.unit.data_input if head.unit.kind == "dense" else classifier.input[0]
        tensor, path = _representation(topology, shapes, source)
        layer = _representation_layer(topology, unit_of, shapes, input_name, tensor)
        if head.unit.kind == "conv":
            weight = topology.initializer_dims.get(classifier.input[1], ())
            width = weight[0] if weight else (shapes.sample(head.unit.chain[0])[0] or (None,))[0]
            what = f"1x1 Conv ({_size(layer.shape[0] if layer.shape else None)} -> " \
                   f"{_size(width)} per position)"
        else:
            op = classifier.op_type  # not the unit's op, which may be a sigmoid after it
            if op == "MatMul" and len(head.unit.chain) > 1 and \
                    topology.node_of(head.unit.chain[1]).op_type == "Add":
                op = "MatMul+Add"
            what = f"{op} ({_size(layer.width)} -> " \
                   f"{_size(_count(shapes.sample(head.unit.chain[0])[0]))})"
        final = "final classifier" if head.summed == 1 else \
            f"first of {head.summed} final classifiers whose scores are added,"
        return layer, f"input of the {final} {what}: {_describe(layer, path)}"
    if output_name is not None:
        return None, (f"output '{output_name}' comes from no classifier zooindex recognises "
                      "(a dense layer, or a 1x1 convolution)")
    for output in graph.output:
        if not output.type.HasField("tensor_type") or \
                output.type.tensor_type.elem_type not in _FLOAT_TYPES or \
                shapes.sample(output.name)[1] is False:
            continue
        tensor, path = _representation(topology, shapes, output.name)
        layer = _representation_layer(topology, unit_of, shapes, input_name, tensor)
        return layer, f"no classifier: the model's output, {_describe(layer, path)}"
    return None, "no classifier and no float output of one row per sample"


def _representation(topology: _Topology, shapes: _Shapes, tensor: str
                    ) -> tuple[str, list[str]]:
    """Walk back from ``tensor`` through operators that only move each sample's values.

    Returns the tensor reached and the operators walked through, in graph order. Those
    operators change neither the values nor, up to their order, the features that PCA
    and the estimators see, so the representation is named by the operator that made it.
    """
    path: list[str] = []
    seen = set()
    while tensor not in seen:
        seen.add(tensor)
        node = topology.node_of(tensor)
        if node is None or not node.input or not _moves_values(node, shapes):
            break
        path.append(node.op_type)
        tensor = node.input[0]
    return tensor, path[::-1]


def _moves_values(node: onnx.NodeProto, shapes: _Shapes) -> bool:
    """Does ``node`` pass each sample's values on unchanged, at most laid out anew?"""
    op = node.op_type
    if op not in _LAYOUT_OPS or node.domain not in _DEFAULT_DOMAINS:
        return False
    if op in ("Identity", "Dropout"):
        return True  # Dropout is the identity at inference
    if op == "Flatten":
        return _attribute(node, "axis", 1) == 1
    if op == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        return bool(perm) and perm[0] == 0
    # Reshape, Squeeze, Unsqueeze: both sides per sample, with as many values each
    before, batch_before = shapes.sample(node.input[0])
    after, batch_after = shapes.sample(node.output[0])
    return bool(batch_before and batch_after) and _count(before) is not None and \
        _count(before) == _count(after)


def _representation_layer(topology: _Topology, unit_of: dict[str, _Unit], shapes: _Shapes,
                          input_name: str, tensor: str) -> Layer:
    """``tensor`` as a candidate layer, named by what makes it (see the module's docstring)."""
    shape = shapes.sample(tensor)[0]
    if tensor == input_name or tensor not in topology.producer:  # a graph input
        return _layer(tensor, "input", "input", shape, 0)
    unit = unit_of.get(tensor)
    index, node = topology.producer[tensor]
    if unit is not None and unit.tensor == tensor:
        return _layer(tensor, unit.op, unit.kind, shape, unit.position)
    op = node.op_type
    if unit is not None:
        kind = unit.kind
    elif op in POOLS or op in _GLOBAL_POOLS:
        kind = "pool"
    elif op in _NORMS or _written_out_norm(topology, node):
        kind = "norm"
    elif op in ("Gather", "Slice") and _selects_along_sequence(topology, node):
        kind = "token"
    else:
        kind = "feature"
    return _layer(tensor, op, kind, shape, index + 1)


def _written_out_norm(topology: _Topology, node: onnx.NodeProto) -> bool:
    """Does ``node`` end a normalisation written op by op: ``(x - mean) / sqrt(var + eps)``,
    then an optional constant scale and shift, as exporters write LayerNorm before opset 17?"""
    for _ in range(3):
        if node is None:
            return False
        if node.op_type == "Div":
            parts = [topology.node_of(n) for n in node.input[:2]]
            return all(parts) and parts[0].op_type == "Sub" and parts[1].op_type == "Sqrt"
        variable = [n for n in node.input if n not in topology.constant]
        if node.op_type not in ("Add", "Mul") or len(variable) != 1:
            return False
        node = topology.node_of(variable[0])
    return False


def _selects_along_sequence(topology: _Topology, node: onnx.NodeProto) -> bool:
    """Does a Gather or Slice pick positions along an axis other than the batch's?"""
    if node.op_type == "Gather":
        return _attribute(node, "axis", 0) != 0
    if len(node.input) > 3 and node.input[3]:
        axes = topology.small_ints(node.input[3])
        return axes is not None and 0 not in axes
    return False  # Slice without axes slices from the first axis, the batch's


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _size(value) -> str:
    return "?" if value is None else str(value)


def _describe(layer: Layer, path: list[str]) -> str:
    """``pooled features (GlobalAveragePool), through Flatten`` and the like."""
    text = _KIND_TEXT.get(layer.kind, layer.kind)
    if layer.kind != "input":
        text += f" ({layer.op})"
    if path:
        text += ", through " + " + ".join(path)
    return text


def _candidate_layers(model: onnx.ModelProto) -> list[Layer]:
    """Candidate layers for error messages, best effort (an invalid model lists none).

    With several inputs, the layers are those seen from the first one: they do not
    depend on which input is chosen, except for the input layer itself.
    """
    try:
        initializers = {t.name for t in model.graph.initializer}
        first = next((i.name for i in model.graph.input if i.name not in initializers), None)
        return list(inspect(model, first).layers)
    except ModelError:
        return []
