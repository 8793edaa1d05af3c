"""Device choice and sessions: the provider asked for, the one really used, clear errors."""

import types

import pytest

import zooindex
from support.data import three_model_zoo
from support.onnx_factory import mlp
from zooindex import runtime
from zooindex.errors import DependencyError, ModelError, ZooIndexError


def fake_ort(available, used=None, preloads=None):
    """An onnxruntime stand-in: the providers it was built with, the one sessions end on;
    ``preloads`` (a list) records calls of ``preload_dlls``."""

    class Session:
        def __init__(self, model, sess_options=None, providers=()):
            self.asked = list(providers)
            self.options = sess_options

        def get_providers(self):
            first = self.asked[0]
            return [used or (first[0] if isinstance(first, tuple) else first)]

        def get_inputs(self):
            return [types.SimpleNamespace(name="x", shape=["N", 8])]

    ort = types.SimpleNamespace(get_available_providers=lambda: list(available),
                                SessionOptions=lambda: types.SimpleNamespace(),
                                InferenceSession=Session)
    if preloads is not None:
        ort.preload_dlls = lambda: preloads.append(True)
    return ort


@pytest.fixture
def machine(monkeypatch):
    """Set what onnxruntime was built with and whether a GPU is there."""
    def setup(available, gpu, used=None):
        monkeypatch.setattr(runtime, "onnxruntime", lambda: fake_ort(available, used))
        monkeypatch.setattr(runtime, "gpu_present", lambda: gpu)
    return setup


def test_cpu_is_always_plain_cpu(machine):
    machine([runtime.CUDA, runtime.CPU], gpu=True)
    assert runtime.providers("cpu") == [runtime.CPU]


@pytest.mark.parametrize("available, gpu, expected", [
    ([runtime.CPU], True, [runtime.CPU]),                 # GPU, but a CPU-only build
    ([runtime.CUDA, runtime.CPU], False, [runtime.CPU]),  # CUDA build, no GPU: no noise
    ([runtime.CUDA, runtime.CPU], True, [runtime.CUDA, runtime.CPU]),
])
def test_auto_asks_for_cuda_only_when_both_are_there(machine, available, gpu, expected):
    machine(available, gpu)
    assert runtime.providers("auto") == expected


def test_cuda_with_a_cpu_only_build_says_which_package(machine):
    machine([runtime.CPU], gpu=True)
    with pytest.raises(DependencyError, match=r"onnxruntime-gpu.*zooindex\[gpu\]"):
        runtime.providers("cuda")


def test_cuda_without_a_gpu_says_use_cpu(machine):
    machine([runtime.CUDA, runtime.CPU], gpu=False)
    with pytest.raises(ZooIndexError, match="no NVIDIA GPU is visible.*--device cpu"):
        runtime.providers("cuda")


def test_unknown_device_lists_the_choices():
    with pytest.raises(ZooIndexError, match="unknown device 'tpu'; choose from: auto, cpu, cuda"):
        runtime.providers("tpu")


def test_a_silent_fallback_to_cpu_is_an_error_for_cuda(machine):
    machine([runtime.CUDA, runtime.CPU], gpu=True, used=runtime.CPU)
    with pytest.raises(ZooIndexError, match="--device cuda: onnxruntime fell back to CPU"):
        runtime.create_session(b"model", device="cuda", model="m", input_name="x")
    # with auto the fallback is fine, and the provider really used is reported
    assert runtime.create_session(b"model", device="auto", model="m").provider == runtime.CPU


def test_search_refuses_an_unusable_device_even_when_all_is_cached(tmp_path, machine):
    zoo = three_model_zoo(tmp_path)
    zooindex.add(zoo["folder"], index=zoo["index"])
    zooindex.search(zoo["target"], index=zoo["index"])  # everything cached now
    machine([runtime.CPU], gpu=False)
    with pytest.raises(DependencyError, match="onnxruntime-gpu"):
        zooindex.search(zoo["target"], index=zoo["index"], device="cuda")
    assert all(r.cached for r in zooindex.search(zoo["target"], index=zoo["index"]).ranked)


def test_onnxruntime_errors_keep_the_reason_not_the_cpp_location():
    exc = RuntimeError(
        "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/model.cc:202 "
        "onnxruntime::Model::Model(onnx::ModelProto&&, const onnxruntime::PathString&, "
        "const onnxruntime::logging::Logger&, const onnxruntime::ModelOptions&) "
        "Unsupported model IR version: 14, max supported IR version: 11")
    assert runtime.error_text(exc) == ("Unsupported model IR version: 14, max supported IR "
                                       "version: 11")


def test_a_model_onnxruntime_refuses_names_the_reason():
    model = mlp(seed=0)
    model.ir_version = 99  # newer than any onnxruntime knows
    with pytest.raises(ModelError, match=r"cannot load model 'm': .*IR version"):
        runtime.create_session(model.SerializeToString(), device="cpu", model="m")


@pytest.mark.parametrize("cores, expected", [(2, None), (4, None), (8, 7), (16, 15)])
def test_onnxruntime_leaves_a_core_to_the_pipeline_on_big_machines(monkeypatch, cores,
                                                                   expected):
    # a Ray task run in this process (the Ray tests) may have set it
    monkeypatch.delenv("ZOOINDEX_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(cores)),
                        raising=False)
    assert runtime.default_threads() == expected


def test_zooindex_threads_overrides_the_core_count(monkeypatch):
    # a Ray worker sets it to the CPUs its task was given
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)
    monkeypatch.setenv("ZOOINDEX_THREADS", "3")
    assert runtime.default_threads() == 3
    monkeypatch.setenv("ZOOINDEX_THREADS", "0")
    with pytest.raises(ZooIndexError, match="ZOOINDEX_THREADS must be a positive"):
        runtime.default_threads()


def test_sessions_get_those_threads(machine, monkeypatch):
    machine([runtime.CPU], gpu=False)
    monkeypatch.setattr(runtime, "default_threads", lambda: 15)
    made = runtime.create_session(b"model", model="m")
    assert made.session.options.intra_op_num_threads == 15
    monkeypatch.setattr(runtime, "default_threads", lambda: None)  # onnxruntime decides
    assert not hasattr(runtime.create_session(b"model", model="m").session.options,
                       "intra_op_num_threads")


def test_cuda_sessions_preload_pip_libraries_once_and_skip_the_exhaustive_search(monkeypatch):
    preloads = []
    ort = fake_ort([runtime.CUDA, runtime.CPU], preloads=preloads)
    monkeypatch.setattr(runtime, "onnxruntime", lambda: ort)
    monkeypatch.setattr(runtime, "gpu_present", lambda: True)
    monkeypatch.setattr(runtime, "_PRELOADED", [])
    first = runtime.create_session(b"model", device="cuda", model="m")
    runtime.create_session(b"model", device="cuda", model="m")
    assert preloads == [True]  # once per process
    assert first.provider == runtime.CUDA
    assert first.session.asked == [(runtime.CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}),
                                   runtime.CPU]
    # a CPU session loads no CUDA library
    monkeypatch.setattr(runtime, "_PRELOADED", [])
    runtime.create_session(b"model", device="cpu", model="m")
    assert preloads == [True]
