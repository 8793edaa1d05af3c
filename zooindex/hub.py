"""ONNX models from the Hugging Face hub: ``hf://OWNER/REPO[@REVISION][/PATH.onnx]``.

Everything goes through the ``huggingface_hub`` client (an optional extra, imported only
when a hub function runs), so its endpoint, proxy and token handling apply unchanged;
zooindex never reads, prints or stores a token itself.

A fetch is pinned: the revision asked for is resolved once to a commit, and every file is
downloaded at that commit into ``<cache>/hf/<OWNER>--<REPO>/<commit>/``, a folder named by
the immutable commit, so a second fetch of the same commit finds its files and downloads
nothing. The files there are plain files (not the client's symlinked blob cache) because
ONNX refuses external-data files reached through symbolic links. Each file is checked
against the size and the LFS sha256 the hub lists for it; the external-data files an
ONNX graph names are fetched beside it, and only when they stay inside its folder.

The preprocessing a repo describes is fetched too, at the same commit into the same
folder: for each ONNX file, the nearest ``preprocessor_config.json`` (Hugging Face) or
timm ``config.json``, looking in the file's folder and then up to the repo's root, each
file at most :data:`PREPROCESSING_MAX_BYTES`. :func:`zooindex.hubconfig` reads it; the
result, and the file it came from, travel on the :class:`HubFetched` record. So does
the nearest ``tokenizer.json`` (with the ``tokenizer_config.json`` and ``config.json``
beside it), fetched at the same commit, which a text model reads (:mod:`zooindex.text`).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .download import DEFAULT_MAX_BYTES, Fetched, HubFetched, default_cache_dir
from .errors import AdaptError, DependencyError, DownloadError, ModelError, require
from .hashing import sha256_file

if TYPE_CHECKING:  # the readers import numpy; `zooindex hub search` does not need it
    from .adapt import Preprocessing

__all__ = ["HubRef", "Fetched", "HubFetched", "parse_ref", "is_ref", "fetch", "search"]

# preprocessing configs are a few kilobytes; a transformers config.json with 21k label
# names is about 1 MB
PREPROCESSING_MAX_BYTES = 4 * 1024**2
# the config files that describe a model's preprocessing, preferred first within a folder
# (names as zooindex.hubconfig.HF_PREPROCESSOR_FILE and TIMM_CONFIG_FILE)
PREPROCESSING_FILES = ("preprocessor_config.json", "config.json")

# a checkpoint's model description (transformers or timm), at the repo's root
CHECKPOINT_CONFIG = "config.json"
# a text model's tokenizer, and the files beside it that give its maximum length; a
# tokenizer.json of a large multilingual vocabulary is about 20 MB
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json")
TOKENIZER_MAX_BYTES = 64 * 1024**2

SCHEME = "hf://"
REF_FORM = "hf://OWNER/REPO[@REVISION][/PATH.onnx]"
LOGIN_HINT = "log in with `hf auth login`"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SEARCH_EXPAND = ["downloads", "likes", "cardData", "siblings", "pipeline_tag", "tags"]


@dataclass(frozen=True)
class HubRef:
    """A model reference on the hub: a repo, an optional revision and an optional file."""

    repo: str
    revision: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        text = SCHEME + self.repo
        if self.revision:
            text += "@" + self.revision
        if self.path:
            text += "/" + self.path
        return text


def is_ref(text) -> bool:
    """Whether ``text`` is meant as a hub reference (it may still be malformed)."""
    return isinstance(text, str) and text.startswith(SCHEME)


def parse_ref(text) -> HubRef:
    """Split ``hf://OWNER/REPO[@REVISION][/PATH.onnx]`` into its parts.

    A revision is one path segment (branch, tag or commit), except the hub's own
    ``refs/pr/N`` and ``refs/convert/NAME`` forms, which take three.
    """
    if not is_ref(text):
        raise DownloadError(f"'{text}' is not a hub reference; expected {REF_FORM}")
    parts = text[len(SCHEME):].split("/")
    if len(parts) < 2:
        raise DownloadError(f"'{text}' names no repo; expected {REF_FORM}, "
                            "e.g. hf://onnx-community/resnet-18")
    owner, repo_part, rest = parts[0], parts[1], parts[2:]
    name, _, revision = repo_part.partition("@")
    if "@" in repo_part and revision == "refs" and len(rest) >= 2:
        revision = "/".join(["refs", *rest[:2]])
        rest = rest[2:]
    for label, value in (("owner", owner), ("repo name", name)):
        if not _REPO_PART.match(value) or ".." in value or "--" in value:
            raise DownloadError(f"bad {label} '{value}' in '{text}': use letters, digits, "
                                f"'-', '_' and '.'; expected {REF_FORM}")
    if "@" in repo_part and (not revision or any(c.isspace() for c in revision)):
        raise DownloadError(f"empty or blank revision in '{text}'; expected {REF_FORM}")
    if rest and rest[-1] == "":  # a trailing slash names no file
        rest = rest[:-1]
    path = "/".join(rest) or None
    if path is not None:
        if (any(p in ("", ".", "..") for p in rest) or "\\" in path
                or not path.lower().endswith(".onnx")):
            raise DownloadError(f"bad file path '{path}' in '{text}': give a path to a .onnx "
                                f"file inside the repo; expected {REF_FORM}")
    return HubRef(repo=f"{owner}/{name}", revision=revision or None, path=path)


def fetch(ref: HubRef | str, *, cache_dir=None, token=None,
          max_bytes: int = DEFAULT_MAX_BYTES, allow_pickle: bool = False) -> list[HubFetched]:
    """Download the ONNX files of a hub repo (or the one file ``ref`` names).

    Returns one :class:`HubFetched` per ONNX file, in repo order, with its local path, a
    default model name (the repo name, plus the file's stem when the repo holds several
    ONNX files), the provenance to record, and the preprocessing the repo's config files
    describe (see the module's docstring). ``cache_dir`` is the models cache root
    (:func:`zooindex.download.default_cache_dir` when None); ``token`` goes to the client
    as is, so None lets it find the user's login. Files over ``max_bytes`` are refused
    before anything is downloaded.

    A repo without ONNX files that holds a transformers or timm checkpoint
    (``config.json`` and ``model.safetensors``; pickled weights only with
    ``allow_pickle``) is downloaded the same way and exported to ONNX in its commit
    folder by :mod:`zooindex.checkpoints`: one :class:`HubFetched` for the exported file,
    whose source records the export's settings and the weights' sha256.
    """
    hf = _client()
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if parse_ref(SCHEME + ref.repo).repo != ref.repo:  # a HubRef built in code: same rules
        raise DownloadError(f"bad repo '{ref.repo}'; expected {REF_FORM}", url=str(ref))
    if ref.path is not None and not ref.path.lower().endswith(".onnx"):
        raise DownloadError(f"'{ref.path}' in {ref} is not a .onnx file; expected {REF_FORM}",
                            url=str(ref))
    api = hf.HfApi(library_name="zooindex")
    with _hub_errors(hf, ref):
        info = api.model_info(ref.repo, revision=ref.revision, files_metadata=True, token=token)
    commit = info.sha
    if not isinstance(commit, str) or not _COMMIT.match(commit):
        raise DownloadError(f"the hub gave no valid commit for {ref} ({commit!r}); check "
                            "HF_ENDPOINT if set, or retry later", url=str(ref))
    files = {s.rfilename: s for s in (info.siblings or [])}
    onnx_files = [f for f in files if f.lower().endswith(".onnx")]
    if ref.path is not None:
        if ref.path not in files:
            listed = ", ".join(onnx_files) or "none"
            raise DownloadError(f"file '{ref.path}' not in hf://{ref.repo} at {_short(commit)}; "
                                f"its ONNX files: {listed}. Pick one of those", url=str(ref))
        wanted = [ref.path]
    elif onnx_files:
        wanted = onnx_files
    elif CHECKPOINT_CONFIG in files:
        return [_fetch_checkpoint(hf, api, ref, info, files, Path(cache_dir) if cache_dir
                                  is not None else default_cache_dir(), token, max_bytes,
                                  allow_pickle)]
    else:
        raise DownloadError(f"hf://{ref.repo} has no .onnx files at {_short(commit)}; pick a "
                            "repo with ONNX exports (see `zooindex hub search`)", url=str(ref))
    for name in wanted:
        _check_file(ref, name, files[name], max_bytes)

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    local_dir = root / "hf" / ref.repo.replace("/", "--") / commit
    names = _default_names(ref.repo.split("/")[1], onnx_files)
    license_ = _license(info)
    configs: dict = {}  # repo path -> (Preprocessing | None, note | None), each read once
    fetched = []
    for name in wanted:
        path = _download_file(hf, ref, commit, name, files[name], local_dir, token, max_bytes)
        external = _external_data(ref, name, path)
        for data_name in external:
            if data_name not in files:
                raise DownloadError(f"hf://{ref.repo}/{name} needs external data '{data_name}', "
                                    f"which the repo does not have at {_short(commit)}; the "
                                    "export is incomplete, pick another file", url=str(ref))
            _check_file(ref, data_name, files[data_name], max_bytes)
            _download_file(hf, ref, commit, data_name, files[data_name], local_dir, token,
                           max_bytes)
        prep, prep_from, note = _preprocessing(hf, ref, commit, name, files, local_dir, token,
                                               configs)
        tokenizer = _tokenizer(hf, ref, commit, name, files, local_dir, token)
        fetched.append(HubFetched(path=path, name=names[name], tokenizer=tokenizer, source={
            "hub": "hf", "repo": ref.repo, "revision": ref.revision, "commit": commit,
            "file": name, "license": license_, "tags": list(info.tags or []),
            "pipeline": info.pipeline_tag, "external_data": external,
            "url": hf.hf_hub_url(ref.repo, name, revision=commit, endpoint=api.endpoint)},
            preprocessing=prep, preprocessing_from=prep_from, preprocessing_note=note))
    return fetched


def _fetch_checkpoint(hf, api, ref: HubRef, info, files: dict, root: Path, token,
                      max_bytes: int, allow_pickle: bool) -> HubFetched:
    """A repo's checkpoint at its pinned commit: config and weights downloaded and checked
    as any file, then exported once into ``<commit folder>/zooindex-export/``."""
    from . import checkpoints

    commit = info.sha
    where = f"hf://{ref.repo} at {_short(commit)}"
    try:
        weights = checkpoints.weights_name(files, allow_pickle=allow_pickle, where=where)
    except ModelError as exc:
        raise DownloadError(str(exc), url=str(ref)) from None
    if weights is None:
        raise DownloadError(f"{where} has no .onnx files and no {checkpoints.SAFE_WEIGHTS}; "
                            "pick a repo with ONNX exports or safetensors weights (see "
                            "`zooindex hub search`)", url=str(ref))
    _check_file(ref, CHECKPOINT_CONFIG, files[CHECKPOINT_CONFIG], PREPROCESSING_MAX_BYTES)
    _check_file(ref, weights, files[weights], max_bytes)
    local_dir = root / "hf" / ref.repo.replace("/", "--") / commit
    config_path = _download_file(hf, ref, commit, CHECKPOINT_CONFIG, files[CHECKPOINT_CONFIG],
                                 local_dir, token, PREPROCESSING_MAX_BYTES)
    config = checkpoints.read_config(config_path, f"{CHECKPOINT_CONFIG} of hf://{ref.repo}")
    if checkpoints.library_of(config) is None:
        raise DownloadError(f"{where} has no .onnx files, and its {CHECKPOINT_CONFIG} is "
                            "neither a transformers nor a timm config; pick a repo with ONNX "
                            "exports", url=str(ref))
    path = _download_file(hf, ref, commit, weights, files[weights], local_dir, token, max_bytes)
    digest = _lfs_sha256(files[weights])
    digest = digest.lower() if digest else sha256_file(path)
    prep, prep_from, note = _preprocessing(hf, ref, commit, weights, files, local_dir, token, {})
    tokenizer = _tokenizer(hf, ref, commit, weights, files, local_dir, token)
    exported, settings = checkpoints.export(
        local_dir, weights, config, weights_sha256=digest,
        input_size=prep.input_size if prep is not None else None)
    return HubFetched(path=exported, name=ref.repo.split("/")[1], tokenizer=tokenizer, source={
        "hub": "hf", "repo": ref.repo, "revision": ref.revision, "commit": commit,
        "file": weights, "license": _license(info), "tags": list(info.tags or []),
        "pipeline": info.pipeline_tag, "external_data": [], "export": settings,
        "url": hf.hf_hub_url(ref.repo, weights, revision=commit, endpoint=api.endpoint)},
        preprocessing=prep, preprocessing_from=prep_from, preprocessing_note=note)


def _tokenizer(hf, ref: HubRef, commit: str, name: str, files: dict, local_dir: Path,
               token) -> Path | None:
    """The ``tokenizer.json`` nearest the model ``name`` in the repo (its folder, then
    each folder above), downloaded at the same commit with the ``tokenizer_config.json``
    and ``config.json`` beside it (they give the maximum length); ``None`` when the repo
    has none (an image model). Read only for text models (:mod:`zooindex.text`)."""
    folder = posixpath.dirname(name)
    while True:
        found = posixpath.join(folder, TOKENIZER_FILES[0]) if folder else TOKENIZER_FILES[0]
        if found in files:
            break
        if not folder:
            return None
        folder = posixpath.dirname(folder)
    path = None
    for file in TOKENIZER_FILES:
        repo_path = posixpath.join(folder, file) if folder else file
        if repo_path in files:
            _check_file(ref, repo_path, files[repo_path], TOKENIZER_MAX_BYTES)
            local = _download_file(hf, ref, commit, repo_path, files[repo_path], local_dir,
                                   token, TOKENIZER_MAX_BYTES)
            path = path or local
    return path


def _config_candidates(name: str) -> list[str]:
    """Repo paths of the config files that may describe the model ``name``, nearest
    first: its own folder, then each folder above it up to the root."""
    folders = []
    folder = posixpath.dirname(name)
    while True:
        folders.append(folder)
        if not folder:
            break
        folder = posixpath.dirname(folder)
    return [posixpath.join(f, file) if f else file
            for f in folders for file in PREPROCESSING_FILES]


def _preprocessing(hf, ref: HubRef, commit: str, name: str, files: dict, local_dir: Path,
                   token, configs: dict) -> tuple:
    """``(Preprocessing | None, repo path it came from | None, note | None)`` for the
    model ``name``: the nearest config file that describes a preprocessing.

    A file that is too big, not JSON, or holds values of the wrong form is passed over
    with a note (the model itself is fine); a failed download is an error like any other.
    """
    from . import hubconfig

    readers = {hubconfig.HF_PREPROCESSOR_FILE: hubconfig.from_hf_preprocessor_config,
               hubconfig.TIMM_CONFIG_FILE: hubconfig.from_timm_config}
    notes = []
    for path in _config_candidates(name):
        if path not in files:
            continue
        if path not in configs:
            configs[path] = _read_config(hf, ref, commit, path, files[path], local_dir, token,
                                         readers[posixpath.basename(path)])
        prep, note = configs[path]
        if prep is not None:
            return prep, path, None
        if note:
            notes.append(note)
    return None, None, "; ".join(notes) or None


def _read_config(hf, ref: HubRef, commit: str, path: str, sibling, local_dir: Path, token,
                 reader) -> tuple:
    size = _size(sibling)
    if size is not None and size > PREPROCESSING_MAX_BYTES:
        return None, (f"{path} is {size} bytes, over the {PREPROCESSING_MAX_BYTES} allowed "
                      "for a config file; not read")
    try:
        local = _download_file(hf, ref, commit, path, sibling, local_dir, token,
                               PREPROCESSING_MAX_BYTES)
    except DownloadError as exc:
        if "over the limit" not in str(exc):
            raise
        return None, f"{path} is over the {PREPROCESSING_MAX_BYTES} bytes allowed; not read"
    try:
        config = json.loads(local.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path} is not valid JSON ({type(exc).__name__}); not used"
    try:
        return reader(config), None
    except AdaptError as exc:
        return None, f"{path}: {exc}; not used"


# what `hub search --library` takes: ONNX files, or checkpoints zooindex exports on add
SEARCH_LIBRARIES = ("onnx", "transformers", "timm")


def search(query, *, library="onnx", task=None, limit=20,
           allow_pickle: bool = False) -> list[dict]:
    """Hub models matching ``query`` that zooindex can add, most downloaded first.

    ``library`` (one of :data:`SEARCH_LIBRARIES`, or None for any) and ``task`` filter on
    the hub's library tag and pipeline tag. With ``onnx`` or None, only repos that hold ``.onnx`` files are listed;
    with ``transformers`` or ``timm``, also those that hold a checkpoint (``config.json``
    and ``model.safetensors``, or pickled weights with ``allow_pickle``), marked
    ``export: True``: ``add`` exports them. The hub's library tag is not proof of any
    file, so each result's file list is checked; at most ``5 * limit`` repos are looked at.
    """
    if not isinstance(limit, int) or limit < 1:
        raise DownloadError(f"search limit must be a positive whole number, not {limit!r}")
    if library is not None and library not in SEARCH_LIBRARIES:
        raise DownloadError(f"library {library!r} is not one of {', '.join(SEARCH_LIBRARIES)}")
    from .checkpoints import PICKLED_WEIGHTS, SAFE_WEIGHTS

    hf = _client()
    api = hf.HfApi(library_name="zooindex")
    found: list[dict] = []
    with _hub_errors(hf, None):
        models = api.list_models(search=query or None, filter=library, pipeline_tag=task or None,
                                 sort="downloads", limit=5 * limit, expand=_SEARCH_EXPAND)
        for model in models:
            names = [s.rfilename for s in (model.siblings or [])]
            onnx_files = [n for n in names if n.lower().endswith(".onnx")]
            weights = None
            if not onnx_files:
                if library in ("onnx", None) or CHECKPOINT_CONFIG not in names:
                    continue
                usable = (SAFE_WEIGHTS, *PICKLED_WEIGHTS) if allow_pickle else (SAFE_WEIGHTS,)
                weights = next((w for w in usable if w in names), None)
                if weights is None:
                    continue
            found.append({"repo": model.id, "downloads": model.downloads, "likes": model.likes,
                          "license": _license(model), "onnx_files": onnx_files,
                          "export": weights is not None, "weights": weights,
                          "pipeline": model.pipeline_tag})
            if len(found) >= limit:
                break
    return found


def _client():
    return require("huggingface_hub", "the Hugging Face hub needs the huggingface_hub "
                   "package; pip install 'zooindex[hub]'")


def _short(commit: str) -> str:
    return commit[:12]


def _lfs_sha256(sibling) -> str | None:
    lfs = getattr(sibling, "lfs", None)
    if lfs is None:
        return None
    return lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)


def _size(sibling) -> int | None:
    lfs = getattr(sibling, "lfs", None)
    size = lfs.get("size") if isinstance(lfs, dict) else getattr(lfs, "size", None)
    return size if size is not None else getattr(sibling, "size", None)


def _is_plain_relative(path: str) -> bool:
    """A '/'-separated path that stays below its folder: not absolute, no drive, no '..'."""
    return bool(path) and not (path.startswith("/") or "\\" in path or ":" in path
                               or ".." in PurePosixPath(path).parts)


def _check_file(ref: HubRef, name: str, sibling, max_bytes: int) -> None:
    """Refuse, before downloading, a listed file whose name or size is unacceptable."""
    if not _is_plain_relative(name):
        raise DownloadError(f"hf://{ref.repo} lists a file named '{name}', which would land "
                            "outside the cache folder; refusing it", url=str(ref))
    size = _size(sibling)
    if size is not None and size > max_bytes:
        raise DownloadError(f"hf://{ref.repo}/{name} is {size} bytes, over the limit of "
                            f"{max_bytes}; raise the size limit if you want it", url=str(ref))


def _download_file(hf, ref: HubRef, commit: str, name: str, sibling, local_dir: Path,
                   token, max_bytes: int) -> Path:
    """One repo file at ``commit`` into ``local_dir``, then checked; a bad file is removed."""
    with _hub_errors(hf, ref, name):
        path = Path(hf.hf_hub_download(ref.repo, name, revision=commit, local_dir=local_dir,
                                       token=token, library_name="zooindex"))
    size = path.stat().st_size
    if size > max_bytes:
        path.unlink(missing_ok=True)
        raise DownloadError(f"hf://{ref.repo}/{name} is {size} bytes, over the limit of "
                            f"{max_bytes}; raise the size limit if you want it", url=str(ref))
    expected = _lfs_sha256(sibling)
    if expected is not None:
        got = sha256_file(path)
        if got != expected.lower():
            path.unlink(missing_ok=True)
            raise DownloadError(f"sha256 mismatch for hf://{ref.repo}/{name} at {_short(commit)}: "
                                f"expected {expected}, got {got}; the file was discarded, retry",
                                url=str(ref))
    return path


def _external_data(ref: HubRef, name: str, path: Path) -> list[str]:
    """Repo paths of the external-data files the ONNX graph at ``path`` reads.

    Only the graph's own ``location`` entries are trusted, and only as plain relative
    paths below the model's folder: absolute paths and ``..`` could make a later load
    read any file on the machine.
    """
    import onnx

    from .graph import all_tensors

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"hf://{ref.repo}/{name} is not a readable ONNX model "
                         f"({type(exc).__name__}); pick another file", path=str(path)) from exc
    folder = posixpath.dirname(name)
    found: list[str] = []
    for tensor in all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not _is_plain_relative(location):
            raise DownloadError(f"hf://{ref.repo}/{name} points its tensor '{tensor.name}' at "
                                f"external data '{location}', outside its folder; refusing it "
                                "(only relative paths below the model are allowed)",
                                url=str(ref))
        repo_path = posixpath.normpath(posixpath.join(folder, location))
        if repo_path not in found:
            found.append(repo_path)
    return found


def _default_names(repo_name: str, onnx_files: list[str]) -> dict[str, str]:
    """Repo name for a single-model repo; repo name + file stem otherwise, or + the whole
    path (folders joined by '-') where two files share a stem."""
    if len(onnx_files) == 1:
        return {onnx_files[0]: repo_name}
    stems = Counter(PurePosixPath(f).stem for f in onnx_files)
    names = {}
    for f in onnx_files:
        stem = PurePosixPath(f).stem
        tail = stem if stems[stem] == 1 else f[: -len(".onnx")].replace("/", "-")
        names[f] = f"{repo_name}-{tail}"
    return names


def _license(info) -> str | None:
    card = getattr(info, "card_data", None)
    value = card.get("license") if hasattr(card, "get") else getattr(card, "license", None)
    if value:
        return value if isinstance(value, str) else ", ".join(map(str, value))
    for tag in getattr(info, "tags", None) or []:
        if isinstance(tag, str) and tag.startswith("license:"):
            return tag[len("license:"):]
    return None


@contextmanager
def _hub_errors(hf, ref: HubRef | None, name: str | None = None):
    """Turn the client's failures into one-line :class:`DownloadError`; let bugs through."""
    try:
        yield
    except Exception as exc:
        error = _hub_error(hf, exc, ref, name)
        if error is exc:
            raise
        raise error from exc


def _hub_error(hf, exc: Exception, ref: HubRef | None, name: str | None = None) -> Exception:
    """The :class:`DownloadError` that explains ``exc``, or ``exc`` itself when unknown."""
    if isinstance(exc, (DownloadError, DependencyError)):
        return exc
    u = hf.utils
    repo = f"hf://{ref.repo}" if ref else "the hub"
    url = str(ref) if ref else None
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, u.GatedRepoError):
        message = f"{repo} is gated: accept its terms on the hub and {LOGIN_HINT}"
    elif isinstance(exc, u.RepositoryNotFoundError):
        message = (f"repo {repo} not found on the hub, or it is private; check the name "
                   f"(`zooindex hub search`), or {LOGIN_HINT} if you have access")
    elif isinstance(exc, u.RevisionNotFoundError):
        message = (f"revision '{ref.revision if ref else '?'}' not found in {repo}; use a "
                   "branch, tag or commit that exists there")
    elif isinstance(exc, u.OfflineModeIsEnabled):
        message = f"cannot reach {repo}: HF_HUB_OFFLINE is set; unset it to download"
    elif isinstance(exc, u.LocalEntryNotFoundError):
        message = (f"could not reach {repo} to download '{name}'; check your network "
                   "(and HF_ENDPOINT if set), then retry")
    elif isinstance(exc, u.EntryNotFoundError):
        message = f"file '{name}' not found in {repo}; check the path (the repo may have changed)"
    elif isinstance(exc, u.HfHubHTTPError) and status in (401, 403):
        message = (f"access to {repo} denied (HTTP {status}); {LOGIN_HINT} with a token that "
                   "can read it")
    elif isinstance(exc, u.HfHubHTTPError):
        message = f"the hub answered HTTP {status} for {repo}; retry later"
    elif isinstance(exc, u.HFValidationError):
        message = f"bad repo or file name for {repo}: {exc}; expected {REF_FORM}"
    elif isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in (
            "httpx", "httpx2", "requests", "urllib3", "httpcore"):
        message = (f"could not reach {repo} ({type(exc).__name__}); check your network "
                   "(and HF_ENDPOINT if set), then retry")
    else:
        return exc
    return DownloadError(message, url=url)
