"""Helpers for the web tests: a real server on loopback, waiting for searches, archives."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import zipfile

import numpy as np


@contextlib.contextmanager
def served(app):
    """Run ``app`` with uvicorn in a thread on 127.0.0.1 and a free port; yield its URL.

    The socket is bound here, so the port is known before the server starts, and only
    the loopback interface is listened on.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def settled(client, job_id: str, timeout: float = 120.0) -> dict:
    """The API's view of a search once it is done (or failed), polling ``/api/search``."""
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/api/search/{job_id}", params={"wait": 5}).json()
        if doc["state"] in ("done", "failed"):
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"search {job_id} still {doc['state']} after {timeout} s")


def image_zip(x, y, names=None, top: str | None = "images") -> bytes:
    """A ``.zip`` of an image folder ``[top/]<class>/<i>.png`` with grey images ``x``."""
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (image, label) in enumerate(zip(np.asarray(x), np.asarray(y))):
            png = io.BytesIO()
            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(png, format="PNG")
            cls = names[label] if names is not None else str(label)
            zf.writestr(f"{top + '/' if top else ''}{cls}/{i:04d}.png", png.getvalue())
    return buffer.getvalue()
