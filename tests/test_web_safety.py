"""What the web server accepts from a browser, on hostile inputs: archives that try to
leave their folder or blow up, paths outside the data folders, bodies over the cap."""

import asyncio
import io
import os
import stat
import zipfile

import numpy as np
import pytest

pytest.importorskip("starlette")

from zooindex.errors import TargetError  # noqa: E402
from zooindex.web import safety  # noqa: E402
from zooindex.web.safety import (BodyLimit, TooLarge, data_candidates,  # noqa: E402
                                 extract_zip, resolve_data_path, safe_name)


def make_zip(path, members):
    """``members``: (name, bytes) or (ZipInfo, bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def png_bytes(value=0):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_plain_image_folder_zip_is_unpacked_images_only(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [
        ("set/cat/1.png", png_bytes(1)), ("set/dog/2.png", png_bytes(2)),
        ("set/README.txt", b"hello"), ("__MACOSX/set/cat/._1.png", b"fork"),
        ("set/.hidden/3.png", png_bytes(3)), ("set/dog/", b""),
    ])
    out = extract_zip(archive, tmp_path / "out", limit=10_000)
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert found == ["set/cat/1.png", "set/dog/2.png"]


@pytest.mark.parametrize("name", ["../evil.png", "set/../../evil.png", "/etc/evil.png",
                                  "C:/evil.png", "set\\..\\evil.png"])
def test_members_that_would_leave_the_folder_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "a.zip", [("set/cat/1.png", png_bytes()),
                                            (name, png_bytes())])
    with pytest.raises(TargetError, match="outside|absolute or unsafe"):
        extract_zip(archive, tmp_path / "out", limit=10_000)
    assert not (tmp_path / "evil.png").exists()


def test_a_symbolic_link_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("set/cat/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/cat/1.png", png_bytes())
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(TargetError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out", limit=10_000)


def test_a_device_or_fifo_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("set/cat/fifo.png")
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, b"")
    with pytest.raises(TargetError, match="not a plain file"):
        extract_zip(archive, tmp_path / "out", limit=10_000)


def test_a_zip_bomb_is_stopped_by_the_total_cap(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip",
                       [(f"set/c{i}/x.png", b"\0" * 4_000_000) for i in range(3)])
    assert archive.stat().st_size < 100_000
    with pytest.raises(TooLarge, match="unpacks to more than"):
        extract_zip(archive, tmp_path / "out", limit=5_000_000)


def test_sizes_an_archive_understates_are_counted_as_decompressed(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip", [("set/c/x.png", b"\0" * 50_000),
                                            ("set/d/y.png", b"\0" * 50_000)])
    real = zipfile.ZipFile.infolist

    def lying(self):
        members = real(self)
        for info in members:
            info.file_size = 10  # what the central directory claims
        return members

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying)
    with pytest.raises((TooLarge, TargetError)):
        extract_zip(archive, tmp_path / "out", limit=60_000)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 60_000


def test_too_many_members_are_refused_before_unpacking(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [(f"set/c/{i}.png", b"x") for i in range(20)])
    with pytest.raises(TooLarge, match="20 members"):
        extract_zip(archive, tmp_path / "out", limit=10_000, max_members=10)


def test_not_a_zip(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"PK nope")
    with pytest.raises(TargetError, match="cannot read the archive"):
        extract_zip(tmp_path / "a.zip", tmp_path / "out", limit=10)


@pytest.mark.parametrize("sent, kept", [
    ("../../etc/passwd.npz", "passwd.npz"), ("C:\\Users\\me\\x.npz", "x.npz"),
    (".bashrc", "bashrc"), ("my data (1).npz", "my_data_1_.npz"), ("", "upload"),
    ("...", "upload"),
])
def test_upload_names_are_made_plain(sent, kept):
    assert safe_name(sent) == kept


class _Upload:
    def __init__(self, name, data):
        self.filename, self._data = name, io.BytesIO(data)

    async def read(self, n):
        return self._data.read(n)


def test_save_upload_checks_suffix_size_and_emptiness(tmp_path):
    run = asyncio.run
    saved = run(safety.save_upload(_Upload("../t.npz", b"abc"), tmp_path, limit=10))
    assert saved == tmp_path / "t.npz" and saved.read_bytes() == b"abc"
    with pytest.raises(TargetError, match=".npz file"):
        run(safety.save_upload(_Upload("x.pkl", b"abc"), tmp_path, limit=10))
    with pytest.raises(TooLarge):
        run(safety.save_upload(_Upload("big.npz", b"a" * 11), tmp_path, limit=10))
    with pytest.raises(TargetError, match="empty"):
        run(safety.save_upload(_Upload("e.zip", b""), tmp_path, limit=10))


# -- paths --------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path):
    data = tmp_path / "data"
    (data / "sets").mkdir(parents=True)
    (data / "sets" / "a.npz").write_bytes(b"x")
    secret = tmp_path / "secret.npz"
    secret.write_bytes(b"x")
    os.symlink(secret, data / "sets" / "link.npz")
    os.symlink(tmp_path, data / "up")
    return data, secret


def test_paths_under_the_data_folders_resolve(roots):
    data, _ = roots
    assert resolve_data_path("sets/a.npz", [data]) == (data / "sets" / "a.npz").resolve()
    assert resolve_data_path(str(data / "sets" / "a.npz"), [data]) == \
        (data / "sets" / "a.npz").resolve()


@pytest.mark.parametrize("path", ["../secret.npz", "sets/../../secret.npz", "sets/link.npz",
                                  "up/secret.npz", "/etc/passwd", "missing.npz", "", "a\0b"])
def test_paths_outside_the_data_folders_are_refused(roots, path):
    data, secret = roots
    given = path if path != "../secret.npz" else str(secret)
    with pytest.raises(TargetError):
        resolve_data_path(given, [data])


def test_no_data_folders_no_paths(roots):
    with pytest.raises(TargetError, match="without data folders"):
        resolve_data_path("sets/a.npz", [])


def test_candidates_stay_inside_and_skip_label_files(roots, tmp_path):
    data, secret = roots
    (data / "sets" / "X.npy").write_bytes(b"x")
    (data / "sets" / "y.npy").write_bytes(b"x")
    (data / "sets" / "notes.txt").write_bytes(b"x")
    images = data / "pics" / "cat"
    images.mkdir(parents=True)
    (images / "1.png").write_bytes(png_bytes())
    found = [str(p.relative_to(data)) for p in data_candidates([data])]
    assert found == ["pics", "sets/X.npy", "sets/a.npz"]


# -- request bodies ---------------------------------------------------------------------


def _call(app, method="POST", headers=(), chunks=(b"",)):
    """Run an ASGI app on one request; (status, body)."""
    sent = []
    pending = list(chunks)

    async def receive():
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/", "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def _reader(scope, receive, send):
    """An app that reads the whole body, then answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def test_body_limit_refuses_an_announced_length_before_reading():
    read = []

    async def app(scope, receive, send):  # never reached
        read.append(True)

    status, body = _call(BodyLimit(app, 100), headers=[(b"content-length", b"101")])
    assert status == 413 and b"larger than this server accepts" in body and not read


def test_body_limit_counts_a_chunked_body_as_it_comes():
    limited = BodyLimit(_reader, 100)
    assert _call(limited, chunks=[b"a" * 60, b"b" * 40]) == (200, b"100")
    status, _ = _call(limited, chunks=[b"a" * 60, b"b" * 60])
    assert status == 413


def test_body_limit_leaves_reads_alone():
    assert _call(BodyLimit(_reader, 1), method="GET", chunks=[b"a" * 10]) == (200, b"10")


def test_same_origin_refuses_other_origins_and_lets_scripts_through():
    guarded = safety.SameOrigin(_reader)
    host = (b"host", b"127.0.0.1:8000")
    assert _call(guarded, headers=[host])[0] == 200
    assert _call(guarded, headers=[host, (b"origin", b"http://127.0.0.1:8000")])[0] == 200
    assert _call(guarded, headers=[host, (b"origin", b"http://evil.example")])[0] == 403
    assert _call(guarded, headers=[host, (b"origin", b"null")])[0] == 403
    assert _call(guarded, method="GET",
                 headers=[host, (b"origin", b"http://evil.example")])[0] == 200
