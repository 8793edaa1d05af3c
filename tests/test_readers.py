"""Data-set readers: each format written small in tmp_path, read back, and its failures."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
import tarfile

import numpy as np
import pytest

from zooindex import readers
from zooindex.errors import DependencyError, TargetError
from zooindex.readers import Dataset, formats, read

PIL = pytest.importorskip("PIL.Image")

rng = np.random.default_rng(0)


# -- the registry --------------------------------------------------------------------------

def test_every_format_is_registered():
    assert formats() == ["npz", "npy", "idx", "cifar", "imagefolder", "csv", "tsv", "jsonl",
                         "parquet"]


@pytest.mark.parametrize("reader", readers.readers(), ids=lambda r: r.name)
def test_every_sniffer_rejects_unrelated_files_quietly(reader, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a data set")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    assert not reader.sniff(str(text))
    assert not reader.sniff(str(empty_folder))
    assert not reader.sniff(str(tmp_path / "missing.npz"))


def test_unknown_format_lists_the_supported_ones(tmp_path):
    path = tmp_path / "data.dat"
    path.write_text("1,2,3\n")
    with pytest.raises(TargetError, match="cannot tell the format") as err:
        read(path)
    for name in ("npz", "IDX", "CIFAR", "image folder"):
        assert name in str(err.value)


def test_missing_path_is_a_target_error(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        read(tmp_path / "nowhere")


# -- npz -----------------------------------------------------------------------------------

@pytest.mark.parametrize("x_key,y_key", [("x", "y"), ("X", "Y"), ("images", "labels"),
                                         ("data", "targets"), ("inputs", "label"),
                                         ("features", "target")])
def test_npz_reads_each_key_convention(tmp_path, x_key, y_key):
    x, y = rng.random((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / "d.npz"
    np.savez(path, **{x_key: x, y_key: y})
    data = read(path)
    assert isinstance(data, Dataset)
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, y)
    assert data.class_names is None and data.source == str(path)


@pytest.mark.parametrize("train,test", [(("x_train", "y_train"), ("x_test", "y_test")),
                                        (("train_x", "train_y"), ("test_x", "test_y")),
                                        (("train_images", "train_labels"),
                                         ("test_images", "test_labels"))])
def test_npz_splits_default_to_test(tmp_path, train, test):
    path = tmp_path / "split.npz"
    np.savez(path, **{train[0]: np.zeros((4, 2)), train[1]: np.arange(4),
                      test[0]: np.ones((3, 2)), test[1]: np.arange(3)})
    assert read(path).x.shape == (3, 2)  # test by default
    assert read(path, split="train").x.shape == (4, 2)
    with pytest.raises(TargetError, match="no split 'val'; available: test, train"):
        read(path, split="val")


def test_npz_with_unknown_keys_names_them_and_the_accepted_ones(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, pixels=np.zeros((2, 2)), classes=np.arange(2))
    with pytest.raises(TargetError) as err:
        read(path)
    message = str(err.value)
    assert "has arrays pixels, classes" in message
    assert "x, X, images" in message and "y, Y, labels" in message


def test_npz_object_array_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(TargetError, match="holds Python objects"):
        read(path)


def test_npz_string_labels_load_without_pickle(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, x=np.zeros((2, 3)), y=np.array(["cat", "dog"]))
    assert read(path).y.tolist() == ["cat", "dog"]


def test_corrupt_npz_is_a_target_error(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(TargetError, match="cannot read"):
        read(path)


# -- idx -----------------------------------------------------------------------------------

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D, np.dtype(np.int32): 0x0C}


def write_idx(path, array, gz=False):
    """IDX by hand: 0, 0, dtype code, ndim, then big-endian uint32 dims and data."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(payload)
    return payload


def mnist_like(folder, gz, n_train=5, n_test=4):
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 3, 2), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        parts[prefix] = (images, labels)
    return parts


def test_idx_header_uses_the_two_mnist_magic_numbers(tmp_path):
    images = write_idx(tmp_path / "i", np.zeros((2, 3, 2), np.uint8))
    labels = write_idx(tmp_path / "l", np.zeros(2, np.uint8))
    # 0x00000803 = 2051 for 3-D ubyte images, 0x00000801 = 2049 for 1-D ubyte labels
    assert struct.unpack(">I", images[:4])[0] == 2051
    assert struct.unpack(">I", labels[:4])[0] == 2049


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_folder_with_splits(tmp_path, gz):
    parts = mnist_like(tmp_path / "mnist", gz)
    test = read(tmp_path / "mnist")  # test split by default
    np.testing.assert_array_equal(test.x, parts["t10k"][0])
    np.testing.assert_array_equal(test.y, parts["t10k"][1])
    train = read(tmp_path / "mnist", split="train")
    np.testing.assert_array_equal(train.x, parts["train"][0])
    assert train.x.dtype == np.uint8 and train.x.shape == (5, 3, 2)
    # raw files are memory-mapped rather than read into memory
    assert isinstance(train.x, np.memmap) == (not gz)
    with pytest.raises(TargetError, match="no split 'val'; available: test, train"):
        read(tmp_path / "mnist", split="val")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_images_file_finds_its_labels_beside_it(tmp_path, gz):
    parts = mnist_like(tmp_path, gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    data = read(tmp_path / name)
    np.testing.assert_array_equal(data.x, parts["train"][0])
    np.testing.assert_array_equal(data.y, parts["train"][1])


def test_idx_big_endian_values_come_back_native(tmp_path):
    # floats and int32 are stored big-endian; the reader must hand on the same numbers
    values = np.array([[1.5, -2.25], [1e6, 0.0]], dtype=np.float32)
    write_idx(tmp_path / "x-images-idx3-ubyte", values.reshape(2, 1, 2))
    write_idx(tmp_path / "x-labels-idx1-ubyte", np.array([7, 70000], dtype=np.int32))
    data = read(tmp_path / "x-images-idx3-ubyte")
    assert data.x.dtype.isnative and data.y.dtype.isnative
    np.testing.assert_array_equal(data.x.reshape(2, 2), values)
    assert data.y.tolist() == [7, 70000]


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_truncated_idx_is_a_target_error(tmp_path, gz):
    mnist_like(tmp_path, gz)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    if gz:  # cut the compressed stream short
        path.write_bytes(path.read_bytes()[:-12])
    else:  # drop the last pixel
        path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(TargetError, match="truncated or corrupt"):
        read(path)


def test_idx_image_and_label_counts_must_agree(tmp_path):
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(TargetError, match="3 images but .* 2 labels"):
        read(tmp_path / "a-images-idx3-ubyte")


def test_idx_missing_labels_file(tmp_path):
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(TargetError, match="labels file 'a-labels-idx1-ubyte' not found"):
        read(tmp_path / "a-images-idx3-ubyte")


def test_idx_split_needs_the_folder(tmp_path):
    mnist_like(tmp_path, gz=False)
    with pytest.raises(TargetError, match="applies to a folder"):
        read(tmp_path / "train-images-idx3-ubyte", split="train")


# -- image folders -------------------------------------------------------------------------

def save_png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(pixels).save(path)


def image_tree(root, colour=False, classes=("cat", "dog"), per_class=2, size=(4, 5)):
    """root/<class>/<i>.png with distinct pixels; returns the expected stack and labels."""
    expected, labels = [], []
    for label, name in enumerate(classes):
        for i in range(per_class):
            shape = size + (3,) if colour else size
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            save_png(root / name / f"{i}.png", pixels)
            expected.append(pixels)
            labels.append(label)
    return np.stack(expected), np.array(labels)


def test_image_folder_grey(tmp_path):
    expected, labels = image_tree(tmp_path / "root")
    data = read(tmp_path / "root")
    assert data.class_names == ("cat", "dog")
    assert data.x.shape == (4, 4, 5) and data.x.dtype == np.uint8  # (N, H, W)
    np.testing.assert_array_equal(data.x, expected)
    np.testing.assert_array_equal(data.y, labels)


def test_image_folder_colour_and_mixed_become_rgb(tmp_path):
    colour, _ = image_tree(tmp_path / "root", colour=True, classes=("a",))
    grey, _ = image_tree(tmp_path / "root", classes=("b",))
    data = read(tmp_path / "root")
    assert data.x.shape == (4, 4, 5, 3)
    np.testing.assert_array_equal(data.x[:2], colour)
    # a grey image in a colour set is repeated into R, G and B
    np.testing.assert_array_equal(data.x[2:], np.repeat(grey[..., None], 3, axis=-1))
    assert data.y.tolist() == [0, 0, 1, 1]


def test_image_folder_splits(tmp_path):
    train, _ = image_tree(tmp_path / "root" / "train", per_class=3)
    test, _ = image_tree(tmp_path / "root" / "test", per_class=2)
    np.testing.assert_array_equal(read(tmp_path / "root").x, test)
    np.testing.assert_array_equal(read(tmp_path / "root", split="train").x, train)
    with pytest.raises(TargetError, match="no split 'val'; available: test, train"):
        read(tmp_path / "root", split="val")


def test_image_folder_tar_gz_matches_the_folder(tmp_path, monkeypatch):
    def no_extraction(*args, **kwargs):
        raise AssertionError("the archive must be read in place, not extracted")

    monkeypatch.setattr(tarfile.TarFile, "extract", no_extraction)
    monkeypatch.setattr(tarfile.TarFile, "extractall", no_extraction)
    image_tree(tmp_path / "pets" / "train")
    image_tree(tmp_path / "pets" / "test", classes=("cat", "dog", "eel"))
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "pets", arcname="pets")  # one wrapping folder, as usual
    for split in (None, "train"):
        from_folder = read(tmp_path / "pets", split=split)
        from_tar = read(archive, split=split)
        np.testing.assert_array_equal(from_tar.x, from_folder.x)
        np.testing.assert_array_equal(from_tar.y, from_folder.y)
        assert from_tar.class_names == from_folder.class_names
    assert read(archive).class_names == ("cat", "dog", "eel")


def test_image_folder_sizes_must_agree(tmp_path):
    image_tree(tmp_path / "root")
    save_png(tmp_path / "root" / "dog" / "big.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(TargetError, match="must share one size") as err:
        read(tmp_path / "root")
    assert "big.png" in str(err.value) and "6x6" in str(err.value)


def test_image_folder_corrupt_image(tmp_path):
    image_tree(tmp_path / "root")
    (tmp_path / "root" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(TargetError, match="cannot decode image .*bad.png"):
        read(tmp_path / "root")


def test_image_folder_without_pillow(tmp_path, monkeypatch):
    image_tree(tmp_path / "root")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(DependencyError, match=r"needs Pillow: pip install 'zooindex\[images\]'"):
        read(tmp_path / "root")


# -- CIFAR ---------------------------------------------------------------------------------

def cifar_batch(n, first_label=0):
    # each row: 1024 red values, 1024 green, 1024 blue (row-major 32x32 planes)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(first_label + i) % 10 for i in range(n)]
    return {b"batch_label": b"batch", b"labels": labels, b"data": data,
            b"filenames": [b"f%d.png" % i for i in range(n)]}


NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]


def write_cifar(folder, per_batch=3):
    folder.mkdir(parents=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(per_batch, first_label=i)
        with open(folder / name, "wb") as fh:
            pickle.dump(batches[name], fh, protocol=2)  # the protocol of the real files
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}, fh,
                    protocol=2)
    return batches


def test_cifar_folder(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = read(tmp_path / "cifar-10-batches-py")
    test = batches["test_batch"]
    assert data.x.shape == (3, 32, 32, 3) and data.x.dtype == np.uint8
    assert data.class_names == tuple(NAMES)
    assert data.y.tolist() == test[b"labels"]
    # pixel (row 0, col 1) of image 0 is (data[1], data[1024 + 1], data[2048 + 1])
    row = test[b"data"][0]
    assert data.x[0, 0, 1].tolist() == [row[1], row[1025], row[2049]]
    # pixel (row 2, col 0) is at offset 2 * 32 in each plane
    assert data.x[0, 2, 0].tolist() == [row[64], row[1024 + 64], row[2048 + 64]]


def test_cifar_train_joins_five_batches_and_parent_folder_works(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    data = read(tmp_path, split="train")
    assert data.x.shape == (15, 32, 32, 3)
    expected = sum((batches[f"data_batch_{k}"][b"labels"] for k in range(1, 6)), [])
    assert data.y.tolist() == expected


def test_cifar_archive_without_extracting(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = read(archive)
    assert data.y.tolist() == batches["test_batch"][b"labels"]
    np.testing.assert_array_equal(data.x, read(tmp_path / "cifar-10-batches-py").x)


def test_cifar_100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": [5, 99, 0, 5],
                         b"coarse_labels": [1, 2, 3, 1]}, fh, protocol=2)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [b"c%d" % i for i in range(100)]}, fh)
    got = read(folder)
    assert got.y.tolist() == [5, 99, 0, 5] and got.class_names[99] == "c99"


class _RunsACommand:
    """Unpickling this calls os.system(command): what a malicious batch would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    """A builtin that is not a plain container: eval must stay refused too."""

    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_cifar_malicious_pickle_is_refused_without_running(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    evil = _RunsACommand(f"touch {marker}") if payload == "system" else _Evaluates()
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": evil, b"labels": [0]}, fh, protocol=2)
    with pytest.raises(TargetError, match=f"asks for .*{payload}") as err:
        read(folder)
    assert "refuses" in str(err.value)
    assert not marker.exists()


def test_cifar_corrupt_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(")  # a pickle cut short
    with pytest.raises(TargetError, match="cannot read CIFAR batch"):
        read(folder)


def test_cifar_unknown_split(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    with pytest.raises(TargetError, match="no split 'val'; available: test, train"):
        read(tmp_path / "cifar-10-batches-py", split="val")
