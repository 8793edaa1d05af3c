"""A corpus of hostile model files, generated from one valid small model.

Every case is a file (or a folder of files) that ``zooindex add`` must refuse with a
one-line error naming the file and the problem, without a traceback, a hang or a memory
blow-up; bit-flipped models that still parse may be accepted, and then a search must
either rank them or skip them with a reason. The corpus is deterministic for a seed, so
a failure can be reproduced from its case name alone.

Cases, by kind:

* ``truncated``: the valid model cut at several offsets (0 bytes included);
* ``random``: seeded random bytes of several sizes;
* ``bitflip``: the valid model with a few seeded random bits flipped (``expect`` is
  ``None``: refused or accepted, both are fine, as long as it is clean);
* ``not-a-model``: valid protobufs of other message types, a model without a graph;
* ``graph``: a cycle, a dangling input, a missing initializer, an unsupported
  operator, deep subgraph nesting, and an operator of an unknown domain (accepted:
  the runtime may provide it; a search must then skip the model with a reason);
* ``dims``: an initializer declaring 2^40 elements without data, a value_info of 2^40
  elements;
* ``external``: external weights read through an absolute path, ``..``, a symlink
  leading out of the folder, a missing weight file, a weight range past its file's end;
* ``special``: a FIFO, a link to ``/dev/zero``, a folder named ``.onnx``, a sparse file
  over the 2 GiB protobuf limit.

``big_external`` builds the one large *valid* case: a model whose single initializer
(2^29 + 2^20 float32 values, just over 2 GiB) lives in a sparse external file made with
``truncate``, so no disk is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from support import onnx_factory

# 2^40 elements: far beyond any memory, small enough for int64 dims
HUGE = 1 << 40
BIG_EXTERNAL_ELEMENTS = (1 << 29) + (1 << 20)  # float32: 2 GiB + 4 MiB


@dataclass(frozen=True)
class Case:
    """One hostile input: the path to add and the problem its error must name.

    ``expect`` is a regular expression the error line must match (after the file's
    name), or ``None`` where accepting the file is fine too.
    """

    name: str
    kind: str
    path: Path
    expect: str | None

    def __str__(self) -> str:
        return self.name


def valid_model() -> onnx.ModelProto:
    """The model every hostile case is derived from: a small MLP with a softmax head."""
    return onnx_factory.mlp(input_dim=8, hidden=(16, 12), classes=3, seed=0)


def _model_from_graph(nodes, inputs, outputs, initializers=(), opset=17,
                      value_info=()) -> onnx.ModelProto:
    """A model proto built without running the checker (hostile models fail it)."""
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers),
                              value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8)


def _x(dim=8):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])


def _y(name="y", dim=3):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", dim])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(model: onnx.ModelProto, path: Path) -> Path:
    return _write(path, model.SerializeToString())


def truncated(folder: Path, data: bytes) -> list[Case]:
    offsets = {"empty": 0, "1": 1, "7": 7, "64": 64, "quarter": len(data) // 4,
               "half": len(data) // 2, "last-byte": len(data) - 1}
    return [Case(f"truncated-{label}", "truncated",
                 _write(folder / f"truncated-{label}.onnx", data[:offset]),
                 r"is empty" if offset == 0 else r"not a valid ONNX model")
            for label, offset in offsets.items()]


def random_bytes(folder: Path, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for size in (1, 100, 4096, 1 << 16):
        data = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
        cases.append(Case(f"random-{size}", "random", _write(folder / f"random-{size}.onnx", data),
                          r"not a valid ONNX model"))
    return cases


def bit_flips(folder: Path, data: bytes, seed: int, count: int, flips: int = 3) -> list[Case]:
    """``count`` copies of ``data`` with ``flips`` seeded random bits flipped each."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        buf = bytearray(data)
        for bit in rng.choice(len(buf) * 8, size=flips, replace=False):
            buf[bit // 8] ^= 1 << (bit % 8)
        cases.append(Case(f"bitflip-{seed}-{i}", "bitflip",
                          _write(folder / f"bitflip-{seed}-{i}.onnx", bytes(buf)), None))
    return cases


def not_models(folder: Path) -> list[Case]:
    tensor = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "t")
    node = helper.make_node("Relu", ["a"], ["b"])
    graph_only = valid_model().graph
    no_graph = helper.make_model(helper.make_graph([], "g", [], []))
    no_graph.ClearField("graph")
    return [
        Case("tensor-proto", "not-a-model", _save(tensor, folder / "tensor-proto.onnx"),
             r"not a valid ONNX model"),
        Case("node-proto", "not-a-model", _save(node, folder / "node-proto.onnx"),
             r"not a valid ONNX model"),
        Case("graph-proto", "not-a-model", _save(graph_only, folder / "graph-proto.onnx"),
             r"not a valid ONNX model"),
        Case("no-graph", "not-a-model", _save(no_graph, folder / "no-graph.onnx"),
             r"not a valid ONNX model: it has no graph"),
    ]


def bad_graphs(folder: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    cycle = _model_from_graph(
        [helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Relu", ["a"], ["c"]),
         helper.make_node("Gemm", ["a", "W", "b"], ["y"])], [_x()], [_y()], [w, b])
    dangling = _model_from_graph(
        [helper.make_node("Add", ["x", "nowhere"], ["a"]),
         helper.make_node("Gemm", ["a", "W", "b"], ["y"])], [_x()], [_y()], [w, b])
    missing = valid_model()
    del missing.graph.initializer[0]  # W0: the first layer now reads a tensor nobody makes
    unsupported = _model_from_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["a"]),
         helper.make_node("FrobnicateV9", ["a"], ["y"])], [_x()], [_y()], [w, b])
    # the custom operator comes first, so the model still has a default layer to search
    w_hidden = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "Wh")
    b_hidden = numpy_helper.from_array(np.zeros(8, np.float32), "bh")
    foreign = _model_from_graph(
        [helper.make_node("Frobnicate", ["x"], ["a"], domain="com.example.nowhere"),
         helper.make_node("Gemm", ["a", "Wh", "bh"], ["h_pre"]),
         helper.make_node("Relu", ["h_pre"], ["h"]),
         helper.make_node("Gemm", ["h", "W", "b"], ["y"])],
        [_x()], [_y()], [w_hidden, b_hidden, w, b])
    foreign.opset_import.append(helper.make_opsetid("com.example.nowhere", 1))
    return [
        Case("cycle", "graph", _save(cycle, folder / "cycle.onnx"), r"not a valid ONNX model"),
        Case("dangling-input", "graph", _save(dangling, folder / "dangling-input.onnx"),
             r"not a valid ONNX model.*nowhere"),
        Case("missing-initializer", "graph", _save(missing, folder / "missing-initializer.onnx"),
             r"not a valid ONNX model.*W0"),
        Case("unsupported-op", "graph", _save(unsupported, folder / "unsupported-op.onnx"),
             r"not a valid ONNX model.*FrobnicateV9"),
        # a custom domain may be one the runtime provides: add accepts it, search skips it
        Case("unknown-domain", "graph", _save(foreign, folder / "unknown-domain.onnx"), None),
        Case("deep-nesting", "graph", _write(folder / "deep-nesting.onnx", _deeply_nested(200)),
             r"not a valid ONNX model"),
    ]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, so nesting can go past what the library builds."""
    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _deeply_nested(depth: int) -> bytes:
    """A model whose ``If`` subgraphs nest ``depth`` levels deep, as raw protobuf bytes.

    protobuf refuses to build or parse messages nested past its depth limit, so the
    levels are concatenated by hand: GraphProto.node = 1, NodeProto.attribute = 5,
    AttributeProto.g = 6, ModelProto.graph = 7.
    """
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [], [out])
    data = graph.SerializeToString()
    for level in range(depth):
        attr = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH)
        node = helper.make_node("If", ["cond"], ["y"])
        shell = helper.make_graph([], f"level{level}", [], [out])
        data = shell.SerializeToString() + _field(1, node.SerializeToString() + _field(
            5, attr.SerializeToString() + _field(6, data)))
    model = helper.make_model(helper.make_graph([], "top", [], []),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.ClearField("graph")
    return model.SerializeToString() + _field(7, data)


def absurd_dims(folder: Path) -> list[Case]:
    # an initializer that declares 2^40 elements and carries no data
    huge_init = valid_model()
    w0 = huge_init.graph.initializer[0]
    del w0.dims[:]
    w0.dims.extend([1 << 20, 1 << 20])
    w0.ClearField("raw_data")
    del w0.float_data[:]
    # a value_info promising 2^40 elements per sample
    huge_info = valid_model()
    huge_info.graph.value_info.append(
        helper.make_tensor_value_info("hidden0", TensorProto.FLOAT, ["N", HUGE]))
    return [
        Case("huge-initializer", "dims", _save(huge_init, folder / "huge-initializer.onnx"),
             r"not a valid ONNX model|W0"),
        Case("huge-value-info", "dims", _save(huge_info, folder / "huge-value-info.onnx"),
             r"not a valid ONNX model|hidden0"),
    ]


def _external(model: onnx.ModelProto, location: str, offset: int = 0,
              length: int | None = None) -> onnx.ModelProto:
    """``model`` with its first initializer's data said to live at ``location``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    tensor = model.graph.initializer[0]
    size = len(tensor.raw_data) or 4 * int(np.prod(tensor.dims))
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(length or size)}
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def external(folder: Path) -> list[Case]:
    outside = folder / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    cases = []
    for name, location, expect in [
            ("external-absolute", str(secret), r"absolute path"),
            ("external-dotdot", "../outside/secret.bin", r"steps out with '\.\.'"),
            ("external-symlink", "link.bin", r"outside the model folder through a symlink"),
            ("external-missing", "nowhere.bin", r"nowhere\.bin"),
            ("external-short", "short.bin", r"short\.bin")]:
        sub = folder / name
        sub.mkdir(exist_ok=True)
        if name == "external-symlink":
            link = sub / "link.bin"
            if not link.is_symlink():
                link.symlink_to(secret)
        if name == "external-short":
            (sub / "short.bin").write_bytes(b"\0" * 16)  # W0 needs 8 * 16 * 4 bytes
        path = _save(_external(valid_model(), location), sub / f"{name}.onnx")
        cases.append(Case(name, "external", path, expect))
    return cases


def special_files(folder: Path) -> list[Case]:
    fifo = folder / "fifo.onnx"
    if not fifo.exists():
        os.mkfifo(fifo)
    zero = folder / "zero.onnx"
    if not zero.is_symlink():
        zero.symlink_to("/dev/zero")
    directory = folder / "directory.onnx" / "inner"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "readme.txt").write_text("a folder whose name ends in .onnx")
    oversized = folder / "oversized.onnx"
    with open(oversized, "wb") as fh:
        fh.truncate((2 << 30) + 1)  # sparse: no disk is used
    return [
        Case("fifo", "special", fifo, r"not a regular file"),
        Case("dev-zero", "special", zero, r"not a regular file"),
        Case("directory", "special", folder / "directory.onnx", r"no \.onnx files"),
        Case("oversized", "special", oversized, r"2 GiB"),
    ]


def names(*, seed: int = 0, bitflips: int = 12) -> list[str]:
    """The case names :func:`corpus` writes (for test ids), from a throwaway folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return [case.name for case in corpus(folder, seed=seed, bitflips=bitflips)]


def corpus(folder, *, seed: int = 0, bitflips: int = 12) -> list[Case]:
    """Every hostile case, written under ``folder``; ``bitflips`` seeded bit-flip copies."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = valid_model().SerializeToString()
    return (truncated(folder, data) + random_bytes(folder, seed)
            + bit_flips(folder, data, seed, bitflips) + not_models(folder) + bad_graphs(folder)
            + absurd_dims(folder) + external(folder) + special_files(folder))


def big_external(folder) -> Path:
    """A valid model whose 2 GiB + 4 MiB of weights sit in a sparse external file.

    x (N, 8) -> MatMul with W (8, k) -> ReduceSum over features -> Softmax-free
    output (N, 1); ``W`` is external, in ``big.onnx.data`` made by ``truncate``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    k = BIG_EXTERNAL_ELEMENTS // 8
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[8, k])
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "big.onnx.data", "offset": "0",
                       "length": str(4 * 8 * k)}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("ReduceSum", ["hr"], ["y"], keepdims=1, axes=[1])]
    model = _model_from_graph(nodes, [_x()], [_y(dim=1)], [w], opset=11)
    path = folder / "big.onnx"
    _save(model, path)
    with open(folder / "big.onnx.data", "wb") as fh:
        fh.truncate(4 * 8 * k)
    return path


# ---------------------------------------------------------------------------
# running the CLI against them


@dataclass(frozen=True)
class CliRun:
    """The outcome of one CLI subprocess: exit code, output, peak memory and time.

    ``returncode`` is negative when a signal ended it (-9 after a timeout).
    ``max_rss_mb`` is the child's own peak resident memory (``VmHWM``), or ``None`` when
    it was killed before it could report it.
    """

    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float | None
    seconds: float
    timed_out: bool


# Runs the CLI as ``python -m zooindex.cli`` does, then writes the process's own peak
# RSS (VmHWM, which belongs to the memory map made at exec) to the file named by
# $ZOOINDEX_PEAK_FILE, in kB. Also used by benchmarks/bench_big_target.py. ru_maxrss from
# wait4 would not do: Linux carries the parent's peak across fork and exec into it, so
# a child of a large test process would report the test process's size.
PEAK_LAUNCHER = """
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["ZOOINDEX_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(report)
sys.argv[0] = "zooindex"
runpy.run_module("zooindex.cli", run_name="__main__", alter_sys=True)
"""


def run_cli(args, *, env=None, timeout: float = 60.0) -> CliRun:
    """``python -m zooindex.cli ARGS`` as a subprocess, killed after ``timeout`` seconds."""
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        peak_file = os.path.join(tmp, "peak")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", PEAK_LAUNCHER, *map(str, args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {}),
                                     "ZOOINDEX_PEAK_FILE": peak_file})
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            stdout, stderr = proc.communicate()
        seconds = time.monotonic() - started
        peak = None
        if os.path.exists(peak_file):
            with open(peak_file) as fh:
                peak = int(fh.read()) / 1024  # kB to MB
    return CliRun(proc.returncode, stdout, stderr, peak, seconds, timed_out)
