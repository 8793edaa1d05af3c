"""``zooindex check``: integrity, model files and hashes, orphans, damaged cache rows."""

import json
import shutil
import sqlite3

import numpy as np
import pytest

from support.data import clustered, schema2_blob
from support.onnx_factory import mlp, save
from zooindex import ranking, zoo
from zooindex.audit import check
from zooindex.cli import main
from zooindex.index import Index


@pytest.fixture
def searched(tmp_path):
    save(mlp(seed=0), tmp_path / "a.onnx")
    save(mlp(seed=1), tmp_path / "b.onnx")
    x, y = clustered(n_per_class=20)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    index = tmp_path / "i.db"
    zoo.add([tmp_path / "a.onnx", tmp_path / "b.onnx"], index=index)
    ranking.search(tmp_path / "t.npz", index=index)
    return tmp_path, index


def _cli(capsys, *args):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_sound_index_checks_ok(searched, capsys):
    _, index = searched
    report = check(index=index)
    assert report.ok and report.problems == []
    assert report.integrity == ["ok"] and report.damaged == 0
    assert [m["status"] for m in report.models] == ["ok", "ok"]
    assert report.orphans == {"activations": 0, "scores": 0, "targets": 0, "files": 0}
    assert report.cache["activations"] == 2 and report.cache["file_bytes"] > 0
    code, out, _ = _cli(capsys, "check", "--index", index, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = _cli(capsys, "check", "--index", index)
    assert code == 0 and "sound; 2 models, 2 cached activations" in out


def test_orphans_are_found_and_fixed(searched, capsys):
    _, index = searched
    with Index(index) as idx, idx.transaction():
        db = idx.db
        # a schema-2 row (blob in the database) and a file no row refers to
        db.execute("INSERT INTO activations (model_sha, layer, target, prep, n, dim, bytes, "
                   "data, created_at, used_at) VALUES ('gone', 'h', 't', 'p', 1, 1, 1, ?, "
                   "'now', 0)", [schema2_blob(np.ones((1, 1), np.float32))])
        stray = idx.cache.folder / "stray.npy"
        np.save(stray, np.ones(3))
        db.execute("INSERT INTO scores VALUES ('gone', 'h', 't', 'p', 'silhouette', '{}', 0.1,"
                   " 1, 0.0, 'now')")
        db.execute("INSERT INTO targets VALUES ('lonely', 'src', 4, '[]', 'now')")
        before = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    report = check(index=index)
    assert report.orphans == {"activations": 1, "scores": 1, "targets": 1, "files": 1}
    assert not report.ok and any("orphaned" in p for p in report.problems)
    assert any("1 activation files no row refers to" in p for p in report.problems)
    code, out, _ = _cli(capsys, "check", "--index", index)
    assert code == 1 and "3 orphaned" not in out and "1 orphaned scores rows" in out
    code, _, err = _cli(capsys, "check", "--index", index, "--fix")
    assert code == 0 and "removed 1 activations" in err and "1 files" in err
    assert not stray.exists()
    with Index(index) as idx:
        # only the orphans went: the two models' numbers are all still there
        assert idx.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == before - 1
        assert idx.cache.stats()["activations"] == 2
    assert check(index=index).ok


def _activation_files(idx):
    return [idx.cache.folder / r[0] for r in idx.db.execute(
        "SELECT file FROM activations ORDER BY rowid")]


def test_damaged_activation_rows_are_a_cache_miss_and_fixable(searched):
    folder, index = searched
    with Index(index) as idx:
        first, second = _activation_files(idx)
        assert first.exists() and second.exists() and first.parent == idx.cache.folder
    # one file altered in place (same size: only the CRC can tell), one deleted
    raw = bytearray(first.read_bytes())
    raw[-5] ^= 0x40
    first.write_bytes(bytes(raw))
    second.unlink()
    report = check(index=index)
    assert report.damaged == 2 and not report.ok
    assert any("2 cached activations are damaged or missing" in p for p in report.problems)
    fixed = check(index=index, fix=True)
    assert fixed.fixed["damaged activations"] == 2 and fixed.damaged == 0 and fixed.ok
    assert not first.exists()
    # a search still ranks both models, recomputing what was lost
    assert len(ranking.search(folder / "t.npz", index=index, layer="all").ranked) > 2


def test_a_damaged_schema2_blob_is_reported(searched):
    _, index = searched
    with Index(index) as idx, idx.transaction():
        idx.db.execute("UPDATE activations SET file = NULL, data = ? WHERE rowid = "
                       "(SELECT MIN(rowid) FROM activations)", [b"\x00garbage" * 10])
    report = check(index=index)
    # the row is damaged; the file it referred to is now a leftover
    assert report.damaged == 1 and report.orphans["files"] == 1
    fixed = check(index=index, fix=True)
    assert fixed.ok and fixed.fixed["files"] == 1


def test_a_damaged_blob_that_claims_a_huge_shape_is_refused_cheaply(tmp_path):
    import io

    buf = io.BytesIO()
    np.savez(buf, shape=np.array([2**40, 2**20]), mask=np.zeros(1, np.uint8),
             values=np.zeros(0, np.float32))
    from zooindex.index import DECODE_ERRORS, decode_array

    with pytest.raises(DECODE_ERRORS):
        decode_array(buf.getvalue())  # would otherwise allocate 2^60 bits


def test_missing_and_changed_models_are_reported_not_removed(searched, capsys):
    folder, index = searched
    (folder / "a.onnx").unlink()
    save(mlp(seed=7), folder / "b.onnx")
    report = check(index=index, fix=True)
    assert {m["name"]: m["status"] for m in report.models} == {"a": "missing",
                                                              "b": "changed"}
    assert any("zooindex rm a" in p for p in report.problems)
    assert any("--refresh" in p for p in report.problems)
    with Index(index) as idx:
        assert idx.catalogue.model_names() == ["a", "b"]  # the user decides what to do
    code, out, _ = _cli(capsys, "check", "--index", index)
    assert code == 1 and "NOT sound" in out


def test_a_corrupt_database_gets_a_report_not_a_traceback(searched, capsys):
    _, index = searched
    with Index(index) as idx:
        idx.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = idx.db.execute("PRAGMA page_count").fetchone()[0]
    broken = index.with_name("broken.db")
    found = []
    for page in range(1, pages):  # damage one b-tree page header at a time
        shutil.copy(index, broken)
        with open(broken, "r+b") as fh:
            fh.seek(4096 * page + 8)
            fh.write(b"\xff" * 64)
        code, out, err = _cli(capsys, "check", "--index", broken)
        assert "Traceback" not in out + err
        assert code == 1 or "sound;" in out  # an unused page may be damaged harmlessly
        if code == 1:
            found.append(page)
            assert "NOT sound" in out and "problem:" in out
    assert found, "no damage was detected on any page"


def test_check_of_a_missing_index_is_a_one_line_error(tmp_path, capsys):
    code, _, err = _cli(capsys, "check", "--index", tmp_path / "nowhere.db")
    assert code == 1 and err.startswith("Error: no index at") and err.count("\n") == 1


def test_check_of_a_file_that_is_not_sqlite(tmp_path, capsys):
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"not sqlite" * 500)
    code, out, _ = _cli(capsys, "check", "--index", garbage)
    assert code == 1 and "not a database" in out
    assert garbage.read_bytes() == b"not sqlite" * 500


def test_foreign_sqlite_database_is_left_alone(tmp_path, capsys):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    code, out, _ = _cli(capsys, "check", "--index", other)
    assert code == 1 and "not a zooindex index" in out
