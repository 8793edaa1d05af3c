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
        allow_pickle: bool = False, preprocessing=None, tokenizer=None,
        **preprocessing_fields) -> list[Added]:
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
    ``tokenizer``: a text model's ``tokenizer.json`` (or its folder), when it is not
    beside the model file (see :mod:`zooindex.text`).

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
    refs, items = _sources(paths, manifest, cache_dir, source)
    user = _user_preprocessing(preprocessing, preprocessing_fields)
    inspect = functools.partial(inspect_file, layer=layer, tags=tags, preprocessing=user,
                                input_name=input, output_name=output, tokenizer=tokenizer)
    records, failed = _inspect_all(refs, items, inspect, name=name, cache_dir=cache_dir,
                                   executor=executor, keep_going=keep_going,
                                   allow_pickle=allow_pickle)
    if not records:
        return failed
    done = _store(records, index, tags=tags, replace=replace, keep_going=keep_going)
    # the models stored first, then those that failed: to inspect, then to store
    return ([a for a in done if a.status != "failed"] + failed
            + [a for a in done if a.status == "failed"])


def _sources(paths, manifest, cache_dir, source) -> tuple[list, list]:
    """``(hf:// references, local and manifest items)`` to add; refuses an empty list."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    refs = [p for p in paths if _is_hub_ref(p) or _is_checkpoint(p)]
    rest = [p for p in paths if p not in refs]
    # a folder of models may hold checkpoint folders beside (or instead of) ONNX files
    below = {str(p): _checkpoints_below(p) for p in rest}
    refs += [c for found in below.values() for c in found]
    items = _gather([p for p in rest if not below[str(p)] or _holds_onnx(p)], manifest,
                    cache_dir, source)
    if not items and not refs:
        raise ZooIndexError("nothing to add: give model files, folders, hf:// references "
                            "or --manifest")
    return refs, items


def _inspect_all(refs: list, items: list, inspect, *, name, cache_dir, executor,
                 keep_going: bool, allow_pickle: bool = False
                 ) -> tuple[list[ModelRecord], list[Added]]:
    """Fetch and inspect every reference and file: ``(records, failed)``. Nothing is
    written; without ``keep_going`` the first failure is raised."""
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
        for path, got in _hub_outcomes(fetch, refs, executor, bar):
            if isinstance(got, ZooIndexError):
                fail(path, got)
            else:
                records.append(got)
        found = len(records) + len(failed) + len(items)
        if name is not None and found > 1:
            raise ZooIndexError(f"--name gives one name but {found} model files were found; "
                                "add them one at a time or drop --name")
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
    return records, failed


def _hub_outcomes(fetch, refs: list, executor, bar):
    """``(path, ModelRecord or the ZooIndexError it met)`` for every file of every
    ``hf://`` reference (the reference itself as the path when it failed as a whole)."""
    for ref, got in _each_ref(fetch, refs, executor):
        bar.update(1)
        if isinstance(got, ZooIndexError):
            yield ref, got
            continue
        for path, record in got:
            if not isinstance(record, ZooIndexError) and not os.path.exists(record.path):
                record = ModelError(
                    f"{ref} was fetched to {record.path} on another machine, which this "
                    "one does not see; use a downloads folder every node shares "
                    "(--cache-dir or $ZOOINDEX_CACHE)", path=record.path)
            yield path, record


def _store(records: list[ModelRecord], index, *, tags, replace: bool,
           keep_going: bool) -> list[Added]:
    """Write the records into the index in one transaction: what happened to each."""
    with opened(index) as idx, idx.transaction():
        return [_store_one(idx.catalogue, rec, tags=tags, replace=replace,
                           keep_going=keep_going) for rec in records]


def _store_one(catalogue, rec: ModelRecord, *, tags, replace: bool,
               keep_going: bool) -> Added:
    """Add, replace or keep one record, or refuse it (``failed`` with ``keep_going``)."""
    def added(status: str, reason: str | None = None) -> Added:
        return Added(rec.name, status, rec.path, rec.sha256, rec.default_layer,
                     reason=reason)

    if not catalogue.has_model(rec.name):
        catalogue.put_model(rec)
        return added("added")
    old = catalogue.get_model(rec.name)
    if _same_model(old, rec, tags):
        if old.path != rec.path or old.mtime != rec.mtime or old.text != rec.text:
            catalogue.put_model(_keep(old, rec), replace=True)
        return added("unchanged")
    if not replace:
        conflict = (f"a model named '{rec.name}' is already indexed with other "
                    "content or settings; pass --replace to overwrite it, or "
                    "--name to add this one under another name")
        if not keep_going:
            raise ZooIndexError(conflict)
        return added("failed", conflict)
    catalogue.put_model(rec, replace=True)
    return added("replaced")


def _same_model(old: ModelRecord, new: ModelRecord, tags) -> bool:
    """Whether adding ``new`` over ``old`` changes nothing worth a ``--replace``."""
    old_tok = (old.text or {}).get("tokenizer_sha256")
    new_tok = (new.text or {}).get("tokenizer_sha256")
    return (old.sha256 == new.sha256 and old.default_layer == new.default_layer
            and old_tok == new_tok
            and (old.text or {}).get("max_length") == (new.text or {}).get("max_length")
            and old.output_name == new.output_name
            # as values: a record stored before a field existed lacks its key
            and Preprocessing.from_dict(old.preprocessing)
            == Preprocessing.from_dict(new.preprocessing)
            and (not tags or old.tags == new.tags))


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


def _checkpoints_below(path) -> list[str]:
    """The checkpoint folders (:func:`zooindex.checkpoints.is_checkpoint_folder`) under
    a plain folder, sorted; ``[]`` for anything else."""
    from .checkpoints import CONFIG_FILE, is_checkpoint_folder

    if _is_hub_ref(path) or not Path(path).is_dir():
        return []
    return sorted(str(c.parent) for c in Path(path).rglob(CONFIG_FILE)
                  if is_checkpoint_folder(c.parent))


def _holds_onnx(path) -> bool:
    return any(q.is_file() for q in Path(path).rglob("*.onnx"))


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
            found = {"found_tokenizer": f.tokenizer} if getattr(f, "tokenizer", None) else {}
            out.append((str(f.path), inspect(f.path, name=name or f.name, source=src,
                                             base=f.preprocessing, **found)))
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
    text = new.text  # where the tokenizer is now, for a text model
    new.added_at = old.added_at
    new.tags = old.tags
    new.source = old.source or new.source
    if text is not None:
        new.source = {**(new.source or {}), "text": text}
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
    """Everything the index holds about one model, as ``zooindex show --json`` prints it.

    The stored record (``preprocessing`` as it was given, ``None`` where a default
    applies), its ``status``, and what will be applied to its inputs:
    ``preprocessing_resolved`` (every value, defaults and sizes worked out; see
    :meth:`~zooindex.adapt.Preprocessing.resolved`) and ``preprocessing_applied`` (the same
    in one line); ``targets``: each target the index holds this model's scores for, with
    its rank per scorer. :func:`summary` turns the dict into readable lines.
    """
    from .history import model_scores

    with opened(index, create=False) as idx:
        rec = idx.catalogue.get_model(model)
        d = rec.to_dict()
        d["status"] = rec.status()
        prep = Preprocessing.from_dict(rec.preprocessing)
        d["preprocessing_resolved"] = prep.resolved(rec.input_shape, rec.input_dtype)
        d["preprocessing_applied"] = prep.describe(rec.input_shape)
        d["targets"] = _targets(model_scores(model, index=idx))
        return d


def _targets(scores: list[dict]) -> list[dict]:
    """``model_scores`` rows grouped by target, newest first."""
    out: dict[str, dict] = {}
    for row in scores:
        target = out.setdefault(row["target"], {
            "key": row["target"], "source": row["source"], "samples": row["n"],
            "classes": row["classes"], "scores": []})
        target["scores"].append({k: row[k] for k in ("label", "estimator", "layer", "default",
                                                     "score", "rank", "of")})
    return list(out.values())


def summary(shown: dict) -> list[tuple[str, str]]:
    """``(label, text)`` lines that say what a user needs to know of a model, from the
    dict :func:`show` returns: for ``zooindex show`` and the web page."""
    lines = [("model", f"{shown['name']} ({shown['status']})"),
             ("file", shown["path"] + (" (+ external weights)" if shown["external_data"]
                                       else "")),
             ("sha256", shown["sha256"]),
             ("size", f"{shown['params']:,} parameters, {shown['size'] / 1e6:.1f} MB, "
                      f"opset {shown['opset']}")]
    res = shown.get("preprocessing_resolved") or {}
    dims = "x".join("?" if d is None else str(d) for d in shown["input_shape"])
    text = (shown.get("source") or {}).get("text")
    if text is not None:  # a text model: its tokenizer instead of image preprocessing
        lines.append(("input", f"{', '.join(text.get('inputs') or [])}: "
                               f"{shown['input_dtype']} {dims} (token ids)"))
        lines.append(("tokenizer", f"{text.get('tokenizer')} (sha256 "
                                   f"{str(text.get('tokenizer_sha256'))[:12]}...), at most "
                                   f"{text.get('max_length')} tokens "
                                   f"({text.get('max_length_from')})"))
    else:
        lines.append(("input", f"{shown['input_name']}: {shown['input_dtype']} {dims}"
                               + (f" ({_layout_text(res)})" if res.get("layout") else "")))
        lines.append(("preprocessing", _preprocessing_text(res)))
    if shown["default_layer"]:
        width = next((l["width"] for l in shown["layers"] if l["is_default"]), None)
        wide = f", {width} wide" if width else ""
        why = f": {shown['default_reason']}" if shown.get("default_reason") else ""
        lines.append(("default layer", f"{shown['default_layer']}{wide}{why}"))
    else:
        why = f" ({shown['default_reason']})" if shown.get("default_reason") else ""
        lines.append(("default layer", f"none{why}; search it with --layer"))
    if shown["output_name"]:
        kind = "softmax output" if shown["output_is_probs"] else "logits; softmax applied"
        lines.append(("class scores", f"{shown['output_name']} ({kind})"))
    else:
        lines.append(("class scores", "none found (LEEP and NCE cannot score it; "
                                      "add --output NAME)"))
    if shown["tags"]:
        lines.append(("tags", ", ".join(f"{k}={v}" for k, v in shown["tags"].items())))
    lines.append(("source", _source_text({k: v for k, v in shown["source"].items()
                                          if k != "text"})))
    lines.append(("added", shown["added_at"]))
    targets = shown.get("targets") or []
    if not targets:
        lines.append(("cached targets", "none yet"))
    for t in targets:
        lines.append(("cached target", f"{t['key'][:12]} {t['source']} ({t['samples']} "
                                       f"samples, {t['classes']} classes): "
                                       f"{_ranks_text(t['scores'])}"))
    return lines


def _ranks_text(scores: list[dict]) -> str:
    """``rank logme 2/6, knn 1/6``: the model's rank per scorer at its default layer
    (scorers named in full where one was scored with several options)."""
    default = [s for s in scores if s["default"]]
    names = [s["estimator"] for s in default]
    ranks = ", ".join(f"{s['estimator'] if names.count(s['estimator']) == 1 else s['label']} "
                      f"{s['rank']}/{s['of']}" for s in default)
    text = f"rank {ranks}" if ranks else "no scores at the default layer"
    others = len(scores) - len(default)
    return text + (f"; {others} score(s) at other layers" if others else "")


def _layout_text(res: dict) -> str:
    if res["layout"] == "vector":
        return "vector"
    channels = {"rgb": "RGB", "bgr": "BGR", "grey": "grey", None: "?"}[res["channels"]]
    return f"{res['layout']}, {channels}"


def _preprocessing_text(res: dict) -> str:
    """The resolved preprocessing in the order it is applied."""
    if not res.get("layout"):
        return "unknown: the model input is not one zooindex can feed"
    steps = []
    if res["layout"] != "vector":
        how = res["interpolation"]
        if how != "nearest":
            how += ", anti-aliased when shrinking" if res["antialias"] else ", not anti-aliased"
        size, resize = res["input_size"], res["resize_size"]
        if size is None:
            steps.append("no resize (the model takes the target's size)" if resize is None
                         else f"resize to {resize[0]}x{resize[1]} ({how}), centre crop")
        elif res["crop"] == "none":
            steps.append(f"resize to {size[0]}x{size[1]} ({how})")
        else:
            side = (f"the shorter side to {resize[0]}" if res["crop"] == "center"
                    and resize[0] == resize[1] else f"to {resize[0]}x{resize[1]}")
            steps.append(f"resize {side} ({how}), centre crop {size[0]}x{size[1]}")
    steps.append("pixels to [0, 1]" + (f", scale {res['scale']:g}" if res["scale"] != 1
                                       else ""))
    if res["channels"] == "bgr":
        steps.append("channels reversed to BGR")
    steps.append("mean " + ",".join(f"{v:.8g}" for v in res["mean"]) + ", std "
                 + ",".join(f"{v:.8g}" for v in res["std"]))
    if res["channels"] == "grey":
        steps.append("channels grey (RGB targets by BT.601 luminance)")
    elif res["channels"] is not None:
        steps.append(f"channels {res['channels'].upper()}")
    return ", ".join(steps)


def _source_text(source: dict) -> str:
    hub = source.get("hub", "local")
    details = [f"{k} {v if not isinstance(v, (list, tuple)) else ','.join(map(str, v))}"
               for k, v in sorted(source.items()) if k != "hub" and v not in (None, "", [])]
    return hub + (f": {'; '.join(details)}" if details else "")


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


__all__ = ["Added", "Filter", "add", "layers", "ls", "show", "summary", "rm", "hub_search", "cache_info",
           "cache_clear", "inspect_file"]
