"""zooindex on a real single-node Ray cluster: ``ray.init(num_cpus=2)``, once per session.

Every test compares with a local search (the sequential executor) or checks what the
driver, the only writer of the index, kept. Marked slow: the cluster is a dozen processes.
"""

import os
import time

# Ray takes this machine's loopback address as the node's, so that every Ray address
# stays on 127.0.0.1 (its default elsewhere than macOS and Windows is the outward one),
# and reports no usage statistics
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray", reason="the ray extra is not installed: "
                                        "pip install 'zooindex[ray]'")

import zooindex  # noqa: E402
from support.data import selector, three_model_zoo  # noqa: E402
from support.onnx_factory import linear_features, save  # noqa: E402
from zooindex.distributed import Ray, check_reachable  # noqa: E402
from zooindex.estimators import RECOMMENDED  # noqa: E402
from zooindex.errors import ZooIndexError  # noqa: E402

pytestmark = pytest.mark.slow

SCORERS = ["silhouette", "logme", "leep"]


@pytest.fixture(scope="session")
def cluster():
    # one logical GPU: there is no device, but Ray schedules tasks that ask for one on it
    ray.init(num_cpus=2, num_gpus=1, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def zoo(tmp_path, cluster):
    """The three-model zoo, indexed twice: one index for Ray, one for a local search."""
    made = three_model_zoo(tmp_path)
    made["local"] = tmp_path / "local.db"
    for index in (made["index"], made["local"]):
        zooindex.add(made["folder"], index=index)
    return made


def same_ranking(got, expected):
    """The same models, layers and ranks, every score to 1e-9."""
    assert [(r.model, r.layer, r.rank) for r in got.ranked] == \
        [(r.model, r.layer, r.rank) for r in expected.ranked]
    for a, b in zip(got.ranked, expected.ranked):
        assert a.scores.keys() == b.scores.keys()
        for name, value in a.scores.items():
            assert value == pytest.approx(b.scores[name], abs=1e-9), (a.model, name)


def tries(folder, model: str) -> int:
    path = folder / f"tries-{model}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ray_ranks_as_a_local_search_with_a_bounded_number_of_tasks_out(zoo):
    executor = Ray(max_in_flight=2)
    got = zooindex.search(zoo["target"], index=zoo["index"], layer="all", scorers=SCORERS,
                          executor=executor)
    expected = zooindex.search(zoo["target"], index=zoo["local"], layer="all",
                               scorers=SCORERS, executor="sequential")
    same_ranking(got, expected)
    assert got.stats["run"] == 3 and got.stats["providers"] == ["CPUExecutionProvider"]
    assert executor.stats == {"submitted": 3, "peak_in_flight": 2}
    # the driver cached what the workers sent back, as a local search does
    ray_cache = zooindex.cache_info(index=zoo["index"])
    local_cache = zooindex.cache_info(index=zoo["local"])
    assert (ray_cache["activations"], ray_cache["scores"]) == \
        (local_cache["activations"], local_cache["scores"])
    assert zooindex.check(index=zoo["index"]).ok


def test_only_models_with_work_left_reach_ray(zoo, tmp_path, monkeypatch):
    executor = Ray()
    zooindex.search(zoo["target"], index=zoo["index"], scorers=SCORERS, executor=executor)
    assert executor.stats["submitted"] == 3

    def untouchable():
        raise AssertionError("Ray was used although every score was cached")

    monkeypatch.setattr(executor, "connect", untouchable)
    again = zooindex.search(zoo["target"], index=zoo["index"], scorers=SCORERS,
                            executor=executor)
    assert all(r.cached for r in again.ranked) and executor.stats["submitted"] == 0
    monkeypatch.undo()
    # one new model: one task
    save(linear_features(selector([1, 2]), classes=3), tmp_path / "extra.onnx")
    zooindex.add(tmp_path / "extra.onnx", index=zoo["index"])
    zooindex.search(zoo["target"], index=zoo["index"], scorers=SCORERS, executor=executor)
    assert executor.stats["submitted"] == 1
    # another D and every estimator: the driver ships the cached activations, no model runs
    other = zooindex.search(zoo["target"], index=zoo["index"], executor=executor, dim=3,
                            scorers="all", models=["good", "mixed", "noise"])
    assert other.stats["from_activations"] == 3 and other.stats["run"] == 0
    same_ranking(other, zooindex.search(zoo["target"], index=zoo["local"], dim=3,
                                        scorers="all", executor="sequential"))


def test_features_come_back_writable_and_equal(zoo):
    got = zooindex.features(zoo["target"], "good", index=zoo["index"], executor=Ray())
    expected = zooindex.features(zoo["target"], "good", index=zoo["local"],
                                 executor="sequential")
    np.testing.assert_array_equal(got, expected)
    assert got.flags.writeable


def test_scores_only_leaves_the_activations_on_the_workers(zoo):
    executor = Ray(return_activations=False)
    got = zooindex.search(zoo["target"], index=zoo["index"], executor=executor)
    same_ranking(got, zooindex.search(zoo["target"], index=zoo["local"],
                                      executor="sequential"))
    cache = zooindex.cache_info(index=zoo["index"])
    # one score per model: the default, LogME, has no members
    assert RECOMMENDED == "logme"
    assert cache["activations"] == 0 and cache["scores"] == 3
    # so a score that needs them (the silhouette at another D) runs the models again
    assert zooindex.search(zoo["target"], index=zoo["index"], executor=executor,
                           scorers="silhouette", dim=3).stats["run"] == 3


def test_a_dead_worker_is_retried_then_its_model_skipped(zoo, tmp_path):
    folder = tmp_path

    def dies(task, target):
        """'noise' kills its worker every time, 'mixed' only on its first try."""
        from zooindex import unit

        model = task.record.name
        with open(folder / f"tries-{model}", "a") as f:  # (runs on a worker: no helpers)
            f.write("try\n")
        first = (folder / f"tries-{model}").read_text().count("try") == 1
        if model == "noise" or (model == "mixed" and first):
            os._exit(1)
        return unit.run(task, target)

    got = zooindex.search(zoo["target"], index=zoo["index"], scorers=SCORERS,
                          executor=Ray(max_retries=1, unit=dies))
    assert (tries(folder, "good"), tries(folder, "mixed"), tries(folder, "noise")) == (1, 2, 2)
    [skipped] = got.skipped
    assert skipped.model == "noise"
    assert "worker died on each of 2 tries (max_retries=1)" in skipped.reason
    expected = zooindex.search(zoo["target"], index=zoo["local"], scorers=SCORERS,
                               models=["good", "mixed"], executor="sequential")
    same_ranking(got, expected)
    report = zooindex.check(index=zoo["index"])
    assert report.ok and report.cache["scores"] == 6


def test_stopping_early_cancels_the_tasks_still_out(zoo, tmp_path):
    folder = tmp_path

    def slow(task, target):
        """'good' is quick; the others would take a minute."""
        from zooindex import unit

        with open(folder / f"tries-{task.record.name}", "a") as f:
            f.write("started\n")
        if task.record.name != "good":
            time.sleep(60)
        return unit.run(task, target)

    def interrupt(result):
        """Ctrl-C once 'good' is in and the two slow tasks are running."""
        while tries(folder, "mixed") + tries(folder, "noise") < 2:
            time.sleep(0.1)
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        zooindex.search(zoo["target"], index=zoo["index"], executor=Ray(unit=slow),
                        on_result=interrupt)
    # the two slow tasks were running on the two CPUs: cancelled, the CPUs are free again
    # well before their minute is up
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() - started < 30:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2
    assert time.monotonic() - started < 30
    assert tries(folder, "mixed") == 1 and tries(folder, "noise") == 1
    report = zooindex.check(index=zoo["index"])
    # what was absorbed before: 'good', its one score by the default (LogME)
    assert report.ok and report.cache["scores"] == 1


def test_a_node_without_the_model_file_skips_it_and_says_why(zoo):
    def elsewhere(task, target):
        """A node that does not see the model file: it is moved away before the task runs."""
        from zooindex import unit

        os.rename(task.record.path, task.record.path + ".away")
        return unit.run(task, target)

    got = zooindex.search(zoo["target"], index=zoo["index"], models=["good"],
                          executor=Ray(unit=elsewhere))
    good = zoo["folder"] / "good.onnx"
    os.rename(f"{good}.away", good)
    [skipped] = got.skipped
    assert "is not on Ray node 127.0.0.1" in skipped.reason
    assert "same path on every node" in skipped.reason


def test_an_address_nothing_listens_on_fails_at_once():
    import socket

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ZooIndexError, match=f"cannot reach the Ray cluster at {address}"):
            check_reachable(address)
    check_reachable("auto")  # Ray's own search for a cluster


@pytest.mark.parametrize("settings, device, seen", [
    ({}, "auto", "device cpu, CPU 1.0, GPU None, threads 1"),
    ({"cpus_per_task": 2}, "cpu", "device cpu, CPU 2.0, GPU None, threads 2"),
    ({}, "cuda", "device cuda, CPU 1.0, GPU 1.0, threads 1"),
])
def test_each_task_gets_its_cpus_as_threads_and_a_gpu_with_cuda(zoo, settings, device, seen):
    def resources_seen(task, target):
        """Run on the CPU; note what Ray gave the task and onnxruntime's threads. (A
        closure, so that Ray sends it by value: the workers cannot import this module.)"""
        import dataclasses

        import ray as worker_ray

        from zooindex import runtime, unit

        given = worker_ray.get_runtime_context().get_assigned_resources()
        device = task.options.device
        task = dataclasses.replace(task,
                                   options=dataclasses.replace(task.options, device="cpu"))
        outcome = unit.run(task, target)
        outcome.notes.append(f"device {device}, CPU {given.get('CPU')}, "
                             f"GPU {given.get('GPU')}, threads {runtime.default_threads()}")
        return outcome

    # the driver needs no GPU of its own: the cluster's are asked for
    got = zooindex.search(zoo["target"], index=zoo["index"], models=["good"], device=device,
                          executor=Ray(unit=resources_seen, **settings))
    assert got.notes[0] == seen


def test_cuda_on_a_cluster_without_enough_gpus_says_so(zoo):
    with pytest.raises(ZooIndexError, match="the Ray cluster has 1 GPUs and each task asks "
                                            "for 2"):
        zooindex.search(zoo["target"], index=zoo["index"], device="cuda",
                        executor=Ray(gpus_per_task=2))


def test_add_fetches_and_inspects_hub_references_on_ray(cluster, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from support.hf_server import FakeHub, FakeRepo, point_client_at

    def model(dims, seed=0):
        return linear_features(selector(dims), classes=3, seed=seed).SerializeToString()

    refs = ["hf://acme/one", "hf://acme/missing", "hf://acme/two"]
    with FakeHub() as server:
        # the workers get HF_ENDPOINT from the driver; the downloads folder is shared
        point_client_at(monkeypatch, server.endpoint, tmp_path / "hf_home")
        server.add(FakeRepo("acme/one", {"model.onnx": model([0, 1])}, commit="a" * 40))
        server.add(FakeRepo("acme/two", {"onnx/a.onnx": model([2, 3]),
                                         "onnx/b.onnx": model([4, 5], seed=1)},
                            commit="b" * 40, tags=("onnx", "vision")))
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "ray-cache"))
        executor = Ray(max_in_flight=2)
        got = zooindex.add(refs, index=tmp_path / "ray.db", keep_going=True,
                           executor=executor)
        assert executor.stats == {"submitted": 3, "peak_in_flight": 2}
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "local-cache"))
        expected = zooindex.add(refs, index=tmp_path / "local.db", keep_going=True)

    def key(added):
        return [(a.name, a.status, a.sha256, a.reason and a.reason.split(";")[0])
                for a in added]

    assert key(got) == key(expected)
    assert [a.name for a in got] == ["one", "two-a", "two-b", None]
    assert "acme/missing" in got[-1].reason
    shown = zooindex.show("two-a", index=tmp_path / "ray.db")
    assert shown["path"].startswith(str(tmp_path / "ray-cache"))
    assert shown["source"]["commit"] == "b" * 40 and "vision" in shown["source"]["tags"]


def test_a_budgeted_search_races_on_ray_as_it_does_locally(zoo, monkeypatch):
    cancelled = []
    real_cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: (cancelled.append(ref),
                                                          real_cancel(ref, **kw)))
    executor = Ray()
    got = zooindex.search_on_budget(zoo["target"], budget=0.5, k=1, index=zoo["index"],
                                    scorers=["knn"], executor=executor)
    # nothing stopped early: no task is cancelled (cancelling one whose reply is on its
    # way can bring the driver down inside Ray)
    assert cancelled == []
    expected = zooindex.search_on_budget(zoo["target"], budget=0.5, k=1,
                                         index=zoo["local"], scorers=["knn"],
                                         executor="sequential")
    assert got.order == expected.order and got.seen == expected.seen
    assert got.rounds == [{**r, "seconds": g["seconds"]}
                          for r, g in zip(expected.rounds, got.rounds)]
    assert got.ran == got.seen  # every image the race saw ran once, on the workers
    # a full search after it has Ray run only the images not seen yet (then every model
    # is scored from whole cached activations, or the last round cached its scores), and
    # ranks as the same search does locally
    after = zooindex.search(zoo["target"], index=zoo["index"], scorers=["knn"],
                            executor=executor)
    assert after.stats["run"] == 0
    assert after.stats["from_activations"] + after.stats["from_scores"] == 3
    fresh = zooindex.search(zoo["target"], index=zoo["local"], scorers=["knn"],
                            executor="sequential")
    assert [r.model for r in after.ranked] == [r.model for r in fresh.ranked]
    assert zooindex.check(index=zoo["index"]).ok


def test_ray_ranks_text_models_as_a_local_search(tmp_path, cluster):
    from support.text_models import tiny_encoder, write_tokenizer

    indexes = (tmp_path / "ray.db", tmp_path / "local.db")
    for i, blocks in enumerate((2, 3)):
        folder = tmp_path / f"enc{i}"
        folder.mkdir()
        tiny_encoder(folder / f"enc{i}.onnx", seed=i, hidden=8, blocks=blocks)
        write_tokenizer(folder)
        for index in indexes:
            zooindex.add(folder / f"enc{i}.onnx", index=index)
    texts = ([f"good fun film {i}" for i in range(12)]
             + [f"bad boring plot {i}" for i in range(12)])
    target = zooindex.load_target(x=texts, y=[1] * 12 + [0] * 12)
    for aggregation in ("last", "mean"):
        got = zooindex.search(target, index=indexes[0], scorers=SCORERS[:2],
                              layer_aggregation=aggregation, executor=Ray())
        expected = zooindex.search(target, index=indexes[1], scorers=SCORERS[:2],
                                   layer_aggregation=aggregation, executor="sequential")
        same_ranking(got, expected)
        assert got.stats["run"] == 2 and [r.status for r in got.results] == ["ok", "ok"]
