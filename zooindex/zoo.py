"""Managing the indexed zoo: add, layers, ls, show, rm, and the cache's info and clear.

Adding reads and checks every file first and writes nothing until all are valid; then
all of them go into the index in one transaction.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from .adapt import Preprocessing
from .catalogue import ModelRecord, inspect_file
from .errors import ModelError, ZooIndexError
from .index import opened
from .layer import Layer


@dataclass
class Added:
    """What ``add`` did with one file: ``added``, ``replaced``, ``unchanged``, or (with
    ``keep_going``) ``failed`` with its ``reason``."""

    name: str | None
    status: str
    path: str
    sha256: str | None
    default_layer: str | None
    reason: str | None = None

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


def add(paths=(), *, index=None, name: str | None = None, layer: str | None = None,
        tags: dict | None = None, replace: bool = False, input: str | None = None,
        output: str | None = None, manifest: str | None = None, cache_dir=None,
        source: dict | None = None, keep_going: bool = False, executor=None,
        allow_pickle: bool = False, preprocessing=None, **preprocessing_fields) -> list[Added]:
    """Index ONNX models: files, folders (recursive), ``hf://`` references, a manifest.

    A folder or hub repo that holds a transformers or timm checkpoint instead of ONNX
    files is exported first (:mod:`zooindex.checkpoints`); pickled weights only with
    ``allow_pickle``.

    The same content under the same name is a no-op; the same name with other content
    is refused unless ``replace``. Every file is fetched and checked before anything is
    written; then all of them go into the index in one transaction, or, when one fails,
    none of them. With ``keep_going``, the files (and ``hf://`` references) that fail are
    reported as ``failed`` with their reason and the others are added. ``input``: for
    models with several inputs, the one that takes the data; ``output``: the graph output
    that carries class scores, when the structure does not tell (see ``zooindex show``).

    How each model wants its inputs comes, weakest first, from the hub repository's
    config file (``preprocessor_config.json``, timm's ``config.json``), the ``zooindex.*``
    metadata in the ONNX file, and what is given here: a
    :class:`~zooindex.adapt.Preprocessing` as ``preprocessing`` and/or its fields as
    keywords (``preset="imagenet"``, ``mean=...``, ``interpolation="bicubic"``, ...).

    ``executor``: where each ``hf://`` reference is downloaded and its files inspected:
    here, one after the other (default), or ``"ray"`` (or a
    :class:`zooindex.distributed.Ray`): one Ray task per reference, in parallel. The
    files then land in the downloads folder (``cache_dir``, ``$ZOOINDEX_CACHE``) as seen
    from the node that fetched them, so on a cluster it must be a folder every node sees
    at the same path.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    refs = [p for p in paths if _is_hub_ref(p) or _is_checkpoint(p)]
    items = _gather([p for p in paths if p not in refs], manifest, cache_dir, source)
    if not items and not refs:
        raise ZooIndexError("nothing to add: give model files, folders, hf:// references "
                            "or --manifest")
    user = _user_preprocessing(preprocessing, preprocessing_fields)
    inspect = functools.partial(inspect_file, layer=layer, tags=tags, preprocessing=user,
                                input_name=input, output_name=output)
    from tqdm.auto import tqdm

    # a bar on stderr when it is a terminal and there is more than one file to read
    total = len(refs) + len(items)
    bar = tqdm(total=total, unit="model", leave=False, disable=None if total > 1 else True)
    records, failed = [], []

    def fail(path, exc: ZooIndexError) -> None:
        if not keep_going:
            raise exc
        failed.append(Added(None, "failed", str(path), None, None, reason=str(exc)))

    with bar:
        fetch = functools.partial(_hub_records, cache_dir=_downloads(cache_dir), name=name,
                                  inspect=inspect, allow_pickle=allow_pickle)
        for ref, got in _each_ref(fetch, refs, executor):
            bar.update(1)
            if isinstance(got, ZooIndexError):
                fail(ref, got)
                continue
            for path, record in got:
                if isinstance(record, ZooIndexError):
                    fail(path, record)
                elif not os.path.exists(record.path):
                    fail(path, ModelError(
                        f"{ref} was fetched to {record.path} on another machine, which this "
                        "one does not see; use a downloads folder every node shares "
                        "(--cache-dir or $ZOOINDEX_CACHE)", path=record.path))
                else:
                    records.append(record)
        if name is not None and len(records) + len(failed) + len(items) > 1:
            raise ZooIndexError(f"--name gives one name but "
                                f"{len(records) + len(failed) + len(items)} model files were "
                                "found; add them one at a time or drop --name")
        for f, default_name, src in items:
            bar.update(1)
            try:
                records.append(inspect(f, name=name or default_name, source=src))
            except ZooIndexError as exc:
                fail(f, exc)
    names = [r.name for r in records]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ZooIndexError(f"several files would get the name '{dupes[0]}'; "
                            "add them separately with --name")
    results = []
    if not records:
        return failed
    with opened(index) as idx, idx.transaction():
        catalogue = idx.catalogue
        for rec in records:
            if catalogue.has_model(rec.name):
                old = catalogue.get_model(rec.name)
                same = (old.sha256 == rec.sha256 and old.default_layer == rec.default_layer
                        and old.output_name == rec.output_name
                        and old.preprocessing == rec.preprocessing
                        and (not tags or old.tags == rec.tags))
                if same:
                    if old.path != rec.path or old.mtime != rec.mtime:
                        catalogue.put_model(_keep(old, rec), replace=True)
                    results.append(Added(rec.name, "unchanged", rec.path, rec.sha256,
                                         rec.default_layer))
                    continue
                if not replace:
                    conflict = (f"a model named '{rec.name}' is already indexed with other "
                                "content or settings; pass --replace to overwrite it, or "
                                "--name to add this one under another name")
                    if not keep_going:
                        raise ZooIndexError(conflict)
                    failed.append(Added(rec.name, "failed", rec.path, rec.sha256,
                                        rec.default_layer, reason=conflict))
                    continue
                catalogue.put_model(rec, replace=True)
                results.append(Added(rec.name, "replaced", rec.path, rec.sha256,
                                     rec.default_layer))
            else:
                catalogue.put_model(rec)
                results.append(Added(rec.name, "added", rec.path, rec.sha256,
                                     rec.default_layer))
    return results + failed


# what a hub download on another machine must see as this one does (never a token: each
# machine uses its own login)
_HUB_ENV = ("HF_ENDPOINT", "HF_HUB_OFFLINE")


def _is_hub_ref(path) -> bool:
    return isinstance(path, str) and path.startswith("hf://")


def _downloads(cache_dir) -> Path:
    """The downloads folder as an absolute path, the same for every machine it is sent to."""
    from .download import default_cache_dir

    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser().resolve()


def _is_checkpoint(path) -> bool:
    from .checkpoints import is_checkpoint_folder

    return not _is_hub_ref(path) and is_checkpoint_folder(path)


def _hub_records(ref: str, *, cache_dir, name: str | None, inspect,
                 allow_pickle: bool = False) -> list:
    """Fetch one ``hf://`` reference and inspect its files: ``(path, ModelRecord or the
    ZooIndexError that file raised)`` for each, with the preprocessing the repository's
    config file describes. It touches no index, so it can run on any machine."""
    from . import checkpoints, hub

    out = []
    fetch = hub.fetch if _is_hub_ref(ref) else checkpoints.fetch_folder
    for f in fetch(ref, cache_dir=cache_dir, allow_pickle=allow_pickle):
        src = dict(f.source)
        if f.preprocessing_from:
            src["preprocessing_from"] = f.preprocessing_from
        if f.preprocessing_note:
            src["preprocessing_note"] = f.preprocessing_note
        try:
            out.append((str(f.path), inspect(f.path, name=name or f.name, source=src,
                                             base=f.preprocessing)))
        except ZooIndexError as exc:
            out.append((str(f.path), exc))
    return out


def _each_ref(fetch, refs: list, executor):
    """``(ref, fetch(ref) or the ZooIndexError it raised)`` for each reference, in order:
    here, or through an executor that maps work out (:meth:`zooindex.distributed.Ray.map`)."""
    if refs and executor is not None:
        from . import executor as executors

        mapper = executors.get(executor)
        if hasattr(mapper, "map"):
            env = {k: os.environ[k] for k in _HUB_ENV if k in os.environ}
            yield from mapper.map(fetch, refs, env=env)
            return
    for ref in refs:
        try:
            yield ref, fetch(ref)
        except ZooIndexError as exc:
            yield ref, exc


def _user_preprocessing(preprocessing, fields: dict) -> Preprocessing | None:
    """What the caller said about the inputs: a Preprocessing, a dict, and/or fields."""
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    given = {k: v for k, v in fields.items() if v is not None}
    if not given:
        return preprocessing
    try:
        extra = Preprocessing(**given)
    except TypeError as exc:
        raise ZooIndexError(f"add: {exc}") from None
    return extra if preprocessing is None else preprocessing.merged(extra)


def _gather(paths: list, manifest, cache_dir, source) -> list[tuple[Path, str | None, dict]]:
    """(file, default name, source metadata) for every local file and manifest entry
    to add, the manifest's fetched."""
    items: list[tuple[Path, str | None, dict]] = []
    items.extend((f, None, dict(source or {"hub": "local"})) for f in model_files(paths))
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


def layers(model: str, *, index=None) -> list[Layer]:
    """Candidate layers of an indexed model, in depth order (see ``show`` for the default)."""
    with opened(index, create=False) as idx:
        return idx.catalogue.get_model(model).layers


def ls(*, index=None, filter: Filter | None = None) -> list[dict]:
    """Every indexed model (or those ``filter`` keeps) with its status: ok, missing, changed."""
    with opened(index, create=False) as idx:
        out = []
        for rec in idx.catalogue.models():
            if filter is not None and not filter(rec):
                continue
            default = rec.default
            out.append({"name": rec.name, "status": idx.catalogue.model_status(rec),
                        "params": rec.params, "input": rec.input_shape,
                        "layer": rec.default_layer,
                        "width": default.width if default is not None else None,
                        "tags": rec.tags, "source": rec.source.get("hub", "local"),
                        "path": rec.path, "sha256": rec.sha256})
        return out


def show(model: str, *, index=None) -> dict:
    """Everything the index holds about one model."""
    with opened(index, create=False) as idx:
        rec = idx.catalogue.get_model(model)
        d = rec.to_dict()
        d["status"] = rec.status()
        d["preprocessing_applied"] = Preprocessing.from_dict(rec.preprocessing).describe(
            rec.input_shape)
        return d


def rm(model: str, *, index=None) -> dict:
    """Remove a model from the index (its file is left alone) and its cached numbers."""
    with opened(index, create=False) as idx:
        return idx.remove_model(model).to_dict()


def hub_search(query: str = "", *, library: str = "onnx", task: str | None = None,
               limit: int = 20, allow_pickle: bool = False) -> list[dict]:
    """Models on the Hugging Face hub that carry ONNX files, or (``library``
    ``transformers`` or ``timm``) checkpoints that ``add`` exports (repo, downloads,
    likes, licence, pipeline, the ONNX files, ``export``); add them with
    ``add("hf://REPO")``."""
    from . import hub

    return hub.search(query, library=library, task=task, limit=limit,
                      allow_pickle=allow_pickle)


def cache_info(*, index=None) -> dict:
    """The cache's size: activation files (count, bytes, folder, limit), scores, targets."""
    with opened(index, create=False) as idx:
        return idx.cache.stats()


def cache_clear(*, index=None) -> dict:
    """Drop every cached activation and score; models stay indexed. What was dropped."""
    with opened(index, create=False) as idx:
        return idx.cache.clear()


__all__ = ["Added", "Filter", "add", "layers", "ls", "show", "rm", "hub_search", "cache_info",
           "cache_clear", "inspect_file"]
