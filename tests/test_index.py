"""The index: schema, round trips, cache, transactions, versions."""

import os
import sqlite3

import numpy as np
import pytest

from zooindex.errors import NotIndexedError, StoreError
from support.data import schema2_blob
from zooindex.index import SCHEMA_VERSION, Index, ModelRecord, decode_array
from zooindex.layer import Layer


def record(name="m", sha="a" * 64, path="/nowhere/m.onnx", **kw):
    base = dict(name=name, sha256=sha, path=path, size=10, mtime=1.0, input_name="x",
                input_shape=["N", 4], input_dtype="float32", opset=17, params=100,
                default_layer="h", output_name="y", output_is_probs=True,
                preprocessing={"scale": None}, tags={"k": "v"}, source={}, external_data=False,
                added_at="2026-01-01",
                layers=[Layer("x", "input", "input", (4,), 4, 0),
                        Layer("h", "Gemm", "dense", (3,), 3, 1)])
    base.update(kw)
    return ModelRecord(**base)


def test_model_round_trip(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        rec = record()
        idx.catalogue.put_model(rec)
        back = idx.catalogue.get_model("m")
    assert back.to_dict() == rec.to_dict()


def test_unknown_model_error_lists_names(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        idx.catalogue.put_model(record())
        with pytest.raises(NotIndexedError, match="'zz' is not in the index .*indexed: m"):
            idx.catalogue.get_model("zz")


def test_failed_transaction_writes_nothing(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        idx.catalogue.put_model(record())
        with pytest.raises(sqlite3.IntegrityError):
            idx.catalogue.put_model(record())  # same primary key: the second insert fails whole
        assert idx.catalogue.model_names() == ["m"]
        assert len(idx.catalogue.get_model("m").layers) == 2


def _files(idx):
    return sorted(p.name for p in idx.cache.folder.iterdir()) if idx.cache.folder.exists() else []


def test_activation_cache_round_trip_and_lru_limit(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 7)).astype(np.float32)
    with Index(tmp_path / "i.db", cache_limit=a.nbytes + 200) as idx:
        assert idx.cache.put_activations("s1", "h", "t", "p", a)
        back = idx.cache.get_activations("s1", "h", "t", "p")
        assert back.dtype == np.float32 and np.array_equal(back, a)
        b = rng.normal(size=(50, 7)).astype(np.float32)
        idx.cache.put_activations("s2", "h", "t", "p", b)  # over the limit: the older one goes
        assert idx.cache.get_activations("s1", "h", "t", "p") is None
        assert np.array_equal(idx.cache.get_activations("s2", "h", "t", "p"), b)
        assert len(_files(idx)) == 1  # the evicted entry's file went with its row


def test_activations_are_files_beside_the_index(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    with Index(tmp_path / "i.db") as idx:
        idx.cache.put_activations("s1", "h", "t", "p", a)
        assert idx.cache.folder == tmp_path / "i.db-activations"
        (name,) = _files(idx)
        row = idx.db.execute("SELECT file, bytes, n, dim, data FROM activations").fetchone()
        assert row == (name, (idx.cache.folder / name).stat().st_size, 4, 6, None)
        assert np.array_equal(np.load(idx.cache.folder / name), a)  # a plain .npy file
        idx.cache.put_activations("s1", "h", "t", "p", a)  # the same key again: one file
        assert _files(idx) == [name]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "reshape"])
def test_a_damaged_activation_file_is_a_miss_and_goes(tmp_path, damage):
    a = np.random.default_rng(1).normal(size=(30, 5)).astype(np.float32)
    with Index(tmp_path / "i.db") as idx:
        idx.cache.put_activations("s1", "h", "t", "p", a)
        (path,) = idx.cache.folder.iterdir()
        raw = bytearray(path.read_bytes())
        if damage == "truncate":
            path.write_bytes(bytes(raw[:-7]))
        elif damage == "flip":  # same size, valid header: only the CRC tells
            raw[-3] ^= 0x01
            path.write_bytes(bytes(raw))
        elif damage == "delete":
            path.unlink()
        else:  # a valid array of another shape under the same name
            np.save(path, a.reshape(5, 30))
        assert idx.cache.get_activations("s1", "h", "t", "p") is None
        assert idx.cache.stats()["activations"] == 0 and _files(idx) == []


def test_removing_a_model_or_clearing_the_cache_removes_files(tmp_path):
    a = np.ones((3, 2), np.float32)
    with Index(tmp_path / "i.db") as idx:
        idx.catalogue.put_model(record())
        idx.cache.put_activations("a" * 64, "h", "t", "p", a)
        idx.cache.put_activations("a" * 64, "x", "t", "p", a)
        idx.remove_model("m")
        assert idx.cache.stats()["activations"] == 0 and _files(idx) == []
        idx.cache.put_activations("b" * 64, "h", "t", "p", a)
        (idx.cache.folder / ".left-by-a-crash.tmp").write_bytes(b"x")
        os.utime(idx.cache.folder / ".left-by-a-crash.tmp", (0, 0))
        idx.cache.clear()
        assert _files(idx) == []


def test_a_failed_activation_row_leaves_no_file(tmp_path, monkeypatch):
    a = np.ones((3, 2), np.float32)
    with Index(tmp_path / "i.db") as idx:
        def full(limit):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(idx.cache.activation_files, "evict", full)
        assert idx.cache.put_activations("s", "h", "t", "p", a) is False
        assert any("could not cache activations" in w and "full" in w
                   for w in idx.warnings)
        assert idx.cache.stats()["activations"] == 0 and _files(idx) == []


def test_an_unwritable_cache_folder_is_a_warning(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        idx.cache.folder.write_text("not a folder")
        assert idx.cache.put_activations("s", "h", "t", "p", np.ones((2, 2), np.float32)) is False
        assert any("could not cache activations" in w and str(idx.cache.folder) in w
                   for w in idx.warnings)
        assert idx.cache.stats()["activations"] == 0


def test_schema2_blob_rows_are_still_read(tmp_path):
    a = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    assert np.array_equal(decode_array(schema2_blob(a)), a)
    with Index(tmp_path / "i.db") as idx, idx.transaction():
        idx.db.execute("INSERT INTO activations (model_sha, layer, target, prep, n, dim, "
                       "bytes, data, created_at, used_at) VALUES ('s', 'h', 't', 'p', 6, 3, "
                       "1, ?, 'now', 0)", [schema2_blob(a)])
    with Index(tmp_path / "i.db") as idx:
        assert np.array_equal(idx.cache.get_activations("s", "h", "t", "p"), a)


def test_scores_round_trip(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        idx.cache.put_scores("s", "h", "t", "p", [("silhouette", '{"dim": 10}', 0.5, 10, 0.01)])
        assert idx.cache.get_scores("s", "h", "t", "p") == {
            ("silhouette", '{"dim": 10}'): (0.5, 10, 0.01)}


def test_remove_model_drops_its_cache(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        idx.catalogue.put_model(record())
        idx.cache.put_scores("a" * 64, "h", "t", "p", [("silhouette", "{}", 0.5, 10, 0.01)])
        idx.remove_model("m")
        assert idx.cache.stats()["scores"] == 0


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "i.db"
    Index(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                [str(SCHEMA_VERSION + 1)])
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer zooindex"):
        Index(path)


def test_foreign_database_and_garbage_file_are_refused(tmp_path):
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a zooindex index"):
        Index(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable zooindex database"):
        Index(garbage)
    assert garbage.read_bytes() == b"this is not sqlite at all" * 100


def test_wal_mode(tmp_path):
    with Index(tmp_path / "i.db") as idx:
        assert idx.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_location_follows_env(tmp_path, monkeypatch):
    from zooindex.index import default_path

    monkeypatch.setenv("ZOOINDEX_INDEX", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"
    monkeypatch.delenv("ZOOINDEX_INDEX")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "zooindex" / "index.db"
