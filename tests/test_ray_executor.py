"""The Ray executor without a cluster: its registration, its settings, and that a search
needs Ray only when a model has work left (tests/test_ray.py runs it on a cluster)."""

import sys

import pytest

import zooindex
from support.data import three_model_zoo
from zooindex import executor as executors
from zooindex.distributed import Ray
from zooindex.errors import DependencyError, ZooIndexError


def test_ray_is_registered_by_name_with_its_settings(monkeypatch):
    made = executors.get("ray", address="auto", cpus_per_task=2)
    assert isinstance(made, Ray) and made.address == "auto" and made.cpus_per_task == 2
    assert executors.is_remote("ray") and not executors.is_remote("pipeline")
    assert not executors.is_remote(None)


@pytest.mark.parametrize("settings, message", [
    ({"cpus_per_task": 0}, "cpus per task must be a positive number"),
    ({"gpus_per_task": -1}, "GPUs per task must be a positive number"),
    ({"max_in_flight": 0}, "max_in_flight must be a whole number of at least 1"),
    ({"max_retries": -1}, "max_retries must be a whole number of at least 0"),
    ({"max_retries": 1.5}, "max_retries must be a whole number"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ZooIndexError, match=message):
        Ray(**settings)


def test_a_cached_search_needs_no_ray_and_a_search_with_work_says_what_to_install(
        tmp_path, monkeypatch):
    made = three_model_zoo(tmp_path)
    zooindex.add(made["folder"], index=made["index"])
    first = zooindex.search(made["target"], index=made["index"], executor="sequential")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    again = zooindex.search(made["target"], index=made["index"], executor="ray")
    assert [(r.model, r.score) for r in again.ranked] == \
        [(r.model, r.score) for r in first.ranked]
    # another D for a scorer that reduces to D components (LogME, the default, does not
    # depend on D: its cached scores would serve the search without work)
    with pytest.raises(DependencyError, match=r"pip install 'zooindex\[ray\]'"):
        zooindex.search(made["target"], index=made["index"], executor="ray", dim=3,
                        scorers="ensemble")
