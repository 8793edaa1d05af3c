"""Preprocessing from the configuration files that model repositories ship beside a model.

Two formats, read by pure functions from a parsed JSON dict to a
:class:`~zooindex.adapt.Preprocessing` (:mod:`zooindex.hub` downloads the files):

- Hugging Face ``preprocessor_config.json``, written by transformers' image processors:
  ``image_mean``/``image_std`` (with ``do_normalize``), ``rescale_factor`` (with
  ``do_rescale``, and EfficientNet's ``rescale_offset``), ``size`` as ``shortest_edge``
  or ``height``/``width`` (or one number), ``crop_size`` with ``do_center_crop``,
  ConvNeXT's ``crop_pct``, ``resample`` as a Pillow code, and
  ``do_flip_channel_order`` (MobileViT's processors, which default it to true): the
  model takes BGR, so ``channels`` is ``bgr``;
- timm's ``config.json``, whose ``pretrained_cfg`` holds ``mean``, ``std``,
  ``input_size`` ``[C, H, W]``, ``interpolation``, ``crop_pct`` and ``crop_mode``;
  what it leaves out takes timm's own defaults (``resolve_data_config``: bicubic,
  ImageNet mean/std, crop_pct 0.875, crop_mode center). No ``pretrained_cfg`` key
  states a channel order (timm's models all take RGB), so a timm config never sets
  ``channels``; a BGR model says so in its ONNX metadata or with ``add --channels bgr``.

Approximations, where zooindex's fixed model input cannot follow the library exactly:
HF's ``shortest_edge`` without a crop keeps the aspect ratio and so gives images of
varying shape; here the centre ``S x S`` is cut. timm's ``border`` crop mode (pad the
longer side instead of cutting) is read as ``center``; the two differ only for
non-square targets. HF's centre crop offset is ``(resized - size) // 2`` where zooindex
rounds ``(resized - size) / 2`` as torchvision does: they differ by one pixel when the
difference is odd and its half rounds up.
"""

from __future__ import annotations

import math

from .adapt import Preprocessing
from .errors import AdaptError
from .choices import INTERPOLATIONS
from .resample import PIL_CODES

HF_PREPROCESSOR_FILE = "preprocessor_config.json"
TIMM_CONFIG_FILE = "config.json"
# timm's resolve_data_config defaults and constants
TIMM_DEFAULTS = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                 "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center"}
# image processors that read a plain number as the shortest edge (transformers'
# get_size_dict(size, default_to_square=False)); others read it as a square
_SHORTEST_EDGE_PROCESSORS = ("CLIP", "ChineseCLIP", "Bit", "ConvNext", "MobileNetV1",
                             "MobileNetV2", "Levit", "PoolFormer", "EfficientFormer")
_CONVNEXT_WARP = 384  # ConvNeXT's processor warps without cropping from this size up
_TIMM_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def from_hf_preprocessor_config(config: dict) -> Preprocessing:
    """The :class:`Preprocessing` a Hugging Face ``preprocessor_config.json`` describes.

    Raises :class:`AdaptError` when a value has the wrong form.
    """
    if not isinstance(config, dict):
        raise AdaptError(f"{HF_PREPROCESSOR_FILE} holds {type(config).__name__}, not an object")
    fields: dict = {}
    rescale = _bool(config.get("do_rescale", True), "do_rescale")
    factor = _positive(config.get("rescale_factor", 1 / 255), "rescale_factor")
    fields["scale"] = _tidy(factor * 255) if rescale else 255.0
    shift = 1.0 if rescale and _bool(config.get("rescale_offset", False), "rescale_offset") \
        else 0.0  # EfficientNet: x * factor - 1, then the mean/std
    mean, std = config.get("image_mean"), config.get("image_std")
    if not _bool(config.get("do_normalize", True), "do_normalize"):
        mean, std = [0.0], [1.0]
    if mean is not None and std is not None:
        fields["mean"] = tuple(_tidy(m + shift) if shift else m
                               for m in _floats(mean, "image_mean"))
        fields["std"] = _floats(std, "image_std")
    elif shift:
        fields["mean"], fields["std"] = (shift,), (1.0,)
    resample = config.get("resample")
    if resample is not None:
        fields["interpolation"] = _interpolation(resample)
    crop = _bool(config.get("do_center_crop", False), "do_center_crop")
    crop_size = None
    if crop and config.get("crop_size") is not None:
        crop_size = _hw(config["crop_size"], "crop_size")
    if _bool(config.get("do_resize", True), "do_resize") and config.get("size") is not None:
        fields.update(_hf_size(config, crop_size))
    elif crop_size is not None:
        fields["input_size"] = crop_size
    if _flips_channels(config):
        fields["channels"] = "bgr"
        # transformers flips after normalising, so its mean/std are in RGB order; here
        # they apply after the flip, in the model's order
        for name in ("mean", "std"):
            if name in fields:
                fields[name] = tuple(reversed(fields[name]))
    return Preprocessing(**fields)


def _processor(config: dict) -> str:
    return str(config.get("image_processor_type") or config.get("feature_extractor_type")
               or "")


def _flips_channels(config: dict) -> bool:
    """``do_flip_channel_order``, or its default where the config leaves it out: true for
    MobileViT's processors (which flip by default), false for every other."""
    flip = config.get("do_flip_channel_order")
    if flip is None:
        return _processor(config).startswith("MobileViT")
    return _bool(flip, "do_flip_channel_order")


def _hf_size(config: dict, crop_size) -> dict:
    size = config["size"]
    kind = _processor(config)
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        shortest = any(kind.startswith(p) for p in _SHORTEST_EDGE_PROCESSORS)
        size = {"shortest_edge": size} if shortest else {"height": size, "width": size}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}
    if not isinstance(size, dict):
        raise AdaptError(f"size {size!r} is not a number, a pair or an object")
    if "shortest_edge" in size:
        edge = _whole(size["shortest_edge"], "size.shortest_edge")
        crop_pct = config.get("crop_pct")
        if crop_pct is not None:  # ConvNeXT
            if edge >= _CONVNEXT_WARP:
                return {"crop": "none", "input_size": (edge, edge)}
            resized = int(edge / _positive(crop_pct, "crop_pct"))
            return {"crop": "center", "resize_size": (resized, resized),
                    "input_size": (edge, edge)}
        return {"crop": "center", "resize_size": (edge, edge),
                "input_size": crop_size or (edge, edge)}
    if "height" in size and "width" in size:
        resized = (_whole(size["height"], "size.height"), _whole(size["width"], "size.width"))
        if crop_size is not None:
            return {"crop": "squash", "resize_size": resized, "input_size": crop_size}
        return {"crop": "none", "input_size": resized}
    return {} if crop_size is None else {"input_size": crop_size}  # longest_edge only


def from_timm_config(config: dict) -> Preprocessing | None:
    """The :class:`Preprocessing` of a timm ``config.json`` (or of its ``pretrained_cfg``
    itself), or ``None`` when the dict is not a timm config (a transformers
    ``config.json``, say). Raises :class:`AdaptError` when a value has the wrong form."""
    if not isinstance(config, dict):
        raise AdaptError(f"{TIMM_CONFIG_FILE} holds {type(config).__name__}, not an object")
    cfg = config.get("pretrained_cfg", config)
    if not isinstance(cfg, dict) or not any(k in cfg for k in _TIMM_KEYS):
        return None
    get = {k: cfg.get(k) if cfg.get(k) is not None else v for k, v in TIMM_DEFAULTS.items()}
    interpolation = str(get["interpolation"]).lower()
    if interpolation == "random":  # a training-time choice; timm evaluates bicubic
        interpolation = "bicubic"
    mode = str(get["crop_mode"]).lower()
    if mode not in ("center", "squash", "border"):
        raise AdaptError(f"crop_mode {get['crop_mode']!r} is not center, squash or border")
    fields = {"mean": _floats(get["mean"], "mean"), "std": _floats(get["std"], "std"),
              "interpolation": _interpolation(interpolation),
              "crop": "squash" if mode == "squash" else "center",
              "crop_pct": _positive(get["crop_pct"], "crop_pct")}
    size = cfg.get("input_size")
    if size is not None:
        if not isinstance(size, (list, tuple)) or len(size) not in (2, 3):
            raise AdaptError(f"input_size {size!r} is not [C, H, W]")
        fields["input_size"] = (_whole(size[-2], "input_size"), _whole(size[-1], "input_size"))
    return Preprocessing(**fields)


# -- value checks ----------------------------------------------------------------------------

def _bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise AdaptError(f"{name} {value!r} is not true or false")


def _positive(value, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return float(value)
    raise AdaptError(f"{name} {value!r} is not a positive number")


def _whole(value, name: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value >= 1 and value == int(value):
        return int(value)
    raise AdaptError(f"{name} {value!r} is not a positive whole number")


def _floats(value, name: str) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise AdaptError(f"{name} {value!r} is not a list of numbers")
    return tuple(float(v) for v in value)


def _hw(value, name: str) -> tuple:
    if isinstance(value, dict) and "height" in value and "width" in value:
        return (_whole(value["height"], name), _whole(value["width"], name))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (_whole(value[0], name), _whole(value[1], name))
    side = _whole(value, name)
    return (side, side)


def _interpolation(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in PIL_CODES:
        return PIL_CODES[value]
    if isinstance(value, str) and value.lower() in INTERPOLATIONS:
        return value.lower()
    raise AdaptError(f"resample {value!r} is not a Pillow filter code "
                     f"({', '.join(f'{k} {v}' for k, v in PIL_CODES.items())}) or name")


def _tidy(value: float) -> float:
    """``0.00392156862745098 * 255`` is 1 up to rounding: keep 12 significant digits."""
    return float(f"{value:.12g}")
