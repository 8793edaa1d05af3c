"""The model catalogue: which models are indexed, where their files are, their layers.

A :class:`ModelRecord` is what ``zooindex add`` learned about one model file (its content
hash, input, layers, default layer, classifier output, preprocessing, tags, source); the
:class:`Catalogue` keeps them in the ``models`` and ``layers`` tables of a
:class:`~zooindex.store.Store`. A record is a plain, picklable dataclass: the per-model
unit of work receives it and never opens the database.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NotIndexedError, StoreError
from .layer import Layer, choose
from .store import Store

_STAT_TOLERANCE = 1e-6  # seconds: floats of st_mtime/st_ctime round-trip through SQLite


def weight_stats(model_path, files) -> list[dict]:
    """Size and times of a model's external weight ``files`` (relative to its folder).

    Stored with the model so that :meth:`ModelRecord.status` notices a weight file that
    changed while the ``.onnx`` file stayed the same.
    """
    folder = Path(model_path).parent
    stats = []
    for name in files:
        st = os.stat(folder / name)
        stats.append({"file": name, "size": st.st_size, "mtime": st.st_mtime,
                      "ctime": st.st_ctime})
    return stats


@dataclass
class ModelRecord:
    """One indexed model, as stored.

    ``sha256`` is the content hash (:func:`zooindex.hashing.sha256_model`: the file and
    its external weight files). ``ctime`` and ``weights`` (the weight files' stats) are
    ``None`` for models indexed before schema 2; the status check then trusts size and
    mtime, as it did then.
    """

    name: str
    sha256: str
    path: str
    size: int
    mtime: float
    input_name: str
    input_shape: list
    input_dtype: str
    opset: int
    params: int
    default_layer: str | None
    output_name: str | None
    output_is_probs: bool
    preprocessing: dict
    tags: dict
    source: dict
    external_data: bool
    added_at: str
    layers: list[Layer] = field(default_factory=list)
    ctime: float | None = None
    weights: list[dict] | None = None
    default_reason: str | None = None

    @property
    def text(self) -> dict | None:
        """For a text model, what ``add`` recorded of its tokenizer (``tokenizer`` path,
        ``tokenizer_sha256``, ``max_length``, ``inputs``); ``None`` for other models.
        Kept in :attr:`source` so that the index schema stays as it was."""
        return (self.source or {}).get("text")

    @property
    def modality(self) -> str:
        """``"text"`` or ``"image"``: what kind of target the model reads."""
        return "text" if self.text is not None else "image"

    def status(self) -> str:
        """``ok``, ``missing`` or ``changed``: is the file still what was indexed?"""
        return self.verify()[0]

    def verify(self, *, full: bool = False) -> tuple[str, dict | None]:
        """``(status, fresh)``: the status, and new stat fields worth storing.

        A cheap stat decides when size, mtime and ctime of the file (and of each weight
        file) match what was stored; otherwise, or with ``full``, the content is hashed.
        ``fresh`` is not ``None`` when the content matched but the stored stat was stale
        (a ``touch``, a copy, a chmod), so that the next check is cheap again.
        """
        try:
            st = os.stat(self.path)
            weights = weight_stats(self.path, [w["file"] for w in self.weights or []])
        except OSError:
            return "missing", None
        fresh = {"size": st.st_size, "mtime": st.st_mtime, "ctime": st.st_ctime,
                 "weights": weights if self.weights is not None else None}
        if not full and self._stat_matches(fresh):
            return "ok", (fresh if self.ctime is None else None)
        from .hashing import sha256_model

        folder = Path(self.path).parent
        try:
            sha = sha256_model(self.path, [folder / w["file"] for w in self.weights or []])
        except OSError:
            return "missing", None
        if sha != self.sha256:
            return "changed", None
        return "ok", (None if self._stat_matches(fresh, strict=True) else fresh)

    def _stat_matches(self, fresh: dict, strict: bool = False) -> bool:
        def same(a, b):
            return a is not None and b is not None and abs(a - b) < _STAT_TOLERANCE

        if fresh["size"] != self.size or not same(fresh["mtime"], self.mtime):
            return False
        if self.ctime is None:  # indexed before ctime was recorded
            return not strict
        if not same(fresh["ctime"], self.ctime):
            return False
        for old, new in zip(self.weights or [], fresh["weights"] or []):
            if old["size"] != new["size"] or not same(old["mtime"], new["mtime"]) \
                    or not same(old.get("ctime"), new["ctime"]):
                return False
        return True

    @property
    def default(self) -> "Layer | None":
        """The default layer's :class:`Layer`, or ``None``."""
        return next((l for l in self.layers if l.name == self.default_layer), None)

    def choose_layers(self, layer: str | None) -> list[Layer]:
        """The layers ``--layer`` names for this model (see :func:`zooindex.layer.choose`)."""
        return choose(self.layers, self.default_layer, layer, self.name,
                      reason=self.default_reason)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["layers"] = [{**l.to_dict(), "is_default": l.name == self.default_layer}
                       for l in self.layers]
        return d


_JSON_FIELDS = ("input_shape", "preprocessing", "tags", "source")


def inspect_file(path, *, name: str | None = None, layer: str | None = None,
                 tags: dict | None = None, preprocessing=None, source: dict | None = None,
                 input_name: str | None = None, output_name: str | None = None,
                 base=None, tokenizer=None, found_tokenizer=None) -> ModelRecord:
    """Read and check one model file into a record (nothing written).

    ``layer`` makes that tensor the default layer; ``output_name`` the graph output that
    carries class scores (otherwise found by structure). The preprocessing is ``base`` (what
    a hub repository's config says), overridden by the file's ``zooindex.*`` metadata,
    overridden by ``preprocessing`` (each a :class:`~zooindex.adapt.Preprocessing`).

    A text model (an ``input_ids`` input) needs its ``tokenizer.json``: ``tokenizer`` (a
    file or its folder), else ``found_tokenizer`` (the one a hub repository holds at the
    model's commit, used only for a text model), else the one beside the model file.
    Its candidate layers are
    the hidden states (:mod:`zooindex.text.graph`), and what was learned of the
    tokenizer goes into ``source["text"]`` (see :attr:`ModelRecord.text`).
    """
    import time

    from . import graph
    from .adapt import Preprocessing, input_layout
    from .errors import AdaptError
    from .hashing import sha256_model

    path = Path(path).resolve()
    proto = graph.load(path, check_files=True)
    name = name or path.stem
    text = None
    if tokenizer is not None or (input_name is None and _is_text(proto)):
        info, layers, found_default, found_reason, text = _inspect_text(
            proto, path, name, tokenizer if tokenizer is not None else found_tokenizer,
            output_name)
    else:
        info = graph.inspect(proto, input_name=input_name, output_name=output_name)
        layers, found_default, found_reason = list(info.layers), info.default_layer, \
            info.default_reason
    default, reason = found_default, found_reason
    if layer is not None:
        default = choose(layers, default, layer, name)[0].name
        if default != found_default:
            reason = "chosen when the model was added"
    if text is not None:
        source = {**(source or {}), "text": text}
    prep = (base or Preprocessing()).merged(Preprocessing.from_metadata(info.metadata))
    if preprocessing is not None:
        prep = prep.merged(preprocessing)
    # a channel order for a grey or vector input: refused now
    if prep.channels == "bgr" and text is None:
        try:
            input_layout(info.input_shape, prep)
        except AdaptError as exc:
            raise AdaptError(f"model '{name}': {exc}", model=name) from None
    # stat before hashing: a file changed meanwhile then fails the next cheap check
    st = path.stat()
    weight_files = graph.external_files(proto)
    weights = weight_stats(path, weight_files)
    return ModelRecord(
        name=name, sha256=sha256_model(path, [path.parent / f for f in weight_files]),
        path=str(path), size=st.st_size, ctime=st.st_ctime, weights=weights,
        mtime=st.st_mtime, input_name=info.input_name, input_shape=list(info.input_shape),
        input_dtype=info.input_dtype, opset=info.opset, params=info.params,
        default_layer=default, default_reason=reason, output_name=info.output_name,
        output_is_probs=info.output_is_probs, preprocessing=prep.to_dict(),
        tags=dict(tags or {}), source=dict(source or {}), external_data=info.external_data,
        added_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), layers=layers)


def _is_text(proto) -> bool:
    from .text.graph import is_text_model

    return is_text_model(proto)


def _inspect_text(proto, path: Path, name: str, tokenizer, output_name):
    """``(info, layers, default, reason, text)`` of a text model (see :func:`inspect_file`)."""
    from . import graph
    from .errors import ModelError
    from .text import tokenizer as tokenizers
    from .text.graph import is_text_model, text_inputs, text_layers

    if not is_text_model(proto):
        raise ModelError(f"--tokenizer is for text models; model '{name}' has no input_ids "
                         "input", path=str(path), model=name)
    inputs = text_inputs(proto)
    info = graph.inspect(proto, input_name="input_ids", output_name=output_name)
    layers, default, reason = text_layers(proto, info)
    found = tokenizers.find(path, tokenizer)
    if found is None:
        raise ModelError(f"text model '{name}' has no tokenizer.json beside it "
                         f"({path.parent}); pass --tokenizer with the model's tokenizer.json",
                         path=str(path), model=name)
    shape = list(info.input_shape)
    text = tokenizers.describe(found, name, shape[1] if len(shape) > 1 else None,
                               info.metadata)
    text["inputs"] = inputs
    return info, layers, default, reason, text


def _record(row: dict, layers: list[Layer]) -> ModelRecord:
    row = dict(row)
    for key in _JSON_FIELDS:
        row[key] = json.loads(row[key]) if row[key] else ({} if key != "input_shape" else [])
    row["output_is_probs"] = bool(row["output_is_probs"])
    row["external_data"] = bool(row["external_data"])
    # a schema-1 database opened read-only has neither column
    row["weights"] = json.loads(row["weights"]) if row.get("weights") else None
    row["ctime"] = row.get("ctime")
    row["default_reason"] = row.get("default_reason")
    return ModelRecord(**row, layers=layers)


class Catalogue:
    """The indexed models of a :class:`~zooindex.store.Store`."""

    def __init__(self, store: Store):
        self.store = store

    @property
    def db(self):
        return self.store.db

    def put_model(self, record: ModelRecord, *, replace: bool = False) -> None:
        """Insert (or with ``replace`` overwrite) a model and its layers, atomically."""
        row = {k: v for k, v in record.__dict__.items() if k != "layers"}
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row[key], sort_keys=True)
        row["weights"] = None if record.weights is None else json.dumps(record.weights)
        row["output_is_probs"] = int(record.output_is_probs)
        row["external_data"] = int(record.external_data)
        with self.store.transaction():
            if replace:
                self.db.execute("DELETE FROM layers WHERE model = ?", [record.name])
                self.db.execute("DELETE FROM models WHERE name = ?", [record.name])
            self.db["models"].insert(row)
            self.db["layers"].insert_all(
                {"model": record.name, "name": l.name, "op": l.op, "kind": l.kind,
                 "dim": l.width, "shape": json.dumps(list(l.shape)),
                 "position": l.position, "is_default": int(l.name == record.default_layer)}
                for l in record.layers)

    def get_model(self, name: str) -> ModelRecord:
        rows = list(self.db.query("SELECT * FROM models WHERE name = ?", [name]))
        if not rows:
            names = self.model_names()
            hint = f"indexed: {', '.join(names[:10])}{' …' if len(names) > 10 else ''}" \
                if names else "the index is empty"
            raise NotIndexedError(f"model '{name}' is not in the index ({hint}). "
                                  "See `zooindex ls`.", model=name, path=str(self.store.path))
        return _record(rows[0], self._layers(name))

    def find_model_by_sha(self, sha256: str) -> ModelRecord | None:
        rows = list(self.db.query("SELECT * FROM models WHERE sha256 = ? ORDER BY name",
                                  [sha256]))
        return _record(rows[0], self._layers(rows[0]["name"])) if rows else None

    def has_model(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone() \
            is not None

    _LAYER_COLUMNS = "name, op, kind, dim, shape, position"

    @staticmethod
    def _layer(row) -> Layer:
        name, op, kind, dim, shape, position = row
        return Layer(name=name, op=op, kind=kind, shape=tuple(json.loads(shape) if shape else ()),
                     width=dim, position=position)

    def _layers(self, name: str) -> list[Layer]:
        return [self._layer(row) for row in self.db.execute(
            f"SELECT {self._LAYER_COLUMNS} FROM layers WHERE model = ? ORDER BY position",
            [name])]

    def models(self) -> list[ModelRecord]:
        # one read transaction, so that the layers match the models of the same moment
        with self.store.snapshot():
            layers: dict[str, list[Layer]] = {}
            for row in self.db.execute(
                    f"SELECT model, {self._LAYER_COLUMNS} FROM layers ORDER BY model, position"):
                layers.setdefault(row[0], []).append(self._layer(row[1:]))
            return [_record(row, layers.get(row["name"], []))
                    for row in self.db.query("SELECT * FROM models ORDER BY name")]

    def model_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM models ORDER BY name")]

    def delete_model(self, name: str) -> ModelRecord:
        """Delete a model and its layers (inside the caller's transaction); its record."""
        record = self.get_model(name)  # read under the lock: another rm may have won
        self.db.execute("DELETE FROM layers WHERE model = ?", [name])
        self.db.execute("DELETE FROM models WHERE name = ?", [name])
        return record

    def content_of(self, name: str) -> str | None:
        """The content hash indexed under ``name``, or ``None``."""
        row = self.db.execute("SELECT sha256 FROM models WHERE name = ?", [name]).fetchone()
        return None if row is None else row[0]

    def update_file_stat(self, name: str, size: int, mtime: float,
                         ctime: float | None = None, weights: list | None = None) -> None:
        with self.store.transaction():
            self.db.execute(
                "UPDATE models SET size = ?, mtime = ?, ctime = COALESCE(?, ctime), "
                "weights = COALESCE(?, weights) WHERE name = ?",
                [size, mtime, ctime, None if weights is None else json.dumps(weights), name])

    def model_status(self, record: ModelRecord) -> str:
        """:meth:`ModelRecord.status`, storing the fresh stat when the content still matches.

        A model whose file was touched, copied back or chmod-ed hashes once, not at
        every search. Best effort: a read-only or busy index just hashes again next time.
        """
        status, fresh = record.verify()
        if fresh is not None and not self.store.read_only and self.store.schema_version >= 2:
            with contextlib.suppress(StoreError):
                self.update_file_stat(record.name, fresh["size"], fresh["mtime"],
                                      fresh["ctime"], fresh["weights"])
        return status
