"""Turn a model from another framework into an ONNX file ready for ``zooindex add``.

zooindex ranks ONNX models only; these helpers write one from a PyTorch module
(:func:`from_torch`), a fitted scikit-learn estimator (:func:`from_sklearn`) or a Keras 3
model (:func:`from_keras`), and record how the model wants its inputs in the file's
``metadata_props`` (the ``zooindex.layout``/``scale``/``mean``/``std``/``channels`` keys that
:meth:`zooindex.adapt.Preprocessing.from_metadata` reads), so that ``zooindex add`` needs
no preprocessing flags. :func:`stamp` does the recording alone, for files written by
any other exporter.

Each helper writes a single self-contained file: the weights sit inside it (exporters
that put them in a side file are re-saved), so the file can be copied or hashed on its
own. Only a model over protobuf's 2 GB limit keeps its weights in ``<file>.data`` next to
it, which ``zooindex add`` reads as well. Files are written to a temporary name in the
target folder and renamed into place, so an interrupted export never leaves a truncated
model behind. The frameworks are imported only when their helper is called.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import onnx

from . import graph
from .adapt import METADATA_KEYS, Preprocessing
from .errors import DependencyError, ModelError, require

# protobuf refuses to serialize a message over 2 GiB; larger models keep their weights
# in a side file.
_PROTOBUF_LIMIT = 2**31 - 1


def stamp(path_or_proto, preprocessing=None, metadata: dict | None = None):
    """Record ``preprocessing`` and free-form ``metadata`` in a model's ``metadata_props``.

    ``path_or_proto`` is an ``onnx.ModelProto`` (a stamped copy is returned, the
    argument is left as it was) or the path of an ONNX file (rewritten in place
    atomically, its external weight files left untouched; its ``Path`` is returned).
    ``preprocessing`` is a :class:`~zooindex.adapt.Preprocessing`, a dict of its fields,
    or ``None``; ``metadata`` maps keys to values written with ``str()``, where a value of
    ``None`` removes the key. Existing entries are kept unless overwritten; the
    preprocessing fields are written last, so they win over ``zooindex.*`` keys in
    ``metadata``. The ``zooindex.*`` entries that result are checked the way
    ``zooindex add`` will read them, so a bad value fails here rather than later.
    """
    prep = _preprocessing(preprocessing)
    if isinstance(path_or_proto, onnx.ModelProto):
        return _stamped(path_or_proto, prep, metadata)
    path = Path(os.fspath(path_or_proto))
    proto = graph.load(path)  # checks the file; external weights stay where they are
    _write(_stamped(proto, prep, metadata), path)
    return path


def from_torch(module, path, *, input_shape, preprocessing=None, metadata: dict | None = None,
               opset: int = 17, dynamo: bool = False, layout: str | None = None,
               scale: float | None = None, mean=None, std=None,
               channels: str | None = None) -> Path:
    """Export a PyTorch module to a single ONNX file at ``path`` and return the path.

    ``input_shape`` is the shape of one sample, without the batch dimension (``(3, 224,
    224)``); the file gets a dynamic batch axis. The module is exported in eval mode
    (dropout off, batch norm on its running statistics) from a float32 example batch of
    zeros, and put back in the mode it was in. ``dynamo=False`` uses the TorchScript
    exporter; ``dynamo=True`` uses ``torch.export`` (it needs ``pip install onnxscript``,
    and writes opset 18 or later natively: lower opsets are converted by onnx, which
    may fail for some operators).

    Preprocessing comes as a :class:`~zooindex.adapt.Preprocessing` (or dict) and/or the
    keywords ``layout``, ``scale``, ``mean``, ``std`` and ``channels`` (``"bgr"`` for a
    network trained on BGR images, with ``mean``/``std`` in that order), which override
    its fields; see :func:`stamp` for ``metadata``.
    """
    torch = require("torch", "exporting a PyTorch model needs torch: pip install torch")
    prep = _preprocessing(preprocessing, layout=layout, scale=scale, mean=mean, std=std,
                          channels=channels)
    shape = tuple(int(d) for d in input_shape)
    # A batch of two: torch.export specialises a dimension of size 1 to a constant. The
    # example lives where the weights do, so a module on a GPU exports as it is.
    weight = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    example = torch.zeros((2, *shape), dtype=torch.float32,
                          device=weight.device if weight is not None else "cpu")
    path = Path(os.fspath(path))
    with _scratch(path) as scratch, _eval_mode(module):
        exported = os.path.join(scratch, path.name)
        try:
            if dynamo:
                batch = torch.export.Dim("batch")
                torch.onnx.export(module, (example,), exported, dynamo=True,
                                  opset_version=opset, external_data=False,
                                  dynamic_shapes=({0: batch},), verbose=False)
            else:
                torch.onnx.export(module, (example,), exported, dynamo=False,
                                  opset_version=opset, input_names=["input"],
                                  dynamic_axes={"input": {0: "batch"}})
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("onnxscript", "onnx_ir"):
                raise DependencyError("torch's dynamo exporter needs onnxscript: pip install "
                                      "onnxscript, or pass dynamo=False",
                                      package="onnxscript") from None
            raise
        except Exception as exc:  # the exporters raise many types; one message for all
            raise ModelError(f"torch.onnx.export failed for {type(module).__name__}: "
                             f"{graph._short(exc)}", path=str(path)) from exc
        proto = onnx.load(exported)  # pulls in any weights the exporter put in a side file
    return _finish(proto, path, prep, metadata)


def from_sklearn(estimator, path, *, n_features: int, preprocessing=None,
                 metadata: dict | None = None, opset: int | None = None,
                 scale: float | None = None, mean=None, std=None) -> Path:
    """Convert a fitted scikit-learn estimator (or pipeline) with skl2onnx; return the path.

    The input is ``input``, float32 of shape ``(N, n_features)``. Classifiers are
    converted without skl2onnx's ZipMap, so that the probabilities are a plain
    ``(N, classes)`` tensor; for an ``MLPClassifier`` the last hidden layer's ReLU is
    then the model's default layer, as neuralRank wants. ``opset=None`` lets skl2onnx
    choose the newest opset it supports. Preprocessing as in :func:`from_torch` (a
    vector input takes no ``layout``).
    """
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise DependencyError("exporting a scikit-learn model needs skl2onnx: "
                              "pip install 'zooindex[sklearn-export]'",
                              package="skl2onnx") from None
    from sklearn.base import is_classifier
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    prep = _preprocessing(preprocessing, scale=scale, mean=mean, std=std)
    name = type(estimator).__name__
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise ModelError(f"the {name} is not fitted; call fit() before exporting it") from None
    except TypeError as exc:
        raise ModelError(f"{name} is not a scikit-learn estimator: "
                         f"{graph._short(exc)}") from None
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        proto = convert_sklearn(estimator, initial_types=[
            ("input", FloatTensorType([None, int(n_features)]))],
            options=options, target_opset=opset)
    except Exception as exc:  # skl2onnx raises RuntimeError, NameError, ValueError...
        raise ModelError(f"skl2onnx cannot convert the {name}: {graph._short(exc)}; see "
                         "skl2onnx's list of supported models", path=os.fspath(path)) from exc
    return _finish(proto, Path(os.fspath(path)), prep, metadata)


def from_keras(model, path, *, preprocessing=None, metadata: dict | None = None,
               layout: str | None = None, scale: float | None = None, mean=None,
               std=None, channels: str | None = None, **export_kwargs) -> Path:
    """Export a Keras 3 model with ``model.export(path, format="onnx")``; return the path.

    Keras works channels-last, so an image model (4-D input) is stamped with layout
    ``NHWC`` unless ``layout`` or ``preprocessing`` says otherwise; a vector model gets
    no layout. Keras models trained on 0..255 pixels (the usual ``Rescaling(1/255)``
    inside the model) want ``scale=255``; ``channels="bgr"`` records a BGR channel order
    (as in :func:`from_torch`). ``export_kwargs`` go to ``model.export`` (for
    example ``input_signature`` or ``opset_version``). Keras picks the ONNX exporter of
    its backend (tf2onnx for TensorFlow and JAX, torch.onnx for PyTorch), which must be
    installed; the result is re-saved as a single file and stamped as :func:`stamp`
    does.
    """
    keras = require("keras", "exporting a Keras model needs Keras 3: pip install keras")
    major = int(str(getattr(keras, "__version__", "0")).split(".")[0] or 0)
    if major < 3:
        raise DependencyError(f"exporting to ONNX needs Keras 3, found {keras.__version__}: "
                              "pip install -U keras", package="keras")
    prep = _preprocessing(preprocessing, layout=layout, scale=scale, mean=mean, std=std,
                          channels=channels)
    path = Path(os.fspath(path))
    with _scratch(path) as scratch:
        exported = os.path.join(scratch, path.name)
        try:
            model.export(exported, format="onnx", **export_kwargs)
        except ImportError as exc:
            raise DependencyError(f"Keras's ONNX export needs a package that is missing: "
                                  f"{graph._short(exc)}", package=exc.name) from None
        except Exception as exc:  # backend exporters raise many types
            raise ModelError(f"keras export to ONNX failed: {graph._short(exc)}",
                             path=str(path)) from exc
        proto = onnx.load(exported)
    if prep.layout is None and _input_rank(proto) == 4:
        prep = Preprocessing(layout="NHWC").merged(prep)
    return _finish(proto, path, prep, metadata)


# ---------------------------------------------------------------------------
# helpers


def _preprocessing(preprocessing, **overrides) -> Preprocessing:
    """One Preprocessing from a Preprocessing/dict/None and keyword overrides."""
    if preprocessing is None:
        base = Preprocessing()
    elif isinstance(preprocessing, Preprocessing):
        base = preprocessing
    elif isinstance(preprocessing, dict):
        base = Preprocessing.from_dict(preprocessing)
    else:
        raise TypeError(f"preprocessing must be a Preprocessing, a dict or None, not "
                        f"{type(preprocessing).__name__}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return base.merged(Preprocessing(**given)) if given else base


def _stamped(model: onnx.ModelProto, prep: Preprocessing, metadata: dict | None
             ) -> onnx.ModelProto:
    """A copy of ``model`` with ``metadata`` and then ``prep`` in its metadata_props."""
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise ModelError(f"metadata key {key!r} must be a non-empty string")
        if value is None:
            props.pop(key, None)
        else:
            props[key] = str(value)
    props.update(prep.to_metadata())
    # what zooindex add will read back: fail now on a value it would refuse
    Preprocessing.from_metadata({k: v for k, v in props.items()
                                 if k in METADATA_KEYS.values()})
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    onnx.helper.set_model_props(copy, props)
    return copy


def _finish(proto: onnx.ModelProto, path: Path, prep: Preprocessing,
            metadata: dict | None) -> Path:
    _write(_stamped(proto, prep, metadata), path)
    return path


def _write(model: onnx.ModelProto, path: Path) -> None:
    """Save into a scratch folder next to ``path``, check, then rename into place.

    The rename is atomic on one file system, so readers see the old file or the new
    one, never half of one; the new file is checked as ``zooindex add`` will read it
    before it replaces anything. Weights already external stay where they are; a model
    over the protobuf limit moves all its weights to ``<name>.data``, staged the same way
    (onnx appends to an existing data file, so it is never written in place).
    """
    data_name = path.name + ".data"
    with _scratch(path) as scratch:
        staged = os.path.join(scratch, path.name)
        split = model.ByteSize() > _PROTOBUF_LIMIT
        if split:
            onnx.save_model(model, staged, save_as_external_data=True,
                            all_tensors_to_one_file=True, location=data_name)
        else:
            onnx.save_model(model, staged)
        try:
            graph.load(staged)
        except ModelError as exc:
            raise ModelError(str(exc).replace(staged, str(path)), path=str(path)) from None
        if split and os.path.exists(os.path.join(scratch, data_name)):
            os.replace(os.path.join(scratch, data_name), path.parent / data_name)
        os.replace(staged, path)


@contextlib.contextmanager
def _scratch(path: Path):
    """A temporary folder next to ``path`` for an exporter's own files, removed after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _eval_mode(module):
    """Put a torch module in eval mode for the export and restore its mode afterwards."""
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _input_rank(model: onnx.ModelProto) -> int | None:
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers and value.type.HasField("tensor_type"):
            tensor_type = value.type.tensor_type
            return len(tensor_type.shape.dim) if tensor_type.HasField("shape") else None
    return None


__all__ = ["stamp", "from_torch", "from_sklearn", "from_keras"]
