"""download(): bounded, hashed, atomic, content-addressed; against a local HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from support.hf_server import StaticServer
from zooindex.download import default_cache_dir, display_url, download
from zooindex.errors import DownloadError

BODY = bytes(range(256)) * 40  # 10 240 bytes
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    with StaticServer() as s:
        s.routes["/a/model.onnx"] = BODY
        s.routes["/b/copy.onnx"] = BODY
        yield s


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def raw(head: bytes, body: bytes):
    """A route writing a hand-made response (status line, headers, body) as is."""
    def route(handler):
        handler.wfile.write(head + b"\r\n" + body)
        handler.wfile.flush()
    return route


def test_stores_under_sha256_and_file_name(server, tmp_path):
    path = download(server.url("/a/model.onnx"), tmp_path)
    assert path == tmp_path / SHA / "model.onnx"
    assert path.read_bytes() == BODY
    assert files_under(tmp_path) == [path]  # no temporary file left beside it


def test_filename_can_be_chosen(server, tmp_path):
    path = download(server.url("/a/model.onnx"), tmp_path, filename="resnet.onnx")
    assert path == tmp_path / SHA / "resnet.onnx"


def test_known_sha256_in_cache_skips_the_network(server, tmp_path):
    first = download(server.url("/a/model.onnx"), tmp_path, sha256=SHA)
    assert server.hits == ["/a/model.onnx"]
    again = download(server.url("/a/model.onnx"), tmp_path, sha256=SHA.upper())
    assert again == first
    assert server.hits == ["/a/model.onnx"]  # served from the cache, no second request


def test_corrupted_cache_entry_is_fetched_again(server, tmp_path):
    path = download(server.url("/a/model.onnx"), tmp_path, sha256=SHA)
    path.write_bytes(b"bit rot")
    again = download(server.url("/a/model.onnx"), tmp_path, sha256=SHA)
    assert again.read_bytes() == BODY
    assert len(server.hits) == 2


def test_same_content_from_two_urls_is_stored_once(server, tmp_path):
    a = download(server.url("/a/model.onnx"), tmp_path, filename="m.onnx")
    b = download(server.url("/b/copy.onnx"), tmp_path, filename="m.onnx")
    assert a == b
    assert files_under(tmp_path) == [a]


def test_sha256_mismatch_names_url_expected_and_got_and_keeps_nothing(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(server.url("/a/model.onnx"), tmp_path, sha256=wrong)
    message = str(info.value)
    assert server.url("/a/model.onnx") in message and wrong in message and SHA in message
    assert files_under(tmp_path) == []


def test_declared_length_over_limit_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="10240 bytes, over the limit of 1000"):
        download(server.url("/a/model.onnx"), tmp_path, max_bytes=1000)
    assert files_under(tmp_path) == []


def test_chunked_body_over_limit_is_refused_though_its_length_header_lies(server, tmp_path):
    # Content-Length says 10 bytes, but a chunked body ignores it: 20 chunks of 100 bytes
    # arrive, and the count while streaming must stop the transfer past 1000 bytes.
    chunks = b"".join(b"64\r\n" + b"x" * 100 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    server.routes["/lie"] = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"
                                b"Transfer-Encoding: chunked\r\n", chunks)
    with pytest.raises(DownloadError, match="more than the limit of 1000"):
        download(server.url("/lie"), tmp_path, max_bytes=1000, filename="m.onnx")
    assert files_under(tmp_path) == []


def test_body_without_length_over_limit_is_refused(server, tmp_path):
    server.routes["/nolength"] = raw(b"HTTP/1.0 200 OK\r\n", b"y" * 5000)
    with pytest.raises(DownloadError, match="more than the limit of 1000"):
        download(server.url("/nolength"), tmp_path, max_bytes=1000)
    assert files_under(tmp_path) == []
    # the same body under a large enough limit is accepted in full
    path = download(server.url("/nolength"), tmp_path, max_bytes=5000)
    assert path.read_bytes() == b"y" * 5000


def test_dropped_connection_leaves_no_partial_file(server, tmp_path):
    # 1000 bytes announced, 400 sent, then the server closes the connection
    server.routes["/drop/model.onnx"] = raw(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n",
                                            b"z" * 400)
    with pytest.raises(DownloadError, match="broke off after 400 of 1000 bytes"):
        download(server.url("/drop/model.onnx"), tmp_path)
    assert files_under(tmp_path) == []


def test_http_error_status_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.onnx"), tmp_path)


def test_unreachable_server_is_a_download_error(tmp_path):
    with StaticServer() as gone:
        url = gone.url("/m.onnx")
    with pytest.raises(DownloadError, match="could not fetch"):
        download(url, tmp_path, timeout=5)


def test_local_path_and_file_url_are_copied_into_the_cache(tmp_path):
    source = tmp_path / "zoo" / "net.onnx"
    source.parent.mkdir()
    source.write_bytes(BODY)
    cache = tmp_path / "cache"
    by_path = download(str(source), cache, sha256=SHA)
    by_url = download(source.as_uri(), cache)
    assert by_path == by_url == cache / SHA / "net.onnx"
    assert by_path.read_bytes() == BODY


def test_missing_local_file_and_unknown_scheme_are_refused(tmp_path):
    with pytest.raises(DownloadError, match="not found"):
        download(str(tmp_path / "nope.onnx"), tmp_path)
    with pytest.raises(DownloadError, match="scheme 'ftp' is not supported"):
        download("ftp://example.org/m.onnx", tmp_path)


def test_bad_expected_digest_and_file_name_are_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="64 hex digits"):
        download(server.url("/a/model.onnx"), tmp_path, sha256="abc")
    with pytest.raises(DownloadError, match="without folders"):
        download(server.url("/a/model.onnx"), tmp_path, filename="../evil.onnx")
    assert server.hits == []


def test_display_url_hides_credentials_and_query():
    assert (display_url("https://user:secret@example.org:8443/m.onnx?sig=abc")
            == "https://example.org:8443/m.onnx")


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "models-here"))
    assert default_cache_dir() == tmp_path / "models-here"
    monkeypatch.delenv("ZOOINDEX_CACHE")
    assert default_cache_dir().name == "models"
    assert "zooindex" in str(default_cache_dir())
