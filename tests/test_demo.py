"""The README's main command: the shipped demo zoo ranked for the shipped target."""

import json
from pathlib import Path

import numpy as np

import zooindex
from zooindex.cli import main

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def test_demo_target_is_1000_fashion_test_images_of_classes_0_to_4():
    with np.load(DEMO / "fashion-0-4-target.npz") as data:
        assert data["x"].shape == (1000, 28, 28) and data["x"].dtype == np.uint8
        assert sorted(np.unique(data["y"]).tolist()) == [0, 1, 2, 3, 4]
        assert np.bincount(data["y"]).tolist() == [200] * 5


def test_fashion_trained_models_rank_first(tmp_path, capsys):
    index = tmp_path / "demo.db"
    added = zooindex.add(DEMO, index=index)
    assert len(added) == 6 and all(a.default_layer for a in added)
    main(["search", "--index", str(index), str(DEMO / "fashion-0-4-target.npz"), "--json"])
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [r["rank"] for r in rows] == list(range(1, 7))
    assert {r["model"] for r in rows[:2]} == {"fashion-all", "fashion-0-4"}
    assert all(r["status"] == "ok" for r in rows)
    # the Fashion models are well separated from the rest, not by a hair
    assert rows[1]["score"] > rows[2]["score"] + 0.1
