"""Reports: the PNG and HTML outputs, their errors, and the score-against-D data."""

import base64
import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

import zooindex
from support.data import clustered, three_model_zoo
from zooindex.errors import DependencyError, ZooIndexError
from zooindex.reporting import report, sample_rows, score_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIMS = (2, 3, 5)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Three models: one sees the informative dims, one only noise, one half of each.

    Module-scoped so that the models run once; every report after the first reads the
    cached activations.
    """
    made = three_model_zoo(tmp_path_factory.mktemp("report"))
    zooindex.add(made["folder"], index=made["index"])
    return made


def test_png_report_is_one_readable_image(zoo, tmp_path):
    out = report(zoo["target"], out=tmp_path / "report.png", index=zoo["index"],
                 top=2, dims=DIMS)
    assert out == tmp_path / "report.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    # ranking and curves side by side above two scatter panels: wide and tall enough to
    # read, yet not a poster
    assert 1000 <= width <= 3000 and 600 <= height <= 3000
    assert [p.name for p in out.parent.iterdir()] == ["report.png"]  # no temporary left


def test_html_report_is_self_contained_with_the_ranking_in_order(zoo, tmp_path):
    out = report(zoo["target"], out=tmp_path / "report.html", index=zoo["index"],
                 top=2, dims=DIMS)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    table = re.search(r'<table id="ranking">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr class=\"(top|rest)\"><td class=\"num\">(\d+)</td><td>([^<]+)</td>",
                      table)
    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    assert [name for _, _, name in rows] == [r.model for r in ranking.ranked] \
        == ["good", "mixed", "noise"]
    assert [(cls, int(rank)) for cls, rank, _ in rows] == [("top", 1), ("top", 2),
                                                            ("rest", 3)]
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">',
                        page)
    assert len(images) == 3  # ranking, score against D, scatters
    for encoded in images:
        data = base64.b64decode(encoded, validate=True)
        assert data[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    assert "<li>samples: 120</li>" in page


def test_report_replaces_an_existing_file(zoo, tmp_path):
    out = tmp_path / "report.png"
    out.write_bytes(b"old")
    report(zoo["target"], out=out, index=zoo["index"], top=1, dims=(2,))
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]


def test_unknown_suffix_is_an_error_naming_the_formats(zoo, tmp_path):
    with pytest.raises(ZooIndexError, match=r"\.pdf.*\.html, \.png"):
        report(zoo["target"], out=tmp_path / "report.pdf", index=zoo["index"])
    assert not any(tmp_path.iterdir())


def test_bad_options_are_errors(zoo, tmp_path):
    for options, flag in [({"top": 0}, "--top"), ({"max_points": -1}, "--max-points"),
                          ({"dims": (2, 0)}, "--dims"), ({"dims": ()}, "--dims")]:
        with pytest.raises(ZooIndexError, match=flag):
            report(zoo["target"], out=tmp_path / "r.png", index=zoo["index"], **options)


def test_missing_matplotlib_is_a_dependency_error(zoo, tmp_path, monkeypatch):
    # None in sys.modules makes `import matplotlib` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(DependencyError) as info:
        report(zoo["target"], out=tmp_path / "r.html", index=zoo["index"])
    assert str(info.value) == "reports need matplotlib: pip install 'zooindex[plots]'"
    assert info.value.package == "matplotlib"
    assert isinstance(info.value, ImportError)
    assert not (tmp_path / "r.html").exists()


def test_score_curve_points_equal_the_search_scores(zoo):
    feats = {name: zooindex.features(zoo["target"], name, index=zoo["index"])
             for name in ("good", "mixed", "noise")}
    curves = score_curves(feats, zoo["y"], DIMS, "cosine")
    # D is clipped to the layer's width: 'good' has a 2-wide layer, the others 4-wide
    assert {name: list(c) for name, c in curves.items()} == \
        {"good": [2], "mixed": [2, 3, 4], "noise": [2, 3, 4]}
    for d in (2, 3):
        ranking = zooindex.search(zoo["target"], index=zoo["index"], dim=d,
                                  scorers=["silhouette"])
        for r in ranking.ranked:
            if d in curves[r.model]:
                assert curves[r.model][d] == pytest.approx(r.score, abs=1e-12)


def test_score_curves_validate_their_inputs():
    x, y = clustered(n_per_class=5)
    with pytest.raises(ZooIndexError):
        score_curves({"m": x}, np.zeros(len(y)), DIMS)  # one class only
    with pytest.raises(ZooIndexError, match="--dims"):
        score_curves({"m": x}, y, (0, 2))


def test_sample_rows_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [60, 30, 30])
    rows = sample_rows(labels, 40, seed=3)
    # 40 of 120 keeps a third of each class: 20, 10, 10
    assert np.bincount(labels[rows]).tolist() == [20, 10, 10]
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, sample_rows(labels, 40, seed=3))
    assert not np.array_equal(rows, sample_rows(labels, 40, seed=4))
    assert np.array_equal(sample_rows(labels, 500), np.arange(120))
    # fewer points than classes: still that many distinct rows
    assert len(set(sample_rows(labels, 2).tolist())) == 2


def test_figures_of_a_ranking_already_made_are_the_report_s_three_pngs(zoo):
    from zooindex.reporting import figures

    ranking = zooindex.search(zoo["target"], index=zoo["index"])
    figs = figures(ranking, zoo["target"], index=zoo["index"], top=2, dims=DIMS)
    assert sorted(figs) == ["curves", "ranking", "scatter"]
    for data in figs.values():
        assert data[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(data)) as image:
            assert min(image.size) >= 200
