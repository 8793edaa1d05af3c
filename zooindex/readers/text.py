"""Text data sets: CSV, TSV, JSON Lines and Parquet files of texts and labels.

Each row is one sample: a text column (and for sentence pairs a second text column) and
a label column. Column names are chosen by :class:`TextColumns`; by default the first of
``text, sentence, sentence1, premise, question, content, review`` that the file has, the
second text of a pair from ``text_pair, sentence2, hypothesis`` when asked for (or
present together with ``sentence1``), and the label from ``label, labels, target, y``.
A file without a label column is an unlabeled target.

The inputs are a numpy array of ``str``: ``(N,)`` for single texts, ``(N, 2)`` for pairs.
Labels are kept as read (ints, floats or strings); :mod:`zooindex.target` validates them.
Parquet needs pyarrow (``pip install 'zooindex[text]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DependencyError, TargetError
from . import Dataset, register_reader

TEXT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".parquet": "parquet"}
TEXT_NAMES = ("text", "sentence", "sentence1", "premise", "question", "content", "review")
PAIR_NAMES = ("text_pair", "sentence2", "hypothesis")
LABEL_NAMES = ("label", "labels", "target", "y")


@dataclass(frozen=True)
class TextColumns:
    """Which columns hold the text, the second text of a pair, and the label.

    ``None`` picks by name (see the module's docstring). ``pair`` ``None`` reads pairs
    only when the file has ``sentence1`` and ``sentence2`` (or ``premise`` and
    ``hypothesis``) and no plain ``text``.
    """

    text: str | None = None
    label: str | None = None
    pair: str | None = None

    def options(self) -> dict:
        """The columns as given, for a target's fingerprint (``None`` when defaulted)."""
        return {k: v for k, v in (("text_column", self.text), ("label_column", self.label),
                                  ("text_pair_column", self.pair)) if v is not None}


def text_format(path) -> str | None:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` from the file name, else ``None``."""
    return TEXT_SUFFIXES.get(os.path.splitext(os.fspath(path))[1].lower())


def read_text(path, columns: TextColumns | None = None) -> Dataset:
    """Read a text data set file into a :class:`Dataset` of ``str`` inputs."""
    path = os.fspath(path)
    columns = columns or TextColumns()
    kind = text_format(path)
    if kind is None:
        raise TargetError(f"'{path}' is not a text data set; give a .csv, .tsv, .jsonl or "
                          ".parquet file", path=path)
    names, rows = _ROW_READERS[kind](path)
    if not rows:
        raise TargetError(f"text target '{path}' has no rows", path=path)
    text_col = _pick(names, columns.text, TEXT_NAMES, "text", "--text-column", path)
    pair_col = columns.pair
    if pair_col is None and text_col in ("sentence1", "premise"):
        pair_col = next((n for n in PAIR_NAMES if n in names), None)
    elif pair_col is not None:
        pair_col = _pick(names, pair_col, (), "second text", "--text-pair-column", path)
    label_col = columns.label
    if label_col is not None:
        label_col = _pick(names, label_col, (), "label", "--label-column", path)
    else:
        label_col = next((n for n in LABEL_NAMES if n in names), None)
    texts = [_text(row, text_col, i, path) for i, row in enumerate(rows)]
    if pair_col is not None:
        seconds = [_text(row, pair_col, i, path) for i, row in enumerate(rows)]
        x = np.array(list(zip(texts, seconds)), dtype=str).reshape(len(rows), 2)
    else:
        x = np.array(texts, dtype=str)
    y = None
    if label_col is not None:
        y = _labels([row.get(label_col) for row in rows], label_col, path)
    return Dataset(x=x, y=y, class_names=None, source=path)


def _pick(names: list, given, defaults, what: str, flag: str, path: str) -> str:
    if given is not None:
        if given not in names:
            raise TargetError(f"column '{given}' is not in '{path}'; its columns: "
                              f"{', '.join(names) or '(none)'}; pass {flag} with one of them",
                              path=path)
        return given
    found = next((n for n in defaults if n in names), None)
    if found is None:
        raise TargetError(f"no {what} column in '{path}' (looked for "
                          f"{', '.join(defaults)}); its columns: {', '.join(names) or '(none)'};"
                          f" pass {flag}", path=path)
    return found


def _text(row: dict, column: str, i: int, path: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        if value is None:
            raise TargetError(f"row {i} of '{path}' has no text in column '{column}'; fill "
                              "or drop it", path=path)
        raise TargetError(f"row {i} of '{path}' has {type(value).__name__} {value!r} in "
                          f"text column '{column}', not text", path=path)
    if not value.strip():
        raise TargetError(f"row {i} of '{path}' has an empty text in column '{column}'; "
                          "fill or drop it", path=path)
    return value


def _labels(values: list, column: str, path: str) -> np.ndarray:
    """Labels as ints when every one is a whole number, floats when they are numbers,
    else strings (CSV cells are text: numbers are parsed)."""
    missing = next((i for i, v in enumerate(values) if v is None or v == ""), None)
    if missing is not None:
        raise TargetError(f"row {missing} of '{path}' has no label in column '{column}'; "
                          "fill or drop it", path=path)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    parsed = [_number(v) for v in values]
    if all(p is not None for p in parsed):
        array = np.array(parsed, dtype=np.float64)
        if np.all(array == np.round(array)) and np.all(np.abs(array) < 2**53):
            return array.astype(np.int64)
        return array
    return np.array([str(v) for v in values], dtype=str)


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _decoded(path: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TargetError(f"'{path}' is not UTF-8 text (byte {exc.start}, line {line}); "
                          "re-save it as UTF-8", path=path) from None


def _delimited(delimiter: str):
    def rows(path: str):
        text = _decoded(path)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            records = list(reader)
        except csv.Error as exc:
            raise TargetError(f"cannot read '{path}' as {'TSV' if delimiter == chr(9) else 'CSV'}"
                              f": {exc}", path=path) from None
        names = list(reader.fieldnames or [])
        for i, record in enumerate(records):
            if None in record:
                raise TargetError(f"row {i} of '{path}' has more cells than the header "
                                  f"({len(names)} columns)", path=path)
        return names, records
    return rows


def _jsonl(path: str):
    names: dict = {}
    records = []
    for number, line in enumerate(_decoded(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TargetError(f"line {number} of '{path}' is not JSON ({exc.msg}); write one "
                              "object per line", path=path) from None
        if not isinstance(record, dict):
            raise TargetError(f"line {number} of '{path}' is a {type(record).__name__}, not "
                              "an object with named fields", path=path)
        names.update(dict.fromkeys(record))
        records.append(record)
    return list(names), records


def _parquet(path: str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyError("reading Parquet needs pyarrow: pip install 'zooindex[text]' "
                              "(or pyarrow)", package="pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's error types vary by version
        raise TargetError(f"cannot read '{path}' as Parquet: {' '.join(str(exc).split())[:160]}",
                          path=path) from None
    return list(table.column_names), table.to_pylist()


_ROW_READERS = {"csv": _delimited(","), "tsv": _delimited("\t"), "jsonl": _jsonl,
                "parquet": _parquet}


def _sniff(kind: str):
    return lambda path: os.path.isfile(path) and text_format(path) == kind


for _kind in ("csv", "tsv", "jsonl", "parquet"):
    register_reader(_kind, sniff=_sniff(_kind),
                    load=lambda path, split: _unsplit(path, split))


def _unsplit(path: str, split):
    if split is not None:
        from . import unknown_split

        raise unknown_split(path, split, ())
    return read_text(path)
