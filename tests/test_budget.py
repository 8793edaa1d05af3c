"""A search on a budget: racing on nested subsamples, partial activations kept."""

import json

import numpy as np
import pytest

import zooindex
import zooindex.ranking
from support.data import clustered, race_zoo, selector
from support.onnx_factory import linear_features, save
from zooindex.budget import Budget, parse_budget
from zooindex.errors import ZooIndexError


@pytest.fixture
def many(tmp_path):
    """Eight models: one sees both informative dims, one sees one, six see noise."""
    return race_zoo(tmp_path)


@pytest.fixture
def counted(monkeypatch):
    """Images run through any model, counted where the runner is called."""
    from zooindex import runner

    seen = []
    real = runner.run_model

    def counting(record, x, *args, **kwargs):
        seen.append((record.name, len(x)))
        return real(record, x, *args, **kwargs)

    monkeypatch.setattr(runner, "run_model", counting)
    return seen


def test_nested_subtargets_keep_their_first_images():
    from zooindex.budget import nested_order, subtarget
    from zooindex.target import load_target

    x, y = clustered(n_per_class=10)
    tgt = load_target(x=x, y=y)
    order = nested_order(tgt.y, seed=0)
    small, large = subtarget(tgt, order, 3), subtarget(tgt, order, 6)
    assert len(small) == 9 and len(large) == 18 and small.key != large.key
    assert np.bincount(small.y).tolist() == [3, 3, 3]
    rows = {row.tobytes() for row in large.x}
    assert all(row.tobytes() in rows for row in small.x)  # nested
    assert subtarget(tgt, order, 10) is tgt


@pytest.mark.parametrize("text, expected", [
    (0.3, Budget(fraction=0.3)), ("0.3", Budget(fraction=0.3)), ("30%", Budget(fraction=0.3)),
    (1, Budget(fraction=1.0)), ("90s", Budget(seconds=90.0)), ("5m", Budget(seconds=300.0)),
    ("1.5h", Budget(seconds=5400.0)), ("auto", Budget(auto=True)), (" AUTO ", Budget(auto=True)),
])
def test_a_budget_is_a_fraction_a_time_or_auto(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("bad", [0, 1.5, True, "0", "150%", "-3s", "0s", "soon", "5 min",
                                 None, [0.3]])
def test_a_bad_budget_says_what_would_do(bad, many):
    with pytest.raises(ZooIndexError, match=r"--budget .*90s, 5m, 1h\) or auto"):
        zooindex.search_on_budget(many["target"], budget=bad, index=many["index"])


def test_a_budgeted_search_finds_the_top_and_spends_at_most_its_budget(many, counted):
    full = zooindex.search(many["target"], index=many["index"], scorers=["knn"],
                           executor="sequential")
    counted.clear()
    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["knn"], executor="sequential")
    assert raced.order[0] == full.ranked[0].model == "good"
    assert set(raced.order) == {r.model for r in full.ranked}
    assert raced.fraction <= 0.5 and raced.saved == pytest.approx(1 - raced.fraction)
    # the full search cached every model's whole activations: nothing ran
    assert counted == [] and sum(raced.ran.values()) == 0
    first = raced.rounds[0]
    assert first["models"] == 8 and first["per_class"] == 8 and first["images"] == 24
    # every model saw the first round; the survivors saw more, and the budget pays it:
    # 8 models x 192 images = 1,536 in full, at most 768 here
    assert min(raced.seen.values()) == 24 and raced.seen["good"] == max(raced.seen.values())
    assert sum(raced.seen.values()) <= 0.5 * 8 * many["n"]
    assert raced.fraction == pytest.approx(sum(raced.seen.values()) / (8 * many["n"]))
    again = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["knn"])
    assert again.order == raced.order and again.seen == raced.seen


def test_each_image_runs_once_and_a_full_search_after_runs_only_the_rest(many, tmp_path,
                                                                         counted):
    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      executor="sequential")
    runs = {}
    for name, n in counted:
        runs[name] = runs.get(name, 0) + n
    # the rounds are nested and what a model saw is kept: it ran each image once
    assert runs == raced.seen == raced.ran
    counted.clear()
    after = zooindex.search(many["target"], index=many["index"], executor="sequential")
    rest = {}
    for name, n in counted:
        rest[name] = rest.get(name, 0) + n
    assert rest == {m: many["n"] - raced.seen[m] for m in raced.seen
                    if raced.seen[m] < many["n"]}
    assert f"{sum(rest.values())} images not seen by a search on a budget before were " \
        "run, the others read from the cache" in after.notes
    # the same ranking as a fresh full search in another index
    fresh_index = tmp_path / "fresh.db"
    zooindex.add(tmp_path / "zoo", index=fresh_index)
    counted.clear()
    fresh = zooindex.search(many["target"], index=fresh_index, executor="sequential")
    assert sum(n for _, n in counted) == 8 * many["n"]
    assert [r.model for r in after.ranked] == [r.model for r in fresh.ranked]
    # an image's activations do not depend on its batch up to float32 rounding, which
    # LogME's float64 evidence carries at the 1e-6 level
    assert [r.score for r in after.ranked] == pytest.approx(
        [r.score for r in fresh.ranked], rel=1e-6, abs=1e-9)
    assert [r.rank_interval for r in after.ranked] == \
        [r.rank_interval for r in fresh.ranked]
    assert zooindex.check(index=many["index"]).ok  # partial entries are no orphans
    # once a model has seen every image its partial entry gives way to the whole one
    counted.clear()
    zooindex.search(many["target"], index=many["index"], executor="sequential")
    assert counted == []


def test_a_time_budget_and_auto_stop(many):
    auto = zooindex.search_on_budget(many["target"], budget="auto", k=1, index=many["index"],
                                     scorers=["knn"])
    assert auto.order[0] == "good"
    assert auto.settled and auto.reason == "the top 1 is settled"
    timed = zooindex.search_on_budget(many["target"], budget="1h", k=1, index=many["index"],
                                      scorers=["knn"])
    # an hour pays for everything: the race ends when the target is used up
    assert timed.reason == "the target is used up" and timed.order[0] == "good"
    assert str(timed.budget) == "3600s" and timed.seconds < 3600


def test_the_advice_says_when_the_top_stopped_changing(many):
    raced = zooindex.search_on_budget(many["target"], budget=1.0, k=1, index=many["index"],
                                      scorers=["knn"])
    tops = [r["top"] for r in raced.rounds]
    assert len(tops) >= 2 and all(t == ["good"] for t in tops)
    assert raced.stable_after == raced.rounds[0]["per_class"] == 8
    assert "stopped changing after 8 images per class" in raced.advice


def test_cli_budget_says_what_it_spent(many, run):
    code, out, err = run("search", many["target"], "--index", many["index"], "--budget",
                         "0.5", "--top", "1", "--scorer", "knn")
    assert code == 0 and "images_seen" in out.splitlines()[0]
    assert "budget 50%: spent" in err and "round" in err and "images per class" in err
    code, out, err = run("search", many["target"], "--index", many["index"], "--budget",
                         "auto", "--top", "1", "--scorer", "knn", "--json")
    doc = json.loads(out)
    assert doc["budget"]["spent"] <= 1 and doc["budget"]["order"][0] == "good"
    assert doc["budget"]["budget"] == "auto" and doc["budget"]["settled"]
    assert all(row["images_seen"] for row in doc["results"] if row["status"] == "ok")
    code, out, err = run("search", many["target"], "--index", many["index"], "--budget",
                         "soon")
    assert code != 0 and "--budget" in err


def test_the_next_round_grows_while_the_budget_pays_then_ends_on_what_is_left():
    from zooindex.budget import _next_round, nested_order

    order = nested_order(np.repeat([0, 1, 2], 10), seed=0)  # 3 classes x 10 images
    four, five = ["a", "b", "c", "d"], ["a", "b", "c", "d", "e"]
    # each racer saw 2 per class (6 images) of 30: 24 to go each
    assert _next_round(order, four, 6, 30, 96, 3, 2, 2, False) == (10, four, True)
    # growing to 4 per class costs 4 x 6 = 24 new images
    assert _next_round(order, four, 6, 30, 50, 3, 2, 2, False) == (4, four, False)
    # 20 pays neither that nor one model's 24 to the end: the best k + 1 = 4 take
    # 3 per class, 4 x 3 = 12 <= 20 (4 per class would be 24)
    assert _next_round(order, four, 6, 30, 20, 3, 2, 2, False) == (3, four, True)
    # five racers, growth to the whole target: 80 carries 80 // 24 = 3 >= k there
    assert _next_round(order, five, 6, 30, 80, 3, 2, 5, False) == (10, five[:3], True)
    assert _next_round(order, four, 6, 30, 3, 3, 2, 2, False) is None
    assert _next_round(order, four, 6, 30, 0, 3, 2, 2, True) == (4, four, False)  # auto


def test_a_text_target_races_and_its_lines_speak_of_texts(tmp_path, run):
    from support.text_models import tiny_encoder, write_tokenizer

    index = tmp_path / "i.db"
    for i in range(4):
        folder = tmp_path / f"enc{i}"
        folder.mkdir()
        tiny_encoder(folder / f"enc{i}.onnx", seed=i, hidden=8, blocks=2 + i % 2)
        write_tokenizer(folder)
        zooindex.add(folder / f"enc{i}.onnx", index=index)
    rng = np.random.default_rng(0)
    words = (["good", "great", "fun"], ["bad", "awful", "boring"])
    texts = [" ".join(rng.choice(words[c], 3)) + " film" for c in [0, 1] * 60]
    target = tmp_path / "reviews.csv"
    target.write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in
                                                zip(texts, [0, 1] * 60)))
    rounds = []
    real = zooindex.ranking.search

    def watched(*args, **kwargs):  # each round's ranking, and what it ran itself
        ranking = real(*args, **kwargs)
        rounds.append(ranking.stats)
        return ranking

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zooindex.ranking, "search", watched)
        raced = zooindex.search_on_budget(str(target), budget=0.5, k=1, index=index,
                                          scorers=["knn"])
    # the rounds read the texts the race ran for them: no text model runs twice
    assert len(rounds) >= len(raced.rounds) >= 2  # (and the first round's half)
    assert all(s["run"] == 0 and s["from_activations"] == s["ranked"] for s in rounds)
    assert raced.samples == "texts" and "texts per class" in raced.advice
    assert sum(raced.seen.values()) <= 0.5 * 4 * 120
    for i in range(4):  # a second index: the CLI's race starts from nothing cached
        zooindex.add(tmp_path / f"enc{i}" / f"enc{i}.onnx", index=tmp_path / "cli.db")
    code, out, err = run("search", target, "--index", tmp_path / "cli.db", "--budget",
                         "0.5", "--top", "1", "--scorer", "knn")
    assert code == 0 and "texts run" in err and "images" not in err
    after = zooindex.search(str(target), index=index, scorers=["knn"])
    unseen = sum(120 - v for v in raced.seen.values())
    assert f"{unseen} texts not seen by a search on a budget before were run, the others " \
        "read from the cache" in after.notes
    # what the race saw and the rest just run are read back, not run again
    assert after.stats["run"] == 0 and after.stats["from_activations"] >= 1
    for i in range(4):  # and rank as a full search that never raced
        zooindex.add(tmp_path / f"enc{i}" / f"enc{i}.onnx", index=tmp_path / "fresh.db")
    fresh = zooindex.search(str(target), index=tmp_path / "fresh.db", scorers=["knn"])
    assert [r.model for r in after.ranked] == [r.model for r in fresh.ranked]


def test_a_full_width_score_is_projected_to_the_whole_target():
    from zooindex.budget import projected
    from zooindex.ranking import Result

    rows = [Result(model="a", score=0.5), Result(model="b", score=0.4),
            Result(model="c", score=None)]
    before = {"a": (10, 0.45), "b": (10, 0.2)}
    # s(N) = s(n) + (s(n) - s(h)) h (N - n) / (N (n - h)), n = 20, h = 10, N = 100:
    # a 0.5 + 0.05 x 0.8 = 0.54, b 0.4 + 0.2 x 0.8 = 0.56: b overtakes a
    assert projected(rows, before, 20, 100) == {"b": 1, "a": 2, "c": 3}
    # on the whole target the projection is the score itself
    assert projected(rows, before, 100, 100) == {"a": 1, "b": 2, "c": 3}
    # a model without a score the round before keeps its own
    assert projected(rows, {"b": (10, 0.2)}, 20, 100) == {"b": 1, "a": 2, "c": 3}
    # a score where lower is better (the rows come best first): a 0.2 + 0.1 x 0.8 =
    # 0.28 rises, b 0.3 - 0.2 x 0.8 = 0.14 falls, and is now the better
    lower = [Result(model="a", score=0.2), Result(model="b", score=0.3)]
    assert projected(lower, {"a": (10, 0.1), "b": (10, 0.5)}, 20, 100) == {"b": 1, "a": 2}


def test_who_is_out_of_reach_and_when_the_top_is_settled():
    from zooindex.budget import _out_of_reach, _settled
    from zooindex.ranking import Result

    def row(model, interval, width=2):
        return Result(model=model, score=0.0, rank_interval=interval, width=width)

    rows = [row("good", (1, 1)), row("near", (2, 3)), row("wide", (4, 5), width=64),
            row("far", (4, 5)), row("close", (4, 5))]
    assert _out_of_reach(rows, 1, 1) == ["wide", "far", "close"]
    # projected within reach (rank 2 <= k + margin), or a layer at least as wide as the
    # 24 images seen: kept
    ahead = {"good": 1, "close": 2, "near": 3, "wide": 4, "far": 5}
    assert _out_of_reach(rows, 1, 1, ahead, images=24) == ["far"]
    assert _out_of_reach(rows, 1, 1, ahead, images=100) == ["wide", "far"]
    # never fewer than k + 1 racing on
    assert _out_of_reach(rows[:3], 1, 1) == ["wide"]
    settled = [row("good", (1, 1)), row("near", (2, 3))]
    assert _settled(settled, 1)
    assert not _settled(settled, 1, {"good": 2, "near": 1})  # the projection disagrees
    assert not _settled(settled, 1, images=2)  # near's layer is as wide as the images
    assert _settled(settled, 1, {"good": 1, "near": 2}, images=3)


@pytest.mark.parametrize("scorer, full", [("logme", True), ("recommended", True),
                                           ("hscore", True), ("silhouette", False),
                                           ("knn", False), ("leep", False),
                                           ("ensemble:logme,knn", True)])
def test_which_scorers_read_the_whole_width(scorer, full):
    from zooindex.budget import _full_width
    from zooindex.options import SearchOptions

    assert _full_width(SearchOptions(scorers=(scorer,))) is full


def test_a_logme_race_keeps_a_layer_wider_than_the_images_it_saw(many, tmp_path):
    mixing = np.random.default_rng(3).normal(size=(8, 40))
    mixing[:2] = 0  # 40 features of the six noise inputs: a poor model, but a wide one
    save(linear_features(mixing, classes=3), tmp_path / "wide.onnx")
    zooindex.add(tmp_path / "wide.onnx", index=many["index"])
    # margin 0: a model is out once its best plausible rank is below the first
    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["logme"], margin=0)
    first = raced.rounds[0]
    assert first["images"] == 24 and first["models"] == 9
    # 40 features over 24 images: LogME fits the labels exactly, so the round says
    # little about the whole target: not dropped, whatever its rank (without the rule it
    # is, below)
    assert "wide" not in first["dropped"] and first["dropped"]
    full = zooindex.search(many["target"], index=many["index"], scorers=["logme"])
    assert raced.order[0] == full.ranked[0].model
    plain = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["logme"], margin=0, wide=False,
                                      project=False)
    assert "wide" in plain.rounds[0]["dropped"]


def test_a_model_the_race_cannot_run_is_said_skipped_as_a_full_search_says_it(many, tmp_path,
                                                                              run):
    save(linear_features(selector([0, 1], width=5), classes=3), tmp_path / "narrow.onnx")
    zooindex.add(tmp_path / "narrow.onnx", index=many["index"])  # takes 5 inputs, not 8
    full = zooindex.search(many["target"], index=many["index"], scorers=["knn"])
    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["knn"])
    assert [(r.model, r.reason) for r in raced.ranking.skipped] == \
        [(r.model, r.reason) for r in full.skipped] and full.skipped
    assert "narrow" not in raced.order and len(raced.order) == 8
    code, out, err = run("search", many["target"], "--index", many["index"], "--budget",
                         "0.5", "--top", "1", "--scorer", "knn")
    assert code == 0 and f"skipped narrow: {full.skipped[0].reason}" in err


def test_the_race_keeps_its_last_rounds_activations_only(many):
    from zooindex.budget import first_rows, nested_order
    from zooindex.index import Index
    from zooindex.partial import layer_and_key, rows_of

    raced = zooindex.search_on_budget(many["target"], budget=0.5, k=1, index=many["index"],
                                      scorers=["logme"])
    assert len(raced.rounds) >= 2
    tgt = zooindex.load_target(many["target"])
    order = nested_order(tgt.y, 0)
    with Index(many["index"]) as idx:
        records = {r.name: r for r in idx.catalogue.models()}

        def cached(per_class, model):
            sub = rows_of(tgt, first_rows(order, per_class))
            layer, prep = layer_and_key(records[model], sub, raced.ranking.options)
            return layer in idx.cache.cached_files(records[model].sha256, sub.key, prep)

        last = raced.rounds[-1]["per_class"]
        # what the earlier rounds ranked on were copies of what the partial entries keep
        assert not any(cached(r["per_class"], "good") for r in raced.rounds[:-1])
        assert cached(last, "good")  # the figures of a report read the last round's
    assert zooindex.check(index=many["index"]).ok
