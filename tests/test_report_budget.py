"""A report on a budget: the race's ranking, what it spent and saved, its rounds and
advice, and figures of its survivors drawn on the images they saw."""

import base64
import html
import re

import pytest

import zooindex
from support.data import race_zoo
from zooindex.reporting import report

pytest.importorskip("matplotlib")

DIMS = (2, 3)


@pytest.fixture
def many(tmp_path):
    """Eight models (one sees both informative dims, one sees one, six see noise) and a
    3-class target of 3 x 64 samples: enough models for a race to drop some."""
    return race_zoo(tmp_path)


@pytest.fixture
def counted(monkeypatch):
    """Images run through each model, counted where the runner is called."""
    from zooindex import runner

    runs: dict = {}
    real = runner.run_model

    def counting(record, x, *args, **kwargs):
        runs[record.name] = runs.get(record.name, 0) + len(x)
        return real(record, x, *args, **kwargs)

    monkeypatch.setattr(runner, "run_model", counting)
    return runs


def test_a_budgeted_report_ranks_as_the_race_and_says_what_it_spent(many, tmp_path,
                                                                   counted):
    out = report(many["target"], out=tmp_path / "report.html", index=many["index"],
                 top=1, dims=DIMS, scorers=["knn"], budget=0.5)
    ran = dict(counted)
    page = out.read_text(encoding="utf-8")
    # the same race again, in Python: everything it needs is cached, nothing runs
    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1,
                                      index=many["index"], scorers=["knn"])
    assert sum(raced.ran.values()) == 0
    # the figures ran no model beyond the race: each image ran once, for what each saw
    assert ran == raced.seen and max(ran.values()) < many["n"]
    table = re.search(r'<table id="ranking">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r'<tr class="(\w+)"><td class="num">([^<]+)</td><td>([^<]+)</td>'
                      r"(.*?)</tr>", table, re.S)
    ranked = [name for cls, _, name, _ in rows if cls != "dropped"]
    dropped = [(name, rest) for cls, _, name, rest in rows if cls == "dropped"]
    assert ranked == [r.model for r in raced.ranking.ranked] and ranked[0] == "good"
    assert [name for name, _ in dropped] == [d["model"] for d in raced.dropped]
    assert dropped, "eight models, one informative: the race drops some"
    for (_, rest), d in zip(dropped, raced.dropped):
        assert f"dropped after round {d['round']}, having seen {d['images']} images" in rest
    budget = html.unescape(page[page.index('<h2 id="budget">'):])
    assert f"spent {raced.fraction:.1%} of a full search's inference" in budget
    assert f"saved {raced.saved:.1%}" in budget
    rounds = re.search(r'<table id="rounds">.*?<tbody>(.*?)</tbody>', budget, re.S).group(1)
    assert rounds.count("<tr>") == len(raced.rounds) >= 2
    advice = re.search(r'<strong class="advice">(.*?)</strong>', budget, re.S).group(1)
    assert html.unescape(advice) == raced.advice[0].upper() + raced.advice[1:] + "."
    last = raced.rounds[-1]["images"]
    assert f"<li>samples: {many['n']} (the race's last round ranked on {last})</li>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


def test_a_report_without_a_budget_has_no_budget_section(many, tmp_path):
    page = report(many["target"], out=tmp_path / "report.html", index=many["index"],
                  top=2, dims=DIMS, scorers=["knn"]).read_text(encoding="utf-8")
    assert 'id="budget"' not in page and 'class="dropped"' not in page
    assert f"<li>samples: {many['n']}</li>" in page
    assert page.count('<tr class="top">') + page.count('<tr class="rest">') == 8


def test_cli_report_budget(many, tmp_path, run):
    out = tmp_path / "report.png"
    code, stdout, err = run("report", many["target"], "--out", out, "--index",
                            many["index"], "--budget", "auto", "--top", "1",
                            "--scorer", "knn", "--dims", "2,3")
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run("report", many["target"], "--out", tmp_path / "r.html", "--index",
                       many["index"], "--budget", "soon")
    assert code != 0 and not (tmp_path / "r.html").exists()
    assert len(err.strip().splitlines()) == 1 and "--budget must be" in err
    code, _, err = run("report", many["target"], "--out", tmp_path / "r.html", "--index",
                       many["index"], "--budget", "0.3", "--no-confidence")
    assert code != 0 and "--no-confidence" in err
