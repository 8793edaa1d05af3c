"""A fake Hugging Face hub on 127.0.0.1, enough for the real ``huggingface_hub`` client.

It answers the requests the client makes for ``HfApi.model_info`` (``GET /api/models/
<repo>[/revision/<rev>]``), ``HfApi.list_models`` (``GET /api/models``) and
``hf_hub_download`` (``HEAD`` then ``GET /<repo>/resolve/<rev>/<file>``, with the
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size`` and ``Content-Length``
headers the client needs), and reports errors with the ``X-Error-Code`` header the client
maps to its exception classes. It never sends Xet headers, so the client stays on plain
HTTP. Every request is logged so tests can count downloads.

Small files (``preprocessor_config.json``, ``config.json``, ``README.md``) are listed and
served as plain git files, as the hub does: a size and a git blob id, no LFS sha256;
:func:`json_file` writes the bytes of one from a dict.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def json_file(content) -> bytes:
    """The bytes of a JSON config file as repos hold them (indented, trailing newline)."""
    return (json.dumps(content, indent=2) + "\n").encode()


@dataclass
class FakeRepo:
    """A model repo: files at one commit (reachable as ``main`` and any extra revisions).

    Files ending in ``.onnx`` or ``.data`` are listed as LFS files with their sha256.
    ``served`` replaces the bytes actually sent for a file (a tampered mirror), and
    ``listed_size`` the size the metadata claims.
    """

    repo_id: str
    files: dict
    commit: str = "0" * 40
    revisions: dict = field(default_factory=dict)
    gated: bool = False
    license: str | None = "mit"
    tags: tuple = ("onnx",)
    pipeline: str | None = "image-classification"
    downloads: int = 0
    likes: int = 0
    served: dict = field(default_factory=dict)
    listed_size: dict = field(default_factory=dict)

    def is_lfs(self, name: str) -> bool:
        return name.endswith((".onnx", ".data", ".safetensors", ".bin"))

    def resolve(self, revision: str) -> str | None:
        if revision in ("main", self.commit):
            return self.commit
        if revision in self.revisions.values():
            return revision
        return self.revisions.get(revision)

    def sibling(self, name: str) -> dict:
        data = self.files[name]
        size = self.listed_size.get(name, len(data))
        entry = {"rfilename": name, "size": size, "blobId": git_blob_sha1(data)}
        if self.is_lfs(name):
            entry["lfs"] = {"size": size, "sha256": hashlib.sha256(data).hexdigest(),
                            "pointerSize": 134}
        return entry

    def info(self, commit: str) -> dict:
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": commit, "private": False,
                "gated": "auto" if self.gated else False, "disabled": False,
                "downloads": self.downloads, "likes": self.likes, "library_name": "onnx",
                "tags": list(self.tags), "pipeline_tag": self.pipeline,
                "cardData": {"license": self.license} if self.license else {},
                "siblings": [self.sibling(n) for n in self.files]}


class _LocalServer:
    """An HTTP server on a free local port, serving ``Handler`` while in a ``with`` block;
    its address is ``base``."""

    def _serve(self, handler) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class FakeHub(_LocalServer):
    """The server: ``with FakeHub() as hub: hub.add(FakeRepo(...)); hub.endpoint``."""

    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                hub._handle(self, head=False)

            def do_HEAD(self):
                hub._handle(self, head=True)

        self._serve(Handler)
        self.endpoint = self.base

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def count(self, method: str, fragment: str = "") -> int:
        """How many requests of ``method`` had ``fragment`` in their path."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and fragment in p)

    # -- request handling -------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        with self._lock:
            self.requests.append((req.command, req.path))
        url = urllib.parse.urlsplit(req.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        query = urllib.parse.parse_qs(url.query)
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            return self._list(req, query, head)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._info(req, parts[2:], head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(req, parts, head)
        self._send(req, 404, b"not found", head=head)

    def _list(self, req, query, head):
        search = (query.get("search") or [""])[0].lower()
        filters = query.get("filter") or []
        pipeline = (query.get("pipeline_tag") or [None])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        found = [r for r in self.repos.values()
                 if search in r.repo_id.lower() and all(f in r.tags for f in filters)
                 and (pipeline is None or r.pipeline == pipeline)]
        found.sort(key=lambda r: -r.downloads)
        body = json.dumps([r.info(r.commit) for r in found[:limit]]).encode()
        self._send(req, 200, body, {"Content-Type": "application/json"}, head=head)

    def _info(self, req, parts, head):
        repo = self.repos.get("/".join(parts[:2]))
        if repo is None:
            return self._error(req, 404, "RepoNotFound", "Repository not found", head)
        revision = "main"
        if len(parts) >= 4 and parts[2] == "revision":
            revision = "/".join(parts[3:])
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(req, 404, "RevisionNotFound", "Invalid rev id", head)
        body = json.dumps(repo.info(commit)).encode()
        self._send(req, 200, body, {"Content-Type": "application/json"}, head=head)

    def _resolve(self, req, parts, head):
        repo = self.repos.get("/".join(parts[:2]))
        if repo is None:
            return self._error(req, 404, "RepoNotFound", "Repository not found", head)
        if repo.gated:
            return self._error(req, 403, "GatedRepo", "Access to this model is restricted",
                               head)
        commit = repo.resolve(parts[3])
        if commit is None:
            return self._error(req, 404, "RevisionNotFound", "Invalid rev id", head)
        name = "/".join(parts[4:])
        if name not in repo.files:
            return self._error(req, 404, "EntryNotFound", "Entry not found", head,
                               {"X-Repo-Commit": commit})
        data = repo.served.get(name, repo.files[name])
        listed = repo.sibling(name)
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit}
        if repo.is_lfs(name):
            etag = listed["lfs"]["sha256"]
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
        else:
            etag = listed["blobId"]
        headers["ETag"] = f'"{etag}"'
        self._send(req, 200, data, headers, head=head)

    def _error(self, req, status, code, message, head, extra=None):
        headers = {"X-Error-Code": code, "X-Error-Message": message,
                   "Content-Type": "application/json", **(extra or {})}
        self._send(req, status, json.dumps({"error": message}).encode(), headers, head=head)

    @staticmethod
    def _send(req, status, body: bytes, headers=None, *, head: bool):
        req.send_response(status)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if not head:
            req.wfile.write(body)


def point_client_at(monkeypatch, endpoint: str, home) -> None:
    """Make the installed ``huggingface_hub`` talk only to ``endpoint``, with no token and
    no state of the user's: the client reads its settings at import time, so both the
    environment and its ``constants`` module are set (and undone by ``monkeypatch``)."""
    from huggingface_hub import constants

    home = str(home)
    for key, value in {"HF_ENDPOINT": endpoint, "HF_HOME": home, "HF_HUB_OFFLINE": "0",
                       "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                       "NO_PROXY": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    settings = {"ENDPOINT": endpoint, "HUGGINGFACE_CO_URL_TEMPLATE": template,
                "HF_HUB_OFFLINE": False, "HF_HUB_DISABLE_TELEMETRY": True,
                "HF_HUB_DISABLE_XET": True, "HF_HOME": home, "HF_HUB_CACHE": f"{home}/hub",
                "HF_TOKEN_PATH": f"{home}/token", "HF_STORED_TOKENS_PATH": f"{home}/stored_tokens"}
    for key, value in settings.items():
        if hasattr(constants, key):
            monkeypatch.setattr(constants, key, value)
    forbid_remote_connections(monkeypatch)


def forbid_remote_connections(monkeypatch) -> None:
    """Fail any connection to a host other than this machine, so a test that would reach
    the internet (a client setting not redirected, say) fails instead of going out."""
    import socket

    connect = socket.create_connection

    def local_only(address, *args, **kwargs):
        if address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"tests may not connect to {address[0]}")
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)


class StaticServer(_LocalServer):
    """A plain HTTP server for download tests: ``routes`` maps a path to the bytes to
    serve, or to a callable that writes a raw response itself (to lie about lengths or
    drop the connection). Paths asked for are logged in ``hits``."""

    def __init__(self):
        self.routes: dict = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection, closed after it

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                elif callable(route):
                    route(self)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

        self._serve(Handler)

    def url(self, path: str) -> str:
        return self.base + path
