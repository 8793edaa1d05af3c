"""Schedulers for the per-model unit of work (:mod:`zooindex.unit`).

An executor takes the tasks of a search, one per model, and yields their outcomes in
the order of the tasks; the caller (the only one that touches the index) stores each
outcome as it comes. Which executor runs them is the caller's choice:

* :class:`Sequential` runs each task's stages back to back in the calling thread: the
  reference, and what tests compare the others with;
* :class:`Pipeline` (the default) overlaps three models: while one runs on the device,
  the next is loaded (graph edit, session start) and the previous one is scored (PCA,
  estimators, cache files), each in a thread of its own. Up to three models are in
  memory at once. Inference runs in a thread too, so that the calling thread stays free
  to take Ctrl-C at once: the batch in flight is then abandoned
  (:func:`zooindex.runtime.stop_runs`), no new one starts, and the scores being
  computed are abandoned too; only cache files being written are waited for.

Executors take two hooks: ``after(task, outcome)`` runs where the outcome was scored
(the scoring thread) before it is yielded, for work that needs no database, such as writing
cache files; ``discard(outcome)`` runs for outcomes that were finished but never
yielded because the caller stopped early, so that it can undo what ``after`` did.
Tasks are read from their iterable lazily, in the calling thread, one ahead of the
model that runs.

:class:`zooindex.distributed.Ray` (``"ray"``, the ``ray`` extra) runs each task as a Ray
task on a cluster, with the same interface and hooks.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from . import unit
from .options import EXECUTORS as NAMES
from .unit import ModelTask, Outcome


class Sequential:
    """Every stage of every task, one after the other, in the calling thread."""

    name = "sequential"

    def run(self, tasks: Iterable[ModelTask], target, *, after: Callable | None = None,
            discard: Callable | None = None) -> Iterator[Outcome]:
        from . import runtime

        runtime.allow_runs()  # a search stopped earlier in this process is over
        for task in tasks:
            outcome = unit.run(task, target)
            if after is not None:
                after(task, outcome)
            yield outcome


class Pipeline:
    """Load the next model, run the current one and score the previous one at once."""

    name = "pipeline"

    def run(self, tasks: Iterable[ModelTask], target, *, after: Callable | None = None,
            discard: Callable | None = None) -> Iterator[Outcome]:
        from . import runtime

        # Scoring computes, then ``after`` writes cache files. A stop abandons the
        # computing (it touches nothing and may sit in one long LAPACK call) but must
        # not leave a file half-written: the lock covers the writing, and once
        # ``stopping`` is set no scoring thread starts to write.
        stopping = threading.Event()
        writing = threading.Lock()
        written: list = []  # outcomes whose files exist and that were not yielded yet

        def finish(work):
            outcome = unit.score(work)
            with writing:
                if stopping.is_set():
                    return outcome
                if after is not None:
                    after(work.task, outcome)
                written.append(outcome)
            return outcome

        def handed(outcome):
            with writing:  # by identity: outcomes hold arrays, which == cannot compare
                written[:] = [o for o in written if o is not outcome]
            return outcome

        upcoming = iter(tasks)
        loading: deque = deque()
        scoring: deque = deque()
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zooindex-load")
        device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zooindex-run")
        scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zooindex-score")
        pools = (loader, device, scorer)

        def load_next() -> None:
            task = next(upcoming, None)
            if task is not None:
                loading.append(loader.submit(unit.prepare, task, target))

        runtime.allow_runs()  # a search stopped earlier in this process is over
        finished = False
        try:
            load_next()
            while loading:
                prepared = loading.popleft()
                load_next()  # look ahead: plan and start loading the next model
                work = device.submit(unit.infer, prepared.result()).result()
                if scoring:
                    yield handed(scoring.popleft().result())
                scoring.append(scorer.submit(finish, work))
            while scoring:
                yield handed(scoring.popleft().result())
            finished = True
        finally:
            if finished:
                for pool in pools:
                    pool.shutdown(wait=True)
            else:  # the caller stopped early (Ctrl-C, an error, close())
                # The running batch is abandoned and no new one starts; loading,
                # inference and the scores' computation touch no file, so they are not
                # waited for (an abandoned thread finishes its call and writes
                # nothing); only cache files being written are, and what was written
                # but not handed to the caller is discarded.
                runtime.stop_runs()
                with writing:
                    stopping.set()
                    abandoned, written[:] = list(written), []
                for pool in pools:
                    pool.shutdown(wait=False, cancel_futures=True)
                if discard is not None:
                    for outcome in abandoned:
                        discard(outcome)


def _ray(**settings):
    """:class:`zooindex.distributed.Ray` (the ``ray`` extra), imported when asked for."""
    from .distributed import Ray

    return Ray(**settings)


EXECUTORS = {"pipeline": Pipeline, "sequential": Sequential, "ray": _ray}
assert tuple(EXECUTORS) == NAMES  # the CLI's choices, defined in zooindex.options


def get(executor, **settings):
    """An executor instance from a name (``pipeline``, ``sequential``, ``ray``), an
    instance, or ``None`` (the pipeline). ``settings`` go to the named executor's
    constructor, e.g. ``get("ray", address="auto")``."""
    if executor is None:
        executor = "pipeline"
    if isinstance(executor, str):
        from .errors import ZooIndexError

        try:
            make = EXECUTORS[executor]
        except KeyError:
            raise ZooIndexError(f"unknown executor '{executor}'; choose from: "
                                f"{', '.join(EXECUTORS)}") from None
        return make(**settings)
    return executor


def is_remote(executor) -> bool:
    """Does ``executor`` run the units on other machines (so that this machine's devices
    do not matter)?"""
    return bool(getattr(get(executor), "remote", False))


__all__ = ["Sequential", "Pipeline", "get", "is_remote", "EXECUTORS"]
