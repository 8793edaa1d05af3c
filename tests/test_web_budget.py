"""A search on a budget from the web page and the JSON API: the race's ranking, what it
spent and saved, its rounds, the dropped models and the advice."""

import html
import re

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
pytest.importorskip("multipart")

from starlette.testclient import TestClient  # noqa: E402

import zooindex  # noqa: E402
from support.data import race_zoo  # noqa: E402
from support.web import settled  # noqa: E402
from zooindex.budget import parse_budget  # noqa: E402
from zooindex.errors import ZooIndexError  # noqa: E402
from zooindex.web import create_app  # noqa: E402


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    """Eight models (one sees both informative dims, one sees one, six see noise) and a
    3-class target of 3 x 64 samples: enough models for a race to drop some."""
    root = tmp_path_factory.mktemp("webbudget")
    zoo = race_zoo(root)
    return {"root": root, "index": zoo["index"], "n": zoo["n"],
            "client": TestClient(create_app(zoo["index"], data=[root]))}


@pytest.fixture(scope="module")
def raced(race):
    """One budgeted search through the form: (its job document, its page)."""
    client = race["client"]
    reply = client.post("/search", data={"path": "target.npz", "scorer": "knn",
                                         "budget": "50%", "top": "1"},
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text
    url = reply.headers["location"]
    doc = settled(client, url.rsplit("/", 1)[1])
    assert doc["state"] == "done", doc["error"]
    return doc, client.get(url).text


def cells(page: str, table_id: str) -> list[tuple[str, list[str]]]:
    """Each body row of a table: its class attribute and the text of its cells."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page,
                     re.S).group(1)
    return [(cls, [re.sub(r"<[^>]+>|\s+", " ", c).strip()
                   for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)])
            for cls, row in re.findall(r'<tr(?: class="([^"]*)")?>(.*?)</tr>', body, re.S)]


def test_the_api_gives_the_race_as_the_python_api_runs_it(raced, race):
    doc, _ = raced
    budget = doc["budget"]
    # the same race in Python reads what the web's left in the cache: same order, same
    # images seen (the subsamples are drawn from the seed, not from the clock)
    again = zooindex.search_on_budget(race["root"] / "target.npz", budget=0.5, k=1,
                                      index=race["index"], scorers=["knn"])
    assert budget["order"] == again.order and budget["seen"] == again.seen
    assert budget["order"][0] == "good"
    assert budget["budget"] == "50%" and 0 < budget["spent"] <= 0.5
    assert budget["saved"] == pytest.approx(1 - budget["spent"], abs=1e-4)
    assert budget["advice"] == again.advice and "per class" in budget["advice"]
    assert len(budget["rounds"]) == len(again.rounds) >= 2
    # the ranking is the last round's: its survivors, each with the images it saw
    results = doc["ranking"]["results"]
    survivors = [r["model"] for r in results if r["status"] == "ok"]
    assert survivors == budget["order"][:len(survivors)]
    assert all(r["images_seen"] == budget["seen"][r["model"]] for r in results
               if r["status"] == "ok")
    # every other model was dropped, after the round that the rounds name it in
    dropped = budget["dropped"]
    assert [d["model"] for d in dropped] == budget["order"][len(survivors):]
    assert dropped, "eight models, one informative: the race drops some"
    for d in dropped:
        assert d["model"] in budget["rounds"][d["round"] - 1]["dropped"]
        assert d["images"] == budget["seen"][d["model"]] < race["n"]
    # one progress row per round
    rounds = [p for p in doc["progress"] if "round" in p]
    assert [p["round"] for p in rounds] == list(range(1, len(budget["rounds"]) + 1))
    assert [p["models"] for p in rounds] == [r["models"] for r in budget["rounds"]]


def test_the_page_shows_survivors_then_the_dropped_with_what_they_saw(raced):
    doc, page = raced
    budget = doc["budget"]
    rows = cells(page, "ranking")
    ranked = [r for cls, r in rows if cls != "dropped"]
    dropped = [r for cls, r in rows if cls == "dropped"]
    assert [r[1] for r in ranked] == [r["model"] for r in doc["ranking"]["results"]
                                      if r["status"] == "ok"]
    assert [r[1] for r in dropped] == [d["model"] for d in budget["dropped"]]
    for r, d in zip(dropped, budget["dropped"]):
        assert r[0] == "–" and f"dropped after round {d['round']}" in r
        assert f"{d['images']:,}" in r
    # what was spent and saved, the rounds and the advice, escaped as the page escapes
    assert f"Budget 50%: spent {budget['spent']:.1%}" in page
    assert f"saved {budget['saved']:.1%}" in page
    assert len(cells(page, "rounds")) == len(budget["rounds"])
    advice = re.search(r'<p class="advice" id="advice">(.*?)</p>', page, re.S).group(1)
    assert html.unescape(advice) == budget["advice"][0].upper() + budget["advice"][1:] + "."
    assert 'id="budget-pill"' in page and "budget 50%, top 1" in page


def test_a_budgeted_search_draws_its_figures_on_what_the_survivors_saw(raced, race):
    doc, page = raced
    assert doc["figures"], doc.get("figures_error")
    image = race["client"].get(doc["figures"]["scatter"])
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    images = doc["budget"]["rounds"][-1]["images"]
    assert f"on the {images:,} images they saw" in page


@pytest.mark.parametrize("bad", ["soon", "150%", "0", "-3s"])
def test_a_bad_budget_is_the_cli_s_one_line_error_on_the_form(race, bad):
    with pytest.raises(ZooIndexError) as raised:
        parse_budget(bad)
    page = race["client"].post("/search", data={"path": "target.npz", "budget": bad})
    assert page.status_code == 400
    shown = re.search(r'<p class="error" id="error">(.*?)</p>', page.text, re.S).group(1)
    assert html.unescape(shown) == str(raised.value) and "\n" not in shown
    assert f'name="budget" id="budget" value="{html.escape(bad)}"' in page.text  # kept
    api = race["client"].post("/api/search", json={"path": "target.npz", "budget": bad})
    assert api.status_code == 400 and api.json() == {"error": str(raised.value)}


def test_a_bad_top_is_a_one_line_error(race):
    page = race["client"].post("/api/search", json={"path": "target.npz", "budget": "auto",
                                                    "top": 0})
    assert page.status_code == 400 and "top must be a positive whole number" in page.text


def test_a_search_without_a_budget_has_no_race(race):
    client = race["client"]
    doc = settled(client, client.post("/api/search", json={
        "path": "target.npz", "scorer": "knn", "budget": ""}).json()["id"])
    assert doc["state"] == "done" and doc["budget"] is None
    assert len(doc["ranking"]["results"]) == 8
    assert all("images_seen" not in r for r in doc["ranking"]["results"])
    page = client.get(doc["page"]).text
    assert 'class="dropped"' not in page and 'id="rounds"' not in page
    assert "Ranking on a budget" not in page and "budget-pill" not in page


def test_a_read_only_server_refuses_a_budget_in_one_line(race):
    ro = TestClient(create_app(race["index"], data=[race["root"]], read_only=True))
    reply = ro.post("/api/search", json={"path": "target.npz", "budget": "0.3"})
    assert reply.status_code == 400 and "read-only" in reply.json()["error"]


def test_progress_streams_one_line_per_round(race):
    import json

    client = race["client"]
    job = client.post("/api/search", json={"path": "target.npz", "scorer": "knn",
                                           "budget": "auto", "top": 1}).json()
    events, kind = [], None
    with client.stream("GET", f"/search/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1][0] == "settled" and events[-1][1]["error"] is None
    lines = [d["line"] for k, d in events if k == "progress"]
    assert lines and all(re.match(r"^round \d+: \d+ models on \d+ images per class "
                                  r"\(\d+ each\), \d+\.\d\d s", line) for line in lines)
    doc = settled(client, job["id"])
    assert len(lines) == len(doc["budget"]["rounds"])
