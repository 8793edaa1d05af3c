"""Models listed in an ONNX Model Zoo manifest (the ``ONNX_HUB_MANIFEST.json`` format).

A manifest is a JSON list of entries, each naming a model, the path of its ``.onnx``
file relative to the manifest, its opset and, under ``metadata``, the file's sha256
(``model_sha``), size (``model_bytes``), tags and input/output ports. The format is read
here rather than through ``onnx.hub``, which only reads manifests from GitHub, so that a
manifest can live in any folder or behind any HTTP(S) server. A manifest is trusted no
more than the files it lists: every model path must stay below the manifest's folder,
and every file is checked against the listed sha256 and size when downloaded.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .download import (DEFAULT_MAX_BYTES, Fetched, check_sha256, default_cache_dir,
                       display_url, download, read_bytes)
from .errors import DownloadError

__all__ = ["ManifestEntry", "MANIFEST_NAME", "read_manifest", "fetch_entry"]

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_URL_SCHEMES = ("http", "https")
_SCHEME_OR_DRIVE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class ManifestEntry:
    """One model of a manifest, checked for shape; ``manifest`` is where it was read."""

    model: str
    model_path: str
    opset: int | None
    sha256: str | None
    size: int | None
    tags: tuple
    io_ports: dict | None
    manifest: str | None = None


def read_manifest(source: str) -> tuple[list[ManifestEntry], str]:
    """Entries of the manifest at ``source``, and the base its ``model_path`` values are under.

    ``source`` is a manifest file, a folder holding ``ONNX_HUB_MANIFEST.json``, or an
    http(s)/file URL. The base is the manifest's folder: a URL ending in ``/`` for remote
    manifests, a local folder path otherwise. Any malformed entry fails the whole read,
    naming the entry and what is wrong with it.
    """
    text = str(source)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in _URL_SCHEMES:
        location, base = text, urllib.parse.urljoin(text, ".")
    else:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(text).path)
                    if scheme == "file" else text).expanduser()
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise DownloadError(f"manifest '{text}' not found; give a manifest file, a folder "
                                f"holding {MANIFEST_NAME}, or an http(s) URL", url=text)
        location, base = str(path.resolve()), str(path.resolve().parent)
    shown = display_url(location)
    raw = read_bytes(location, max_bytes=MAX_MANIFEST_BYTES)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DownloadError(f"manifest {shown} is not valid JSON ({exc}); it should be a JSON "
                            "list of model entries", url=shown) from None
    if not isinstance(data, list):
        raise DownloadError(f"manifest {shown} holds a JSON {type(data).__name__}, not the list "
                            "of model entries a manifest is", url=shown)
    return [_entry(item, i, shown) for i, item in enumerate(data)], base


def fetch_entry(entry: ManifestEntry, base: str, *, cache_dir=None,
                max_bytes: int = DEFAULT_MAX_BYTES) -> Fetched:
    """Download one entry's model file into the cache, checked against its sha256 and size.

    ``base`` is what :func:`read_manifest` returned (or another folder or URL holding the
    same files). The default model name is the file's stem, which, unlike the ``model``
    field, differs between the opsets of one model.
    """
    location = _model_location(entry, base)
    if entry.size is not None and entry.size > max_bytes:
        raise DownloadError(f"'{entry.model}' ({entry.model_path}) is {entry.size} bytes, over "
                            f"the limit of {max_bytes}; raise the size limit if you want it",
                            url=display_url(location))
    limit = max_bytes if entry.size is None else entry.size
    file_name = PurePosixPath(entry.model_path).name
    path = download(location, cache_dir if cache_dir is not None else default_cache_dir(),
                    sha256=entry.sha256, max_bytes=limit, filename=file_name)
    return Fetched(path=path, name=PurePosixPath(file_name).stem, source={
        "hub": "manifest", "manifest": entry.manifest or base, "model": entry.model,
        "model_path": entry.model_path, "opset": entry.opset, "tags": list(entry.tags),
        "url": display_url(location)})


def _model_location(entry: ManifestEntry, base: str) -> str:
    """The URL or local path of an entry's file, refusing any path that leaves ``base``."""
    path = entry.model_path
    if (not path or path.startswith(("/", "~")) or "\\" in path or "\0" in path
            or _SCHEME_OR_DRIVE.match(path) or ".." in PurePosixPath(path).parts):
        raise DownloadError(f"model_path '{path}' of '{entry.model}' is not a relative path "
                            "inside the manifest's folder; refusing it (no '..', absolute "
                            "paths or URLs)", url=str(base))
    base = str(base)
    scheme = urllib.parse.urlsplit(base).scheme.lower()
    if scheme in _URL_SCHEMES:
        return base.rstrip("/") + "/" + urllib.parse.quote(path, safe="/")
    if scheme == "file":
        base = urllib.request.url2pathname(urllib.parse.urlsplit(base).path)
    root = Path(base).expanduser().resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):  # a symbolic link inside the folder pointing out
        raise DownloadError(f"model_path '{path}' of '{entry.model}' leads outside '{root}'; "
                            "refusing it", url=str(root))
    return str(target)


def _entry(item, index: int, shown: str) -> ManifestEntry:
    """Check one manifest entry's fields, naming the entry and field when one is wrong."""
    where = f"manifest {shown}, entry {index}"
    if not isinstance(item, dict):
        raise DownloadError(f"{where} is a JSON {type(item).__name__}, not an object with "
                            "'model', 'model_path' and 'metadata'", url=shown)
    model = item.get("model")
    if not isinstance(model, str) or not model.strip():
        raise DownloadError(f"{where} has no 'model' name (a non-empty string is needed)",
                            url=shown)
    where = f"{where} ('{model}')"
    model_path = item.get("model_path")
    if not isinstance(model_path, str) or not model_path.strip():
        raise DownloadError(f"{where} has no 'model_path' (the .onnx file's path relative to "
                            "the manifest is needed)", url=shown)
    opset = item.get("opset_version")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)
                              or opset < 1):
        raise DownloadError(f"{where}: 'opset_version' is {opset!r}; a positive whole number "
                            "or nothing is allowed", url=shown)
    metadata = item.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise DownloadError(f"{where}: 'metadata' is a JSON {type(metadata).__name__}; an "
                            "object is needed", url=shown)
    sha = metadata.get("model_sha")
    try:
        sha = check_sha256(sha, f"{where}: 'metadata.model_sha'")
    except DownloadError as exc:
        raise DownloadError(str(exc), url=shown) from None
    size = metadata.get("model_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise DownloadError(f"{where}: 'metadata.model_bytes' is {size!r}; a byte count "
                            "(whole number >= 0) or nothing is allowed", url=shown)
    tags = metadata.get("tags")
    tags = [] if tags is None else tags
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DownloadError(f"{where}: 'metadata.tags' must be a list of strings", url=shown)
    io_ports = metadata.get("io_ports")
    if io_ports is not None and not isinstance(io_ports, dict):
        raise DownloadError(f"{where}: 'metadata.io_ports' must be an object with 'inputs' "
                            "and 'outputs'", url=shown)
    return ManifestEntry(model=model, model_path=model_path, opset=opset, sha256=sha,
                         size=size, tags=tuple(tags), io_ports=io_ports, manifest=shown)
