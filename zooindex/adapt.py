"""Fit a target's inputs to a model's input: layout, channels, size, scaling, dtype.

The steps, in order (each only when needed):

1. uint8 pixels become floats in [0, 1] (divided by 255); other numbers are kept as stored;
2. channels: grey to RGB by repetition, RGB to grey by ITU-R BT.601 luminance
   ``0.299 R + 0.587 G + 0.114 B``;
3. bilinear resize to the model's height x width with :func:`scipy.ndimage.zoom`
   (``order=1``, ``grid_mode=True``, ``mode="nearest"``): pixel centres at half-pixel
   offsets and edges replicated, the convention of PIL, OpenCV and
   ``torch.nn.functional.interpolate(align_corners=False)``; no anti-aliasing when shrinking;
4. ``x * scale``, then ``(x - mean) / std`` per channel;
5. the model's layout (NCHW, NHWC, or NHW for 3-D grey inputs) and dtype. Integer model
   inputs get values rounded and clipped to the dtype's range, and when no ``scale`` is set
   they receive 0..255 pixels (``scale`` defaults to 255 for them), as such models expect.

Vector models (input ``(N, F)``) take image targets flattened in stored order when the
sizes agree. Unknown (symbolic) model dimensions take the target's size. When the target
cannot fit, :class:`AdaptError` says what the model expects and what the target has.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace

import numpy as np

from .errors import AdaptError

LAYOUTS = ("NCHW", "NHWC")
METADATA_KEYS = {"layout": "zooindex.layout", "scale": "zooindex.scale",
                 "mean": "zooindex.mean", "std": "zooindex.std"}
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
CONVERTIBLE_CHANNELS = (1, 3)
_ONNX_TYPE_NAMES = {"float": "float32", "double": "float64"}


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its inputs: layout, scale, and per-channel mean/std.

    ``layout`` ``"NCHW"``/``"NHWC"`` (``None``: infer from the model's input shape);
    ``scale`` multiplies after uint8 pixels became [0, 1] (255 for models trained on 0..255);
    ``mean``/``std`` hold one value or one per channel, applied after the scale.
    """

    layout: str | None = None
    scale: float | None = None
    mean: tuple | None = None
    std: tuple | None = None

    def __post_init__(self):
        if self.layout is not None:
            layout = str(self.layout).upper()
            if layout not in LAYOUTS:
                raise AdaptError(f"unknown layout '{self.layout}'; choose from: "
                                 f"{', '.join(LAYOUTS)}")
            object.__setattr__(self, "layout", layout)
        if self.scale is not None:
            object.__setattr__(self, "scale", _number(self.scale, "scale"))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _numbers(value, name))
        if self.std is not None and any(s <= 0 for s in self.std):
            raise AdaptError(f"std {','.join(map(str, self.std))} must be positive in every "
                             "channel")

    def to_dict(self) -> dict:
        return {"layout": self.layout, "scale": self.scale,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise AdaptError(f"unknown preprocessing field(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(names)}")
        return cls(**{k: v for k, v in d.items()})

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Preprocessing":
        """Read the ``zooindex.*`` entries of an ONNX model's ``metadata_props``."""
        values = {}
        for name, key in METADATA_KEYS.items():
            text = metadata.get(key)
            if text is None or not str(text).strip():
                continue
            try:
                if name == "layout":
                    values[name] = str(text).strip()
                elif name == "scale":
                    values[name] = float(text)
                else:
                    values[name] = tuple(float(v) for v in str(text).split(","))
            except ValueError:
                raise AdaptError(f"model metadata {key}={text!r} is not valid; expected "
                                 f"{_METADATA_FORMS[name]}") from None
        try:
            return cls(**values)
        except AdaptError as exc:
            raise AdaptError(f"model metadata: {exc}") from None

    def to_metadata(self) -> dict:
        """The ``metadata_props`` entries that :meth:`from_metadata` reads back."""
        out = {}
        for name, key in METADATA_KEYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                out[key] = ",".join(repr(v) for v in value)
            else:
                out[key] = repr(value) if isinstance(value, float) else str(value)
        return out

    def merged(self, other: "Preprocessing | None") -> "Preprocessing":
        """This preprocessing with every field that ``other`` sets overriding it."""
        if other is None:
            return self
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(other)
                                if getattr(other, f.name) is not None})

    def key(self) -> str:
        """A short stable hash of the fields, for cache keys."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_METADATA_FORMS = {"layout": "NCHW or NHWC", "scale": "a number",
                   "mean": "comma-separated numbers", "std": "comma-separated numbers"}


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdaptError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise AdaptError(f"{name} must be finite, not {value!r}")
    return number


def _numbers(value, name: str) -> tuple:
    if isinstance(value, str):
        value = value.split(",")
    elif np.ndim(value) == 0:
        value = [value]
    numbers = tuple(_number(v, name) for v in value)
    if not numbers:
        raise AdaptError(f"{name} needs one value or one per channel")
    return numbers


# -- shapes ----------------------------------------------------------------------------------

def _dim(d) -> int | None:
    """A fixed positive dimension, or None for symbolic/unknown ones ('batch', None, -1, 0)."""
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0:
        return int(d)
    return None


def input_layout(input_shape, prep: Preprocessing | None = None) -> tuple:
    """``(layout, channels, height, width)`` of an image input, or ``("vector", features)``.

    Unknown dimensions come back as ``None``. Without ``prep.layout`` a 4-D input is NHWC
    when its last dimension is 1 or 3 and its second is not; otherwise NCHW. A 3-D input
    ``(N, H, W)`` is a grey image (layout ``"NHW"``).
    """
    prep = prep or Preprocessing()
    shape = list(input_shape)
    dims = [_dim(d) for d in shape]
    if len(dims) == 2:
        if prep.layout is not None:
            raise AdaptError(f"layout {prep.layout} was given but the model input {shape} is a "
                             "vector (N, features); drop the layout")
        return ("vector", dims[1])
    if len(dims) == 3:
        if prep.layout is not None:
            raise AdaptError(f"layout {prep.layout} was given but the model input {shape} is "
                             "3-D (N, H, W); drop the layout")
        return ("NHW", 1, dims[1], dims[2])
    if len(dims) != 4:
        raise AdaptError(f"model input has shape {shape}; zooindex fits targets to image "
                         "inputs (NCHW, NHWC, NHW) and vector inputs (N, features) only")
    layout = prep.layout
    if layout is None:
        channels_last = dims[3] in CONVERTIBLE_CHANNELS and dims[1] not in CONVERTIBLE_CHANNELS
        layout = "NHWC" if channels_last else "NCHW"
    if layout == "NCHW":
        return (layout, dims[1], dims[2], dims[3])
    return (layout, dims[3], dims[1], dims[2])


@dataclass(frozen=True)
class _Sample:
    """The form of one target sample: 'vector', 'HW', 'HWC', 'CHW', or 'other'."""

    form: str
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    size: int = 0
    shape_text: str = ""

    def describe(self) -> str:
        if self.form == "vector":
            return f"{self.size} features per sample"
        if self.form == "other":
            return f"samples of shape {self.shape_text}"
        return f"{self.channels}-channel {self.height}x{self.width} images"


def _sample(sample_shape) -> _Sample:
    shape = tuple(int(d) for d in sample_shape)
    size = math.prod(shape)
    text = "(" + ", ".join(map(str, shape)) + ")"
    if len(shape) == 1:
        return _Sample("vector", size=size, shape_text=text)
    if len(shape) == 2:
        return _Sample("HW", 1, shape[0], shape[1], size, text)
    if len(shape) == 3:
        if shape[2] in CONVERTIBLE_CHANNELS:  # stored as (H, W, C), the readers' layout
            return _Sample("HWC", shape[2], shape[0], shape[1], size, text)
        if shape[0] in CONVERTIBLE_CHANNELS:
            return _Sample("CHW", shape[0], shape[1], shape[2], size, text)
    return _Sample("other", size=size, shape_text=text)


def _describe_model(layout: tuple) -> str:
    if layout[0] == "vector":
        return (f"{layout[1]} features per sample" if layout[1] is not None
                else "feature vectors")
    kind, channels, height, width = layout
    what = f"{channels}-channel " if channels is not None else ""
    if height is None and width is None:
        return f"{what}images of any size ({kind})"
    return f"{what}{height or 'any'}x{width or 'any'} images ({kind})"


@dataclass(frozen=True)
class _Plan:
    model: tuple             # input_layout() of the model
    sample: _Sample
    channels: int | None     # resolved model channels/size (None for vector models)
    height: int | None
    width: int | None


def _plan(sample_shape, input_shape, prep: Preprocessing) -> _Plan:
    model = input_layout(input_shape, prep)
    sample = _sample(sample_shape)

    def refuse(reason: str = ""):
        return AdaptError(f"model expects {_describe_model(model)}; target has "
                          f"{sample.describe()}{reason}")

    if model[0] == "vector":
        features = model[1]
        if features is not None and sample.size != features:
            extra = "" if sample.form == "vector" else f" ({sample.size} values)"
            raise refuse(extra)
        for name in ("mean", "std"):
            values = getattr(prep, name)
            if values is not None and len(values) not in (1, sample.size):
                raise AdaptError(f"{name} has {len(values)} values but the model takes "
                                 f"{sample.size} features; give one value or one per feature")
        return _Plan(model, sample, None, None, None)
    if sample.form in ("vector", "other"):
        raise refuse()
    _, channels, height, width = model
    channels = channels or sample.channels
    if channels != sample.channels and not (channels in CONVERTIBLE_CHANNELS
                                            and sample.channels in CONVERTIBLE_CHANNELS):
        raise refuse("; only 1 and 3 channels convert into each other")
    for name in ("mean", "std"):
        values = getattr(prep, name)
        if values is not None and len(values) not in (1, channels):
            raise AdaptError(f"{name} has {len(values)} values but the model takes {channels} "
                             "channels; give one value or one per channel")
    return _Plan(model, sample, channels, height or sample.height, width or sample.width)


def check_fit(sample_shape, input_shape, prep: Preprocessing | None = None) -> None:
    """Raise :class:`AdaptError` when targets of ``sample_shape`` cannot feed this input.

    Shapes only, no data: cheap enough to run on every model before anything is loaded.
    """
    _plan(sample_shape, input_shape, prep or Preprocessing())


# -- data ------------------------------------------------------------------------------------

def model_dtype(input_dtype) -> np.dtype:
    """The numpy dtype of a model input given as numpy dtype, name, 'tensor(float)' or ONNX code."""
    if input_dtype is None:
        return np.dtype(np.float32)
    try:
        if isinstance(input_dtype, (int, np.integer)) and not isinstance(input_dtype, bool):
            from onnx.helper import tensor_dtype_to_np_dtype

            dtype = np.dtype(tensor_dtype_to_np_dtype(int(input_dtype)))
        elif isinstance(input_dtype, str) and input_dtype.startswith("tensor("):
            inner = input_dtype[len("tensor("):-1]
            dtype = np.dtype(_ONNX_TYPE_NAMES.get(inner, inner))
        else:
            dtype = np.dtype(input_dtype)
    except (TypeError, ValueError, KeyError):
        raise AdaptError(f"model input type {input_dtype!r} is not a numeric tensor type; "
                         "zooindex feeds float and integer inputs only") from None
    if dtype.kind not in "fiu":
        raise AdaptError(f"model input type {dtype} is not supported; zooindex feeds float "
                         "and integer inputs only")
    return dtype


def adapt(x, input_shape, input_dtype, prep: Preprocessing | None = None) -> np.ndarray:
    """Turn a batch ``(n, ...)`` of target inputs into an array the model input accepts."""
    prep = prep or Preprocessing()
    x = np.asarray(x)
    plan = _plan(x.shape[1:], input_shape, prep)
    dtype = model_dtype(input_dtype)
    work = np.float64 if dtype == np.float64 else np.float32
    data = x.astype(work)
    if x.dtype == np.uint8:
        data /= 255.0
    scale = prep.scale if prep.scale is not None else (255.0 if dtype.kind in "iu" else None)
    if plan.model[0] == "vector":
        data = _normalise(data.reshape(len(data), -1), scale, prep, work)
        return _cast(data, dtype)
    data = _to_nhwc(data, plan.sample.form)
    if plan.sample.channels == 3 and plan.channels == 1:
        data = data @ np.asarray(LUMINANCE, dtype=work)[:, None]
    if (data.shape[1], data.shape[2]) != (plan.height, plan.width):
        data = resize(data, plan.height, plan.width)
    if plan.sample.channels == 1 and plan.channels == 3:
        data = np.repeat(data, 3, axis=-1)
    data = _normalise(data, scale, prep, work)
    layout = plan.model[0]
    if layout == "NCHW":
        data = data.transpose(0, 3, 1, 2)
    elif layout == "NHW":
        data = data[..., 0]
    return _cast(data, dtype)


def _to_nhwc(data: np.ndarray, form: str) -> np.ndarray:
    if form == "HW":
        return data[..., None]
    if form == "CHW":
        return data.transpose(0, 2, 3, 1)
    return data


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(n, H, W, C)`` float images to ``(n, height, width, C)``.

    One 2-D :func:`scipy.ndimage.zoom` per image and channel: 2-D linear interpolation is
    several times faster than zooming the 4-D batch, whose batch and channel axes would be
    interpolated too (by a factor of 1).
    """
    from scipy import ndimage

    n, h, w, c = images.shape
    out = np.empty((n, height, width, c), dtype=images.dtype)
    factors = (height / h, width / w)
    for i in range(n):
        for k in range(c):
            ndimage.zoom(images[i, :, :, k], factors, output=out[i, :, :, k], order=1,
                         grid_mode=True, mode="nearest")
    return out


def _normalise(data: np.ndarray, scale, prep: Preprocessing, work) -> np.ndarray:
    if scale is not None and scale != 1.0:
        data = data * work(scale)
    if prep.mean is not None:
        data = data - np.asarray(prep.mean, dtype=work)
    if prep.std is not None:
        data = data / np.asarray(prep.std, dtype=work)
    return data


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    return np.ascontiguousarray(data, dtype=dtype)
