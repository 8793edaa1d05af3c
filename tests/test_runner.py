"""The runner: batches sized by memory, activations flattened per layer."""

import types

import numpy as np

from support.onnx_factory import cnn, save
from zooindex.catalogue import inspect_file
from zooindex.layer import Layer
from zooindex.runner import auto_batch_size, run_model


def _record(*widths):
    return types.SimpleNamespace(layers=[Layer(f"l{i}", "Relu", "conv", (w,), w, i)
                                         for i, w in enumerate(widths)])


def test_batches_are_sized_by_the_widest_layer(monkeypatch):
    monkeypatch.delenv("ZOOINDEX_BATCH_MEMORY", raising=False)
    # the paper's CNN at 28x28: 8x28x28 at most, so the cap of 256 applies
    assert auto_batch_size(_record(784, 6272, 1568, 64)) == 256
    # ResNet-50 at 224x224: 64x112x112 floats after its first convolution; four such
    # tensors per sample in 256 MiB: 20 samples
    assert auto_batch_size(_record(150528, 802816, 2048)) == 256 * 2**20 // (16 * 802816) \
        == 20
    # unknown widths do not count; a GPU has a larger budget and cap
    assert auto_batch_size(_record(None, 802816)) == 20
    assert auto_batch_size(_record(802816), "CUDAExecutionProvider") == 334
    monkeypatch.setenv("ZOOINDEX_BATCH_MEMORY", "1")
    assert auto_batch_size(_record(802816)) == 1


def test_the_batch_size_changes_no_activation(tmp_path):
    save(cnn(input_shape=(1, 8, 8)), tmp_path / "m.onnx")
    record = inspect_file(tmp_path / "m.onnx")
    x = np.random.default_rng(0).integers(0, 256, size=(37, 8, 8), dtype=np.uint8)
    auto = run_model(record, x, [record.default_layer])
    small = run_model(record, x, [record.default_layer], batch_size=5)
    np.testing.assert_allclose(auto.features[record.default_layer],
                               small.features[record.default_layer], rtol=1e-6, atol=1e-6)
