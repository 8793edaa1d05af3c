"""Fetching one file safely: bounded, hashed, atomic, content-addressed.

A model file from the network is untrusted bytes. It is streamed (never held in memory
whole), refused as soon as it passes a size limit, hashed on the way, written to a
temporary file that only becomes visible under its final name by ``os.replace`` once it
is complete and verified, and stored as ``<cache>/<sha256>/<filename>`` so that the same
content is stored once, whatever URL it came from. Nothing downloaded is executed or
unpickled here; reading the ONNX graph is the model loader's job.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DownloadError
from .hashing import sha256_file

if TYPE_CHECKING:
    from .adapt import Preprocessing

DEFAULT_MAX_BYTES = 2_000_000_000
CACHE_ENV = "ZOOINDEX_CACHE"
CHUNK_BYTES = 1 << 20
SCHEMES = ("http", "https", "file")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Fetched:
    """A model file fetched from a hub: where it now lies, a default name, and its origin.

    ``source`` is what the index records about where the file came from (hub, repo or
    manifest, revision, licence, ...), so that a ranking can later be traced and redone.
    """

    path: Path
    name: str
    source: dict = field(default_factory=dict)


@dataclass(frozen=True)
class HubFetched(Fetched):
    """A model fetched from the hub, with the preprocessing its repo describes.

    ``preprocessing``: what the repo's config file says (:mod:`zooindex.hubconfig`), or
    None. ``preprocessing_from``: the repo path of that file, e.g.
    ``"preprocessor_config.json"``. ``preprocessing_note``: why a config file that was
    found could not be used (too big, not JSON, values of the wrong form), else None.
    ``tokenizer``: the local ``tokenizer.json`` nearest the model in its repo (fetched
    at the same commit), for text models; None when the repo has none.
    """

    preprocessing: Preprocessing | None = None
    preprocessing_from: str | None = None
    preprocessing_note: str | None = None
    tokenizer: Path | None = None


def default_cache_dir() -> Path:
    """``$ZOOINDEX_CACHE``, else ``models`` in the user's cache directory (XDG).

    Downloads are caches, not data: they can be fetched again, so they go where the
    platform expects deletable files rather than next to the index.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("zooindex")) / "models"


def display_url(url: str) -> str:
    """``url`` without user info or query string, which may carry credentials or signatures."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain (or Windows drive) path
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_sha256(value: str | None, what: str = "sha256") -> str | None:
    """A lower-case 64-hex-digit digest, or None; anything else is refused up front."""
    if value is None:
        return None
    digest = str(value).strip().lower()
    if not _SHA256_RE.match(digest):
        raise DownloadError(f"{what} '{value}' is not a sha256 digest (64 hex digits); "
                            "give the full hex digest or none at all")
    return digest


def download(url: str, dest_dir: str | os.PathLike, *, sha256: str | None = None,
             max_bytes: int = DEFAULT_MAX_BYTES, filename: str | None = None,
             timeout: float = 60) -> Path:
    """Fetch ``url`` (http, https, file or a local path) to ``dest_dir/<sha256>/<filename>``.

    With ``sha256`` known and that file already present and matching, nothing is fetched.
    Otherwise the body is streamed into a temporary file in ``dest_dir``; a declared
    ``Content-Length`` over ``max_bytes`` is refused before reading, and the count is
    checked again while streaming because the header can be missing or lie. A body shorter
    than it announced (a dropped connection), a size over the limit, or a digest other than
    ``sha256`` raises :class:`DownloadError` and leaves nothing behind.
    """
    shown = display_url(url)
    expected = check_sha256(sha256, f"expected sha256 for {shown}")
    if max_bytes is None or max_bytes < 0:
        raise DownloadError(f"max_bytes must be a non-negative byte count, not {max_bytes!r}")
    open_url = _as_url(url)
    name = _filename(filename, open_url, shown)
    dest = Path(dest_dir)

    if expected is not None:
        cached = dest / expected / name
        if cached.is_file() and sha256_file(cached) == expected:
            return cached

    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".part-{secrets.token_hex(8)}"
    # os.open with 0o666 lets the umask decide who may read the cache, as for any new
    # file (tempfile's 0o600 would hide a shared cache from its other users)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(open_url, out, shown=shown, max_bytes=max_bytes, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and digest != expected:
            raise DownloadError(f"sha256 mismatch for {shown}: expected {expected}, got {digest}; "
                                "the file was discarded. Check the checksum or the source, then "
                                "retry", url=shown)
        final_dir = dest / digest
        final_dir.mkdir(exist_ok=True)
        final = final_dir / name
        os.replace(tmp, final)  # same bytes stored before are replaced by themselves
        _fsync_dir(final_dir)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(url: str, *, max_bytes: int, timeout: float = 60) -> bytes:
    """A small document (a manifest) read whole into memory, under the same checks."""
    buffer = io.BytesIO()
    _stream(_as_url(url), buffer, shown=display_url(url), max_bytes=max_bytes, timeout=timeout)
    return buffer.getvalue()


def _as_url(url: str) -> str:
    """An URL urllib can open: plain paths become ``file://`` URLs; other schemes are refused."""
    text = str(url)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in SCHEMES:
        return text
    if not scheme or len(scheme) == 1:  # no scheme, or a Windows drive letter
        path = Path(text).expanduser()
        if not path.is_file():
            raise DownloadError(f"local file '{text}' not found; give an existing file or an "
                                "http(s):// URL", url=text)
        return path.resolve().as_uri()
    raise DownloadError(f"cannot download '{display_url(text)}': scheme '{scheme}' is not "
                        f"supported; use one of {', '.join(SCHEMES)} or a local path",
                        url=display_url(text))


def _filename(filename: str | None, url: str, shown: str) -> str:
    """The stored file's name: given, else the URL's last path segment; never a path."""
    name = filename
    if name is None:
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
        name = name or "download"
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name):
        raise DownloadError(f"cannot store {shown} as '{name}': a file name without folders "
                            "is needed; pass filename=", url=shown)
    return name


def _stream(url: str, out, *, shown: str, max_bytes: int, timeout: float) -> str:
    """Copy the body of ``url`` into ``out`` under the size limit; return its sha256."""
    request = urllib.request.Request(url, headers={"User-Agent": "zooindex",
                                                   "Accept-Encoding": "identity"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{shown} answered HTTP {exc.code} {exc.reason}; check the URL "
                            "and your access to it", url=shown) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not fetch {shown}: {reason}; check the address and your "
                            "network", url=shown) from None
    hasher = hashlib.sha256()
    received = 0
    with response:
        declared = _declared_length(response)
        if declared is not None and declared > max_bytes:
            raise DownloadError(f"{shown} is {declared} bytes, over the limit of {max_bytes}; "
                                "raise max_bytes if you trust this source", url=shown)
        try:
            while chunk := response.read(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"{shown} sent more than the limit of {max_bytes} "
                                        "bytes; raise max_bytes if you trust this source",
                                        url=shown)
                hasher.update(chunk)
                out.write(chunk)
        except (OSError, http.client.HTTPException) as exc:  # IncompleteRead, reset, timeout
            raise DownloadError(f"download of {shown} broke off after {received} bytes "
                                f"({type(exc).__name__}); retry", url=shown) from None
    if declared is not None and received != declared:
        raise DownloadError(f"download of {shown} broke off after {received} of {declared} "
                            "bytes; retry", url=shown)
    return hasher.hexdigest()


def _declared_length(response) -> int | None:
    """The body length the server announced, when it is one that bounds the body read.

    A chunked body ignores ``Content-Length`` (the HTTP client reads the chunks), so the
    header says nothing there and the streaming count is the only limit.
    """
    headers = response.headers
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return None
    value = headers.get("Content-Length")
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

