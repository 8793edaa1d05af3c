"""The web pages and JSON API of `zooindex serve`, in process: every route on a small zoo
built in code and on the shipped demo zoo."""

import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
pytest.importorskip("multipart")

from starlette.testclient import TestClient  # noqa: E402

import zooindex  # noqa: E402
from support.data import three_model_zoo  # noqa: E402
from support.web import image_zip, settled  # noqa: E402
from zooindex.web import create_app  # noqa: E402
from zooindex.web import jobs  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
FASHION = {"fashion-0-4", "fashion-all"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The three-model zoo (good, mixed, noise), tagged, served with its folder as data."""
    root = tmp_path_factory.mktemp("web")
    made = three_model_zoo(root)
    zooindex.add(made["folder"] / "good.onnx", index=made["index"], tags={"kind": "signal"})
    zooindex.add(made["folder"] / "mixed.onnx", index=made["index"], tags={"kind": "half"})
    zooindex.add(made["folder"] / "noise.onnx", index=made["index"])
    made["root"] = root
    made["client"] = TestClient(create_app(made["index"], data=[root]))
    return made


@pytest.fixture(scope="module")
def searched(small):
    """The small zoo after one search through the API: (client, job document)."""
    client = small["client"]
    reply = client.post("/api/search", json={"path": "target.npz", "scorer": "silhouette",
                                             "scorers": ["knn"]})
    assert reply.status_code in (200, 202), reply.text
    return client, settled(client, reply.json()["id"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    index = tmp_path_factory.mktemp("demo") / "demo.db"
    zooindex.add(DEMO, index=index)
    # the figures are drawn in the small zoo's tests and the browser test
    return {"index": index, "client": TestClient(create_app(index, data=[DEMO], figures=False))}


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of the table with this id."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[re.sub(r"<[^>]+>|\s+", " ", c).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]


# -- the zoo page --------------------------------------------------------------------


def test_zoo_lists_every_model_with_what_it_expects(small):
    page = small["client"].get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    rows = cells(page.text, "zoo")
    assert [r[0] for r in rows] == ["good", "mixed", "noise"]
    good = rows[0]
    # name, status, params, input, default layer, width, source, tags
    assert good[1] == "ok" and good[3] == "N × 8" and good[5] == "2" and good[6] == "local"
    assert good[7] == "kind=signal" and good[2] == f"{zooindex.ls(index=small['index'])[0]['params']:,}"
    assert 'href="/models/good"' in page.text


@pytest.mark.parametrize("query, names", [
    ({"name": "o"}, ["good", "noise"]),
    ({"name": "m*"}, ["mixed"]),
    ({"tag": "kind=half"}, ["mixed"]),
    ({"source": "local"}, ["good", "mixed", "noise"]),
    ({"source": "hf"}, []),
])
def test_zoo_filters_by_name_tag_and_source(small, query, names):
    page = small["client"].get("/", params=query)
    assert page.status_code == 200
    found = [r[0] for r in cells(page.text, "zoo")] if names else []
    assert found == names
    if not names:
        assert "No model matches" in page.text


def test_zoo_filters_by_size(small):
    sizes = {r["name"]: r["params"] for r in zooindex.ls(index=small["index"])}
    cap = min(sizes.values())
    rows = cells(small["client"].get("/", params={"max_params": f"{cap:,}"}).text, "zoo")
    assert [r[0] for r in rows] == sorted(n for n, p in sizes.items() if p <= cap)
    bad = small["client"].get("/", params={"max_params": "lots"})
    assert bad.status_code == 200 and "is not a number" in bad.text


@pytest.mark.parametrize("column", ["name", "status", "params", "input", "layer", "width",
                                    "source", "tags"])
def test_zoo_sorts_by_any_column_both_ways(small, column):
    up = cells(small["client"].get("/", params={"sort": column}).text, "zoo")
    down = cells(small["client"].get("/", params={"sort": column, "order": "desc"}).text,
                 "zoo")
    assert len(up) == len(down) == 3
    if column == "width":  # good is 2 wide, the others 4
        assert up[0][0] == "good" and down[-1][0] == "good"
    if column == "name":
        assert [r[0] for r in down] == ["noise", "mixed", "good"]


def test_zoo_header_links_flip_the_order(small):
    page = small["client"].get("/", params={"sort": "params", "name": "o"}).text
    assert 'href="/?name=o&amp;sort=params&amp;order=desc"' in page


# -- one model ---------------------------------------------------------------------------


def test_model_page_has_layers_preprocessing_metadata_and_scores(searched):
    client, done = searched
    page = client.get("/models/good")
    assert page.status_code == 200
    layers = cells(page.text, "layers")
    assert [r[1] for r in layers] == [l.name for l in zooindex.layers("good", index=done and
                                                                            _index(client))]
    assert [r[0] for r in layers].count("★") == 1
    assert 'id="preprocessing"' in page.text and "sha256" in page.text
    assert 'id="preprocessing-applied"' in page.text and "pixels to [0, 1]" in page.text
    scores = cells(page.text, "scores")
    assert {r[2].split(" ")[0] for r in scores} == {"silhouette", "knn"}
    assert all(r[5] == "1 of 3" for r in scores if r[2].startswith("silhouette"))
    assert f'href="/history/{done["target"]["key"]}"' in page.text


def _index(client):
    return client.app.state.server.settings.index


def test_unknown_model_is_a_404_page_naming_the_indexed_ones(small):
    page = small["client"].get("/models/resnet")
    assert page.status_code == 404 and "not in the index" in page.text and "good" in page.text


# -- searching ---------------------------------------------------------------------


def test_search_form_offers_the_data_sets_and_every_scorer(small):
    page = small["client"].get("/search", params={"name": "good"})
    assert page.status_code == 200
    assert f'value="{small["target"]}"' in page.text  # found under the data folder
    for e in zooindex.scorers():
        assert f'value="{e.name}"' in page.text
    assert 'name="name" value="good"' in page.text  # prefilled from the query


def test_a_search_from_the_form_shows_its_ranking_and_figures(small):
    client = small["client"]
    reply = client.post("/search", data={"path": str(small["target"]), "dim": "5"},
                        follow_redirects=False)
    assert reply.status_code == 303
    job_url = reply.headers["location"]
    job_id = job_url.rsplit("/", 1)[1]
    doc = settled(client, job_id)
    assert doc["state"] == "done", doc["error"]
    page = client.get(job_url)
    assert page.status_code == 200
    rows = cells(page.text, "ranking")
    assert [r[1] for r in rows] == ["good", "mixed", "noise"]
    # the default, LogME, reads the full features: the page names no D it did not use
    assert "D=5" not in page.text and f"/history/{doc['target']['key']}" in page.text
    for figure in ("curves", "scatter", "ranking"):
        image = client.get(f"{job_url}/figures/{figure}.png")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"{job_url}/figures/other.png").status_code == 404


def test_progress_streams_one_event_per_model_then_settles(small):
    client = small["client"]
    reply = client.post("/api/search", json={"path": "target.npz", "dim": 3,
                                             "scorer": "ensemble"})
    job_id = reply.json()["id"]
    events = []
    with client.stream("GET", f"/search/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "settled" and events[-1][1]["state"] in ("figures", "done")
    progress = [d for k, d in events if k == "progress"]
    assert sorted(d["model"] for d in progress) == ["good", "mixed", "noise"]
    # ranked by the ensemble: each line gives the members' scores so far
    assert all(re.match(r"^\w+: logme -?\d\.\d{4}, sfda -?\d\.\d{4}, knn .* \(", d["line"])
               for d in progress)


def test_a_search_served_from_the_cache_answers_at_once(searched):
    client, done = searched
    reply = client.post("/search", data={"path": "target.npz", "scorer": "silhouette",
                                         "scorers": "knn"},
                        follow_redirects=True)
    assert reply.status_code == 200
    # the ranking itself, not the progress page
    assert 'id="ranking"' in reply.text and 'id="live"' not in reply.text
    job_id = str(reply.url).rsplit("/", 1)[1]
    doc = client.get(f"/api/search/{job_id}").json()
    assert all(p["cached"] for p in doc["progress"])
    assert doc["ranking"]["stats"]["from_scores"] == 3
    # the same ranking again: its figures are not drawn twice
    assert settled(client, job_id)["state"] == "done"
    queue = client.app.state.server.queue
    assert queue.get(job_id).figures is queue.get(done["id"]).figures is not None


def test_search_errors_come_back_on_the_form(small):
    client = small["client"]
    no_target = client.post("/search", data={"dim": "10"})
    assert no_target.status_code == 400 and "choose a target" in no_target.text
    outside = client.post("/search", data={"path": "/etc/passwd"})
    assert outside.status_code == 400 and "not a file or folder under the data" in outside.text
    bad_scorer = client.post("/search", data={"path": "target.npz", "scorer": "magic"})
    assert bad_scorer.status_code == 400 and "silhouette" in bad_scorer.text
    bad_dim = client.post("/search", data={"path": "target.npz", "dim": "ten", "classes": "7"})
    assert bad_dim.status_code == 400 and "whole number" in bad_dim.text
    assert 'name="classes" value="7"' in bad_dim.text  # what was typed stays


def test_a_target_that_cannot_be_read_fails_the_search_with_its_reason(small):
    (small["root"] / "broken.npz").write_bytes(b"not a zip")
    client = small["client"]
    job = client.post("/api/search", json={"path": "broken.npz"}).json()
    doc = settled(client, job["id"])
    assert doc["state"] == "failed" and "broken.npz" in doc["error"]
    page = client.get(doc["page"])
    assert 'id="error"' in page.text


def test_a_search_that_ranks_nothing_fails_with_the_shared_reason(small):
    client = small["client"]
    job = client.post("/api/search", json={"path": "target.npz", "layer": "fc9"}).json()
    doc = settled(client, job["id"])
    assert doc["state"] == "failed"
    assert doc["error"] == ("no model could be ranked for this target: no layer 'fc9' "
                            "(see `zooindex layers MODEL`) (all 3 models)")
    assert [p["status"] for p in doc["progress"]] == ["skipped"] * 3


def test_unknown_search_is_gone(small):
    page = small["client"].get("/search/nope")
    assert page.status_code == 404 and "kept in memory" in page.text
    assert small["client"].get("/api/search/nope").status_code == 404
    assert small["client"].get("/search/nope/events").status_code == 404


def test_searches_queue_one_at_a_time_and_show_their_place(small):
    """A search that waits says how many go before it; they run in order."""
    client = small["client"]
    queue = client.app.state.server.queue
    release = threading.Event()

    def blocked():
        release.wait(30)
        raise zooindex.TargetError("released")

    first = queue.submit(jobs.Job(label="blocker", load=blocked, options=None))
    try:
        reply = client.post("/search", data={"path": "target.npz"}, follow_redirects=True)
        assert "Waiting: 1 search ahead of this one." in reply.text
        job_id = str(reply.url).rsplit("/", 1)[1]
        doc = client.get(f"/api/search/{job_id}").json()
        assert doc["state"] == "queued" and doc["position"] == 1
        with client.stream("GET", f"/search/{job_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    assert json.loads(line[6:]) == {"position": 1}
                    break
        assert "2 searches running or waiting" in client.get("/").text
    finally:
        release.set()
    doc = settled(client, job_id)
    assert doc["state"] == "done" and first.state == "failed"
    assert first.finished <= queue.get(job_id).started


# -- uploads ----------------------------------------------------------------------------


def test_an_uploaded_npz_is_ranked_and_not_kept(small):
    client = small["client"]
    data = io.BytesIO()
    np.savez(data, x=small["x"][::2], y=small["y"][::2])  # not the target under data/
    reply = client.post("/api/search", files={"file": ("my data.npz", data.getvalue())},
                        data={"dim": "4"})
    doc = settled(client, reply.json()["id"])
    assert doc["state"] == "done", doc["error"]
    assert doc["target"]["source"] == "upload my_data.npz"
    assert [r["model"] for r in doc["ranking"]["results"]][0] == "good"
    history = client.get("/api/history").json()
    assert "upload my_data.npz" in {t["source"] for t in history}


def test_an_uploaded_image_folder_zip_is_ranked(demo):
    with np.load(DEMO / "fashion-0-4-target.npz") as data:
        x, y = data["x"], data["y"]
    keep = np.concatenate([np.flatnonzero(y == k)[:12] for k in range(5)])
    names = ["tshirt", "trouser", "pullover", "dress", "coat"]
    archive = image_zip(x[keep], y[keep], names)
    client = demo["client"]
    reply = client.post("/api/search", files={"file": ("fashion.zip", archive)})
    doc = settled(client, reply.json()["id"])
    assert doc["state"] == "done", doc["error"]
    assert doc["target"]["n"] == 60 and doc["target"]["classes"] == sorted(names)
    assert len(doc["ranking"]["results"]) == 6


def test_uploads_of_other_kinds_or_too_large_are_refused(tmp_path, small):
    client = small["client"]
    wrong = client.post("/api/search", files={"file": ("model.onnx", b"xx")})
    assert wrong.status_code == 400 and ".npz" in wrong.json()["error"]
    tiny = TestClient(create_app(small["index"], data=[small["root"]], max_upload=2_000))
    big = tiny.post("/api/search", files={"file": ("t.npz", b"0" * 5_000)})
    assert big.status_code == 413 and "larger than this server accepts" in big.json()["error"]
    huge = tiny.post("/search", files={"file": ("t.npz", b"0" * 2_000_000)})
    assert huge.status_code == 413 and "Back to the search form" in huge.text
    huge = tiny.post("/api/search", files={"file": ("t.npz", b"0" * 2_000_000)})
    assert huge.status_code == 413 and "larger than" in huge.json()["error"]


# -- history --------------------------------------------------------------------------


def test_history_lists_targets_and_links_their_rankings(searched):
    client, done = searched
    key = done["target"]["key"]
    page = client.get("/history")
    assert page.status_code == 200 and f'href="/history/{key}"' in page.text
    past = client.get(f"/history/{key}")
    assert past.status_code == 200
    assert "silhouette (D=10, cosine, seed=0)" in past.text and "knn" in past.text
    assert "Search again" in past.text  # the target is under the data folder
    assert client.get(f"/history/{key[:10]}").status_code == 200
    missing = client.get("/history/" + "0" * 64)
    assert missing.status_code == 404 and "not in the index" in missing.text


# -- JSON --------------------------------------------------------------------------


def test_api_mirrors_the_python_api(searched):
    client, done = searched
    index = _index(client)
    assert client.get("/api").json()["routes"]
    assert client.get("/api/models").json() == json.loads(json.dumps(zooindex.ls(index=index)))
    assert [m["name"] for m in client.get("/api/models", params={"tag": "kind=half"}).json()] \
        == ["mixed"]
    assert client.get("/api/models/good").json() == json.loads(json.dumps(
        zooindex.show("good", index=index)))
    layers = client.get("/api/layers/good").json()
    assert [l["name"] for l in layers] == [l.name for l in zooindex.layers("good", index=index)]
    assert sum(l["is_default"] for l in layers) == 1
    from zooindex.estimators.combine import listing

    offered = client.get("/api/scorers").json()
    assert [s["name"] for s in offered] == ["recommended"] + [
        r["name"] for r in listing() if not r["experimental"]]
    # the default, LogME, described as itself
    assert offered[0]["default"] and offered[0]["description"].startswith("LogME")
    assert offered[0]["description"] == next(
        r["description"] for r in listing() if r["name"] == "logme")
    assert {e.name for e in zooindex.scorers()} <= {s["name"] for s in offered}
    assert client.get("/api/models/nope").status_code == 404
    assert client.get("/api/layers/nope").status_code == 404


def test_a_search_without_a_scorer_ranks_by_the_recommended_logme(small):
    client = small["client"]
    form = client.get("/search").text
    assert '<option value="recommended" selected' in form
    reply = client.post("/api/search", json={"path": "target.npz"})
    done = settled(client, reply.json()["id"])
    got = done["ranking"]
    assert got["scorers"] == ["logme"] and got["members"] == {}
    assert [r["model"] for r in got["results"]][0] == "good"
    assert all(r["score"] == r["scores"]["logme"] for r in got["results"])
    # live progress gives each model's own score: no combination waits for the others
    from zooindex.web.jobs import progress_line

    lines = [progress_line(p) for p in done["progress"]]
    assert len(lines) == 3 and all(re.match(r"^\w+: -?\d+\.\d{4} \(", line) for line in lines)


def test_a_search_by_the_ensemble_shows_its_members(small):
    client = small["client"]
    reply = client.post("/api/search", json={"path": "target.npz", "scorer": "ensemble"})
    done = settled(client, reply.json()["id"])
    got = done["ranking"]
    assert got["scorers"] == ["ensemble"]
    assert got["members"] == {"ensemble": ["logme", "sfda", "knn", "ncti-sei"]}
    assert [r["model"] for r in got["results"]][0] == "good"
    # live progress names the members: the combined score exists only at the end
    from zooindex.web.jobs import progress_line

    lines = [progress_line(p) for p in done["progress"]]
    assert len(lines) == 3 and all(re.match(r"^\w+: logme -?\d\.\d{4}, sfda ", line)
                                   for line in lines)
    page = client.get(done["page"]).text
    for name in ("ensemble", "logme", "sfda", "knn", "ncti-sei"):
        assert f'<th class="num">{name}</th>' in page


def test_api_search_result_is_the_ranking(searched):
    client, done = searched
    ranking = zooindex.search(str(Path(done["target"]["source"])), index=_index(client),
                              scorers=["silhouette", "knn"])
    got = done["ranking"]
    assert got["scorers"] == ["silhouette", "knn"] and got["dim"] == 10 and got["n"] == 120
    assert [(r["model"], r["score"], r["scores"]) for r in got["results"]] == \
        [(r.model, r.score, r.scores) for r in ranking.results]
    assert set(got["results"][0]) == set(ranking.results[0].to_dict())
    assert done["figures"]["curves"].endswith("/figures/curves.png")


def test_api_history_mirrors_zooindex_history(searched):
    from zooindex import history

    client, done = searched
    index = _index(client)
    assert client.get("/api/history").json() == json.loads(json.dumps(
        [t.to_dict(rankings=False) for t in history.targets(index=index)]))
    key = done["target"]["key"]
    assert client.get(f"/api/history/{key}").json() == json.loads(json.dumps(
        history.target(key, index=index).to_dict()))
    assert client.get("/api/history/deadbeefdeadbeef").status_code == 404


def test_api_errors_are_json(small):
    client = small["client"]
    reply = client.post("/api/search", json={"path": "target.npz", "metric": "manhattan"})
    assert reply.status_code == 400 and "cosine" in reply.json()["error"]
    reply = client.post("/api/search", content=b"{", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]
    assert client.get("/api/nothing").json()["error"] == "not found"


def test_static_files_and_unknown_pages(small):
    client = small["client"]
    assert client.get("/static/style.css").status_code == 200
    script = client.get("/static/search.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert client.get("/static/../app.py").status_code == 404
    page = client.get("/nowhere")
    assert page.status_code == 404 and "There is no page" in page.text


def test_pages_load_nothing_from_elsewhere(searched):
    client, done = searched
    for url in ("/", "/models/good", "/search", done["page"], "/history"):
        page = client.get(url).text
        for found in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert found.startswith(("/", "#")), (url, found)


# -- the demo zoo -----------------------------------------------------------------------


def test_demo_search_puts_the_fashion_models_on_top(demo):
    client = demo["client"]
    reply = client.post("/api/search", json={"path": "fashion-0-4-target.npz"})
    doc = settled(client, reply.json()["id"])
    assert doc["state"] == "done", doc["error"]
    results = doc["ranking"]["results"]
    assert {r["model"] for r in results[:2]} == FASHION
    assert len(results) == 6 and doc["target"]["n"] == 1000
    page = client.get("/")
    assert len(cells(page.text, "zoo")) == 6


# -- safety of the served app ------------------------------------------------------


def test_a_post_from_another_site_is_refused(small):
    client = small["client"]
    reply = client.post("/api/search", json={"path": "target.npz"},
                        headers={"origin": "http://evil.example"})
    assert reply.status_code == 403
    same = client.post("/api/search", json={"path": "nope.npz"},
                       headers={"origin": "http://testserver"})
    assert same.status_code == 400  # let through; the path is what is wrong


def test_only_the_allowed_host_names_are_served(small):
    app = create_app(small["index"], allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/").status_code == 200
    assert TestClient(app, base_url="http://rebound.example").get("/").status_code == 400


def test_read_only_server_answers_from_the_cache_and_refuses_the_rest(searched, small):
    client, done = searched
    index = Path(_index(client))
    before = {p.name: p.stat().st_mtime_ns for p in index.parent.glob(index.name + "*")
              if p.is_file()}
    stats = zooindex.cache_info(index=index)
    ro = TestClient(create_app(index, data=[small["root"]], read_only=True))
    assert "read-only" in ro.get("/").text
    cached = settled(ro, ro.post("/api/search", json={"path": "target.npz",
                                                      "scorers": ["knn"]}).json()["id"])
    assert cached["state"] == "done" and cached["figures"], cached
    assert [r["model"] for r in cached["ranking"]["results"]] == \
        [r["model"] for r in done["ranking"]["results"]]
    # another D: the ensemble's knn member would be computed again (LogME, the default,
    # does not depend on D, and its cached score would be served)
    new = settled(ro, ro.post("/api/search", json={"path": "target.npz", "dim": 7,
                                                   "scorer": "ensemble"}).json()["id"])
    assert new["state"] == "failed" and "read-only" in new["error"]
    assert "good" in new["error"]
    assert zooindex.cache_info(index=index) == stats
    after = {p.name: p.stat().st_mtime_ns for p in index.parent.glob(index.name + "*")
             if p.is_file()}
    assert after == before


# -- the command ----------------------------------------------------------------------


def test_serve_imports_nothing_of_the_web_until_it_runs():
    import subprocess
    import sys

    code = ("import sys, zooindex.cli; "
            "print([m for m in ('starlette', 'uvicorn', 'jinja2', 'zooindex.web') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_serve_without_an_index_is_a_one_line_error(tmp_path, capsys):
    from zooindex.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--index", str(tmp_path / "none.db")])
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "\n" not in err


def test_serve_without_the_extra_says_what_to_install(small, monkeypatch, capsys):
    import sys

    from zooindex.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    with pytest.raises(SystemExit):
        main(["serve", "--index", str(small["index"])])
    assert "pip install 'zooindex[web]'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_listens_on_loopback_and_answers(small):
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "zooindex.cli", "serve", "--index", str(small["index"]),
         "--port", str(port), "--data", str(small["root"]), "--read-only"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(server.stderr.read() if server.poll() is not None
                                         else "the server did not answer")
                time.sleep(0.2)
        assert reply.status_code == 200 and reply.json()["read_only"] is True
        # the Host header is checked: a rebound DNS name gets nothing
        rebound = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "evil.example"})
        assert rebound.status_code == 400
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in err
