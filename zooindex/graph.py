"""ONNX graph work: load and check a model, list its candidate layers, expose a layer.

The core is pure: :func:`inspect`, :func:`expose` and :func:`resolve_layer` take an
in-memory ``onnx.ModelProto`` and never touch files. :func:`load` is the thin edge that
reads a file, refuses anything that is not a sound ONNX model, and refuses external
weight files that would be read from outside the model's folder.

Layers are recognised by graph structure, never by node or tensor names, because every
exporter (PyTorch, TensorFlow, scikit-learn) names things its own way:

* the model input (kind ``"input"``);
* convolutions (kind ``"conv"``), taken after a following activation when the
  convolution feeds only that activation;
* pooling layers (kind ``"pool"``);
* dense layers (kind ``"dense"``): ``Gemm``, ``MatMul`` with a constant weight followed
  by an ``Add`` of a constant bias (op ``"MatMul+Add"``), or such a ``MatMul`` alone,
  again taken after a following activation.

A ``BatchNormalization`` fed only by a convolution or dense layer is absorbed before the
activation, since unfused exports put it there and its output is what the next layer
sees. ``Layer.op`` is the operator that produces the layer's tensor (``"Relu"`` for a
convolution taken after its ReLU), except that a dense layer ending in its bias ``Add``
reads ``"MatMul+Add"``.

The default layer follows the paper's choice, the last hidden dense layer: walk back from
the classifier output through heads such as Softmax to the final dense layer; the
tensor feeding that layer is the default if an earlier dense layer produces it.

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

ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Gelu", "HardSigmoid", "Clip",
    "PRelu", "HardSwish", "Softplus", "Mish",
})
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})

# Operators between the final dense layer and the classifier output that keep the
# classifier's identity (ZipMap is scikit-learn's label -> probability dictionary).
_HEAD_OPS = frozenset({
    "Softmax", "LogSoftmax", "Identity", "Dropout", "Flatten", "Reshape", "Cast",
    "Squeeze", "Unsqueeze", "ZipMap",
})
# Operators between a hidden dense layer and the classifier that do not change values
# at inference time beyond their layout.
_FEED_OPS = frozenset({"Identity", "Dropout", "Flatten", "Reshape"})
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
_LISTED_CANDIDATES = 12


@dataclass(frozen=True)
class Layer:
    """One tensor whose activations can serve as features.

    ``shape`` is per sample (batch dimension dropped), with ``None`` for unknown sizes
    and ``()`` when even the rank is unknown; ``dim`` is the flattened feature count,
    ``None`` when any size is unknown. ``position`` orders layers by depth.
    """

    name: str
    op: str
    kind: str
    shape: tuple
    dim: int | None
    position: int


@dataclass(frozen=True)
class ModelInfo:
    """What zooindex needs to know about a model, read from its graph alone.

    ``input_shape`` keeps the batch dimension; sizes are ints, ``str`` for symbolic
    dimensions and ``None`` for dimensions that are neither. ``extra_inputs`` holds
    ``(name, shape, dtype)`` for every data input other than the one the target feeds
    (see :func:`default_feeds`); ``shape`` reads like ``input_shape``, or ``None`` when
    even the rank is unknown, and ``dtype`` is ``None`` for non-tensor inputs.
    """

    input_name: str
    input_shape: tuple
    input_dtype: str
    opset: int
    params: int
    layers: tuple[Layer, ...]
    default_layer: str | None
    output_name: str
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


def inspect(model: onnx.ModelProto, input_name: str | None = None) -> ModelInfo:
    """Describe ``model``: its input, candidate layers, default layer and classifier output.

    A model with several data inputs (a mask, a sequence length, a second modality)
    needs ``input_name`` to say which one takes the target's data; the others are
    listed in ``ModelInfo.extra_inputs`` and get :func:`default_feeds` when it runs.
    """
    problem = _structure_problem(model)
    if problem is not None:
        raise ModelError(f"the model is not a valid ONNX model: {problem}")
    graph = model.graph
    topology = _Topology(graph)
    input_info, others = _data_input(graph, topology, input_name)
    types = _value_types(model)

    input_dims = _dims(input_info.type)
    elem_type = (input_info.type.tensor_type.elem_type
                 if input_info.type.HasField("tensor_type") else 0)
    if not elem_type:
        raise ModelError(f"the model input '{input_info.name}' is not a tensor of a known "
                         "element type; only tensor inputs can be fed")
    input_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name

    units = _find_units(topology)
    unit_of = {tensor: unit for unit in units for tensor in unit.chain}
    layers = [_layer(input_info.name, "input", "input", input_dims, 0)]
    layers += [_layer(u.tensor, u.op, u.kind, _dims(types.get(u.tensor)), u.position)
               for u in units]

    output_name, classifier, is_probs = _classifier_output(graph, topology, unit_of)
    default_layer = None
    if classifier is not None and classifier.data_input:
        feed = _skip_back(topology, classifier.data_input, _FEED_OPS)
        hidden = unit_of.get(feed)
        if hidden is not None and hidden.kind == "dense" and hidden.tensor == feed:
            default_layer = feed

    return ModelInfo(
        input_name=input_info.name,
        input_shape=input_dims if input_dims is not None else (),
        input_dtype=input_dtype,
        opset=_default_opset(model),
        params=_count_params(graph),
        layers=tuple(layers),
        default_layer=default_layer,
        output_name=output_name,
        output_is_probs=is_probs,
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
                         f"{_format_candidates(candidates)}.",
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
    """The layer to extract features from: the default for ``None``/"default", else by name."""
    candidates = list(info.layers)
    names = [c.name for c in candidates]
    if layer is None or layer == "default":
        if info.default_layer is None:
            raise LayerError(
                f"model '{model}' has no hidden dense layer to use by default; pass --layer "
                f"with one of: {_format_candidates(candidates)}. See `zooindex layers {model}`.",
                layer=layer, model=model, candidates=names)
        layer = info.default_layer
    for candidate in candidates:
        if candidate.name == layer:
            return candidate
    raise LayerError(
        f"layer '{layer}' not in model '{model}'; candidates: "
        f"{_format_candidates(candidates)}. See `zooindex layers {model}`.",
        layer=layer, model=model, candidates=names)


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


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Type and shape of every tensor that shape inference can tell, by name.

    Inference failures are not fatal: the graph's own declarations are used instead and
    the remaining shapes read as unknown.
    """
    light = _weightless_copy(model, keep_small=True)
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


def _layer(name: str, op: str, kind: str, full_dims: tuple | None, position: int) -> Layer:
    if full_dims is None or len(full_dims) == 0:
        return Layer(name, op, kind, (), None, position)
    shape = tuple(d if isinstance(d, int) else None for d in full_dims[1:])
    dim = math.prod(shape) if all(isinstance(d, int) for d in shape) else None
    return Layer(name, op, kind, shape, dim, position)


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


def _skip_back(topology: _Topology, tensor: str, ops: frozenset) -> str:
    """Walk from ``tensor`` back through producers of the given ops to their data input."""
    seen = set()
    while tensor not in seen:
        seen.add(tensor)
        node = topology.node_of(tensor)
        if node is None or node.op_type not in ops or not node.input:
            break
        tensor = node.input[0]
    return tensor


def _trace_to_dense(topology: _Topology, unit_of: dict[str, _Unit], tensor: str,
                    depth: int = 0) -> tuple[_Unit | None, bool]:
    """The dense layer an output comes from through head ops, and whether a softmax sits between.

    Besides plain chains of head ops, the two-column probability scikit-learn writes
    for binary classifiers, ``Concat(1 - sigmoid(z), sigmoid(z))``, traces to ``z``'s
    layer and counts as probabilities.
    """
    unit = unit_of.get(tensor)
    if unit is not None and unit.kind == "dense":
        return unit, False
    node = topology.node_of(tensor)
    if node is None or depth > 32:
        return None, False
    if node.op_type in _HEAD_OPS and node.input:
        found, softmax = _trace_to_dense(topology, unit_of, node.input[0], depth + 1)
        return found, softmax or node.op_type == "Softmax"
    if node.op_type in ("Concat", "Sub"):
        variable = [n for n in node.input if n and n not in topology.constant]
        traced = {_trace_to_dense(topology, unit_of, n, depth + 1) for n in variable}
        if len(traced) == 1:
            found, softmax = traced.pop()
            if found is not None:
                sigmoid_pair = node.op_type == "Concat" and found.activation == "Sigmoid"
                return found, softmax or sigmoid_pair
    return None, False


def _classifier_output(graph: onnx.GraphProto, topology: _Topology,
                       unit_of: dict[str, _Unit]) -> tuple[str, _Unit | None, bool]:
    """Pick the graph output that carries class scores.

    Preference: a float tensor output traced to a dense layer, then any output so traced
    (scikit-learn's probability dictionaries), then the first float tensor output.
    Label outputs (int64 argmax) come first in scikit-learn exports and are passed over.
    """
    traced = []
    for output in graph.output:
        tensor_type = output.type.tensor_type if output.type.HasField("tensor_type") else None
        is_float = tensor_type is not None and tensor_type.elem_type in _FLOAT_TYPES
        unit, softmax = _trace_to_dense(topology, unit_of, output.name)
        traced.append((output.name, is_float, unit, softmax))
    # sorted() is stable, so graph order breaks ties
    ranked = sorted(traced, key=lambda t: (t[2] is None, not t[1]))
    name, _, unit, softmax = ranked[0]
    return name, unit, softmax


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


def _format_candidates(layers) -> str:
    """``name (dim)`` for each candidate, deepest kept when there are many."""
    layers = list(layers)
    if not layers:
        return "(none)"
    shown = layers[-_LISTED_CANDIDATES:]
    text = ", ".join(f"{c.name} ({c.dim if c.dim is not None else '?'})" for c in shown)
    hidden = len(layers) - len(shown)
    return f"{text} (and {hidden} earlier layers)" if hidden else text
