"""Searches started from the web page: queued, one at a time per index, watched live.

A :class:`Job` is one search: what to rank (a target loader, options, a model filter,
and a budget or none), and what came of it so far: one progress row per model as
:func:`zooindex.search`'s ``on_result`` reports it (per round for a budgeted search, as
:func:`zooindex.search_on_budget`'s ``on_round`` does), the :class:`~zooindex.Ranking`
(with the :class:`~zooindex.budget.Budgeted` race around it), the report's figures
(:func:`zooindex.reporting.figures`), or the error.

A :class:`SearchQueue` runs the jobs of one index in the order they came, in one worker
thread, so two searches never write the same index at once and a waiting search knows
its place in the line. Pages and the JSON API read a job's state while it runs; only
the worker writes it.

On a read-only server the searches run with :class:`CachedOnly`, an executor that
refuses any unit of work that would run a model or compute a number to store: a search
that the cache answers completes (with its figures, drawn from cached activations), any
other is refused before a model is loaded, with the names of the models it lacks.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ZooIndexError

QUEUED, RUNNING, FIGURES, DONE, FAILED = "queued", "running", "figures", "done", "failed"
# states in which the ranking (or the error) is there to show
SETTLED = (FIGURES, DONE, FAILED)
KEPT_JOBS = 50
FIGURE_TOP = 5
KEPT_FIGURES = 16  # sets of figures remembered, for searches repeated with the same ranking


class ReadOnlyRefusal(ZooIndexError):
    """A search on a read-only server would have to run models and store their numbers."""

    def __init__(self, message: str, models=()):
        super().__init__(message)
        self.models = list(models)


class CachedOnly:
    """An executor for a read-only server: it runs a model's unit of work only when
    that reads cached activations and computes nothing that would be stored (the
    figures of a ranking already made); any other task refuses the whole search.

    It reads every task first, so the refusal names all the models the cache lacks.
    """

    name = "cached-only"

    def run(self, tasks, target, *, after=None, discard=None):
        from .. import unit

        tasks = list(tasks)
        refused = [t.record.name for t in tasks
                   if any(t.wanted.values()) or any(l not in t.cached for l in t.layers)]
        if refused:
            shown = ", ".join(refused[:8]) + (f" and {len(refused) - 8} more"
                                              if len(refused) > 8 else "")
            raise ReadOnlyRefusal(
                f"this server is read-only and the index has no cached numbers for "
                f"{len(refused)} model{'s' * (len(refused) != 1)} with this target and "
                f"these options ({shown}); search with options a past search used (see "
                "the history), or run the search on a server without --read-only",
                models=refused)
        for task in tasks:
            yield unit.run(task, target)


@dataclass
class Job:
    """One search, from the queue to its ranking and figures."""

    label: str                                  # what the page calls the target
    load: Callable                              # () -> Target; may raise ZooIndexError
    options: object                             # SearchOptions
    filter: object = None                       # zooindex.Filter or None
    cleanup: Callable | None = None             # called once the target is loaded
    budget: object = None                       # zooindex.budget.Budget, or None: a full search
    k: int = 3                                  # the top a budgeted search aims at
    id: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    number: int = 0
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: list = field(default_factory=list)   # one dict per settled model row
    ranking: object = None                       # zooindex.Ranking (a budget's: its last round)
    budgeted: object = None                      # zooindex.budget.Budgeted, for a budget
    target_key: str | None = None
    target_info: dict | None = None
    figures: dict | None = None                  # name -> PNG bytes
    figures_error: str | None = None
    error: str | None = None

    @property
    def title(self) -> str:
        """The target's file or folder name, without the folders above it."""
        return self.label.rstrip("/").rsplit("/", 1)[-1] or self.label

    @property
    def settled(self) -> bool:
        return self.state in SETTLED

    def record(self, result) -> None:
        """``on_result``: one model row has its score (or its reason for a skip)."""
        self.progress.append({
            "model": result.model, "layer": result.layer, "score": result.score,
            "scores": dict(result.scores), "cached": result.cached, "seconds": round(result.seconds, 3),
            "status": result.status, "reason": result.reason})

    def record_round(self, row: dict) -> None:
        """``on_round``: one round of a budgeted search is over."""
        text = (self.target_info or {}).get("kind") == "text"
        self.progress.append({"round": len([p for p in self.progress if "round" in p]) + 1,
                              "status": "ok", "cached": False, **row,
                              "dropped": list(row["dropped"]),
                              "samples": "texts" if text else "images"})


def why_none(skipped) -> str:
    """Why no model was ranked, in one line: the shared reason when all share it."""
    import re

    def general(r):
        return re.sub(rf"\b{re.escape(r.model)}\b", "MODEL", r.reason or "")

    reasons = {general(r) for r in skipped}
    if len(skipped) > 1 and len(reasons) == 1:
        return f"{reasons.pop()} (all {len(skipped)} models)"
    shown = "; ".join(f"{r.model}: {r.reason}" for r in skipped[:3])
    return shown + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")


def progress_line(row: dict) -> str:
    """A progress row as the page shows it, one line."""
    if "round" in row:
        dropped = f"; dropped {', '.join(row['dropped'])}" if row["dropped"] else ""
        return (f"round {row['round']}: {row['models']} model{'s' * (row['models'] != 1)} "
                f"on {row['per_class']} {row['samples']} per class ({row['images']} each), "
                f"{row['seconds']:.2f} s{dropped}")
    if row["status"] != "ok":
        return f"{row['model']}: skipped, {row['reason']}"
    how = "from the cache" if row["cached"] else f"{row['seconds']:.2f} s"
    if row["score"] is None:  # a combination: its members until every model is in
        members = ", ".join(f"{k} {v:.4f}" for k, v in row.get("scores", {}).items())
        return f"{row['model']}: {members} ({how})"
    return f"{row['model']}: {row['score']:.4f} ({how})"


class SearchQueue:
    """The searches of one index, run one at a time in the order they came.

    ``open_index()`` gives a fresh :class:`~zooindex.Index` for the worker (a SQLite
    connection belongs to the thread that uses it). ``read_only``: run with
    :class:`CachedOnly`. ``figures``: draw the report's figures after each ranking.
    """

    def __init__(self, open_index: Callable, *, read_only: bool = False,
                 figures: bool = True, kept: int = KEPT_JOBS):
        self.open_index = open_index
        self.read_only = read_only
        self.draw_figures = figures
        self.kept = kept
        self._lock = threading.Lock()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._worker: threading.Thread | None = None
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._numbers = itertools.count(1)
        self._drawn: OrderedDict[tuple, dict] = OrderedDict()  # only the worker uses it

    # -- what pages read ---------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while it runs (or is over); else how many searches go before it."""
        with self._lock:
            if job.state != QUEUED:
                return 0
            ahead = 1 if self._running is not None else 0
            for i, waiting in enumerate(self._waiting):
                if waiting is job:
                    return ahead + i
            return ahead

    def busy(self) -> int:
        """Searches running or waiting."""
        with self._lock:
            return len(self._waiting) + (self._running is not None)

    # -- what the server does --------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self._lock:
            job.number = next(self._numbers)
            self._jobs[job.id] = job
            self._forget_old()
            self._waiting.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, daemon=True,
                                                name="zooindex-web-search")
                self._worker.start()
        return job

    def wait(self, job: Job, timeout: float) -> bool:
        """Block until ``job`` has settled or ``timeout`` seconds pass; settled?"""
        end = time.monotonic() + timeout
        while not job.settled and time.monotonic() < end:
            time.sleep(0.05)
        return job.settled

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the worker to finish every job (for a server that stops)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in (DONE, FAILED)]
        for key in finished[:max(0, len(self._jobs) - self.kept)]:
            del self._jobs[key]

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._worker = None
                    self._running = None
                    return
                job = self._running = self._waiting.popleft()
            try:
                self._run(job)
            except BaseException as exc:  # a job never takes the worker down with it
                job.error = job.error or f"the search stopped: {exc}"
                job.state = FAILED
            finally:
                job.finished = job.finished or time.time()
                with self._lock:
                    self._running = None

    def _run(self, job: Job) -> None:

        job.state, job.started = RUNNING, time.time()
        try:
            try:
                target = job.load()
            finally:
                if job.cleanup is not None:
                    job.cleanup()
            job.target_key = target.key
            job.target_info = {"key": target.key, "source": target.source,
                               "n": len(target.y),
                               "classes": [str(c) for c in
                                           (target.class_names or target.classes)],
                               **_text_summary(target)}
            executor = CachedOnly() if self.read_only else None
            with self.open_index() as idx:
                drawn_on = self._search(job, target, idx, executor)
                if not job.ranking.ranked:
                    job.error = ("no model could be ranked for this target: "
                                 f"{why_none(job.ranking.skipped)}")
                    job.state = FAILED
                    return
                job.state = FIGURES
                if self.draw_figures:
                    self._figures(job, drawn_on, idx, executor)
        except ZooIndexError as exc:
            job.error = str(exc)
            job.state = FAILED
            return
        job.finished = time.time()
        job.state = DONE

    def _search(self, job: Job, target, idx, executor):
        """Rank: a full search, or a race on the job's budget. Returns the target its
        ranking was made on (a budget's: the images its survivors saw)."""
        if job.budget is None:
            from ..ranking import search

            job.ranking = search(target, job.options, index=idx, filter=job.filter,
                                 on_result=job.record, executor=executor)
            return target
        from ..budget import search_on_budget
        from ..options import TargetSelection

        job.budgeted = search_on_budget(target, job.budget, job.k, job.options, index=idx,
                                        selection=TargetSelection(seed=job.options.seed),
                                        filter=job.filter, executor=executor,
                                        on_round=job.record_round)
        job.ranking = job.budgeted.ranking
        return job.budgeted.seen_target(target)

    def _figures(self, job: Job, target, idx, executor) -> None:
        """Draw the report's figures, or take them from a search that had the same
        target, options and ranking (drawing takes seconds even when every number is
        cached)."""
        from ..reporting import figures

        options = job.options
        key = (target.key, options.layer, options.dim, options.metric, options.seed,
               tuple((r.model, r.layer, r.score) for r in job.ranking.ranked))
        if key in self._drawn:
            self._drawn.move_to_end(key)
            job.figures = self._drawn[key]
            return
        try:
            job.figures = figures(job.ranking, target, index=idx, top=FIGURE_TOP,
                                  executor=executor)
        except ZooIndexError as exc:
            job.figures_error = str(exc)
            return
        self._drawn[key] = job.figures
        while len(self._drawn) > KEPT_FIGURES:
            self._drawn.popitem(last=False)


__all__ = ["Job", "SearchQueue", "CachedOnly", "ReadOnlyRefusal", "progress_line", "QUEUED",
           "RUNNING", "FIGURES", "DONE", "FAILED"]



def _text_summary(target) -> dict:
    from ..text import target_summary

    return target_summary(target)
