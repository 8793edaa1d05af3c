"""PyTorch checkpoints as the hubs hold them, exported to ONNX when they are added.

Most image classifiers on the Hugging Face hub are transformers or timm checkpoints: a
``config.json`` beside ``model.safetensors``, and no ONNX file. zooindex ranks ONNX models
only, so such a checkpoint is exported once, with the libraries' own model factories and
``torch.onnx.export`` (through :func:`zooindex.export.from_torch`: opset 17, dynamic
batch, a single self-contained file):

- transformers: the configuration class that ``model_type`` names in transformers'
  registry, filled from ``config.json``; then ``AutoModelForImageClassification`` when
  ``architectures`` names an image classifier of that registry, else ``AutoModel``
  (feature extraction: its pooled output, or the first token's hidden state), loaded
  from the weights with ``from_pretrained`` (never ``trust_remote_code``);
- timm: ``timm.create_model(architecture, pretrained=False, pretrained_cfg=...,
  **model_args)`` for an architecture in timm's registry, with the config read as timm
  reads a hub repo's (:func:`timm_model_config`), then the weights' state dict, strictly.

A sharded checkpoint (``model.safetensors.index.json`` and the shards it names) is read
as one: every shard is fetched, and the weights' sha256 is that of the shards' own
(:func:`shards_sha256`).

Nothing in the repository is executed: configs are read as JSON, architectures come
only from the libraries' registries, and weights are read from safetensors. Pickled
weights (``pytorch_model.bin``) are refused unless the caller allows them, and even
then are read with ``torch.load(weights_only=True)``, which rebuilds tensors only.

The export lands in ``<folder>/zooindex-export/model.onnx`` beside an ``export.json``
that records its settings and the weights' sha256; a later add with the same settings
finds it and exports nothing. The libraries are imported only when an export runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import DependencyError, ModelError, require

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"  # a sharded checkpoint: tensor name -> shard file
PICKLED_WEIGHTS = ("pytorch_model.bin",)
EXPORT_FOLDER = "zooindex-export"
EXPORT_FILE = "model.onnx"
EXPORT_RECORD = "export.json"
OPSET = 17  # as zooindex.export.from_torch
DEFAULT_SIDE = 224  # input side when neither the preprocessing nor the config gives one
CONFIG_MAX_BYTES = 4 * 1024**2  # as zooindex.hub.PREPROCESSING_MAX_BYTES
EXPORT_EXTRA = "pip install 'zooindex[export]'"
TIMM_EXTRA = "pip install 'zooindex[timm]'"

__all__ = ["LIBRARIES", "Library", "library_of", "weights_name", "is_checkpoint_folder",
           "read_config", "shard_names", "shards_sha256", "load_state_dict", "export",
           "fetch_folder", "timm_model_config"]


@dataclass(frozen=True)
class Library:
    """One checkpoint format: how to recognise its ``config.json``, build the model, and
    the shape of one input sample."""

    name: str
    detect: object        # config dict -> bool
    build: object         # (config, folder, weights, pickled) -> (torch module, settings)
    sample_shape: object  # (config, input_size or None) -> (C, H, W)
    versions: object      # () -> {package: version}


LIBRARIES: dict[str, Library] = {}


def register(library: Library) -> Library:
    LIBRARIES[library.name] = library
    return library


def library_of(config) -> str | None:
    """The registered library whose ``config.json`` this is, or None."""
    if not isinstance(config, dict):
        return None
    return next((name for name, lib in LIBRARIES.items() if lib.detect(config)), None)


def weights_name(files, *, allow_pickle: bool = False, where: str = "") -> str | None:
    """The weights file to export from, among the file names ``files`` (repo paths or a
    folder's names): ``model.safetensors``, else a sharded checkpoint's
    ``model.safetensors.index.json``; a pickled file only with ``allow_pickle`` (with a
    warning); None when there is none of these. Raises :class:`ModelError` when only
    pickled weights are there and they are not allowed."""
    names = set(files)
    for name in (SAFE_WEIGHTS, SAFE_INDEX):
        if name in names:
            return name
    pickled = next((n for n in PICKLED_WEIGHTS if n in names), None)
    if pickled is None:
        return None
    if not allow_pickle:
        raise ModelError(f"{where or 'the checkpoint'} holds only pickled weights ({pickled}), "
                         "and unpickling can run code; pass --allow-pickle (allow_pickle=True) "
                         f"if you trust it, or use a checkpoint with {SAFE_WEIGHTS}")
    warnings.warn(f"{where or 'the checkpoint'}: reading pickled weights {pickled} "
                  "(allowed by --allow-pickle; tensors only, weights_only=True)", stacklevel=2)
    return pickled


def is_checkpoint_folder(path) -> bool:
    """A folder with a ``config.json`` and weights but no ``.onnx`` file below it."""
    p = Path(path) if isinstance(path, (str, os.PathLike)) else None
    if p is None or not p.is_dir() or not (p / CONFIG_FILE).is_file():
        return False
    if not any((p / n).is_file() for n in (SAFE_WEIGHTS, SAFE_INDEX, *PICKLED_WEIGHTS)):
        return False
    return not any(q.is_file() for q in p.rglob("*.onnx"))


def read_config(path, what: str | None = None) -> dict:
    """A JSON config file as a dict: size-capped, parsed, never executed."""
    path = Path(path)
    what = what or str(path)
    size = path.stat().st_size
    if size > CONFIG_MAX_BYTES:
        raise ModelError(f"{what} is {size} bytes, over the {CONFIG_MAX_BYTES} allowed for a "
                         "config file", path=str(path))
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} is not valid JSON ({type(exc).__name__})",
                         path=str(path)) from None
    if not isinstance(config, dict):
        raise ModelError(f"{what} holds {type(config).__name__}, not an object", path=str(path))
    return config


def shard_names(index, what: str = SAFE_INDEX) -> list[str]:
    """The shard files a ``model.safetensors.index.json`` (parsed) maps its tensors to,
    sorted. Each must be a plain ``.safetensors`` name beside the index: a path that
    leaves its folder is refused."""
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelError(f"{what} has no weight_map from tensor names to shard files")
    shards = set()
    for tensor, file in weight_map.items():
        if (not isinstance(file, str) or not file.endswith(".safetensors")
                or "/" in file or "\\" in file or file.startswith(".")):
            raise ModelError(f"{what} maps '{tensor}' to {file!r}, not a .safetensors file "
                             "beside it; refusing the checkpoint")
        shards.add(file)
    return sorted(shards)


def shards_sha256(digests: dict) -> str:
    """One sha256 for a sharded checkpoint: that of the manifest ``<sha256>  <shard>``, one
    line per shard sorted by name (as ``sha256sum`` writes it)."""
    text = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return hashlib.sha256(text.encode()).hexdigest()


def load_state_dict(folder, weights: str, pickled: bool = False) -> dict:
    """The tensors of the checkpoint ``folder/weights``: a safetensors file; every shard a
    ``model.safetensors.index.json`` names, each tensor from the shard it is mapped to;
    or, with ``pickled``, a pickled file read as tensors only (``weights_only=True``)."""
    folder = Path(folder)
    if pickled:
        import torch

        return torch.load(folder / weights, map_location="cpu", weights_only=True)
    require("safetensors", f"reading safetensors weights needs safetensors: {EXPORT_EXTRA}")
    from safetensors import safe_open

    if weights != SAFE_INDEX:
        with safe_open(str(folder / weights), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    index = read_config(folder / SAFE_INDEX)
    shard_names(index, str(folder / SAFE_INDEX))  # every file name checked first
    by_shard: dict = {}
    for tensor, file in index["weight_map"].items():
        by_shard.setdefault(file, []).append(tensor)
    state = {}
    for file, tensors in sorted(by_shard.items()):
        with safe_open(str(folder / file), framework="pt") as f:
            held = set(f.keys())
            absent = [t for t in tensors if t not in held]
            if absent:
                raise ModelError(f"shard {file} lacks {len(absent)} tensors that "
                                 f"{SAFE_INDEX} maps to it ({', '.join(absent[:3])})",
                                 path=str(folder / file))
            state.update({t: f.get_tensor(t) for t in tensors})
    return state


def export(folder, weights: str, config: dict, *, weights_sha256: str, out_dir=None,
           input_size=None, opset: int = OPSET, shards: dict | None = None) -> tuple[Path, dict]:
    """Export the checkpoint ``folder/weights`` (described by ``config``) to ONNX.

    Returns ``(path of the ONNX file, settings)``, where the settings (library,
    architecture, class, opset, sample shape, weights file and sha256, library
    versions) are what the index records. ``out_dir`` defaults to
    ``folder/zooindex-export``; an export already there with the same settings is
    returned as it is. ``input_size`` ``(H, W)`` is the model's input from its
    preprocessing, else the config's ``image_size`` or 224. A sharded checkpoint
    (``weights`` is ``model.safetensors.index.json``) gives each shard's sha256 in
    ``shards`` and their :func:`shards_sha256` as ``weights_sha256``.
    """
    folder = Path(folder)
    name = library_of(config)
    if name is None:
        raise ModelError(f"{folder / CONFIG_FILE} is neither a transformers config "
                         "(model_type) nor a timm config (architecture, pretrained_cfg); "
                         "zooindex exports only those", path=str(folder))
    library = LIBRARIES[name]
    pickled = weights in PICKLED_WEIGHTS
    out_dir = Path(out_dir) if out_dir is not None else folder / EXPORT_FOLDER
    if name == "transformers" and _is_text_config(config):
        # a language model: token ids in (see zooindex.text)
        return _export_text(folder, weights, config, weights_sha256=weights_sha256,
                            out_dir=out_dir, opset=opset, pickled=pickled, shards=shards)
    path, record = out_dir / EXPORT_FILE, out_dir / EXPORT_RECORD
    shape = [int(d) for d in library.sample_shape(config, input_size)]
    wanted = {"library": name, "opset": opset, "dynamic_batch": True,
              "exporter": "torch.onnx.export (TorchScript)", "sample_shape": shape,
              "weights": weights, "weights_sha256": weights_sha256, "pickle": pickled}
    if shards is not None:
        wanted["shards"] = dict(sorted(shards.items()))
    previous = _previous(record, path)
    if previous is not None and all(previous.get(k) == v for k, v in wanted.items()):
        return path, previous
    wanted["versions"] = library.versions()  # imports the library: fails here when missing
    from .export import from_torch

    module, about = library.build(config, folder, folder / weights, pickled)
    settings = {**wanted, **about}
    metadata = {f"zooindex.export.{k}": json.dumps(v) if not isinstance(v, str) else v
                for k, v in settings.items()}
    import torch

    with warnings.catch_warnings():
        # tracing fixes the sample's height and width, as intended: not worth a warning
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        from_torch(module, path, input_shape=shape, opset=opset, metadata=metadata)
    _write_json(record, settings)
    return path, settings


def fetch_folder(folder, *, cache_dir=None, allow_pickle: bool = False) -> list:
    """A local checkpoint folder (as ``save_pretrained`` or timm writes it, sharded or not),
    exported into ``<cache>/checkpoints/<weights sha256>/`` and returned as one
    :class:`zooindex.download.HubFetched` with the preprocessing its config files describe."""
    from . import hubconfig
    from .download import default_cache_dir
    from .errors import AdaptError
    from .hashing import sha256_file
    from .download import HubFetched

    folder = Path(folder).expanduser().resolve()
    names = [p.name for p in folder.iterdir() if p.is_file()]
    weights = weights_name(names, allow_pickle=allow_pickle, where=str(folder))
    if weights is None:
        raise ModelError(f"no {SAFE_WEIGHTS} (nor {SAFE_INDEX}) in checkpoint folder "
                         f"'{folder}'", path=str(folder))
    config = read_config(folder / CONFIG_FILE)
    prep, prep_from, note = None, None, None
    readers = [(PREPROCESSOR_FILE, hubconfig.from_hf_preprocessor_config),
               (CONFIG_FILE, hubconfig.from_timm_config)]
    for file, reader in readers:
        if not (folder / file).is_file():
            continue
        try:
            prep = reader(read_config(folder / file))
        except (AdaptError, ModelError) as exc:
            note = f"{file}: {exc}; not used"
            continue
        if prep is not None:
            prep_from, note = file, None
            break
    shards = None
    if weights == SAFE_INDEX:
        names = shard_names(read_config(folder / SAFE_INDEX), str(folder / SAFE_INDEX))
        absent = [n for n in names if not (folder / n).is_file()]
        if absent:
            raise ModelError(f"{folder / SAFE_INDEX} names shards that are not in the folder: "
                             f"{', '.join(absent[:3])}", path=str(folder))
        shards = {n: sha256_file(folder / n) for n in names}
        digest = shards_sha256(shards)
    else:
        digest = sha256_file(folder / weights)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path, settings = export(folder, weights, config, weights_sha256=digest,
                            out_dir=root / "checkpoints" / digest, shards=shards,
                            input_size=prep.input_size if prep is not None else None)
    source = {"hub": "local", "path": str(folder), "export": settings}
    tokenizer = folder / "tokenizer.json"  # a text model's, kept where the folder is
    return [HubFetched(path=path, name=folder.name, source=source, preprocessing=prep,
                       preprocessing_from=prep_from, preprocessing_note=note,
                       tokenizer=tokenizer if tokenizer.is_file() else None)]


# -- transformers ----------------------------------------------------------------------------

def _transformers():
    return require("transformers", "exporting a transformers checkpoint needs transformers "
                   f"and torch: {EXPORT_EXTRA}")


def _load_pretrained(auto, folder: Path, cfg, pickled: bool, what: Path) -> tuple:
    """``auto.from_pretrained`` from the local folder alone, never the repository's own
    code: ``(model, loading info)``. transformers' progress bar stays off meanwhile
    (``add`` draws its own); a checkpoint it cannot load is a one-line ModelError."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return auto.from_pretrained(
            str(folder), config=cfg, local_files_only=True, trust_remote_code=False,
            use_safetensors=not pickled, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"transformers cannot load {what}: {_short(exc)}",
                         path=str(what)) from exc
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _transformers_detect(config: dict) -> bool:
    return isinstance(config.get("model_type"), str) and "architecture" not in config


def _transformers_build(config: dict, folder: Path, weights: Path, pickled: bool):
    transformers = _transformers()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, MODEL_MAPPING_NAMES)

    model_type = config["model_type"]
    if model_type not in CONFIG_MAPPING or model_type not in MODEL_MAPPING_NAMES:
        raise ModelError(f"model_type '{model_type}' in {folder / CONFIG_FILE} is not a "
                         "transformers architecture this version knows; zooindex never runs "
                         "a repository's own code", path=str(folder))
    cfg = CONFIG_MAPPING[model_type].from_dict(config)
    classifiers = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.get(model_type) or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    named = config.get("architectures") or []
    if classifiers and (not named or any(n in classifiers for n in named)):
        auto, head = transformers.AutoModelForImageClassification, "logits"
    else:
        auto, head = transformers.AutoModel, "features"
    model, info = _load_pretrained(auto, folder, cfg, pickled, weights)
    missing = sorted(info.get("missing_keys") or [])
    if missing or info.get("mismatched_keys"):
        bad = missing or [str(k) for k in info["mismatched_keys"]]
        raise ModelError(f"{weights} does not fit {type(model).__name__}: {len(bad)} tensors "
                         f"missing or of another shape ({', '.join(bad[:3])}...); the export "
                         "would carry random weights", path=str(weights))
    return _Output(model, head), {"architecture": model_type, "class": type(model).__name__,
                                  "output": head}


def _transformers_shape(config: dict, input_size) -> tuple:
    channels = config.get("num_channels", 3)
    if input_size is None:
        side = config.get("image_size", DEFAULT_SIDE)
        input_size = side if isinstance(side, (list, tuple)) else (side, side)
    return (int(channels), int(input_size[0]), int(input_size[1]))


def _transformers_versions() -> dict:
    import torch

    return {"torch": torch.__version__, "transformers": _transformers().__version__}


def _output_module():
    import torch

    class Output(torch.nn.Module):
        """Pixels in, one tensor out: a classifier's logits, or a feature extractor's
        pooled output (the first token's hidden state when it has no pooler)."""

        def __init__(self, model, head: str):
            super().__init__()
            self.model, self.head = model, head

        def forward(self, pixel_values):
            out = self.model(pixel_values=pixel_values, return_dict=True)
            if self.head == "logits":
                return out.logits
            pooled = getattr(out, "pooler_output", None)
            if pooled is not None:
                return pooled.flatten(1)
            return out.last_hidden_state[:, 0]

    return Output


def _Output(model, head: str):
    return _output_module()(model, head)


register(Library("transformers", _transformers_detect, _transformers_build,
                 _transformers_shape, _transformers_versions))


# -- transformers text models ----------------------------------------------------------------

def _is_text_config(config: dict) -> bool:
    """Whether a transformers ``config.json`` describes a text model: a vocabulary and
    no image size or channel count (vision configs have those; CLIP-like configs nest
    both and are neither)."""
    return (isinstance(config.get("vocab_size"), int) and "image_size" not in config
            and "num_channels" not in config)


def _export_text(folder, weights: str, config: dict, *, weights_sha256: str, out_dir,
                 opset: int = OPSET, pickled: bool = False,
                 shards: dict | None = None) -> tuple[Path, dict]:
    """Export a transformers text checkpoint (``config.json`` beside the weights), as
    :func:`export` does image ones: ``(ONNX path, settings)``, by
    :func:`zooindex.text.export.from_transformers`.

    ``AutoModelForSequenceClassification`` when ``architectures`` names a sequence
    classifier (the default layer is then its classifier's input), else ``AutoModel``
    (the hidden states only), built from transformers' own registry, loaded with
    ``from_pretrained`` (never ``trust_remote_code``); weights that do not fit are
    refused, except a pooler the base model's checkpoint did not save (the hidden
    states do not use it). An export already in ``out_dir`` with the same settings is
    returned as it is.
    """
    from .text.export import from_transformers

    folder, out_dir = Path(folder), Path(out_dir)
    path, record = out_dir / EXPORT_FILE, out_dir / EXPORT_RECORD
    wanted = {"library": "transformers", "kind": "text", "opset": opset,
              "dynamic_batch": True, "dynamic_sequence": True,
              "exporter": "torch.onnx.export (TorchScript)", "weights": weights,
              "weights_sha256": weights_sha256, "pickle": pickled}
    if shards is not None:  # from_pretrained reads the index and its shards itself
        wanted["shards"] = dict(sorted(shards.items()))
    previous = _previous(record, path)
    if previous is not None and all(previous.get(k) == v for k, v in wanted.items()):
        return path, previous
    wanted["versions"] = _transformers_versions()
    transformers = _transformers()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING or model_type not in MODEL_MAPPING_NAMES:
        raise ModelError(f"model_type '{model_type}' in {folder / CONFIG_FILE} "
                         "is not a transformers architecture this version knows; zooindex "
                         "never runs a repository's own code", path=str(folder))
    cfg = CONFIG_MAPPING[model_type].from_dict(config)
    classifier = any(str(n).endswith("ForSequenceClassification")
                     for n in config.get("architectures") or [])
    auto = (transformers.AutoModelForSequenceClassification if classifier
            else transformers.AutoModel)
    model, info = _load_pretrained(auto, folder, cfg, pickled, folder / weights)
    missing = [k for k in info.get("missing_keys") or [] if "pooler" not in k]
    if missing or info.get("mismatched_keys"):
        bad = missing or [str(k) for k in info["mismatched_keys"]]
        raise ModelError(f"{folder / weights} does not fit {type(model).__name__}: "
                         f"{len(bad)} tensors missing or of another shape "
                         f"({', '.join(sorted(bad)[:3])}...); the export would carry random "
                         "weights", path=str(folder))
    out_dir.mkdir(parents=True, exist_ok=True)
    from_transformers(model, path, opset=opset)
    settings = {**wanted, "architecture": model_type, "class": type(model).__name__,
                "output": "logits" if classifier else "last_hidden_state"}
    _write_json(record, settings)
    return path, settings


# -- timm ------------------------------------------------------------------------------------

def _timm():
    require("torch", f"exporting a timm checkpoint needs torch and timm: {TIMM_EXTRA}")
    try:
        import timm
    except ImportError:
        raise DependencyError(f"exporting a timm checkpoint needs timm: {TIMM_EXTRA}",
                              package="timm") from None
    except RuntimeError as exc:  # a torchvision built for another torch fails on import
        raise DependencyError(f"timm cannot be imported beside this torch ({_short(exc)}); "
                              "install the torchvision built for your torch",
                              package="torchvision") from None
    return timm


def _timm_detect(config: dict) -> bool:
    return isinstance(config.get("architecture"), str) and (
        isinstance(config.get("pretrained_cfg"), dict) or "num_classes" in config)


# create_model's own keywords, and the pretrained_cfg keys that name weights to load: a
# config that set them could make timm read other files or build another model
TIMM_RESERVED_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                      "checkpoint_path", "cache_dir", "scriptable", "exportable", "no_jit",
                      "features_only", "out_indices", "feature_cls", "feature_cfg")
TIMM_SOURCE_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source")


def timm_model_config(config: dict) -> tuple[str, dict, dict]:
    """``(architecture, pretrained_cfg, model_args)`` from a timm ``config.json``, read as
    timm reads a hub repo's (the top-level ``num_classes`` over the pretrained_cfg's; the
    model_args' ``in_chans`` and a fixed model's ``img_size`` over its ``input_size``;
    the older single-dict form), without importing timm. Keywords that would load other
    weights or change what the model returns are refused."""
    config = dict(config)
    if isinstance(config.get("pretrained_cfg"), dict):
        pretrained = dict(config["pretrained_cfg"])
    else:  # the older form: the config is the pretrained_cfg itself
        pretrained = {k: v for k, v in config.items()
                      if k not in ("architecture", "num_features", "model_args")}
        if "labels" in pretrained:
            pretrained["label_names"] = pretrained.pop("labels")
    if "num_classes" in config:
        pretrained["num_classes"] = config["num_classes"]
    args = config.get("model_args") or {}
    if not isinstance(args, dict):
        raise ModelError(f"model_args in {CONFIG_FILE} is {type(args).__name__}, not an object")
    bad = sorted(set(args) & set(TIMM_RESERVED_ARGS))
    if bad:
        raise ModelError(f"model_args in {CONFIG_FILE} set {', '.join(bad)}, which would load "
                         "other weights or change the model's output; refusing the checkpoint")
    for key in TIMM_SOURCE_KEYS:
        pretrained.pop(key, None)
    size = pretrained.get("input_size")
    if args.get("in_chans") is not None and isinstance(size, (list, tuple)) and len(size) == 3:
        pretrained["input_size"] = [args["in_chans"], *size[1:]]
    img = args.get("img_size")
    if img is not None and pretrained.get("fixed_input_size", False):
        img = [img, img] if isinstance(img, int) else list(img)
        channels = (pretrained.get("input_size") or [3])[0]
        pretrained["input_size"] = [channels, *img]
    return config["architecture"], pretrained, dict(args)


def _timm_build(config: dict, folder: Path, weights: Path, pickled: bool):
    timm = _timm()
    import dataclasses

    from timm.models import PretrainedCfg

    arch, pretrained, args = timm_model_config(config)
    if not timm.is_model(arch):
        raise ModelError(f"architecture '{arch}' in {folder / CONFIG_FILE} is not in timm's "
                         "registry of this version", path=str(folder))
    # keys a newer timm wrote and this one does not know are left out, as timm cannot take them
    known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    pretrained = {k: v for k, v in pretrained.items() if k in known}
    try:
        model = timm.create_model(arch, pretrained=False, pretrained_cfg=pretrained, **args)
        model.load_state_dict(load_state_dict(folder, weights.name, pickled))
    except (RuntimeError, ValueError, TypeError, KeyError, OSError, AssertionError) as exc:
        raise ModelError(f"timm cannot load {weights} into {arch}: {_short(exc)}",
                         path=str(weights)) from exc
    return model, {"architecture": arch, "tag": pretrained.get("tag"),
                   "class": type(model).__name__, "output": "logits",
                   "num_classes": int(getattr(model, "num_classes", 0) or 0)}


def _timm_shape(config: dict, input_size) -> tuple:
    _, pretrained, _ = timm_model_config(config)
    size = pretrained.get("input_size") or (3, DEFAULT_SIDE, DEFAULT_SIDE)
    channels = int(size[0]) if len(size) == 3 else 3
    h, w = input_size if input_size is not None else (size[-2], size[-1])
    return (channels, int(h), int(w))


def _timm_versions() -> dict:
    import torch

    return {"torch": torch.__version__, "timm": _timm().__version__}


register(Library("timm", _timm_detect, _timm_build, _timm_shape, _timm_versions))


# -- helpers ---------------------------------------------------------------------------------

def _previous(record: Path, path: Path) -> dict | None:
    if not (record.is_file() and path.is_file()):
        return None
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
