"""What the web server accepts from a browser: uploads, archives, paths, request bodies.

Everything here is a guard at the edge, written once and tested on hostile inputs:

* :class:`BodyLimit` refuses a request body over the size cap, announced or not, before
  a byte of it reaches a parser beyond the cap; :class:`SameOrigin` refuses a request
  that changes something when another site's page sent it;
* :func:`save_upload` copies an uploaded ``.npz`` or ``.zip`` into a folder of the
  server's own, under a name it makes, with the same cap; nothing uploaded is executed
  or unpickled (``.npz`` files are read with ``allow_pickle=False`` by the reader);
* :func:`extract_zip` unpacks an image-folder archive member by member: no absolute
  path, no ``..``, no symbolic link, no encrypted member, at most so many members, and
  the bytes actually decompressed (not the sizes the archive claims) counted against a
  total cap;
* :func:`resolve_data_path` admits a target path only when its real path (symbolic
  links followed) lies under one of the folders the server was started with.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import TargetError

UPLOAD_SUFFIXES = (".npz", ".zip", ".csv", ".tsv", ".jsonl")
# an archive member of any other kind is not part of an image folder: it is skipped
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_ZIP_MEMBERS = 100_000
_CHUNK = 1 << 20


class TooLarge(TargetError):
    """A request body, an upload or an archive's contents exceed the server's cap."""


def _limit_text(limit: int) -> str:
    return f"{limit / 1e6:.0f} MB" if limit >= 1e6 else f"{limit} bytes"


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413, read no further.

    A ``Content-Length`` over the cap is refused before the body is read; a body sent
    without one (chunked) is counted as it arrives and refused when it passes the cap.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            announced = int(length) if length is not None else None
        except ValueError:
            announced = None
        if announced is not None and announced > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge(self._message())
            return message

        async def watched(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if started:
                raise
            await self._refuse(scope, send)

    def _message(self) -> str:
        return (f"the upload is larger than this server accepts ({_limit_text(self.limit)}); "
                "put the data set under a folder given to `zooindex serve --data` instead")

    async def _refuse(self, scope, send) -> None:
        """413, as JSON for the API and as a short page with a way back for a browser."""
        import html
        import json

        message = self._message()
        if scope.get("path", "").startswith("/api"):
            body, kind = json.dumps({"error": message}).encode(), b"application/json"
        else:
            body = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                    '<title>Upload too large</title><link rel="stylesheet" '
                    'href="/static/style.css"></head><body><main><h1>Upload too large</h1>'
                    f'<p class="error">{html.escape(message)}</p><p><a href="/search">'
                    "Back to the search form</a></p></main></body></html>").encode()
            kind = b"text/html; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", kind),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class SameOrigin:
    """ASGI middleware: a request that changes something (any method but GET, HEAD,
    OPTIONS) sent by a page of another origin is refused with 403.

    Browsers send ``Origin`` with such requests; a page elsewhere on the web (or a
    ``file:`` page, whose origin is ``null``) then cannot start searches on a server
    that listens on this machine. Scripts that send no ``Origin`` are let through.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin")
            if origin is not None:
                host = headers.get(b"host", b"").decode("latin-1").lower()
                if urlsplit(origin.decode("latin-1")).netloc.lower() != host:
                    body = b"cross-origin request refused"
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"text/plain"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def safe_name(filename: str | None, default: str = "upload") -> str:
    """A plain file name made from what a browser sent: its last part, with only
    letters, digits, ``.``, ``-`` and ``_``, never hidden, never empty."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")
    return base[:120] or default


async def save_upload(upload, folder: Path, limit: int) -> Path:
    """Copy an uploaded file (a Starlette ``UploadFile``) into ``folder``, at most
    ``limit`` bytes; its suffix must be one of :data:`UPLOAD_SUFFIXES`."""
    name = safe_name(upload.filename)
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise TargetError(f"cannot take the upload '{name}': send a .npz file (arrays x and "
                          "y), a .zip of an image folder (root/<class>/<image>), or texts "
                          "as .csv, .tsv or .jsonl (columns text and label)", path=name)
    path = folder / name
    written = 0
    with open(path, "xb") as out:
        while True:
            chunk = await upload.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > limit:
                raise TooLarge(f"the upload '{name}' is larger than this server accepts "
                               f"({_limit_text(limit)})", path=name)
            out.write(chunk)
    if written == 0:
        raise TargetError(f"the upload '{name}' is empty", path=name)
    return path


def _member_path(info: zipfile.ZipInfo, archive: str) -> str | None:
    """The member's relative '/'-path, ``None`` for what is not data; refuses a member
    that would land outside the folder or is not a plain file or folder."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise TargetError(f"archive '{archive}' holds a symbolic link ('{name}'); "
                          "pack the image files themselves", path=archive)
    if info.flag_bits & 0x1:
        raise TargetError(f"archive '{archive}' holds an encrypted member ('{name}')",
                          path=archive)
    if "\\" in name or "\0" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise TargetError(f"archive '{archive}' holds a member with an absolute or "
                          f"unsafe path ('{name}')", path=archive)
    parts = name.split("/")
    if ".." in parts:
        raise TargetError(f"archive '{archive}' holds a member that points outside it "
                          f"('{name}')", path=archive)
    if info.is_dir():
        return None
    kind = stat.S_IFMT(mode)  # 0 when the archiver recorded no file type
    if kind and kind != stat.S_IFREG:
        raise TargetError(f"archive '{archive}' holds '{name}', which is not a plain file",
                          path=archive)
    clean = posixpath.normpath(name)
    pieces = clean.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in pieces):
        return None  # dot files and macOS resource forks are not data
    if not clean.lower().endswith(IMAGE_SUFFIXES):
        return None
    return clean


def extract_zip(archive: Path, folder: Path, limit: int,
                max_members: int = MAX_ZIP_MEMBERS) -> Path:
    """Unpack the images of an image-folder ``.zip`` into ``folder`` (which must be
    empty), member by member, with at most ``limit`` bytes decompressed in all.
    Returns ``folder``; the readers then take it as an image folder."""
    shown = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TargetError(f"cannot read the archive '{shown}' ({exc}); send a .zip of an "
                          "image folder", path=shown) from None
    root = folder.resolve()
    total = 0
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise TooLarge(f"archive '{shown}' holds {len(members)} members; at most "
                           f"{max_members} are accepted", path=shown)
        wanted = [(info, _member_path(info, shown)) for info in members]
        if sum(info.file_size for info, rel in wanted if rel) > limit:
            raise TooLarge(f"archive '{shown}' unpacks to more than this server accepts "
                           f"({_limit_text(limit)})", path=shown)
        for info, rel in wanted:
            if rel is None:
                continue
            dest = (root / rel).resolve()
            if not dest.is_relative_to(root):
                raise TargetError(f"archive '{shown}' holds a member that points outside "
                                  f"it ('{info.filename}')", path=shown)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(dest, "xb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)  # what is really decompressed, not claimed
                        if total > limit:
                            raise TooLarge(f"archive '{shown}' unpacks to more than this "
                                           f"server accepts ({_limit_text(limit)})",
                                           path=shown)
                        out.write(chunk)
            except FileExistsError:
                raise TargetError(f"archive '{shown}' holds '{rel}' twice",
                                  path=shown) from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
                    NotImplementedError, RuntimeError) as exc:
                raise TargetError(f"cannot unpack '{info.filename}' from '{shown}' ({exc})",
                                  path=shown) from None
    return folder


def resolve_data_path(value: str, roots) -> Path:
    """The real path of ``value`` (absolute, or relative to one of ``roots`` or to the
    working folder) when it exists under one of ``roots``; a
    :class:`~zooindex.errors.TargetError` otherwise."""
    roots = [Path(r).resolve() for r in roots]
    if not roots:
        raise TargetError("this server was started without data folders; upload the "
                          "target, or restart it with `zooindex serve --data DIR`")
    text = str(value or "").strip()
    if not text or "\0" in text:
        raise TargetError("no target path given")
    given = Path(text)
    # relative: to a data folder, or to the server's working folder
    tries = [given] if given.is_absolute() else [root / given for root in roots] + [given]
    for candidate in tries:
        real = candidate.resolve()
        if any(real == root or real.is_relative_to(root) for root in roots):
            if real.exists():
                return real
    folders = ", ".join(str(r) for r in roots)
    raise TargetError(f"target '{text}' is not a file or folder under the data folders "
                      f"this server may read ({folders})", path=text)


# a file a reader may take, by its name alone; folders are asked of the readers
_TARGET_FILE = re.compile(r"(\.npz|\.npy|\.tar\.gz|\.tgz|\.tar|-ubyte(\.gz)?|\.idx\d?(\.gz)?"
                          r"|\.csv|\.tsv|\.jsonl|\.parquet)$", re.I)
_LABEL_NPY = re.compile(r"(^|_)(y|labels?)\.npy$", re.I)


def data_candidates(roots, *, limit: int = 500, depth: int = 3) -> list[Path]:
    """Targets under ``roots`` a user can pick: data-set files by their names, and
    folders a registered reader recognises (image folders, MNIST or CIFAR folders),
    at most ``limit`` of them, no deeper than ``depth`` folders; symbolic links that
    leave the roots are not followed."""
    from ..readers import readers

    found: list[Path] = []
    sniffers = [r for r in readers() if r.name in ("idx", "cifar", "imagefolder")]

    def recognised(folder: str) -> bool:
        for reader in sniffers:
            try:
                if reader.sniff(folder):
                    return True
            except (OSError, ValueError, EOFError):
                continue
        return False

    for root in (Path(r).resolve() for r in roots):
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            level = len(here.relative_to(root).parts)
            if here != root and recognised(folder):
                found.append(here)
                dirs[:] = []
                continue
            for name in sorted(files):
                if _TARGET_FILE.search(name) and not _LABEL_NPY.search(name) \
                        and not name.startswith("."):
                    path = here / name
                    if path.resolve().is_relative_to(root):
                        found.append(path)
            dirs[:] = [] if level >= depth else sorted(
                d for d in dirs if not d.startswith(".")
                and (here / d).resolve().is_relative_to(root))
            if len(found) >= limit:
                return found[:limit]
    return found[:limit]


def remove_tree(folder: Path | None) -> None:
    """Remove a folder of the server's own (uploads), ignoring what is already gone."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["BodyLimit", "SameOrigin", "TooLarge", "save_upload", "extract_zip", "resolve_data_path",
           "data_candidates", "safe_name", "remove_tree", "UPLOAD_SUFFIXES"]
