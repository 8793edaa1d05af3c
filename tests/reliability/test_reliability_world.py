"""A changed world: files edited or deleted behind the index, read-only and full disks,
indexes written by other schema versions."""

import errno
import json
import os
import sqlite3
import threading
from unittest import mock

import numpy as np
import onnx
import pytest

from support.data import clustered, schema2_blob
from support.onnx_factory import mlp, save
from zooindex import ranking, zoo
from zooindex.audit import check
from zooindex.cli import main
from zooindex.errors import StoreError
from zooindex.index import SCHEMA_VERSION, Index
from zooindex.target import load_target


@pytest.fixture
def world(tmp_path):
    """Two indexed models and a target whose scores are cached."""
    models = tmp_path / "models"
    models.mkdir()
    save(mlp(seed=0), models / "a.onnx")
    save(mlp(seed=1), models / "b.onnx")
    x, y = clustered(n_per_class=30, classes=3, informative=2, noise_dims=6)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    index = tmp_path / "i.db"
    zoo.add([models], index=index)
    first = ranking.search(tmp_path / "t.npz", index=index)
    assert [r.cached for r in first.ranked] == [False, False]
    return models, index, tmp_path / "t.npz", first


def _scores(result):
    return {r.model: r.score for r in result.ranked}


def _model_scores(row):
    """A row's scores that depend on its model alone: its estimators', not a combination
    (a rank among the models searched with it)."""
    return {k: v for k, v in row.scores.items() if k not in ("ensemble",)}


def _same_size_edit(path):
    """Change one weight byte, keep the size, and put the mtime back as it was."""
    st = os.stat(path)
    model = onnx.load(path)
    raw = bytearray(model.graph.initializer[0].raw_data)
    raw[0] ^= 0x40
    model.graph.initializer[0].raw_data = bytes(raw)
    save(model, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


def test_changed_model_is_skipped_with_reason_and_never_uses_old_scores(world):
    models, index, target, first = world
    save(mlp(seed=2), models / "a.onnx")  # other content under the same name
    assert {m["name"]: m["status"] for m in zoo.ls(index=index)} == {"a": "changed", "b": "ok"}
    again = ranking.search(target, index=index)
    assert [r.model for r in again.ranked] == ["b"] and again.ranked[0].cached
    (skipped,) = again.skipped
    assert skipped.model == "a" and "changed since it was added" in skipped.reason
    assert "--refresh" in skipped.reason


def test_refresh_reindexes_a_changed_model_in_place(world, tmp_path):
    models, index, target, first = world
    save(mlp(seed=2), models / "a.onnx")
    refreshed = ranking.search(target, index=index, refresh=True)
    assert {r.model for r in refreshed.ranked} == {"a", "b"} and not refreshed.skipped
    a = next(r for r in refreshed.ranked if r.model == "a")
    assert not a.cached  # computed for the new content, not read from the old
    # the same as a fresh index holding only the new file
    zoo.add([models / "a.onnx"], index=tmp_path / "fresh.db")
    fresh = ranking.search(target, index=tmp_path / "fresh.db")
    assert _model_scores(a) == pytest.approx(_model_scores(fresh.ranked[0]), abs=1e-12)
    old = next(r for r in first.ranked if r.model == "a")
    # the default scorer, LogME alone (the ensemble's four members when it was the default)
    assert set(_model_scores(a)) == set(_model_scores(old)) == {"logme"}
    assert all(a.scores[k] != pytest.approx(old.scores[k]) for k in _model_scores(a))
    with Index(index) as idx:
        assert idx.catalogue.model_status(idx.catalogue.get_model("a")) == "ok"
        assert idx.cache.orphans() == {"activations": 0, "scores": 0, "targets": 0, "files": 0}


def test_refresh_flag_of_the_cli(world, capsys):
    models, index, target, _ = world
    save(mlp(seed=3), models / "b.onnx")
    assert _cli("search", "--index", index, target) == 0
    assert "skipped b: model file" in capsys.readouterr().err
    assert _cli("search", "--index", index, target, "--refresh", "--json") == 0
    out = capsys.readouterr().out
    assert '"model": "b"' in out and '"status": "skipped"' not in out


def test_edit_that_restores_size_and_mtime_is_still_noticed(world):
    models, index, target, first = world
    _same_size_edit(models / "a.onnx")
    # size and mtime match what was indexed; the inode change time does not
    assert {m["name"]: m["status"] for m in zoo.ls(index=index)}["a"] == "changed"
    again = ranking.search(target, index=index)
    assert [r.model for r in again.skipped] == ["a"]


def test_touched_but_unchanged_model_hashes_once_and_stays_ok(world):
    models, index, target, _ = world
    os.utime(models / "a.onnx")  # new mtime, same content
    with Index(index) as idx:
        record = idx.catalogue.get_model("a")
        assert record.verify() == ("ok", mock.ANY) and record.verify()[1] is not None
        assert idx.catalogue.model_status(record) == "ok"
        assert idx.catalogue.get_model("a").verify() == ("ok", None)  # the new stat was stored
    again = ranking.search(target, index=index)
    assert all(r.cached for r in again.ranked)


def test_deleted_model_is_missing_in_ls_and_skipped_in_search(world, capsys):
    models, index, target, _ = world
    (models / "b.onnx").unlink()
    assert {m["name"]: m["status"] for m in zoo.ls(index=index)}["b"] == "missing"
    again = ranking.search(target, index=index, refresh=True)  # refresh cannot help
    (skipped,) = again.skipped
    assert skipped.model == "b" and "is missing" in skipped.reason
    assert _cli("ls", "--index", index) == 0
    assert "missing" in capsys.readouterr().out


def test_external_weights_are_part_of_the_content(tmp_path):
    # byte-identical .onnx files (same graph, same weight file name), other weights
    for seed, folder in ((0, "one"), (1, "two")):
        (tmp_path / folder).mkdir()
        save(mlp(seed=seed), tmp_path / folder / "m.onnx", external_data=True)
    assert (tmp_path / "one/m.onnx").read_bytes() == (tmp_path / "two/m.onnx").read_bytes()
    index = tmp_path / "i.db"
    zoo.add([tmp_path / "one/m.onnx"], index=index, name="one")
    zoo.add([tmp_path / "two/m.onnx"], index=index, name="two")
    with Index(index) as idx:
        one, two = idx.catalogue.get_model("one"), idx.catalogue.get_model("two")
    assert one.sha256 != two.sha256  # so they never share cached numbers
    x, y = clustered(n_per_class=20)
    result = ranking.search(load_target(x=x, y=y), index=index)
    assert len({r.score for r in result.ranked}) == 2
    # a weight file edited behind the index, size and mtime restored
    data = tmp_path / "one/m.onnx.data"
    st = os.stat(data)
    blob = bytearray(data.read_bytes())
    blob[0] ^= 0x40
    data.write_bytes(bytes(blob))
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert {m["name"]: m["status"] for m in zoo.ls(index=index)} == {"one": "changed",
                                                                     "two": "ok"}


# -- read-only ------------------------------------------------------------------


def _bytes_of(index):
    # a reader may leave an empty WAL and its shared-memory index behind: no content;
    # the activation files count too
    return {str(p.relative_to(index.parent)): p.read_bytes()
            for p in index.parent.glob(index.name + "*") if p.is_file()
            and not p.name.endswith("-shm") and p.stat().st_size} | {
        str(p.relative_to(index.parent)): p.read_bytes()
        for p in index.parent.glob(index.name + "-activations/*")}


@pytest.mark.parametrize("how", ["permissions", "mode=ro"])
def test_read_only_index_searches_from_cache_and_refuses_writes(world, how, capsys):
    models, index, target, first = world
    if how == "permissions":
        # tests run as root, for whom chmod changes nothing: answer as a user would get
        real_access = os.access
        patch = mock.patch("os.access", lambda path, mode, **kw: not mode & os.W_OK
                           and real_access(path, mode, **kw))
        opener = lambda: Index(index)  # noqa: E731
    else:
        patch = mock.patch.dict(os.environ)
        opener = lambda: Index(index, read_only=True)  # noqa: E731
    with Index(index) as idx:  # checkpoint the WAL so the file alone holds everything
        idx.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _bytes_of(index)
    with patch:
        with opener() as idx:
            assert idx.read_only
            again = ranking.search(target, index=idx)
            assert _scores(again) == _scores(first) and all(r.cached for r in again.ranked)
            x, y = clustered(n_per_class=25, seed=9)  # a new target: computed, not cached
            assert len(ranking.search(load_target(x=x, y=y), index=idx).ranked) == 2
            for write in (lambda: zoo.add([models / "a.onnx"], index=idx, name="c"),
                          lambda: zoo.rm("a", index=idx),
                          lambda: zoo.cache_clear(index=idx)):
                with pytest.raises(StoreError, match="read-only"):
                    write()
        if how == "permissions":
            assert _cli("rm", "--index", index, "a") == 1
            err = capsys.readouterr().err.strip()
            assert err.startswith("Error: the index") and "read-only" in err
            assert "\n" not in err
    assert _bytes_of(index) == before  # not a byte written


def test_read_only_falls_back_to_immutable_when_the_wal_cannot_be_opened(world):
    # A WAL database in a folder nobody may write: SQLite cannot create the -shm file
    # and mode=ro fails to read. Root can always create it, so that failure is played.
    models, index, target, first = world
    with Index(index) as idx:
        idx.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    real_connect = sqlite3.connect
    opened_as = []

    class NoShm:
        def execute(self, *args):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            pass

    def connect(database, *args, **kwargs):
        opened_as.append(str(database).rsplit("?", 1)[-1])
        if str(database).endswith("?mode=ro"):
            return NoShm()
        return real_connect(database, *args, **kwargs)

    with mock.patch("zooindex.store.sqlite3.connect", connect):
        with Index(index, read_only=True) as idx:
            again = ranking.search(target, index=idx)
    assert opened_as == ["mode=ro", "immutable=1"]
    assert _scores(again) == _scores(first) and all(r.cached for r in again.ranked)


# -- full disk ------------------------------------------------------------------


def test_full_disk_while_caching_keeps_the_ranking_and_the_index(world):
    models, index, target, first = world
    x, y = clustered(n_per_class=300, seed=5)
    real_write = np.lib.format.write_array

    def no_space(fh, array, **kw):  # the file system fills up halfway through the file
        real_write(fh, array[: len(array) // 2], **kw)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with Index(index) as idx, mock.patch("numpy.lib.format.write_array", no_space):
        files = sorted(idx.cache.folder.iterdir())
        pages = idx.db.execute("PRAGMA page_count").fetchone()[0]
        # a real limit: SQLite answers SQLITE_FULL past this many pages
        assert idx.db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages
        result = ranking.search(load_target(x=x, y=y), index=idx)
        assert len(result.ranked) == 2  # caching is best effort
        assert any("could not cache activations" in n and "No space left" in n
                   for n in result.notes)
        assert sorted(idx.cache.folder.iterdir()) == files  # no partial file left behind
        assert idx.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # writes that are not a cache fail whole, with a clear error
        added = 0
        with pytest.raises(StoreError, match="database or disk is full; nothing was changed"):
            for i in range(200):
                zoo.add([models / "a.onnx"], index=idx, name=f"copy{i}")
                added += 1
        assert idx.catalogue.model_names() == sorted(["a", "b", *(f"copy{i}" for i in range(added))])
        assert all(idx.catalogue.get_model(n).layers for n in idx.catalogue.model_names())
    report = check(index=index)
    assert report.integrity == ["ok"] and report.damaged == 0
    again = ranking.search(target, index=index, models=["a", "b"])
    assert _scores(again) == _scores(first)


# -- schema versions ----------------------------------------------------------------


def test_newer_schema_is_refused_in_one_line(world, capsys):
    _, index, target, _ = world
    con = sqlite3.connect(index)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                [str(SCHEMA_VERSION + 1)])
    con.commit()
    con.close()
    assert _cli("search", "--index", index, target) == 1
    err = capsys.readouterr().err.strip()
    assert "newer zooindex" in err and "upgrade zooindex" in err and "\n" not in err


# the schema of version 1, as that release wrote it
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE models (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER, mtime REAL, input_name TEXT, input_shape TEXT, input_dtype TEXT,
    opset INTEGER, params INTEGER, default_layer TEXT, output_name TEXT,
    output_is_probs INTEGER, preprocessing TEXT, tags TEXT, source TEXT,
    external_data INTEGER, added_at TEXT);
CREATE TABLE layers (model TEXT REFERENCES models(name), name TEXT, op TEXT, kind TEXT,
    dim INTEGER, shape TEXT, position INTEGER, is_default INTEGER,
    PRIMARY KEY (model, name));
CREATE TABLE targets (key TEXT PRIMARY KEY, source TEXT, n INTEGER, classes TEXT,
    created_at TEXT);
CREATE TABLE activations (model_sha TEXT, layer TEXT, target TEXT, prep TEXT, n INTEGER,
    dim INTEGER, bytes INTEGER, data BLOB, created_at TEXT, used_at REAL,
    PRIMARY KEY (model_sha, layer, target, prep));
CREATE TABLE scores (model_sha TEXT, layer TEXT, target TEXT, prep TEXT, estimator TEXT,
    params TEXT, value REAL, components INTEGER, seconds REAL, created_at TEXT,
    PRIMARY KEY (model_sha, layer, target, prep, estimator, params));
CREATE INDEX idx_layers_model ON layers (model);
CREATE INDEX idx_models_sha256 ON models (sha256);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _v1_index(tmp_path):
    """A version-1 index holding model 'a' (a real file) with a cached score."""
    save(mlp(seed=0), tmp_path / "a.onnx")
    record = zoo.inspect_file(tmp_path / "a.onnx")
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute("PRAGMA journal_mode = WAL")
    row = {k: v for k, v in record.to_dict().items()
           if k not in ("layers", "ctime", "weights", "default_reason")}
    for key in ("input_shape", "preprocessing", "tags", "source"):
        row[key] = json.dumps(row[key], sort_keys=True)
    con.execute(f"INSERT INTO models ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()))
    for layer in record.layers:
        con.execute("INSERT INTO layers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [record.name, layer.name, layer.op, layer.kind, layer.width,
                     json.dumps(list(layer.shape)), layer.position,
                     layer.name == record.default_layer])
    con.execute("INSERT INTO targets VALUES ('t', 'src', 4, '[]', 'now')")
    con.execute("INSERT INTO scores VALUES (?, 'hidden1', 't', 'p', 'silhouette', '{}', 0.25,"
                " 10, 0.1, 'now')", [record.sha256])
    con.execute("INSERT INTO activations VALUES (?, 'hidden1', 't', 'p', 2, 2, 1, ?, 'now', 0)",
                [record.sha256, schema2_blob(np.eye(2, dtype=np.float32))])
    con.commit()
    con.close()
    return path, record


def _dump(path):
    con = sqlite3.connect(path)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())
                for t in ("meta", "models", "layers", "targets", "activations", "scores")}
    finally:
        con.close()


def test_older_schema_is_backed_up_then_migrated_in_place(tmp_path):
    path, record = _v1_index(tmp_path)
    before = _dump(path)
    with Index(path) as idx:
        assert idx.store.schema_version == SCHEMA_VERSION == 4
        # the version-1 row keeps its blob in the database and is still read
        assert np.array_equal(idx.cache.get_activations(record.sha256, "hidden1", "t", "p"),
                              np.eye(2, dtype=np.float32))
        migrated = idx.catalogue.get_model("a")
        # not known in v1
        assert migrated.ctime is None and migrated.weights is None
        assert migrated.default_reason is None
        assert migrated.sha256 == record.sha256 and len(migrated.layers) == len(record.layers)
        # scores computed before the exact PCA are dropped, to be recomputed
        assert idx.cache.get_scores(record.sha256, "hidden1", "t", "p") == {}
        assert idx.catalogue.model_status(migrated) == "ok"  # and now its ctime is recorded
        assert idx.catalogue.get_model("a").ctime is not None
    backup = tmp_path / "v1.db.schema1.bak"
    assert _dump(backup) == before  # the copy is exactly the version-1 index
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(models)")]
    assert columns[-3:] == ["ctime", "weights", "default_reason"]
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(activations)")]
    assert columns[-2:] == ["file", "crc"]
    assert check(index=path).ok


def test_failed_migration_changes_nothing(tmp_path):
    path, _ = _v1_index(tmp_path)
    before = _dump(path)
    bad = {1: ("ALTER TABLE models ADD COLUMN ctime REAL", "ALTER TABLE nowhere ADD x")}
    with mock.patch("zooindex.store._MIGRATIONS", bad):
        with pytest.raises(StoreError, match="no such table: nowhere; nothing was changed"):
            Index(path)
    assert _dump(path) == before  # the first ALTER was rolled back with the second
    with Index(path) as idx:  # and a later, sound migration still works
        assert idx.store.schema_version == SCHEMA_VERSION


def test_concurrent_openers_migrate_once(tmp_path):
    path, _ = _v1_index(tmp_path)
    errors = []

    def open_it():
        try:
            Index(path).close()
        except Exception as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _dump(path)["meta"] == [("schema_version", str(SCHEMA_VERSION))]
    assert [p.name for p in tmp_path.glob("v1.db.schema*")] == ["v1.db.schema1.bak"]


def test_read_only_older_schema_is_read_without_migrating(tmp_path):
    path, record = _v1_index(tmp_path)
    with Index(path, read_only=True) as idx:
        assert idx.store.schema_version == 1
        assert idx.catalogue.get_model("a").sha256 == record.sha256
    assert _dump(path)["meta"] == [("schema_version", "1")]
    assert not (tmp_path / "v1.db.schema1.bak").exists()


def _cli(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code or 0
    return 0
