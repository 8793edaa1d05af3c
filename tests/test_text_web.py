"""A text target on the web page: uploaded as CSV, ranked, shown by its texts."""

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
pytest.importorskip("multipart")

from starlette.testclient import TestClient  # noqa: E402

import zooindex  # noqa: E402
from support.text_models import tiny_encoder, write_tokenizer  # noqa: E402
from support.web import settled  # noqa: E402
from zooindex.web import create_app  # noqa: E402


def test_an_uploaded_csv_is_ranked_and_shown_by_its_texts(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    tiny_encoder(folder / "tiny.onnx")
    write_tokenizer(folder)
    index = tmp_path / "i.db"
    zooindex.add(folder / "tiny.onnx", index=index)
    rows = ["text,label"] + [f"{'good fun' if i % 2 else 'bad boring'} movie {i},"
                             f"{'pos' if i % 2 else 'neg'}" for i in range(12)]
    client = TestClient(create_app(index, data=[tmp_path], figures=False))
    reply = client.post("/api/search", files={"file": ("reviews.csv",
                                                       "\n".join(rows).encode())})
    assert reply.status_code in (200, 202), reply.text
    doc = settled(client, reply.json()["id"])
    assert doc["state"] == "done", doc["error"]
    target = doc["target"]
    assert target["kind"] == "text" and target["counts"] == {"neg": 6, "pos": 6}
    # the first text of each class first
    assert [s["label"] for s in target["samples"][:2]] == ["neg", "pos"]
    assert doc["ranking"]["results"][0]["model"] == "tiny"
    page = client.get(doc["page"]).text
    assert "Samples per class: neg 6, pos 6" in page and "bad boring movie 0" in page
    assert ">texts</span>" in page
