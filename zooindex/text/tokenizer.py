"""A text model's tokenizer: found, hashed, recorded, and applied to batches of texts.

The tokenizer is the ``tokenizer.json`` of the model's repository, read with the
``tokenizers`` library: beside the model file, or given by path. ``zooindex add``
records where it is, its sha256 and the maximum length (:func:`describe`); a search
loads it again from there (:func:`load`) and refuses it when its content changed.

The maximum length is, first found: the ONNX input's fixed sequence size, the
``zooindex.max_length`` metadata of the ONNX file (:mod:`zooindex.text.export` writes it
from the model's position embeddings), the ``model_max_length`` of
``tokenizer_config.json`` beside it, the truncation length that ``tokenizer.json``
declares, ``max_position_embeddings`` of ``config.json`` (less the position offset that
RoBERTa-style models reserve: ``pad_token_id + 1``), else 512. Texts are truncated to
it; each batch is padded to its longest text with the tokenizer's padding token.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..errors import DependencyError, ModelError

TOKENIZER_FILE = "tokenizer.json"
# written into the ONNX file's metadata by zooindex.text.export.from_transformers
MAX_LENGTH_KEY = "zooindex.max_length"
DEFAULT_MAX_LENGTH = 512
_SANE_MAX = 1_000_000  # transformers writes 1e30 for "no limit"
_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<unk>", "[UNK]")


def find(model_path, given=None) -> Path | None:
    """The tokenizer file: ``given`` (a file, or a folder holding tokenizer.json), else
    ``tokenizer.json`` beside the model; ``None`` when there is none."""
    if given is not None:
        path = Path(given).expanduser()
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise ModelError(f"tokenizer '{given}' not found; give the model's tokenizer.json "
                             "(or the folder holding it)", path=str(given))
        return path.resolve()
    beside = Path(model_path).resolve().parent / TOKENIZER_FILE
    return beside if beside.is_file() else None


def describe(tokenizer_path, model_name: str, seq_dim=None, metadata=None) -> dict:
    """What a model's record keeps about its tokenizer: ``{"tokenizer": absolute path,
    "tokenizer_sha256", "max_length", "max_length_from"}``; the file is read once to
    check that the ``tokenizers`` library can load it."""
    from ..hashing import sha256_file

    path = Path(tokenizer_path).resolve()
    _parse(str(path), model_name)
    length, origin = max_length(path, seq_dim, metadata)
    return {"tokenizer": str(path), "tokenizer_sha256": sha256_file(path),
            "max_length": length, "max_length_from": origin}


def max_length(tokenizer_path, seq_dim=None, metadata=None) -> tuple[int, str]:
    """``(maximum tokens per text, where that number comes from)``; see the module."""
    if isinstance(seq_dim, int) and seq_dim > 0:
        return seq_dim, "the ONNX input's fixed sequence size"
    stamped = (metadata or {}).get(MAX_LENGTH_KEY, "")
    if stamped.isdigit() and int(stamped) > 0:
        return int(stamped), f"the model's {MAX_LENGTH_KEY} metadata"
    folder = Path(tokenizer_path).parent
    config = _json(folder / "tokenizer_config.json")
    value = config.get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value < _SANE_MAX:
        return int(value), "tokenizer_config.json model_max_length"
    truncation = (_json(Path(tokenizer_path)) or {}).get("truncation") or {}
    if isinstance(truncation.get("max_length"), int) and truncation["max_length"] > 0:
        return int(truncation["max_length"]), "tokenizer.json truncation"
    positions = max_positions(_json(folder / "config.json"))
    if positions is not None:
        return positions, "config.json max_position_embeddings"
    return DEFAULT_MAX_LENGTH, "the default"


def max_positions(config) -> int | None:
    """The most tokens a model's position embeddings allow, from its config (a
    transformers config or the ``config.json`` dict): ``max_position_embeddings``, less
    the offset RoBERTa-style models reserve (``pad_token_id + 1``); ``None`` for models
    without absolute positions (DeBERTa-v2 with relative ones only) or without the
    field."""
    def get(name, default=None):
        if isinstance(config, dict):
            return config.get(name, default)
        return getattr(config, name, default)

    positions = get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    if get("position_biased_input", True) is False:
        return None
    if get("model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        pad = get("pad_token_id")
        return positions - (1 if not isinstance(pad, int) else pad) - 1
    return positions


def _json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _library():
    try:
        import tokenizers
    except ImportError:
        raise DependencyError("text models need the tokenizers library: pip install "
                              "'zooindex[text]' (or tokenizers)", package="tokenizers") from None
    return tokenizers


def _parse(path: str, model_name: str):
    tokenizers = _library()
    try:
        return tokenizers.Tokenizer.from_file(path)
    except Exception as exc:  # the library raises a bare Exception for a malformed file
        raise ModelError(f"tokenizer '{path}' of model '{model_name}' cannot be read by the "
                         f"tokenizers library: {' '.join(str(exc).split())[:160]}",
                         path=path, model=model_name) from None


@functools.lru_cache(maxsize=16)
def _loaded(path: str, sha256: str, length: int, model_name: str):
    from ..hashing import sha256_file

    if sha256_file(path) != sha256:
        raise ModelError(f"tokenizer '{path}' of model '{model_name}' changed since the model "
                         f"was added; re-add it with `zooindex add --replace`",
                         path=path, model=model_name)
    tokenizer = _parse(path, model_name)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(length))
    padding = pad_id(tokenizer)
    tokenizer.enable_padding(pad_id=padding, pad_token=tokenizer.id_to_token(padding) or "")
    return tokenizer


def load(text: dict, model_name: str):
    """The tokenizer a record describes, set to truncate and pad; refuses a file that is
    missing or whose content changed since ``add``."""
    path = text.get("tokenizer")
    if not path or not Path(path).is_file():
        raise ModelError(f"tokenizer '{path}' of model '{model_name}' is missing; put it back "
                         "or re-add the model with --tokenizer", path=path, model=model_name)
    return _loaded(path, text["tokenizer_sha256"], int(text["max_length"]), model_name)


def status(text: dict) -> str:
    """``ok``, ``missing`` or ``changed``: is the recorded tokenizer still there, with
    the content it had when the model was added? (Always hashed: the file is small.)"""
    from ..hashing import sha256_file

    path = text.get("tokenizer")
    if not path or not Path(path).is_file():
        return "missing"
    try:
        return "ok" if sha256_file(path) == text.get("tokenizer_sha256") else "changed"
    except OSError:
        return "missing"


def pad_id(tokenizer) -> int:
    """The padding token's id: the one the tokenizer declares, else a usual pad token."""
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for token in _PAD_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0


def encode(tokenizer, texts: np.ndarray) -> dict:
    """``{"input_ids", "attention_mask", "token_type_ids"}``, int64 ``(n, tokens)``, of a
    batch of texts ``(n,)`` or pairs ``(n, 2)``, padded to the batch's longest."""
    items = texts.tolist()
    if texts.ndim == 2:
        items = [tuple(pair) for pair in items]
    encodings = tokenizer.encode_batch(items)
    return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
