"""Managing the indexed zoo: add, layers, ls, show, rm.

Adding reads and checks every file first and writes nothing until all are valid; then
all of them go into the index in one transaction.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import graph
from .adapt import Preprocessing
from .errors import LayerError, ModelError, ZooIndexError
from .hashing import sha256_model
from .index import ModelRecord, opened, weight_stats


@dataclass
class Added:
    """What ``add`` did with one file: ``added``, ``replaced`` or ``unchanged``."""

    name: str
    status: str
    path: str
    sha256: str
    default_layer: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_files(paths) -> list[Path]:
    """``.onnx`` files named directly, and those found recursively under folders."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.onnx") if q.is_file())
            if not found:
                raise ModelError(f"no .onnx files under folder '{p}'", path=str(p))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise ModelError(f"model file '{p}' not found", path=str(p))
    return files


def inspect_file(path: Path, *, name: str | None = None, layer: str | None = None,
                 tags: dict | None = None, preprocessing: Preprocessing | None = None,
                 source: dict | None = None, input_name: str | None = None) -> ModelRecord:
    """Read and check one model file into a record (nothing written)."""
    path = Path(path).resolve()
    proto = graph.load(path, check_files=True)
    info = graph.inspect(proto, input_name=input_name) if input_name else graph.inspect(proto)
    name = name or path.stem
    default = info.default_layer
    if layer is not None:
        default = graph.resolve_layer(info, layer, name).name
    prep = Preprocessing.from_metadata(info.metadata)
    if preprocessing is not None:
        prep = prep.merged(preprocessing)
    # stat before hashing: a file changed meanwhile then fails the next cheap check
    st = path.stat()
    weight_files = graph.external_files(proto)
    weights = weight_stats(path, weight_files)
    return ModelRecord(
        name=name, sha256=sha256_model(path, [path.parent / f for f in weight_files]),
        path=str(path), size=st.st_size, ctime=st.st_ctime, weights=weights,
        mtime=st.st_mtime, input_name=info.input_name, input_shape=list(info.input_shape),
        input_dtype=info.input_dtype, opset=info.opset, params=info.params,
        default_layer=default, output_name=info.output_name,
        output_is_probs=info.output_is_probs, preprocessing=prep.to_dict(),
        tags=dict(tags or {}), source=dict(source or {}), external_data=info.external_data,
        added_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        layers=[{"name": l.name, "op": l.op, "kind": l.kind, "dim": l.dim,
                 "shape": list(l.shape), "position": l.position,
                 "is_default": l.name == default} for l in info.layers])


def add(paths=(), *, index=None, name: str | None = None, layer: str | None = None,
        tags: dict | None = None, replace: bool = False, scale: float | None = None,
        mean=None, std=None, layout: str | None = None, input: str | None = None,
        manifest: str | None = None, cache_dir=None,
        source: dict | None = None) -> list[Added]:
    """Index ONNX models: files, folders (recursive), ``hf://`` references, a manifest.

    The same content under the same name is a no-op; the same name with other content
    is refused unless ``replace``. Every file is fetched and checked before anything is
    written; then all of them go into the index in one transaction.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items = _gather(list(paths), manifest, cache_dir, source)
    if not items:
        raise ZooIndexError("nothing to add: give model files, folders, hf:// references "
                            "or --manifest")
    if name is not None and len(items) > 1:
        raise ZooIndexError(f"--name gives one name but {len(items)} model files were "
                            "found; add them one at a time or drop --name")
    prep = Preprocessing(layout=layout, scale=scale,
                         mean=tuple(mean) if mean else None, std=tuple(std) if std else None)
    from tqdm.auto import tqdm

    # a bar on stderr when it is a terminal and there is more than one file to read
    records = [inspect_file(f, name=name or default_name, layer=layer, tags=tags,
                            preprocessing=prep, source=src, input_name=input)
               for f, default_name, src in tqdm(items, unit="model", leave=False,
                                                disable=None if len(items) > 1 else True)]
    names = [r.name for r in records]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ZooIndexError(f"several files would get the name '{dupes[0]}'; "
                            "add them separately with --name")
    results = []
    with opened(index) as idx, idx.transaction():
        for rec in records:
            if idx.has_model(rec.name):
                old = idx.get_model(rec.name)
                same = (old.sha256 == rec.sha256 and old.default_layer == rec.default_layer
                        and old.preprocessing == rec.preprocessing
                        and (not tags or old.tags == rec.tags))
                if same:
                    if old.path != rec.path or old.mtime != rec.mtime:
                        idx.put_model(_keep(old, rec), replace=True)
                    results.append(Added(rec.name, "unchanged", rec.path, rec.sha256,
                                         rec.default_layer))
                    continue
                if not replace:
                    raise ZooIndexError(
                        f"a model named '{rec.name}' is already indexed with other "
                        "content or settings; pass --replace to overwrite it, or --name "
                        "to add this one under another name")
                idx.put_model(rec, replace=True)
                results.append(Added(rec.name, "replaced", rec.path, rec.sha256,
                                     rec.default_layer))
            else:
                idx.put_model(rec)
                results.append(Added(rec.name, "added", rec.path, rec.sha256,
                                     rec.default_layer))
    return results


def _gather(paths: list, manifest, cache_dir, source) -> list[tuple[Path, str | None, dict]]:
    """(file, default name, source metadata) for every model to add, fetched if remote."""
    items: list[tuple[Path, str | None, dict]] = []
    local = []
    for p in paths:
        if isinstance(p, str) and p.startswith("hf://"):
            from . import hub

            items.extend((f.path, f.name, f.source) for f in hub.fetch(p, cache_dir=cache_dir))
        else:
            local.append(p)
    items.extend((f, None, dict(source or {"hub": "local"})) for f in model_files(local))
    if manifest is not None:
        from .manifest import fetch_entry, read_manifest

        entries, base = read_manifest(str(manifest))
        items.extend((f.path, f.name, f.source) for f in
                     (fetch_entry(e, base, cache_dir=cache_dir) for e in entries))
    return items


@dataclass(frozen=True)
class Filter:
    """Which indexed models to consider: by tag, source hub, size and name pattern."""

    tags: dict | None = None        # every KEY=VALUE must match (source tags count too)
    source: str | None = None       # "hf", "manifest" or "local"
    max_params: int | None = None
    name: str | None = None         # glob, e.g. "fashion-*"
    names: tuple | None = None      # exact names

    def __call__(self, rec: ModelRecord) -> bool:
        if self.names is not None and rec.name not in self.names:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(rec.name, self.name):
            return False
        if self.max_params is not None and rec.params > self.max_params:
            return False
        if self.source is not None and rec.source.get("hub", "local") != self.source:
            return False
        hub_tags = {str(t) for t in rec.source.get("tags") or []}
        for key, value in (self.tags or {}).items():
            # ``tag=VALUE`` also matches the plain tags a hub lists for the model
            if str(rec.tags.get(key)) != value and not (key == "tag" and value in hub_tags):
                return False
        return True


def _keep(old: ModelRecord, new: ModelRecord) -> ModelRecord:
    """Same content found at a new path: keep the record, update where the file is."""
    new.added_at = old.added_at
    new.tags = old.tags
    new.source = old.source or new.source
    return new


def layers(model: str, *, index=None) -> list[dict]:
    """Candidate layers of an indexed model (``is_default`` marks the default)."""
    with opened(index, create=False) as idx:
        return idx.get_model(model).layers


def ls(*, index=None, filter: Filter | None = None) -> list[dict]:
    """Every indexed model (or those ``filter`` keeps) with its status: ok, missing, changed."""
    with opened(index) as idx:
        out = []
        for rec in idx.models():
            if filter is not None and not filter(rec):
                continue
            dim = next((l["dim"] for l in rec.layers if l["name"] == rec.default_layer), None)
            out.append({"name": rec.name, "status": idx.model_status(rec), "params": rec.params,
                        "input": rec.input_shape, "layer": rec.default_layer, "dim": dim,
                        "tags": rec.tags, "source": rec.source.get("hub", "local"),
                        "path": rec.path, "sha256": rec.sha256})
        return out


def show(model: str, *, index=None) -> dict:
    """Everything the index holds about one model."""
    with opened(index, create=False) as idx:
        rec = idx.get_model(model)
        d = rec.to_dict()
        d["status"] = rec.status()
        return d


def rm(model: str, *, index=None) -> dict:
    """Remove a model from the index (its file is left alone) and its cached numbers."""
    with opened(index, create=False) as idx:
        return idx.remove_model(model).to_dict()


def cache_clear(*, index=None) -> dict:
    """Drop every cached activation and score; models stay indexed."""
    with opened(index, create=False) as idx:
        return idx.clear_cache()


__all__ = ["Added", "add", "layers", "ls", "show", "rm", "cache_clear", "LayerError"]
