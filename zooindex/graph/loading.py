"""The file edge of the graph work: read a model file and refuse what is not sound.

:func:`load` reads a file, refuses anything that is not a sound ONNX model (a directory,
a pipe, an empty or truncated file, more than protobuf can parse, a graph that fails
the structural checks or the ONNX checker), and refuses external weight files that
would be read from outside the model's folder (every tensor of the model, function
bodies included, is walked by :func:`~zooindex.graph.proto.all_tensors`). Everything
after loading works on the in-memory model and never touches files.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ..errors import ModelError
from .proto import _has_external_data, _structure_problem, _weightless_copy, all_tensors

MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one serialized message
# bytes per value of fixed-size tensor types, for checking external data ranges
_ITEMSIZE = {t: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t)).itemsize
             for t in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                       onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
                       onnx.TensorProto.UINT8, onnx.TensorProto.INT16,
                       onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
                       onnx.TensorProto.UINT32, onnx.TensorProto.INT64,
                       onnx.TensorProto.UINT64, onnx.TensorProto.BOOL)}
_ITEMSIZE[onnx.TensorProto.BFLOAT16] = 2


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


def _short(exc: BaseException) -> str:
    """First line of an exception message, trimmed, so errors stay one line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return text
