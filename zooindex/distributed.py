"""Ranking on a Ray cluster: each model's unit of work (:mod:`zooindex.unit`) as a Ray task.

:class:`Ray` is an executor like the local ones (:mod:`zooindex.executor`): it takes the
tasks a search planned, one per model, and yields their outcomes in task order, and the
caller, on the driver, stays the only reader and writer of the index. What differs is
where the work runs and what travels:

* **one Ray task per model**, not Ray Data rows: a search plans its tasks lazily from the
  index and absorbs the outcomes in order; what matters is control per task (the CPUs or
  GPU it asks for, a bounded number in flight, retries when its worker dies, a skipped
  model with its reason, ``ray.cancel`` on Ctrl-C), and a task's inputs are Python
  objects (a model record, the options, cached arrays), not table rows. Ray Data would
  add pyarrow and pandas to every node and gives none of those controls per row.
* **the target goes into the object store once** per search (``ray.put``); every task
  refers to it, and its arrays are read from the node's shared memory, not copied.
* **the model files must be at the same path on every node** (a shared file system, or
  copies made at the same path before the search): a task reads its model from
  ``record.path``, as a local search does. No model bytes are shipped: for a zoo of
  thousands of models they would all pass through the driver's network link. A node
  that lacks the file skips the model and says so.
* **cached activations** are files beside the driver's index: the driver reads those a
  task needs and sends the arrays with it (reading 20 MB costs about 5 ms; running the
  model again would cost a second or more).
* **what comes back**: the scores and their timings and, by default, the activations
  worth caching, which the driver writes to its cache exactly as a local search does.
  With ``return_activations=False`` only the scores come back: a later search with
  another D then runs the models again, but the driver neither receives nor writes
  20 MB per model (see benchmarks/bench_ray.py for what that costs).
* **threads**: a task asks Ray for ``cpus_per_task`` CPUs (1 by default: one model per
  core keeps every core busy without onnxruntime threads competing) and runs onnxruntime
  and BLAS with that many threads (:data:`zooindex.runtime.THREADS_ENV`).
  ``device="cuda"`` asks for ``gpus_per_task`` GPUs per task (1 by default; a fraction
  packs several models on one GPU). ``device="auto"`` asks for no GPU and runs on the
  CPU, so that no task uses a GPU Ray did not give it.
* **faults**: Ray retries a task whose worker died (killed, out of memory, its node
  lost) up to ``max_retries`` times; then the model is reported as skipped with the
  reason. An error inside the unit is raised on the driver, as a local search would.
* **bounded**: at most ``max_in_flight`` tasks are submitted and not yet yielded
  (default: twice as many as the cluster can run at once), so a zoo of 10,000 models is
  never submitted at once, and the planning of the next models overlaps the running ones.
  When the caller stops early (Ctrl-C, an error), the tasks still out are cancelled
  (``ray.cancel``); the index holds exactly what was absorbed before.

Where Ray runs: ``address`` (or ``$ZOOINDEX_RAY_ADDRESS``), e.g. ``auto`` or
``HEAD:6379`` to join a cluster started with ``ray start --head``; by default, Ray's own
choice: ``$RAY_ADDRESS``, else a cluster already running on this machine, else a new
local one, which lives as long as this process. Ray is imported and joined only when a
search has a task to send: a search answered from the cache never touches it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import ZooIndexError, require
from .unit import ModelTask, Outcome

ADDRESS_ENV = "ZOOINDEX_RAY_ADDRESS"


def _ray():
    return require("ray", "ranking on Ray needs the ray package: pip install 'zooindex[ray]'")


class Lost(ZooIndexError):
    """A task whose worker died on every try; its message says why."""


class Ray:
    """Run each model's unit of work as a Ray task (see the module's docstring).

    ``address``: the cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); default
    ``$ZOOINDEX_RAY_ADDRESS``, else Ray's own choice. ``cpus_per_task``: CPUs per model,
    and onnxruntime's threads. ``gpus_per_task``: GPUs per model with ``device="cuda"``
    (default 1). ``max_in_flight``: tasks submitted and not yet yielded (default twice
    the tasks the cluster runs at once). ``max_retries``: how often Ray retries a task
    whose worker died before the model is skipped. ``return_activations``: send the
    activations back for the driver's cache (default), or only the scores. ``unit``:
    the per-model function, :func:`zooindex.unit.run` by default (tests wrap it).

    ``stats`` counts what the last run did: ``submitted`` tasks and the
    ``peak_in_flight``.
    """

    name = "ray"
    remote = True  # the unit runs elsewhere: the driver's own devices do not matter

    def __init__(self, address: str | None = None, *, cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, max_in_flight: int | None = None,
                 max_retries: int = 2, return_activations: bool = True,
                 unit: Callable | None = None):
        if not isinstance(cpus_per_task, (int, float)) or isinstance(cpus_per_task, bool) \
                or cpus_per_task <= 0:
            raise ZooIndexError(f"cpus per task must be a positive number, not {cpus_per_task!r}")
        if gpus_per_task is not None and (isinstance(gpus_per_task, bool) or not isinstance(
                gpus_per_task, (int, float)) or gpus_per_task <= 0):
            raise ZooIndexError(f"GPUs per task must be a positive number, not {gpus_per_task!r}")
        for label, value, low in (("max_in_flight", max_in_flight, 1),
                                  ("max_retries", max_retries, 0)):
            if value is None and label == "max_in_flight":  # the default: from the cluster
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ZooIndexError(f"{label} must be a whole number of at least {low}, "
                                    f"not {value!r}")
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.return_activations = return_activations
        self.unit = unit
        self.stats = {"submitted": 0, "peak_in_flight": 0}

    def __repr__(self) -> str:
        return (f"Ray(address={self.address or os.environ.get(ADDRESS_ENV)!r}, "
                f"cpus_per_task={self.cpus_per_task}, max_retries={self.max_retries})")

    # -- the cluster ---------------------------------------------------------------
    def connect(self):
        """The ``ray`` module, joined to the cluster (started locally if there is none)."""
        ray = _ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get(ADDRESS_ENV) or None
            check_reachable(address)
            try:
                # worker output stays on the workers: stdout may be --json
                ray.init(address=address, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                reason = _first_line(exc)
                root = _root_cause(exc)
                if root is not exc:  # e.g. an authentication error behind "failed to connect"
                    reason += f" ({_last_error(root)})"
                raise ZooIndexError(
                    f"cannot start or join {where}: {reason}; start one with `ray start "
                    f"--head` and pass its address (--ray-address or {ADDRESS_ENV}); a "
                    "cluster with token authentication needs RAY_AUTH_MODE=token and its "
                    "token here too") from None
        return ray

    def _slots(self, ray, gpus: float | None) -> int:
        """How many tasks the cluster can run at once; an error if it can run none."""
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 0.0)
        if cpus < self.cpus_per_task:
            raise ZooIndexError(f"each task asks Ray for {self.cpus_per_task} CPUs, but the "
                                f"cluster has {cpus:g}; ask for fewer")
        slots = int(cpus // self.cpus_per_task)
        if gpus:
            have = resources.get("GPU", 0.0)
            if have < gpus:
                raise ZooIndexError(
                    f"--device cuda: the Ray cluster has {have:g} GPUs and each task asks "
                    f"for {gpus:g}; start GPU nodes (`ray start --num-gpus N ...`) or use "
                    "--device cpu")
            slots = min(slots, int(have // gpus))
        return max(slots, 1)

    # -- the executor interface ------------------------------------------------------
    def run(self, tasks: Iterable[ModelTask], target, *, after: Callable | None = None,
            discard: Callable | None = None) -> Iterator[Outcome]:
        """Outcomes of ``tasks`` in task order, each computed by a Ray task."""
        self.stats = {"submitted": 0, "peak_in_flight": 0}
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is None:  # everything was cached: Ray is not touched
            return
        ray = self.connect()
        gpus = (self.gpus_per_task or 1) if first.options.device == "cuda" else None
        window = self.max_in_flight or 2 * self._slots(ray, gpus)
        options = {"num_cpus": self.cpus_per_task, "max_retries": self.max_retries,
                   "retry_exceptions": False}
        if gpus:
            options["num_gpus"] = gpus
        remote = _remote(ray, _run_unit).options(**options)
        target_ref = ray.put(replace(target, x=np.asarray(target.x)))

        def submit(task: ModelTask):
            return remote.remote(self._ship(task, gpus), target_ref,
                                 self.return_activations, self.unit)

        for task, outcome in self._ordered(ray, _chain(first, tasks), submit, window=window):
            if isinstance(outcome, Lost):
                outcome = Outcome(model=task.record.name, status="skipped",
                                  reason=str(outcome))
            elif task.keep_features:  # arrays from the object store are read-only
                outcome.features = {k: v if v.flags.writeable else np.array(v)
                                    for k, v in outcome.features.items()}
            if after is not None:
                try:
                    after(task, outcome)
                except BaseException:
                    if discard is not None:
                        discard(outcome)
                    raise
            yield outcome

    def map(self, fn: Callable, items: Iterable, *, env: dict | None = None) -> Iterator:
        """``(item, fn(item))`` for each item, in order, each computed by a Ray task;
        where ``fn`` raised a :class:`~zooindex.errors.ZooIndexError` or its worker died
        on every try, that error takes the result's place. ``env``: environment
        variables the tasks' workers get."""
        self.stats = {"submitted": 0, "peak_in_flight": 0}
        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        ray = self.connect()
        window = self.max_in_flight or 2 * self._slots(ray, None)
        options = {"num_cpus": self.cpus_per_task, "max_retries": self.max_retries,
                   "retry_exceptions": False}
        if env:
            options["runtime_env"] = {"env_vars": dict(env)}
        remote = _remote(ray, _call).options(**options)
        yield from self._ordered(ray, _chain(first, items), lambda item: remote.remote(fn, item),
                                 window=window, errors=ZooIndexError)

    # -- how tasks travel ------------------------------------------------------------
    def _ship(self, task: ModelTask, gpus) -> ModelTask:
        """The task as a worker elsewhere can run it: cached files read here into arrays,
        the activation limit of this machine, the CPU when no GPU was asked for."""
        from .cache import DECODE_ERRORS, CachedFile
        from .runner import max_activation_bytes

        cached = {}
        for name, entry in task.cached.items():
            if isinstance(entry, CachedFile):
                # a file not intact stays a file: the worker finds it so too and says so
                with contextlib.suppress(*DECODE_ERRORS):
                    entry = entry.read()
            cached[name] = entry
        options = task.options
        if options.device == "auto" and not gpus:
            options = replace(options, device="cpu")
        return replace(task, cached=cached, options=options,
                       max_activation_bytes=task.max_activation_bytes or max_activation_bytes())

    def _ordered(self, ray, items: Iterator, submit: Callable, *, window: int,
                 errors=()) -> Iterator:
        """``(item, result)`` in item order, with at most ``window`` tasks out at once.

        A result is what the task returned, a :class:`Lost` when its worker died on
        every try, or an exception of the types ``errors`` that the task raised; other
        errors in a task are raised here. Stopped early, it cancels the tasks still out.
        """
        pending: deque = deque()
        finished = False

        def ready() -> bool:
            done, _ = ray.wait([pending[0][1]], timeout=0)
            return bool(done)

        try:
            for item in items:
                pending.append((item, submit(item)))
                self.stats["submitted"] += 1
                self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], len(pending))
                while pending and (len(pending) >= window or ready()):
                    item, ref = pending.popleft()  # out of pending before it is handed on
                    yield item, self._result(ray, ref, errors)
            while pending:
                item, ref = pending.popleft()
                yield item, self._result(ray, ref, errors)
            finished = True
        finally:
            if not finished and pending:
                # only the tasks still out: cancelling one whose reply is on its way races
                # inside Ray's core worker (a fatal check in ray 2.60)
                refs = [ref for _, ref in pending]
                with contextlib.suppress(Exception):
                    done, refs = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in refs:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)

    def _result(self, ray, ref, errors):
        exceptions = ray.exceptions
        try:
            return ray.get(ref)
        except exceptions.TaskCancelledError:
            raise
        except exceptions.RayTaskError as exc:  # the unit itself raised
            cause = getattr(exc, "cause", None)
            if errors and isinstance(cause, errors):
                return cause
            if isinstance(cause, ZooIndexError):
                raise cause from None
            raise
        except exceptions.RayError as exc:  # the worker or its node died on every try
            tries = self.max_retries + 1
            return Lost(f"its Ray worker died on each of {tries} tr{'y' if tries == 1 else 'ies'}"
                        f" (max_retries={self.max_retries}): {type(exc).__name__}: "
                        f"{_first_line(exc)}")


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once when ``HOST:PORT`` (or ``ray://HOST:PORT``) takes no connection: Ray
    itself waits minutes before it gives up on an address nothing listens on."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address or "")
    if match is None:  # "auto", or none: Ray looks for a cluster itself
        return
    import socket

    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout).close()
    except OSError as exc:
        raise ZooIndexError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; is "
            f"`ray start --head` running there, and is the port open to this machine? "
            f"(--ray-address or {ADDRESS_ENV})") from None


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _last_error(exc: BaseException, limit: int = 200) -> str:
    """The innermost ``SomeError: message`` line of an error whose text holds a
    traceback (Ray's connection errors carry the real reason that way)."""
    found = re.findall(r"^\s*([\w.]*(?:Error|Exception): .+)$", str(exc), re.MULTILINE)
    return found[-1].strip()[:limit] if found else f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


_REMOTE: dict = {}


def _remote(ray, fn: Callable):
    """``ray.remote(fn)``, made once per function."""
    if fn not in _REMOTE:
        _REMOTE[fn] = ray.remote(fn)
    return _REMOTE[fn]


# -- what runs on a worker ---------------------------------------------------------------
def _match_threads() -> None:
    """onnxruntime and BLAS threads = the CPUs Ray gave this task."""
    import ray

    from .runtime import THREADS_ENV

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    threads = str(max(1, int(cpus)))
    os.environ[THREADS_ENV] = threads
    os.environ["ZOOINDEX_BLAS_THREADS"] = threads


def _run_unit(task: ModelTask, target, return_activations: bool,
              unit_run: Callable | None) -> Outcome:
    """One model's unit of work on a Ray worker."""
    from . import unit

    _match_threads()
    outcome = (unit_run or unit.run)(task, target)
    if outcome.status != "ok" and not os.path.exists(task.record.path):
        import ray

        outcome.reason = (f"model file {task.record.path} is not on Ray node "
                          f"{ray.util.get_node_ip_address()}; on a cluster the model files "
                          "must be at the same path on every node (a shared folder)")
    if not return_activations:
        outcome.activations = {}
    return outcome


def _call(fn: Callable, item):
    _match_threads()
    return fn(item)


__all__ = ["Ray", "Lost", "ADDRESS_ENV", "check_reachable"]
