"""The target data set: read, validated once, optionally narrowed, and fingerprinted.

Everything downstream (adapting inputs to a model, running it, scoring) trusts a
:class:`Target`: numeric inputs without NaN/inf (or non-blank UTF-8 texts), integer label codes ``0..K-1`` with at
least two classes of at least two samples each. The :attr:`Target.key` identifies exactly
the samples that will be scored, so cached activations and scores are reused only for the
same data.

What the stored numbers are (:attr:`Target.input_range`) is decided here, once for the
whole target, so that every batch is adapted alike: uint8 is 0..255 pixels; other dtypes
are read once, a chunk at a time (bounded memory, memory maps included), and numbers from
0 to 255 that are pixels (see :func:`detect_input_range`) are treated as uint8 would be.
The decision is a property of the data, not of a model, so it lives on the target; the
search passes it to :func:`zooindex.adapt.adapt` and prints :attr:`Target.input_note`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass

import numpy as np

from .choices import INPUT_RANGES
from .errors import TargetError

ARRAYS = "<arrays>"
# rows hashed or checked per step: bounded memory for memory-mapped or strided inputs
_CHUNK_VALUES = 1 << 22
_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")
_INT = re.compile(r"^-?\d+$")
_SHOWN = 20  # class values listed in an error message before "..."


@dataclass(frozen=True)
class Target:
    """A validated target data set.

    ``x``: inputs ``(N, ...)``, uint8/integer or float, finite (possibly a memory map); for
    a text target (:attr:`kind` ``"text"``) an array of ``str``, ``(N,)`` or ``(N, 2)`` for
    pairs, none of them blank. ``y``: int64 codes ``0..K-1`` (float64 values for a
    regression target, :attr:`task` ``"regression"``). ``classes``: the original label value
    of each code, in sorted order. ``class_names``: readable names for the codes when the
    data set has them (CIFAR, image folders), else ``None``. ``key``: sha256 hex of the
    inputs, labels and the options that chose them. ``input_range``: ``"0-255"`` when the
    inputs are pixels to divide by 255, ``"0-1"`` when they are used as stored, ``None``
    when they are not pixel values (used as stored too); pass it to
    :func:`zooindex.adapt.adapt`. ``input_note``: one line saying what was assumed about the
    range, when anything was (``None`` for uint8 and for values in [0, 1]). An unlabeled
    target has ``y`` ``None`` and no classes: only label-free scores apply to it.
    """

    x: np.ndarray
    y: np.ndarray | None
    classes: tuple
    source: str
    key: str
    class_names: tuple | None = None
    input_range: str | None = None
    input_note: str | None = None
    task: str = "classification"

    def __len__(self) -> int:
        return len(self.x)

    @property
    def kind(self) -> str:
        """``"text"`` when the inputs are strings (``(N,)``, or ``(N, 2)`` for pairs of
        texts), else ``"image"`` (images and numeric vectors alike)."""
        return "text" if self.x.dtype.kind == "U" else "image"

    @property
    def regression(self) -> bool:
        """Whether the labels are real numbers to predict (``y`` float64, no classes)."""
        return self.task == "regression"

    @property
    def labeled(self) -> bool:
        return self.y is not None


def parse_classes(text: str) -> list:
    """Parse a ``--classes`` value: ``"0-4"``, ``"3,7,9"``, ``"cat,dog"`` or ``"0-2,7"``.

    Integers (and inclusive integer ranges) become ints, anything else stays a string;
    duplicates are dropped, first occurrence kept.
    """
    if not str(text).strip():
        raise TargetError("--classes is empty; give label values such as 0-4, 3,7,9 or cat,dog")
    values = []
    for token in (t.strip() for t in str(text).split(",")):
        if not token:
            raise TargetError(f"--classes '{text}' has an empty item; separate values with "
                              "single commas, e.g. 3,7,9")
        match = _RANGE.match(token)
        if match:
            low, high = int(match[1]), int(match[2])
            if low > high:
                raise TargetError(f"--classes range '{token}' runs backwards; write {high}-{low}")
            values.extend(range(low, high + 1))
        elif _INT.match(token):
            values.append(int(token))
        else:
            values.append(token)
    return list(dict.fromkeys(values))


def load_target(source=None, *, split: str | None = None, classes=None, limit: int | None = None,
                seed: int = 0, x=None, y=None, input_range: str | None = None,
                text_column: str | None = None, label_column: str | None = None,
                text_pair_column: str | None = None) -> Target:
    """Read and validate a target data set.

    ``source`` is a path (any registered reader), a :class:`~zooindex.readers.Dataset`, or
    ``None`` with the arrays given as ``x=`` and ``y=``. ``classes`` keeps only those original
    label values (a list, or text for :func:`parse_classes`; class names work when the data
    set has them). ``limit`` draws a stratified, seeded subsample of that many samples (class
    proportions kept; a limit at or above the size keeps everything). ``input_range``
    (``"0-1"`` or ``"0-255"``) says what the stored numbers are instead of detecting it
    (:func:`detect_input_range`); an explicit choice is part of the key.

    Text targets (:mod:`zooindex.readers.text`: CSV, TSV, JSONL, Parquet, or an ``.npz``
    or ``x=`` holding strings) have ``str`` inputs; ``text_column``, ``label_column``
    and ``text_pair_column`` choose a file's columns. A text target whose labels are
    real numbers (not all whole) is a regression target (:attr:`Target.regression`).
    """
    if input_range is not None and input_range not in INPUT_RANGES:
        raise TargetError(f"input range {input_range!r} is not one of: "
                          f"{', '.join(INPUT_RANGES)}; leave it out to detect it")
    from .readers.text import TextColumns

    columns = TextColumns(text=text_column, label=label_column, pair=text_pair_column)
    dataset = _dataset(source, split, x, y, columns)
    name = dataset.source
    inputs = _inputs(dataset.x, name)
    text = inputs.dtype.kind == "U"
    if text and input_range is not None:
        raise TargetError(f"target '{name}' holds texts; --input-range applies to pixels: "
                          "drop it", path=name)
    column_options = columns.options() if text else {}
    if dataset.y is None:
        return _unlabeled(inputs, name, classes, limit, seed, input_range, column_options)
    if text and _real_valued(dataset.y):
        return _regression(inputs, dataset.y, name, classes, limit, seed, column_options)
    labels = _labels(dataset.y, len(inputs), name)
    keep = np.arange(len(labels))
    kept_classes = None
    if classes is not None:
        kept_classes = _class_values(classes, labels, dataset.class_names, name)
        keep = keep[np.isin(labels, kept_classes)]
    _check_sizes(labels[keep], name, dataset.class_names)
    drawn = _subsample(labels[keep], limit, seed, name)
    if drawn is not None:
        _check_sizes(labels[keep[drawn]], name, dataset.class_names, limited=limit,
                     expected=np.unique(labels[keep]))
        keep = keep[drawn]
    if len(keep) < len(labels):
        inputs, labels = inputs[keep], labels[keep]
    if text:
        found, note = None, None
    elif input_range is None:
        found, note = detect_input_range(inputs, positions=keep, source=name)
    else:
        _check_finite(inputs, keep, name)
        found, note = input_range, None
    values, codes = np.unique(labels, return_inverse=True)
    codes = codes.astype(np.int64)
    class_values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
    options = {"classes": None if kept_classes is None else list(class_values),
               "limit": None if drawn is None else int(limit),
               "seed": None if drawn is None else int(seed)}
    if input_range is not None:  # detection is a function of the bytes, already hashed
        options["input_range"] = input_range
    options.update(column_options)
    return Target(x=inputs, y=codes, classes=class_values, source=name,
                  key=fingerprint(inputs, codes, class_values, options),
                  class_names=_names_for(class_values, dataset.class_names),
                  input_range=found, input_note=note)


def _real_valued(y) -> bool:
    """Labels that are real numbers, not all whole: a regression target."""
    try:
        y = np.asarray(y)
    except (ValueError, TypeError):
        return False
    return y.dtype.kind == "f" and y.ndim == 1 and not bool(
        np.all(np.isfinite(y) & (y == np.round(y))))


def _regression(inputs: np.ndarray, y, name: str, classes, limit, seed,
                column_options: dict) -> Target:
    """A text target with real-valued labels: ``y`` float64, no classes."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) != len(inputs):
        raise TargetError(f"target '{name}' has {len(inputs)} inputs but {len(y)} labels; "
                          "give one label per sample", path=name)
    if not np.all(np.isfinite(y)):
        i = int(np.argmin(np.isfinite(y)))
        raise TargetError(f"label at sample {i} of target '{name}' is NaN or inf; clean or "
                          "drop it", path=name)
    if classes is not None:
        raise TargetError(f"target '{name}' has real-valued labels (regression), so "
                          "--classes cannot choose samples; drop --classes", path=name)
    drawn = _plain_draw(len(inputs), limit, seed, least=3)
    if drawn is not None:
        inputs, y = inputs[drawn], y[drawn]
    if len(inputs) < 3 or np.ptp(y) == 0:
        raise TargetError(f"target '{name}' has {len(inputs)} samples with "
                          f"{len(np.unique(y))} distinct label value(s); a regression target "
                          "needs at least 3 samples and 2 values", path=name)
    options = {"regression": True, "limit": None if drawn is None else int(limit),
               "seed": None if drawn is None else int(seed), **column_options}
    return Target(x=inputs, y=y, classes=(), source=name,
                  key=fingerprint(inputs, y, (), options), task="regression")


def _plain_draw(n: int, limit, seed, least: int) -> np.ndarray | None:
    """The sorted positions of a seeded draw of ``limit`` of ``n`` samples, without
    regard to labels (regression and unlabeled targets); ``None`` when ``limit`` is
    ``None`` or keeps them all. ``limit`` below ``least`` is refused."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < least:
        raise TargetError(f"--limit must be at least {least} samples, not {limit!r}")
    if limit >= n:
        return None
    return np.sort(np.random.default_rng(int(seed)).choice(n, int(limit), replace=False))


def _unlabeled(inputs: np.ndarray, name: str, classes, limit, seed, input_range,
               column_options: dict | None = None) -> Target:
    """A target without labels: inputs only, a plain seeded subsample with ``limit``."""
    if classes is not None:
        raise TargetError(f"target '{name}' has no labels, so --classes cannot choose "
                          "samples; drop --classes", path=name)
    keep = np.arange(len(inputs))
    drawn = _plain_draw(len(inputs), limit, seed, least=2)
    if drawn is not None:
        keep, inputs = keep[drawn], inputs[drawn]
    if len(inputs) < 3:
        raise TargetError(f"target '{name}' has {len(inputs)} samples; ranking needs at "
                          "least 3", path=name)
    if inputs.dtype.kind == "U":
        found, note = None, None
    elif input_range is None:
        found, note = detect_input_range(inputs, positions=keep, source=name)
    else:
        _check_finite(inputs, keep, name)
        found, note = input_range, None
    options = {"unlabeled": True, "limit": None if drawn is None else int(limit),
               "seed": None if drawn is None else int(seed)}
    if input_range is not None:
        options["input_range"] = input_range
    options.update(column_options or {})
    return Target(x=inputs, y=None, classes=(), source=name,
                  key=fingerprint(inputs, np.zeros(0, np.int64), (), options),
                  input_range=found, input_note=note)


def detect_input_range(inputs: np.ndarray, *, positions=None,
                       source: str = ARRAYS) -> tuple[str | None, str | None]:
    """What the stored numbers of a whole target are: ``(input_range, note)``.

    - uint8: ``"0-255"``, no note (pixels, as always);
    - values within [0, 1]: ``"0-1"``, no note;
    - values from 0 to 255 reaching at least 2, in image-shaped samples (``(H, W)``,
      ``(H, W, C)``, ``(C, H, W)`` with C 1 or 3), or all whole numbers in any shape
      (flattened pixels such as OpenML's ``mnist_784``): ``"0-255"``, with a note saying
      they will be divided by 255 like uint8 images;
    - anything else: ``None`` (used as stored), with a note for image-shaped samples.

    The inputs are read once, a chunk of rows at a time, so memory stays bounded for
    memory-mapped targets; NaN and inf are refused on the way (``positions`` maps rows
    back to sample numbers for the message).
    """
    if inputs.dtype == np.uint8:
        return "0-255", None
    positions = np.arange(len(inputs)) if positions is None else positions
    image = _image_shaped(inputs.shape[1:])
    low, high, whole = _check_finite(inputs, positions, source, want_range=True,
                                     want_whole=not image)
    if low >= 0 and high <= 1:
        return "0-1", None
    span = f"{inputs.dtype} from {low:g} to {high:g}"
    if low >= 0 and 2 <= high <= 255 and (image or whole):
        return "0-255", (f"inputs are {span}: taken as 0..255 pixels and divided by 255 "
                         "like uint8 images; pass --input-range 0-1 to use them as stored")
    if image:
        return None, (f"inputs are {span}, neither 0..1 nor 0..255 pixels: used as stored; "
                      "pass --input-range 0-255 or 0-1 if they are pixels")
    return None, None


def _image_shaped(sample_shape) -> bool:
    shape = tuple(sample_shape)
    return len(shape) == 2 or (len(shape) == 3 and (shape[2] in (1, 3) or shape[0] in (1, 3)))


def fingerprint(inputs: np.ndarray, codes: np.ndarray, class_values: tuple, options: dict) -> str:
    """sha256 over the inputs' dtype, shape and bytes, the labels, and the options.

    Only raw bytes of C-contiguous blocks are hashed (no conversion), so 5,000 MNIST-sized
    images cost a few milliseconds; strided inputs are copied a chunk at a time.
    """
    if inputs.dtype.kind == "U":
        return _text_fingerprint(inputs, codes, class_values, options)
    digest = hashlib.sha256(b"zooindex-target-1\0")
    digest.update(f"{inputs.dtype.str}{inputs.shape}".encode())
    if inputs.flags.c_contiguous:
        digest.update(inputs.reshape(-1).view(np.uint8))
    else:
        for block in _row_blocks(inputs):
            digest.update(np.ascontiguousarray(block).reshape(-1).view(np.uint8))
    digest.update(np.ascontiguousarray(codes, dtype="<i8").view(np.uint8))
    digest.update(json.dumps([list(class_values), options], sort_keys=True).encode())
    return digest.hexdigest()


def _text_fingerprint(texts: np.ndarray, labels: np.ndarray, class_values: tuple,
                      options: dict) -> str:
    """sha256 over the UTF-8 bytes of every text (each after its byte length, so that
    no two lists of texts hash alike), the shape (pairs differ from single texts), the
    labels (int64 codes or float64 values) and the options."""
    digest = hashlib.sha256(b"zooindex-text-target-1\0")
    digest.update(f"{texts.shape}".encode())
    for text in texts.reshape(-1).tolist():
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    labels = np.asarray(labels)
    digest.update(labels.dtype.str.encode())
    digest.update(np.ascontiguousarray(labels, dtype=labels.dtype.newbyteorder("<"))
                  .view(np.uint8))
    digest.update(json.dumps([list(class_values), options], sort_keys=True).encode())
    return digest.hexdigest()


def _dataset(source, split, x, y, columns=None):
    from .readers import Dataset, read
    from .readers.text import read_text, text_format

    if x is not None or y is not None:
        if source is not None:
            raise TargetError("give either a target source or arrays x= and y=, not both")
        if x is None:
            raise TargetError("arrays need x= (inputs), and y= (labels) unless the target "
                              "is unlabeled")
        if split is not None:
            raise TargetError("--split applies to data-set files; arrays have no splits")
        if columns is not None and columns.options():
            raise TargetError("--text-column, --label-column and --text-pair-column choose "
                              "columns of a text file; arrays have none")
        return Dataset(x=x, y=y, class_names=None, source=ARRAYS)
    if source is None:
        raise TargetError("no target given; pass a data-set path, a Dataset, or x= and y=")
    if isinstance(source, Dataset):
        if split is not None:
            raise TargetError(f"--split applies when reading a file; '{source.source}' is "
                              "already loaded")
        return source
    if text_format(source) is not None and not isinstance(source, Dataset):
        import os

        if not os.path.isfile(source):
            raise TargetError(f"target '{source}' does not exist; give a data-set file or "
                              "folder", path=str(source))
        if split is not None:
            raise TargetError(f"text file '{source}' has no splits; drop --split",
                              path=str(source))
        return read_text(source, columns)
    if columns is not None and columns.options():
        raise TargetError(f"--text-column, --label-column and --text-pair-column choose "
                          f"columns of a .csv, .tsv, .jsonl or .parquet file, not of "
                          f"'{source}'", path=str(source))
    return read(source, split=split)


def _inputs(x, source: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise TargetError(f"inputs of target '{source}' are not one array: "
                              f"{' '.join(str(exc).split())[:120]}; give every sample the "
                              "same shape", path=source) from None
    if x.ndim in (1, 2) and (x.dtype.kind in "US" or (
            x.dtype.kind == "O" and x.size and all(isinstance(v, str) for v in x.flat))):
        return _texts(x, source)
    if x.dtype.kind == "b":
        x = x.view(np.uint8)
    if x.dtype.kind not in "iuf":
        raise TargetError(f"inputs of target '{source}' have dtype {x.dtype}; they must be "
                          "numbers (uint8 images or floats): decode or encode them first",
                          path=source)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.ndim == 0 or len(x) == 0:
        raise TargetError(f"target '{source}' has no samples", path=source)
    if x.ndim == 1:  # one number per sample
        x = x.reshape(-1, 1)
    if x[0].size == 0:
        raise TargetError(f"samples of target '{source}' are empty (shape {x.shape})",
                          path=source)
    return x


def _texts(x: np.ndarray, source: str) -> np.ndarray:
    """Text inputs as an array of ``str``: ``(N,)``, or ``(N, 2)`` for pairs; every text
    valid UTF-8 and not blank."""
    if x.ndim == 2 and x.shape[1] != 2:
        raise TargetError(f"text inputs of target '{source}' have shape {x.shape}; give one "
                          "text per sample (N,) or a pair of texts (N, 2)", path=source)
    if len(x) == 0:
        raise TargetError(f"target '{source}' has no samples", path=source)
    flat = x.reshape(-1)
    if x.dtype.kind == "S":
        try:
            flat = np.char.decode(flat, "utf-8")
        except UnicodeDecodeError:
            raise TargetError(f"texts of target '{source}' are bytes that are not UTF-8; "
                              "decode them to strings first", path=source) from None
    elif x.dtype.kind == "O":
        items = flat.tolist()
        bad = next(((i, v) for i, v in enumerate(items) if not isinstance(v, str)), None)
        if bad is not None:
            raise TargetError(f"input {bad[1]!r} ({type(bad[1]).__name__}) at sample "
                              f"{bad[0] // (x.size // len(x))} of target '{source}' is not "
                              "text; give every sample a string", path=source)
        flat = np.array(items, dtype=str)
    for i, text in enumerate(flat.tolist()):
        if not text.strip():
            raise TargetError(f"text at sample {i // (x.size // len(x))} of target "
                              f"'{source}' is empty; fill or drop it", path=source)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise TargetError(f"text at sample {i // (x.size // len(x))} of target "
                              f"'{source}' is not valid Unicode (a lone surrogate); fix its "
                              "encoding", path=source) from None
    return np.asarray(flat, dtype=str).reshape(x.shape)


def _labels(y, n: int, source: str) -> np.ndarray:
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise TargetError(f"labels of target '{source}' are not one array: "
                          f"{' '.join(str(exc).split())[:120]}; give one label per sample",
                          path=source) from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        hint = " (one-hot? pass labels.argmax(1))" if y.ndim == 2 else ""
        raise TargetError(f"labels of target '{source}' have shape {y.shape}; give one class "
                          f"label per sample, shape ({n},){hint}", path=source)
    if len(y) != n:
        raise TargetError(f"target '{source}' has {n} inputs but {len(y)} labels; give one "
                          "label per sample", path=source)
    kind = y.dtype.kind
    if kind in "biu":
        return y.astype(np.int64)
    if kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.argmin(whole))
            raise TargetError(f"label {y[i].item()!r} at sample {i} of target '{source}' is "
                              "not a class label; labels must be ints or strings (whole-number "
                              "floats are accepted)", path=source)
        return y.astype(np.int64)
    if kind == "U":
        return y
    if kind == "S":
        try:
            return np.char.decode(y, "utf-8")
        except UnicodeDecodeError:
            raise TargetError(f"labels of target '{source}' are bytes that are not UTF-8 "
                              "text; decode them to strings or map them to ints first",
                              path=source) from None
    if kind == "O":
        items = y.tolist()
        if all(isinstance(v, str) for v in items):
            return np.array(items, dtype=str)
        if all(isinstance(v, numbers.Integral) for v in items):
            return np.array(items, dtype=np.int64)
        found = next(((i, v) for i, v in enumerate(items)
                      if not isinstance(v, (str, numbers.Integral))), None)
        if found is None:
            raise TargetError(f"labels of target '{source}' mix numbers and strings; use "
                              "one kind for every label", path=source)
        i, bad = found
        raise TargetError(f"label {bad!r} ({type(bad).__name__}) at sample {i} of target "
                          f"'{source}' is not a class label; use ints or strings", path=source)
    raise TargetError(f"labels of target '{source}' have dtype {y.dtype}; use ints or strings",
                      path=source)


def _describe(values, names) -> str:
    def short(text: str) -> str:  # a 100,000-character label must not flood the error
        return text if len(text) <= 40 else text[:37] + "..."

    shown = [short(f"{v} ({names[v]})" if names is not None and isinstance(v, int)
                   and 0 <= v < len(names) else str(v)) for v in values[:_SHOWN]]
    more = f", ... ({len(values)} in all)" if len(values) > _SHOWN else ""
    return ", ".join(shown) + more


def _class_values(requested, labels: np.ndarray, names, source: str) -> np.ndarray:
    """The original label values asked for, each checked against the target."""
    if isinstance(requested, str):
        requested = parse_classes(requested)
    requested = list(requested)
    if not requested:
        raise TargetError("--classes is empty; give label values such as 0-4, 3,7,9 or cat,dog")
    present = np.unique(labels)
    present_list = [v.item() if isinstance(v, np.generic) else v for v in present]
    numeric = labels.dtype.kind in "iu"
    wanted = []
    for item in requested:
        value = None
        if numeric:
            if isinstance(item, numbers.Integral) and not isinstance(item, bool):
                value = int(item)
            elif isinstance(item, str) and names is not None and item in names:
                value = names.index(item)
            elif isinstance(item, str) and _INT.match(item.strip()):
                value = int(item)
        else:
            value = str(item)
        if value is None or value not in present_list:
            raise TargetError(f"class {item!r} is not in target '{source}'; present: "
                              f"{_describe(present_list, names)}", path=source)
        wanted.append(value)
    return np.array(wanted, dtype=labels.dtype)


def _check_sizes(labels: np.ndarray, source: str, names, limited=None, expected=None) -> None:
    """At least two classes, each with at least two samples.

    After a subsample, ``expected`` holds the classes before it, so that a class the
    subsample emptied is reported as having 0 samples rather than vanishing.
    """
    values, counts = np.unique(labels, return_counts=True)
    if expected is not None:
        found = dict(zip(values.tolist(), counts.tolist()))
        values = expected
        counts = np.array([found.get(v, 0) for v in expected.tolist()])
    after = f" after --limit {limited}" if limited is not None else ""
    if len(values) < 2:
        only = _describe([v.item() for v in values], names) if len(values) else "none"
        raise TargetError(f"target '{source}' has {len(values)} class{after} ({only}); ranking "
                          "needs at least 2 classes with 2 samples each", path=source)
    small = [(v.item(), int(c)) for v, c in zip(values, counts) if c < 2]
    if small:
        listed = ", ".join(f"class {_describe([v], names)} has {c} sample{'s' * (c != 1)}"
                           for v, c in small[:5])
        more = f" (and {len(small) - 5} more)" if len(small) > 5 else ""
        fix = "raise --limit" if limited is not None else "add samples"
        raise TargetError(f"in target '{source}'{after}, {listed}{more}; every class needs at "
                          f"least 2 samples: {fix}, or leave it out with --classes", path=source)


def _subsample(labels: np.ndarray, limit, seed, source: str):
    """Sorted positions of a stratified subsample of ``limit`` samples, or None for all."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
        raise TargetError(f"--limit must be a positive number of samples, not {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < 2**32:
        raise TargetError(f"--seed must be a whole number from 0 to {2**32 - 1}, "
                          f"not {seed!r}")
    n = len(labels)
    if limit >= n:
        return None
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    k = len(counts)
    if limit < 2 * k:
        raise TargetError(f"--limit {limit} is too small for {k} classes; each class needs at "
                          f"least 2 samples, so use --limit {2 * k} or more", path=source)
    if n - limit >= k:
        from sklearn.model_selection import train_test_split

        drawn, _ = train_test_split(np.arange(n), train_size=int(limit), stratify=codes,
                                    random_state=int(seed))
    else:
        # fewer samples to drop than classes, which a stratified split cannot express: drop
        # one sample from each of the largest classes, the closest to the class proportions
        rng = np.random.default_rng(int(seed))
        order = np.lexsort((rng.random(k), -counts))
        dropped = [rng.choice(np.flatnonzero(codes == c)) for c in order[:n - limit]]
        drawn = np.setdiff1d(np.arange(n), dropped)
    return np.sort(drawn)


def _row_blocks(inputs: np.ndarray):
    rows = max(1, _CHUNK_VALUES // max(1, inputs[0].size))
    for start in range(0, len(inputs), rows):
        yield inputs[start:start + rows]


def _check_finite(inputs: np.ndarray, positions: np.ndarray, source: str,
                  want_range: bool = False, want_whole: bool = False) -> tuple | None:
    """Refuse NaN/inf; with ``want_range``, also ``(min, max, all whole numbers)``, in the
    same single pass over the rows (whether all are whole only when ``want_whole``)."""
    if inputs.dtype.kind != "f" and not want_range:
        return None
    start = 0
    low, high, whole = math.inf, -math.inf, True
    for block in _row_blocks(inputs):
        flat = block.reshape(len(block), -1)
        if inputs.dtype.kind == "f":
            finite = np.isfinite(flat).all(axis=1)
            if not finite.all():
                i = int(positions[start + int(np.argmin(finite))])
                raise TargetError(f"inputs contain NaN or inf at sample {i} of target "
                                  f"'{source}'; clean or drop those samples", path=source)
            if want_whole and whole:
                whole = bool(np.all(flat == np.round(flat)))
        if want_range:
            low, high = min(low, float(flat.min())), max(high, float(flat.max()))
        start += len(block)
    return (low, high, whole) if want_range else None


def _names_for(class_values: tuple, names) -> tuple | None:
    if names is None or not all(isinstance(v, int) and 0 <= v < len(names)
                                for v in class_values):
        return None
    return tuple(names[v] for v in class_values)
