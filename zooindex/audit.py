"""``zooindex check``: is the index sound, and does it still describe the files?

An index outlives crashes, full disks, files moved or edited behind its back and
concurrent writers. ``check`` looks at all of it in one pass and says what it found:

* SQLite's own ``PRAGMA integrity_check`` and ``foreign_key_check``;
* every model: its file (and external weight files) still there, and its content hash
  still the one indexed (always hashed here, never trusted from size and times);
  every model has its layers; a text model's tokenizer.json is where it was, unchanged;
* every cached activation is intact: its file is there, with the recorded shape and
  CRC-32 (read one at a time, so memory stays bounded);
* orphans: activations and scores whose model content no indexed model has, scores of
  a target that is gone, targets that no score or activation refers to, activation
  files that no row refers to (left by a crash between writing a file and its row);
* the cache's size on disk.

``fix=True`` removes orphans and damaged activation rows in one transaction, then the
files nothing refers to.
Missing or changed models are reported, not removed: whether to ``zooindex rm`` them,
``zooindex add --replace`` them or ``zooindex search --refresh`` is the user's call.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import StoreError
from .index import Index, default_path, opened


@dataclass
class CheckReport:
    """What ``check`` found (and, with ``fix``, removed).

    ``integrity``: SQLite's messages, ``["ok"]`` when sound. ``models``: one entry per
    model, ``{"name", "status", "path", "layers"}`` with status ``ok``, ``missing`` or
    ``changed`` (text models add ``tokenizer`` and ``tokenizer_status``, the same
    three). ``orphans``: per table, how many rows nothing refers to (after a fix:
    what is left). ``damaged``: activation rows that do not decode. ``fixed``: what the
    fix removed, per table. ``cache``: counts and bytes. ``error``: why the index
    could not be opened or read to the end, if it could not.
    """

    path: str
    integrity: list = field(default_factory=list)
    foreign_keys: int = 0
    models: list = field(default_factory=list)
    orphans: dict = field(default_factory=dict)
    damaged: int = 0
    fixed: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        """One line per problem; empty when the index is sound."""
        out = []
        if self.error:
            out.append(self.error)
        if self.integrity != ["ok"]:
            out.append("SQLite integrity check failed: "
                       + "; ".join(line for line in self.integrity[:5] if "***" not in line)
                       + "; zooindex cannot repair this: restore a backup (such as a "
                       "*.schema1.bak beside it) or rebuild the index with `zooindex add`")
        if self.foreign_keys:
            out.append(f"{self.foreign_keys} rows break a foreign key")
        for m in self.models:
            if m["status"] == "missing":
                out.append(f"model '{m['name']}': file {m['path']} is missing; "
                           f"`zooindex rm {m['name']}` or put the file back")
            elif m["status"] == "changed":
                out.append(f"model '{m['name']}': file {m['path']} changed since it was "
                           "added; `zooindex search --refresh` or `zooindex add --replace`")
            if m.get("tokenizer_status") == "missing":
                out.append(f"model '{m['name']}': tokenizer {m['tokenizer']} is missing "
                           "(moved?); put it back, or `zooindex add --replace MODEL "
                           "--tokenizer NEW_PATH`")
            elif m.get("tokenizer_status") == "changed":
                out.append(f"model '{m['name']}': tokenizer {m['tokenizer']} changed since "
                           "the model was added; `zooindex add --replace MODEL` to index it "
                           "with this tokenizer")
            if not m["layers"]:
                out.append(f"model '{m['name']}' has no layers (half-written); re-add it "
                           "with --replace")
        for table, count in self.orphans.items():
            if count:
                what = "activation files no row refers to" if table == "files" else \
                    f"orphaned {table} rows"
                out.append(f"{count} {what}; `zooindex check --fix` removes them")
        if self.damaged:
            out.append(f"{self.damaged} cached activations are damaged or missing; "
                       "`zooindex check --fix` removes them")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["problems"] = self.problems
        return d


def check(*, index=None, fix: bool = False) -> CheckReport:
    """Check the index (see the module docstring); with ``fix``, remove orphans.

    An index too damaged to open still gets a report: SQLite's integrity check, run on
    the bare file, and the reason it cannot be opened.
    """
    path = index.path if isinstance(index, Index) else \
        Path(index).expanduser() if index is not None else default_path()
    try:
        with opened(index, create=False) as idx:
            return _check(idx, fix)
    except StoreError as exc:
        if not path.is_file():
            raise
        report = CheckReport(path=str(path), error=str(exc))
        report.integrity = _bare_integrity(path)
        return report


def _check(idx: Index, fix: bool) -> CheckReport:
    report = CheckReport(path=str(idx.path))
    try:
        report.integrity = [row[0] for row in idx.db.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        report.integrity = [str(exc)]
    try:
        report.foreign_keys = len(list(idx.db.execute("PRAGMA foreign_key_check")))
        for record in idx.catalogue.models():
            status, _ = record.verify(full=True)
            entry = {"name": record.name, "status": status, "path": record.path,
                     "layers": len(record.layers)}
            if record.text is not None:
                from .text.tokenizer import status as tokenizer_status

                entry["tokenizer"] = record.text.get("tokenizer")
                entry["tokenizer_status"] = tokenizer_status(record.text)
            report.models.append(entry)
        cache = idx.cache
        damaged = cache.damaged_activations()
        report.damaged = len(damaged)
        report.orphans = cache.orphans()
        if fix and (damaged or any(report.orphans.values())):
            with idx.transaction():
                removed = cache.drop_orphans()
                removed["damaged activations"] = cache.drop_activations(damaged)
            report.fixed = removed
            report.damaged = len(cache.damaged_activations())
            report.orphans = cache.orphans()
        report.cache = {**cache.stats(), "file_bytes": _file_bytes(idx)}
    except sqlite3.DatabaseError as exc:
        report.error = f"reading the index failed: {exc}"
    return report


def _bare_integrity(path: Path) -> list[str]:
    """SQLite's integrity check on a file that does not open as an index."""
    try:
        uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True)
        try:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def _file_bytes(idx: Index) -> int:
    """The database, its WAL and the activation files on disk."""
    paths = [idx.path, Path(f"{idx.path}-wal")]
    if idx.cache.folder.is_dir():
        paths += [p for p in idx.cache.folder.iterdir() if p.is_file()]
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


__all__ = ["check", "CheckReport"]
