"""Fit a target's inputs to a model's input: layout, channels, size, scaling, dtype.

The steps, in order (each only when needed), for one batch ``(n, ...)`` of a target:

1. **flattened images**: a sample of ``H*W`` (grey) or ``H*W*3`` (RGB, in the readers'
   ``H, W, C`` order) numbers, fed to a model whose image input is ``H x W``, is reshaped
   to that image, row-major;
2. **pixel range**: uint8 pixels are divided by 255, into [0, 1]; other numbers are kept
   as stored, unless the target's ``input_range`` says they are 0..255 pixels (then they
   are divided by 255 too; see :func:`zooindex.target.detect_input_range`);
3. **channels**: grey to RGB by repetition, RGB to grey by ITU-R BT.601 luminance
   ``0.299 R + 0.587 G + 0.114 B``; RGB to BGR (reversed) for models whose
   ``channels`` is ``bgr`` (Caffe, OpenCV, PaddlePaddle), so that the ``mean`` and
   ``std`` below are given in the model's own channel order;
4. **resize and crop** to the model's height x width (see :class:`Preprocessing`):
   ``crop="none"`` stretches the image to the model's size; ``"center"`` resizes its
   shorter side to ``size / crop_pct`` (or to ``resize_size``), keeping the aspect ratio,
   then cuts the centre; ``"squash"`` resizes both sides to ``size / crop_pct`` (or
   ``resize_size``), then cuts the centre. The filter is bilinear by default, anti-aliased
   when shrinking as Pillow and torchvision do; :mod:`zooindex.resample` gives the exact
   conventions (pixel centres at half-pixel offsets, no padding at the edges). Filters
   whose output can leave the input's range (bicubic, lanczos) are clipped back to the
   pixel range when the target holds pixels, as an 8-bit image would be;
5. ``x * scale``, then ``(x - mean) / std`` per channel;
6. the model's layout (NCHW, NHWC, or NHW for 3-D grey inputs) and dtype. Integer model
   inputs get values rounded and clipped to the dtype's range, and when no ``scale`` is set
   they receive 0..255 pixels (``scale`` defaults to 255 for them), as such models expect.

The work is vectorized over the batch, in float32 (float64 when the model takes float64).
A resize is two matrix products per batch (:class:`zooindex.resample.Resampler`), and
since resampling and the per-channel ``scale``/``mean``/``std`` are both linear, the
normalisation is one multiply-add per channel on the input side, in place on the copy
that lays the batch out for the products. When no resize is needed, the float copy is
made straight in the model's layout and every value is computed by the same float
operations as before resizing existed, so results are bit for bit those of earlier
versions. (The matrix products may round the last bit differently for other batch
sizes; scores are unaffected at the precision they are reported.)

Vector models (input ``(N, F)``) take image targets flattened in stored order when the
sizes agree. Unknown (symbolic) model dimensions take ``Preprocessing.input_size`` when
set, else the target's size. When the target cannot fit, :class:`AdaptError` says what
the model expects, what the target has, and how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import InitVar, dataclass, fields, replace

import numpy as np

from .errors import AdaptError
from .choices import CHANNEL_ORDERS, CROPS, INPUT_RANGES, INTERPOLATIONS
from .choices import PRESETS as PRESET_NAMES
from .resample import OVERSHOOTING, Resampler

LAYOUTS = ("NCHW", "NHWC")
METADATA_KEYS = {"layout": "zooindex.layout", "scale": "zooindex.scale",
                 "mean": "zooindex.mean", "std": "zooindex.std",
                 "interpolation": "zooindex.interpolation", "antialias": "zooindex.antialias",
                 "crop": "zooindex.crop", "crop_pct": "zooindex.crop_pct",
                 "resize_size": "zooindex.resize_size", "input_size": "zooindex.input_size",
                 "channels": "zooindex.channels"}
PRESET_METADATA_KEY = "zooindex.preset"
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
CONVERTIBLE_CHANNELS = (1, 3)
_ONNX_TYPE_NAMES = {"float": "float32", "double": "float64"}
# the version of the adapting rules, hashed into every Preprocessing.key(): version 2
# anti-aliases shrinking by default (version 1, unversioned, did not)
_RULES_VERSION = 2

# Each preset is the evaluation transform of the library that defines it, for pixels in
# [0, 1] (torchvision's ToTensor), so a preset also sets scale 1.
PRESETS = {
    # timm's IMAGENET_DEFAULT_MEAN/STD and DEFAULT_CROP_PCT 0.875; bilinear as
    # torchvision's reference evaluation (Resize(256), CenterCrop(224))
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                 "interpolation": "bilinear", "crop": "center", "crop_pct": 0.875,
                 "scale": 1.0},
    # OpenAI CLIP's _transform: Resize(n_px, BICUBIC), CenterCrop(n_px), OPENAI_CLIP_MEAN/STD
    "clip": {"mean": (0.48145466, 0.4578275, 0.40821073),
             "std": (0.26862954, 0.26130258, 0.27577711),
             "interpolation": "bicubic", "crop": "center", "crop_pct": 1.0, "scale": 1.0},
    # timm's IMAGENET_INCEPTION_MEAN/STD (0.5) with its inception_v3 crop_pct and bicubic
    "inception": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                  "interpolation": "bicubic", "crop": "center", "crop_pct": 0.875,
                  "scale": 1.0},
    # pixels in [0, 1] as they are, stretched to the model's size
    "none": {"mean": (0.0,), "std": (1.0,), "interpolation": "bilinear", "crop": "none",
             "scale": 1.0},
}
assert tuple(PRESETS) == PRESET_NAMES


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its inputs: layout, size, scale, and per-channel mean/std.

    Every field is optional; ``None`` means "not said", and the default applies:

    - ``layout`` ``"NCHW"``/``"NHWC"`` (default: inferred from the model's input shape);
    - ``scale`` multiplies after pixels became [0, 1] (255 for models trained on 0..255);
    - ``mean``/``std`` hold one value or one per channel, applied after the scale;
    - ``interpolation``: the resize filter, one of ``bilinear`` (default), ``bicubic``,
      ``nearest``, ``lanczos``, ``box``, ``hamming`` (Pillow's filters);
    - ``antialias``: whether shrinking widens the filter as Pillow and torchvision do
      (default True); ``False`` samples the filter at its own size (aliasing);
    - ``crop``: ``"none"`` (default) stretches the target to the model's height x width;
      ``"center"`` resizes the shorter side (aspect ratio kept, timm's crop_mode
      ``center``, HF's ``shortest_edge``) and ``"squash"`` both sides (timm's ``squash``,
      HF's ``height``/``width``) to the resize size, then cuts the model's size out of the
      centre (offsets ``round((resized - size) / 2)``, as torchvision's CenterCrop);
    - ``crop_pct``: the resize size is ``floor(model size / crop_pct)`` (timm's crop_pct,
      in (0, 1]; 1 when a crop is asked for without a size);
    - ``resize_size``: the resize size ``(height, width)`` itself (HF's ``size``), instead
      of ``crop_pct``; one number means a square. A resize size below the model's size is
      raised to it (nothing is padded);
    - ``input_size``: ``(height, width)`` fed to a model whose input dimensions are
      symbolic (HF's ``crop_size``, timm's ``input_size``); fixed model dimensions win;
    - ``channels``: the order of a 3-channel model's input channels, ``rgb`` (default)
      or ``bgr`` (Caffe, OpenCV, PaddlePaddle): the target's channels are reversed
      before ``mean`` and ``std`` apply, so those are given in the model's own order.
      Grey and vector inputs have no channel order: ``bgr`` is refused for them;
    - ``preset`` (constructor only, not stored): ``imagenet``, ``clip``, ``inception`` or
      ``none`` fills every field of :data:`PRESETS` that is not given explicitly.

    Setting ``crop_pct`` or ``resize_size`` without ``crop`` means ``crop="center"``.
    """

    layout: str | None = None
    scale: float | None = None
    mean: tuple | None = None
    std: tuple | None = None
    interpolation: str | None = None
    antialias: bool | None = None
    crop: str | None = None
    crop_pct: float | None = None
    resize_size: tuple | None = None
    input_size: tuple | None = None
    channels: str | None = None
    preset: InitVar[str | None] = None

    def __post_init__(self, preset):
        if preset is not None:
            name = str(preset).strip().lower()
            if name not in PRESETS:
                raise AdaptError(f"unknown preset '{preset}'; choose from: "
                                 f"{', '.join(PRESETS)}")
            sized_already = self.resize_size is not None or self.crop == "none"
            for key, value in PRESETS[name].items():
                if getattr(self, key) is None and not (key == "crop_pct" and sized_already):
                    object.__setattr__(self, key, value)
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
        for name, choices in (("interpolation", INTERPOLATIONS), ("crop", CROPS),
                              ("channels", CHANNEL_ORDERS)):
            value = getattr(self, name)
            if value is not None:
                text = str(value).strip().lower()
                if text not in choices:
                    raise AdaptError(f"unknown {name} '{value}'; choose from: "
                                     f"{', '.join(choices)}")
                object.__setattr__(self, name, text)
        if self.antialias is not None:
            object.__setattr__(self, "antialias", _flag(self.antialias, "antialias"))
        if self.crop_pct is not None:
            pct = _number(self.crop_pct, "crop_pct")
            if not 0 < pct <= 1:
                raise AdaptError(f"crop_pct {self.crop_pct} must be in (0, 1]: the fraction "
                                 "of the resized image that the crop keeps, e.g. 0.875")
            object.__setattr__(self, "crop_pct", pct)
        for name in ("resize_size", "input_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _size(value, name))
        if self.crop_pct is not None and self.resize_size is not None:
            raise AdaptError("give crop_pct or resize_size, not both: each sets the size "
                             "the target is resized to before the crop")
        if self.crop == "none" and (self.crop_pct is not None or self.resize_size is not None):
            what = "crop_pct" if self.crop_pct is not None else "resize_size"
            raise AdaptError(f"{what} needs a crop, but crop is 'none'; use crop 'center' or "
                             f"'squash', or drop {what}")

    # -- what applies ---------------------------------------------------------------------

    @property
    def effective_crop(self) -> str:
        """The crop that applies: ``crop``, else ``center`` when a resize size is set."""
        if self.crop is not None:
            return self.crop
        return "center" if (self.crop_pct is not None or self.resize_size is not None) \
            else "none"

    def _applied(self) -> dict:
        """The resize/crop settings with their defaults filled in."""
        crop = self.effective_crop
        crop_pct = resize_size = None
        if crop != "none" and self.resize_size is not None:
            resize_size = list(self.resize_size)
        elif crop != "none":
            crop_pct = 1.0 if self.crop_pct is None else self.crop_pct
        return {"interpolation": self.interpolation or "bilinear",
                "antialias": True if self.antialias is None else self.antialias,
                "crop": crop, "crop_pct": crop_pct, "resize_size": resize_size,
                "input_size": None if self.input_size is None else list(self.input_size)}

    # -- conversions ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """Fields by name (a dict from :meth:`to_dict`, or a subset; ``preset`` too)."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names) - {"preset"})
        if unknown:
            raise AdaptError(f"unknown preprocessing field(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(names)}, preset")
        return cls(**{k: v for k, v in d.items()})

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Preprocessing":
        """Read the ``zooindex.*`` entries of an ONNX model's ``metadata_props``.

        Keys: ``zooindex.layout``, ``.scale``, ``.mean``, ``.std`` (comma-separated),
        ``.interpolation``, ``.antialias`` (true/false), ``.crop``, ``.crop_pct``,
        ``.resize_size`` and ``.input_size`` (``H,W`` or one number), ``.channels``
        (``rgb``/``bgr``), ``.preset``.
        """
        values = {}
        for name, key in {**METADATA_KEYS, "preset": PRESET_METADATA_KEY}.items():
            text = metadata.get(key)
            if text is None or not str(text).strip():
                continue
            text = str(text).strip()
            try:
                if name in ("scale", "crop_pct"):
                    values[name] = float(text)
                elif name in ("mean", "std"):
                    values[name] = tuple(float(v) for v in text.split(","))
                else:
                    values[name] = text
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
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, tuple):
                out[key] = ",".join(repr(v) for v in value)
            else:
                out[key] = repr(value) if isinstance(value, float) else str(value)
        return out

    def merged(self, other: "Preprocessing | None") -> "Preprocessing":
        """This preprocessing with every field that ``other`` sets overriding it.

        The crop settings go together: ``other``'s ``crop_pct`` drops this one's
        ``resize_size`` and the reverse, and ``other``'s ``crop="none"`` drops both, so
        that a merge never mixes two ways of sizing the crop.
        """
        if other is None:
            return self
        changes = {f.name: getattr(other, f.name) for f in fields(other)
                   if getattr(other, f.name) is not None}
        if "crop_pct" in changes:
            changes.setdefault("resize_size", None)
        if "resize_size" in changes:
            changes.setdefault("crop_pct", None)
        if changes.get("crop") == "none":
            changes.setdefault("crop_pct", None)
            changes.setdefault("resize_size", None)
        return replace(self, **changes)

    def key(self) -> str:
        """A short stable hash of what the fields make of an input, for cache keys.

        Defaults are filled in first, so two preprocessings that adapt every input alike
        (``crop_pct=1`` with or without ``crop="center"``, say) share a key.
        """
        d = {"layout": self.layout, "scale": self.scale,
             "mean": None if self.mean is None else list(self.mean),
             "std": None if self.std is None else list(self.std),
             **self._applied(), "rules": _RULES_VERSION}
        if self.channels == "bgr":  # only then: RGB models keep the keys they had
            d["channels"] = "bgr"
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolved(self, input_shape, input_dtype=None) -> dict:
        """What will be applied to a model with this input, every default filled in.

        ``layout`` (``NCHW``, ``NHWC``, ``NHW`` or ``vector``), ``channels`` (``rgb``,
        ``bgr``, ``grey``), ``input_size`` (the ``[height, width]`` fed to the model, ``None`` where it
        takes any size and no ``input_size`` is set), the resize (``crop``: ``none``
        stretches to ``input_size``, ``center`` resizes the shorter side to ``resize_size``,
        ``squash`` both sides; then ``crop_size`` is cut from the centre), its
        ``interpolation`` and ``antialias`` (when shrinking), and the numbers: ``scale``
        (applied to pixels in [0, 1]), ``mean`` and ``std`` per channel in the model's
        order. The resize sizes are those of a square target; a ``center`` crop of a
        non-square target resizes its shorter side to ``resize_size``. A vector input has
        no resize (those fields are ``None``).
        """
        a = self._applied()
        try:
            dtype = model_dtype(input_dtype)
        except AdaptError:
            dtype = np.dtype(np.float32)
        out = {"layout": None, "channels": None, "input_size": None, "crop": a["crop"],
               "resize_size": None, "crop_size": None, "crop_pct": a["crop_pct"],
               "interpolation": a["interpolation"], "antialias": a["antialias"],
               "scale": self.scale if self.scale is not None else (
                   255.0 if dtype.kind in "iu" else 1.0),
               "mean": list(self.mean) if self.mean is not None else [0.0],
               "std": list(self.std) if self.std is not None else [1.0],
               "dtype": dtype.name}
        try:
            layout = input_layout(input_shape, self)
        except AdaptError:
            return out
        out["layout"] = layout[0]
        if layout[0] == "vector":
            out.update(crop=None, crop_pct=None, interpolation=None, antialias=None)
            return out
        _, channels, h, w = layout
        out["channels"] = "grey" if channels == 1 else (self.channels or "rgb")
        h = h or (self.input_size[0] if self.input_size else None)
        w = w or (self.input_size[1] if self.input_size else None)
        if h and w:
            out["input_size"] = [h, w]
            out["resize_size"] = list(_resize_target((h, w), self))
            out["crop_size"] = None if a["crop"] == "none" else [h, w]
        elif a["resize_size"]:
            out["resize_size"] = a["resize_size"]
        return out

    def describe(self, input_shape=None) -> str:
        """One line saying what will be applied, e.g. for ``zooindex show``::

            bilinear resize (anti-aliased) of the shorter side to 256, centre crop
            224x224; mean 0.485,0.456,0.406, std 0.229,0.224,0.225 (imagenet)

        With the model's ``input_shape`` the sizes are worked out; without, they are
        given relative to the model's size.
        """
        a = self._applied()
        size = None
        if input_shape is not None:
            try:
                layout = input_layout(input_shape, self)
            except AdaptError:
                layout = ("vector", None)
            if layout[0] != "vector":
                h = layout[2] or (self.input_size[0] if self.input_size else None)
                w = layout[3] or (self.input_size[1] if self.input_size else None)
                size = (h, w) if h and w else None
        filt = a["interpolation"]
        if filt != "nearest":
            filt += " (anti-aliased)" if a["antialias"] else " (not anti-aliased)"
        parts = []
        if a["crop"] == "none":
            to = f" to {size[0]}x{size[1]}" if size else " to the model's size"
            parts.append(f"{filt} resize{to}")
        else:
            side = "of the shorter side " if a["crop"] == "center" else ""
            if size:
                rh, rw = _resize_target(size, self)
                target = f"{rh}" if a["crop"] == "center" and rh == rw else f"{rh}x{rw}"
                parts.append(f"{filt} resize {side}to {target}, centre crop "
                             f"{size[0]}x{size[1]}")
            elif a["resize_size"]:
                rh, rw = a["resize_size"]
                target = f"{rh}" if rh == rw else f"{rh}x{rw}"
                parts.append(f"{filt} resize {side}to {target}, centre crop to the model's "
                             "size")
            elif a["crop_pct"] == 1.0:
                parts.append(f"{filt} resize {side}to the model's size, centre crop")
            else:
                parts.append(f"{filt} resize {side}to size/{a['crop_pct']:g}, centre crop to "
                             "the model's size")
        numbers = []
        if self.scale is not None:
            numbers.append(f"scale {self.scale:g}")
        if self.mean is not None:
            numbers.append("mean " + ",".join(f"{v:.8g}" for v in self.mean))
        if self.std is not None:
            numbers.append("std " + ",".join(f"{v:.8g}" for v in self.std))
        if numbers:
            named = _preset_of(self.mean, self.std)
            parts.append(", ".join(numbers) + (f" ({named})" if named else ""))
        else:
            parts.append("no mean/std")
        if self.channels == "bgr":
            parts.append("channels BGR (the target's RGB reversed before mean/std)")
        extra = []
        if self.layout is not None:
            extra.append(f"layout {self.layout}")
        if self.input_size is not None and size is None:
            extra.append(f"input {self.input_size[0]}x{self.input_size[1]} where the model "
                         "leaves it open")
        return "; ".join(parts + extra)


_METADATA_FORMS = {"layout": "NCHW or NHWC", "scale": "a number",
                   "mean": "comma-separated numbers", "std": "comma-separated numbers",
                   "crop_pct": "a number in (0, 1]"}


def _preset_of(mean, std) -> str | None:
    """The preset whose mean and std these are, if any (for descriptions)."""
    if mean is None or std is None:
        return None
    for name, values in PRESETS.items():
        if name != "none" and tuple(values["mean"]) == mean and tuple(values["std"]) == std:
            return name
    return None


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


def _flag(value, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise AdaptError(f"{name} must be true or false, not {value!r}")


def _size(value, name: str) -> tuple:
    """``(height, width)`` from one number (a square), a pair, or text ``H,W``/``HxW``."""
    items = value
    if isinstance(value, str):
        items = value.lower().replace("x", ",").split(",")
    elif np.ndim(value) == 0:
        items = [value]
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or not all(math.isfinite(v) and v >= 1 and v == int(v)
                                    for v in numbers):
        raise AdaptError(f"{name} {value!r} must be one positive whole number (a square) or "
                         "two, height and width, e.g. 256 or 224,320")
    return (int(numbers[0]), int(numbers[1]))


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
    ``(N, H, W)`` is a grey image (layout ``"NHW"``). Channel order ``bgr`` is refused
    for inputs without colour channels (vectors, grey images).
    """
    prep = prep or Preprocessing()
    layout = _layout(list(input_shape), prep)
    if prep.channels == "bgr" and (layout[0] in ("vector", "NHW") or layout[1] == 1):
        raise AdaptError(f"channel order bgr was given but the model input "
                         f"{list(input_shape)} has no colour channels to reorder (grey or a "
                         "vector); drop the channel order (--channels, zooindex.channels)")
    return layout


def _layout(shape: list, prep: Preprocessing) -> tuple:
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
    layout = prep.layout or _guess_layout(dims)
    if layout == "NCHW":
        return (layout, dims[1], dims[2], dims[3])
    return (layout, dims[3], dims[1], dims[2])


def _guess_layout(dims: list) -> str:
    """NHWC when the last dimension is 1 or 3 and the second is not; else NCHW."""
    channels_last = dims[3] in CONVERTIBLE_CHANNELS and dims[1] not in CONVERTIBLE_CHANNELS
    return "NHWC" if channels_last else "NCHW"


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


def _reshape_hint(size: int, height, width) -> str:
    """How to turn ``size`` numbers per sample into images, for error messages."""
    if height and width:
        grey, rgb = height * width, 3 * height * width
        hint = (f"; flattened images fit when a sample has {height}*{width} = {grey} values "
                f"(grey) or {rgb} (RGB, in H, W, C order), otherwise reshape the inputs to "
                "(N, H, W) or (N, H, W, 3)")
    else:
        hint = "; give image samples: reshape the inputs to (N, H, W) or (N, H, W, 3)"
    side = math.isqrt(size)
    if side > 1 and side * side == size:
        return hint + f", e.g. x.reshape(-1, {side}, {side})"
    side = math.isqrt(size // 3)
    if size % 3 == 0 and side > 1 and side * side * 3 == size:
        return hint + f", e.g. x.reshape(-1, {side}, {side}, 3)"
    return hint


@dataclass(frozen=True)
class _Plan:
    model: tuple             # input_layout() of the model
    sample: _Sample          # the sample as an image (after reshaping a flattened one)
    channels: int | None     # resolved model channels/size (None for vector models)
    height: int | None
    width: int | None
    reshape: tuple | None = None    # per-sample shape a flattened image is given
    resize: tuple | None = None     # (resized h, resized w, top, left) when resampling
    reverse: bool = False           # RGB to BGR: the sample's channels reversed

    @property
    def converts(self) -> str | None:
        """'grey' (RGB to grey), 'rgb' (grey to RGB) or None."""
        if self.channels is None or self.sample.channels == self.channels:
            return None
        return "grey" if self.channels == 1 else "rgb"


def _resize_target(size: tuple, prep: Preprocessing, source: tuple | None = None) -> tuple:
    """The size ``(rh, rw)`` a ``source`` (h, w) image is resized to before the crop to
    ``size``; without ``source``, for a square image."""
    h, w = size
    crop = prep.effective_crop
    if crop == "none":
        return h, w
    if prep.resize_size is not None:
        sh, sw = prep.resize_size
    else:
        pct = prep.crop_pct if prep.crop_pct is not None else 1.0
        sh, sw = math.floor(h / pct), math.floor(w / pct)
    if crop == "squash":
        rh, rw = sh, sw
    else:  # keep the aspect ratio and cover (sh, sw), as torchvision's Resize(int) does
        in_h, in_w = source or (1, 1)
        if sh * in_w >= sw * in_h:
            rh, rw = sh, int(sh * in_w / in_h)
        else:
            rh, rw = int(sw * in_h / in_w), sw
    return max(rh, h), max(rw, w)


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
    _, channels, height, width = model
    open_h, open_w = prep.input_size or (None, None)
    height, width = height or open_h, width or open_w
    reshape = None
    if sample.form == "vector":
        if height and width and channels in (None, 1, 3):
            if sample.size == height * width:
                reshape = (height, width)
            elif sample.size == 3 * height * width:
                reshape = (height, width, 3)
        if reshape is None:
            raise refuse(_reshape_hint(sample.size, height, width))
        sample = _sample(reshape)
    elif sample.form == "other":
        raise refuse()
    channels = channels or sample.channels
    if channels != sample.channels and not (channels in CONVERTIBLE_CHANNELS
                                            and sample.channels in CONVERTIBLE_CHANNELS):
        raise refuse("; only 1 and 3 channels convert into each other")
    for name in ("mean", "std"):
        values = getattr(prep, name)
        if values is not None and len(values) not in (1, channels):
            raise AdaptError(f"{name} has {len(values)} values but the model takes {channels} "
                             "channels; give one value or one per channel")
    height, width = height or sample.height, width or sample.width
    rh, rw = _resize_target((height, width), prep, (sample.height, sample.width))
    resize = None
    if (rh, rw, height, width) != (sample.height, sample.width) * 2:
        resize = (rh, rw, int(round((rh - height) / 2.0)), int(round((rw - width) / 2.0)))
    # a grey target repeated into three channels is the same in either order
    reverse = prep.channels == "bgr" and channels == 3 and sample.channels == 3
    return _Plan(model, sample, channels, height, width, reshape, resize, reverse)


def check_fit(sample_shape, input_shape, prep: Preprocessing | None = None) -> None:
    """Raise :class:`AdaptError` when targets of ``sample_shape`` cannot feed this input.

    Shapes only, no data: cheap enough to run on every model before anything is loaded.
    """
    _plan(sample_shape, input_shape, prep or Preprocessing())


def describe_fit(sample_shape, input_shape, prep: Preprocessing | None = None) -> str:
    """One line saying what adapting samples of ``sample_shape`` to this input does.

    For example ``"RGB to grey, 32x32 resized to 28x28 (bilinear, anti-aliased)"``, or
    ``"784 values reshaped to 28x28 grey"``; ``""`` when the samples fit as they are
    (apart from scaling and layout, which :meth:`Preprocessing.describe` states). Raises
    :class:`AdaptError` like :func:`check_fit` when they cannot fit.
    """
    prep = prep or Preprocessing()
    plan = _plan(sample_shape, input_shape, prep)
    if plan.model[0] == "vector":
        sample = plan.sample
        if sample.form == "vector":
            return ""
        what = sample.describe() if sample.form != "other" else f"samples {sample.shape_text}"
        return f"{what} flattened to {sample.size} features"
    steps = []
    if plan.reshape is not None:
        colour = "grey" if len(plan.reshape) == 2 else "RGB (H, W, C order)"
        steps.append(f"{plan.sample.size} values reshaped to "
                     f"{plan.reshape[0]}x{plan.reshape[1]} {colour}")
    if plan.converts == "grey":
        steps.append("RGB to grey")
    elif plan.converts == "rgb":
        steps.append("grey to RGB")
    if plan.reverse:
        steps.append("RGB to BGR")
    if plan.resize is not None:
        rh, rw, _, _ = plan.resize
        h, w = plan.sample.height, plan.sample.width
        a = prep._applied()
        how = a["interpolation"]
        if rh < h or rw < w:
            if how != "nearest":
                how += ", anti-aliased" if a["antialias"] else ", not anti-aliased"
        if (rh, rw) != (h, w):
            text = f"{h}x{w} resized to {rh}x{rw} ({how})"
        else:
            text = f"{h}x{w} kept"
        if (rh, rw) != (plan.height, plan.width):
            text += f", centre crop {plan.height}x{plan.width}"
        steps.append(text)
    return ", ".join(steps)


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


@dataclass(frozen=True)
class _Values:
    """How stored numbers become the model's numbers, per channel."""

    divide: bool            # pixels 0..255 become [0, 1]
    scale: float | None
    mean: np.ndarray | None
    std: np.ndarray | None
    pixel_max: float | None  # the largest stored pixel value, when the target holds pixels


def _values(x: np.ndarray, prep: Preprocessing, dtype: np.dtype, input_range, work) -> _Values:
    if input_range is not None and input_range not in INPUT_RANGES:
        raise AdaptError(f"input_range {input_range!r} is not one of: "
                         f"{', '.join(INPUT_RANGES)} (or None to follow the dtype)")
    divide = input_range == "0-255" or (input_range is None and x.dtype == np.uint8)
    pixel_max = 255.0 if divide else (1.0 if input_range == "0-1" else None)
    scale = prep.scale if prep.scale is not None else (255.0 if dtype.kind in "iu" else None)
    return _Values(divide, scale,
                   None if prep.mean is None else np.asarray(prep.mean, dtype=work),
                   None if prep.std is None else np.asarray(prep.std, dtype=work), pixel_max)


def adapt(x, input_shape, input_dtype, prep: Preprocessing | None = None, *,
          input_range: str | None = None) -> np.ndarray:
    """Turn a batch ``(n, ...)`` of target inputs into an array the model input accepts.

    ``input_range`` says what the stored numbers are: ``"0-255"`` pixels (divided by 255,
    whatever their dtype), ``"0-1"`` values used as stored (even uint8), or ``None`` to go
    by the dtype (uint8 is 0..255, anything else is used as stored). Pass the target's
    :attr:`zooindex.target.Target.input_range` so that every batch is treated alike.
    """
    prep = prep or Preprocessing()
    x = np.asarray(x)
    plan = _plan(x.shape[1:], input_shape, prep)
    dtype = model_dtype(input_dtype)
    work = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    values = _values(x, prep, dtype, input_range, work)
    if plan.model[0] == "vector":
        data = _to_work(x, values, work).reshape(len(x), -1)
        return _cast(_normalise(data, values), dtype)
    if plan.reshape is not None:
        x = x.reshape((len(x),) + plan.reshape)
    if plan.reverse:  # a view: the float copy below reads it in BGR order
        x = x[..., ::-1] if plan.sample.form == "HWC" else x[:, ::-1]
    if plan.resize is None:
        data = _unresized(x, plan, values, work)
    else:
        data = _resized(x, plan, prep, values, work)
    return _cast(data, dtype)


def _to_nhwc(data: np.ndarray, form: str) -> np.ndarray:
    if form == "HW":
        return data[..., None]
    if form == "CHW":
        return data.transpose(0, 2, 3, 1)
    return data


def _to_layout(nchw: np.ndarray, layout: str) -> np.ndarray:
    if layout == "NHWC":
        return nchw.transpose(0, 2, 3, 1)
    if layout == "NHW":
        return nchw[:, 0]
    return nchw


def _to_work(x: np.ndarray, values: _Values, work) -> np.ndarray:
    """A C-contiguous float copy of ``x`` (in the order of its axes as given), pixels
    divided by 255."""
    data = x.astype(work, order="C")
    if values.divide:
        data /= 255.0
    return data


def _normalise(data: np.ndarray, values: _Values, axis: int = -1) -> np.ndarray:
    """``(data * scale - mean) / std`` in place, per entry of ``axis`` (channels or
    features)."""
    shape = [1] * data.ndim
    shape[axis] = -1
    if values.scale is not None and values.scale != 1.0:
        data *= data.dtype.type(values.scale)
    if values.mean is not None:
        data -= values.mean.reshape(shape)
    if values.std is not None:
        data /= values.std.reshape(shape)
    return data


def _luminance(data: np.ndarray, work) -> np.ndarray:
    return data @ np.asarray(LUMINANCE, dtype=work)[:, None]


def _unresized(x: np.ndarray, plan: _Plan, values: _Values, work) -> np.ndarray:
    """The batch at its own size, in the model's layout.

    The float copy is made straight in the model's layout and normalised in place; the
    operations, and so every value, are those of the pipeline before resizing was
    reworked.
    """
    layout = plan.model[0]
    src = _to_nhwc(x, plan.sample.form)
    if plan.converts == "grey":
        data = _normalise(_luminance(_to_work(src, values, work), work), values)
        return _to_layout(data.transpose(0, 3, 1, 2), layout)
    if layout == "NCHW":
        data = _to_work(src.transpose(0, 3, 1, 2), values, work)
        if plan.converts == "rgb":
            data = np.repeat(data, 3, axis=1)
        return _normalise(data, values, axis=1)
    data = _to_work(src, values, work)
    if plan.converts == "rgb":
        data = np.repeat(data, 3, axis=-1)
    data = _normalise(data, values)
    return data if layout == "NHWC" else data[..., 0]


def _resized(x: np.ndarray, plan: _Plan, prep: Preprocessing, values: _Values,
             work) -> np.ndarray:
    """The batch resized and cropped to the model's size, in the model's layout.

    The batch is laid out as ``(H, n, C, W)`` (rows first, so that the row pass is one
    matrix product) in the same copy that normalises it; the column pass writes straight
    into the ``(n, C, h, w)`` result.
    """
    n = len(x)
    src = _to_nhwc(x, plan.sample.form)
    in_h, in_w = plan.sample.height, plan.sample.width
    rh, rw, top, left = plan.resize
    a = prep._applied()
    resampler = Resampler(None if rh == in_h == plan.height else (in_h, rh, top, plan.height),
                          None if rw == in_w == plan.width else (in_w, rw, left, plan.width),
                          a["interpolation"], a["antialias"], work)
    pixel_max = values.pixel_max
    if plan.converts == "grey":
        src = _luminance(_to_work(src, values, work), work)
        values = replace(values, divide=False)
        pixel_max = None if pixel_max is None else 1.0
    # grey to RGB: resample the one plane, then normalise it into each channel
    planes = 1 if plan.converts == "rgb" else plan.channels
    gain, offset = _affine(values, plan.channels, work)
    hncw = src.transpose(1, 0, 3, 2).astype(work, order="C")
    if plan.converts != "rgb":
        hncw *= gain[:, None]
        hncw += offset[:, None]
    h, w = plan.height, plan.width
    out = np.empty((n, plan.channels, h, w), dtype=work)
    if plan.converts == "rgb":
        grey = resampler.planes(hncw.reshape(in_h, n, in_w), np.empty((n, h, w), dtype=work))
        for c in range(plan.channels):
            np.multiply(grey, gain[c], out=out[:, c])
            out[:, c] += offset[c]
    else:
        resampler.planes(hncw.reshape(in_h, n * planes, in_w),
                         out.reshape(n * planes, h, w))
    if pixel_max is not None and a["interpolation"] in OVERSHOOTING:
        # an 8-bit image cannot over- or undershoot: clip to the pixel range, normalised
        ends = np.stack([offset, gain * pixel_max + offset])
        np.clip(out, ends.min(0)[:, None, None], ends.max(0)[:, None, None], out=out)
    return _to_layout(out, plan.model[0])


def _affine(values: _Values, channels: int, work) -> tuple:
    """Per-channel ``gain``, ``offset`` such that a stored value ``v`` becomes
    ``v * gain + offset``: the division by 255, the scale, the mean and the std at once."""
    gain = np.full(channels, 1.0 / 255.0 if values.divide else 1.0)
    offset = np.zeros(channels)
    if values.scale is not None:
        gain *= values.scale
    if values.mean is not None:
        offset -= values.mean.astype(np.float64)
    if values.std is not None:
        gain /= values.std.astype(np.float64)
        offset /= values.std.astype(np.float64)
    return gain.astype(work), offset.astype(work)


def resize(images: np.ndarray, height: int, width: int, interpolation: str = "bilinear",
           antialias: bool = True) -> np.ndarray:
    """Resize float images ``(n, H, W, C)`` to ``(n, height, width, C)``.

    Pillow's filters and conventions (:mod:`zooindex.resample`): pixel centres at
    half-pixel offsets, no padding at the edges, anti-aliased when shrinking unless
    ``antialias=False``.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    work = np.dtype(np.float64 if images.dtype == np.float64 else np.float32)
    resampler = Resampler((h, height, 0, height), (w, width, 0, width), interpolation,
                          antialias, work)
    rows = np.ascontiguousarray(images.transpose(1, 0, 3, 2), dtype=work)
    out = np.empty((n, c, height, width), dtype=work)
    resampler.planes(rows.reshape(h, n * c, w), out.reshape(n * c, height, width))
    return out.transpose(0, 2, 3, 1)


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    return np.ascontiguousarray(data, dtype=dtype)
