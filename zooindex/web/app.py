"""The routes of ``zooindex serve``: pages for people, the same data as JSON for scripts.

Pages (server-rendered Jinja2 templates; the one script, ``static/search.js``, only
streams a running search's progress, and every page works without it):

* ``/``: the zoo, every model; filter by name, tag, source and size, sort by any column;
* ``/models/{name}``: one model's details, layers, preprocessing, metadata, and every
  cached score per target;
* ``/search``: the search form (GET) and a new search (POST), a full one or, with a
  budget, :func:`zooindex.search_on_budget`'s race;
* ``/search/{id}``: one search, its place in the queue, its progress, the ranking, then
  the report's figures; ``/search/{id}/events`` streams the progress as server-sent
  events, ``/search/{id}/figures/{curves|scatter|ranking}.png`` are the figures;
* ``/history``: past targets in the index; ``/history/{key}``: one with its rankings.

JSON, mirroring the Python API: ``/api/models`` (``zooindex.ls``),
``/api/models/{name}`` (``zooindex.show``), ``/api/layers/{name}``
(``zooindex.layers``), ``/api/scorers`` (``zooindex.scorers``), ``POST /api/search`` and
``/api/search/{id}`` (``zooindex.search``, queued), ``/api/history`` and
``/api/history/{key}`` (``zooindex.history``).

Every handler that reads the index opens it in a worker thread, uses it and closes it
there: a SQLite connection belongs to one thread, and the event loop never waits on the
disk. Searches go through the server's one :class:`~zooindex.web.jobs.SearchQueue`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import __version__
from ..errors import NotIndexedError, StoreError, TargetError, ZooIndexError
from . import jobs, safety

HERE = Path(__file__).parent
DEFAULT_MAX_UPLOAD = 200 * 1000 * 1000   # bytes of one upload, and of a zip unpacked
# how long a new search may take before the page answers with its progress instead
ANSWER_AT_ONCE_S = 2.0
MAX_API_WAIT_S = 60.0
FIGURE_WAIT_S = 300.0
FIGURES = ("curves", "scatter", "ranking")
SORTS = ("name", "status", "params", "input", "layer", "width", "source", "tags")


@dataclasses.dataclass
class Settings:
    """What a server was started with."""

    index: Path
    data: tuple = ()
    read_only: bool = False
    max_upload: int = DEFAULT_MAX_UPLOAD
    figures: bool = True


class Server:
    """One served index: its settings, its search queue, its templates."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue = jobs.SearchQueue(self.open_index, read_only=settings.read_only,
                                      figures=settings.figures)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(number=_number, shape=_shape, score=_score, quoted=_quoted,
                           when=_when, short=_short)
        env.globals.update(version=__version__, settings=settings,
                           progress_line=jobs.progress_line, depends_on=_depends_on)

    def open_index(self):
        from ..index import Index

        return Index(self.settings.index, create=False,
                     read_only=True if self.settings.read_only else None)

    async def call(self, func, *args, **kwargs):
        """``func(idx, ...)`` with the index opened (and closed) in a worker thread."""
        def work():
            with self.open_index() as idx:
                return func(idx, *args, **kwargs)

        return await run_in_threadpool(work)

    def page(self, request: Request, template: str, status: int = 200, **context):
        context.setdefault("busy", self.queue.busy())
        return self.templates.TemplateResponse(request, template, context,
                                               status_code=status)


def create_app(index=None, *, data=(), read_only: bool = False,
               max_upload: int = DEFAULT_MAX_UPLOAD, allowed_hosts=None,
               figures: bool = True) -> Starlette:
    """The ASGI app serving ``index`` (a path; default: the CLI's default index).

    ``data``: folders whose data sets the search page may read (nothing outside them).
    ``read_only``: never write the index; searches the cache cannot answer are refused.
    ``max_upload``: bytes accepted for one upload, and for a ``.zip`` once unpacked.
    ``allowed_hosts``: the ``Host`` names accepted (``None``: any), against DNS
    rebinding when the server listens on loopback only.
    """
    from ..store import default_path

    settings = Settings(index=Path(index) if index is not None else default_path(),
                        data=tuple(Path(d).resolve() for d in data),
                        read_only=read_only, max_upload=int(max_upload), figures=figures)
    server = Server(settings)
    routes = [
        Route("/", zoo_page, name="zoo"),
        Route("/models/{name:path}", model_page, name="model"),
        Route("/search", search_page, methods=["GET", "POST"], name="search"),
        Route("/search/{job}", job_page, name="job"),
        Route("/search/{job}/events", job_events, name="events"),
        Route("/search/{job}/figures/{figure}.png", job_figure, name="figure"),
        Route("/history", history_page, name="history"),
        Route("/history/{key}", past_target_page, name="past"),
        Route("/api", api_index),
        Route("/api/models", api_models),
        Route("/api/models/{name:path}", api_model),
        Route("/api/layers/{name:path}", api_layers),
        Route("/api/scorers", api_scorers),
        Route("/api/search", api_search, methods=["POST"]),
        Route("/api/search/{job}", api_job),
        Route("/api/history", api_history),
        Route("/api/history/{key}", api_past_target),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    # multipart overhead on top of the upload itself
    middleware = [Middleware(safety.BodyLimit, limit=settings.max_upload + 1_000_000),
                  Middleware(safety.SameOrigin)]
    if allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware,
                                        allowed_hosts=list(allowed_hosts)))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={404: _not_found})
    app.state.server = server
    return app


def _server(request: Request) -> Server:
    return request.app.state.server


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api")


async def _not_found(request: Request, exc) -> Response:
    if _wants_json(request):
        return _json({"error": "not found", "path": request.url.path}, 404)
    return _server(request).page(request, "error.html", 404, title="Not found",
                                 message=f"There is no page at {request.url.path}.")


# -- formatting ----------------------------------------------------------------------


def _number(value) -> str:
    return "" if value is None else f"{int(value):,}"


def _shape(shape) -> str:
    return " × ".join(str(s) for s in shape or ()) or "?"


def _score(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}"


def _quoted(name: str) -> str:
    return quote(str(name), safe="")


def _short(text, keep: int = 12) -> str:
    text = str(text or "")
    return text if len(text) <= keep else text[:keep]


def _when(text: str) -> str:
    return str(text or "").replace("T", " ")[:16]


def _jsonable(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _json(obj, status: int = 200, headers=None) -> Response:
    return Response(json.dumps(obj, default=_jsonable, indent=1), status_code=status,
                    media_type="application/json", headers=headers)


def _error_status(exc: Exception) -> int:
    if isinstance(exc, safety.TooLarge):
        return 413
    if isinstance(exc, (NotIndexedError, LookupError)):
        return 404
    if isinstance(exc, StoreError):
        return 503
    return 400


# -- the zoo ---------------------------------------------------------------------------


def _zoo_filter(params) -> tuple[object, dict]:
    """The :class:`zooindex.Filter` the zoo page's query asks for, and the query as
    the form shows it again."""
    from ..zoo import Filter

    name = (params.get("name") or "").strip()
    tag = (params.get("tag") or "").strip()
    source = (params.get("source") or "").strip()
    max_params = (params.get("max_params") or "").replace(",", "").replace("_", "").strip()
    shown = {"name": name, "tag": tag, "source": source, "max_params": max_params}
    tags = None
    if tag:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise ZooIndexError(f"tag filter '{tag}' is not KEY=VALUE")
        tags = {key: value}
    limit = None
    if max_params:
        try:
            limit = int(float(max_params))
        except ValueError:
            raise ZooIndexError(f"max parameters '{max_params}' is not a number") from None
    glob = None
    if name:
        glob = name if any(c in name for c in "*?[") else f"*{name}*"
    return Filter(tags=tags, source=source or None, max_params=limit, name=glob), shown


def _sort_key(column: str):
    def key(row):
        value = row.get(column)
        if column == "input":
            value = "x".join(map(str, value or ()))
        elif column == "tags":
            value = ",".join(f"{k}={v}" for k, v in sorted((value or {}).items()))
        elif column in ("params", "width"):
            return (value is None, value or 0, row["name"])
        return (value is None, str(value or "").lower(), row["name"])
    return key


def _zoo(idx, flt) -> dict:
    from ..zoo import ls

    rows = ls(index=idx, filter=flt)
    records = idx.catalogue.models()
    tags = sorted({f"{k}={v}" for r in records for k, v in r.tags.items()})
    sources = sorted({r.source.get("hub", "local") for r in records})
    return {"rows": rows, "tags": tags, "sources": sources, "total": len(records)}


async def zoo_page(request: Request):
    server = _server(request)
    params = request.query_params
    sort = params.get("sort") if params.get("sort") in SORTS else "name"
    order = "desc" if params.get("order") == "desc" else "asc"
    error = None
    try:
        flt, shown = _zoo_filter(params)
    except ZooIndexError as exc:
        error = str(exc)
        flt, shown = None, {k: params.get(k, "") for k in ("name", "tag", "source",
                                                           "max_params")}
    data = await server.call(_zoo, flt)
    data["rows"].sort(key=_sort_key(sort), reverse=order == "desc")

    def sort_link(column):
        flip = "desc" if column == sort and order == "asc" else "asc"
        query = {k: v for k, v in shown.items() if v}
        query.update(sort=column, order=flip)
        return "/?" + urlencode(query)

    def tag_link(tag):
        return "/?" + urlencode({"tag": tag})

    return server.page(request, "zoo.html", title="Zoo", nav="zoo", error=error,
                       query=shown, sort=sort, order=order, sort_link=sort_link,
                       tag_link=tag_link, columns=SORTS, **data)


# -- one model --------------------------------------------------------------------


def _model(idx, name: str) -> dict:
    from .. import history
    from ..zoo import show, summary

    shown = show(name, index=idx)
    return {"model": shown, "summary": dict(summary(shown)),
            "scores": history.model_scores(name, index=idx)}


async def model_page(request: Request):
    server = _server(request)
    name = request.path_params["name"]
    try:
        data = await server.call(_model, name)
    except NotIndexedError as exc:
        return server.page(request, "error.html", 404, title="No such model",
                           message=str(exc))
    return server.page(request, "model.html", title=name, nav="zoo", **data)


# -- searching ------------------------------------------------------------------------


def _scorer_names() -> list[dict]:
    """What the form's "rank by" offers: ``recommended`` (the default) first, then the
    combiners and the estimators that are not experimental."""
    from ..estimators.combine import listing, resolve
    from ..options import DEFAULT_SCORER

    default = resolve(DEFAULT_SCORER)
    first = {"name": DEFAULT_SCORER, "description": default.description,
             "needs": "classifier output" if default.needs_probs else "features",
             "default": True}
    return [first] + [{"name": r["name"], "description": r["description"],
                       "needs": "classifier output" if "classifier" in r["needs"]
                       else "features", "default": False}
                      for r in listing() if not r["experimental"]]


def _values(form, key) -> list[str]:
    if hasattr(form, "getlist"):
        return [v for v in form.getlist(key) if isinstance(v, str)]
    value = form.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _field(form, key) -> str:
    values = _values(form, key)
    return values[0].strip() if values else ""


def _whole(form, key, flag, default=None):
    text = _field(form, key)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ZooIndexError(f"{flag} must be a whole number, not '{text}'") from None


def _search_settings(form):
    """``(SearchOptions, TargetSelection, Filter)`` from the search form or JSON."""
    from ..estimators.combine import resolve
    from ..options import (DEFAULT_DIM, DEFAULT_METRIC, DEFAULT_SCORER, SearchOptions,
                           TargetSelection)
    from ..zoo import Filter

    first = _field(form, "scorer") or DEFAULT_SCORER
    names = [first] + [n for n in _values(form, "scorers") if n and n != first]
    for n in names:
        resolve(n)  # an unknown scorer is an error here, with the valid names
    layer = _field(form, "layer") or None
    options = SearchOptions(layer=None if layer == "default" else layer,
                            dim=_whole(form, "dim", "D", DEFAULT_DIM),
                            metric=_field(form, "metric") or DEFAULT_METRIC,
                            scorers=tuple(names),
                            seed=_whole(form, "seed", "seed", 0))
    selection = TargetSelection(classes=_field(form, "classes") or None,
                                limit=_whole(form, "limit", "limit"),
                                seed=options.seed, split=_field(form, "split") or None)
    name = _field(form, "name")
    flt = None
    if name:
        flt = Filter(name=name if any(c in name for c in "*?[") else f"*{name}*")
    return options, selection, flt


def _budget_settings(server: Server, form) -> dict:
    """The job's ``budget`` and ``k`` from the form's budget field (empty: a full
    search) and its top field; a bad budget is the CLI's own one-line error."""
    from ..budget import parse_budget

    text = _field(form, "budget")
    k = _whole(form, "top", "top", 3)
    if k < 1:
        raise ZooIndexError(f"top must be a positive whole number, not '{_field(form, 'top')}'")
    if not text:
        return {}
    budget = parse_budget(text)
    if server.settings.read_only:
        raise ZooIndexError("this server is read-only and a search on a budget keeps what "
                            "each model saw in the index; leave the budget empty, or run it "
                            "on a server without --read-only")
    return {"budget": budget, "k": k}


def _path_job(server: Server, form) -> jobs.Job:
    """A job for a data set under the server's data folders. Nothing is read yet: the
    worker loads the target in its turn."""
    options, selection, flt = _search_settings(form)
    budget = _budget_settings(server, form)
    path_text = _field(form, "path")
    if not path_text:
        raise TargetError("choose a target: a data set under the server's data folders, "
                          "or an upload (.npz, or .zip of an image folder)")
    path = safety.resolve_data_path(path_text, server.settings.data)
    return jobs.Job(label=str(path), load=lambda: selection.load(path), options=options,
                    filter=flt, **budget)


async def _upload_job(server: Server, form, upload: UploadFile) -> jobs.Job:
    """A job for an uploaded ``.npz`` or image-folder ``.zip``: saved now into a
    folder of the server's own, unpacked (a zip) and read by the worker, then removed."""
    options, selection, flt = _search_settings(form)
    budget = _budget_settings(server, form)
    folder = Path(tempfile.mkdtemp(prefix="zooindex-upload-"))
    try:
        saved = await safety.save_upload(upload, folder, server.settings.max_upload)
    except BaseException:
        safety.remove_tree(folder)
        raise
    label = f"upload {saved.name}"
    limit = server.settings.max_upload

    def load():
        path = saved
        if saved.suffix.lower() == ".zip":
            path = safety.extract_zip(saved, folder / "images", limit)
        target = selection.load(path)
        return dataclasses.replace(target, source=label)

    return jobs.Job(label=label, load=load, options=options, filter=flt,
                    cleanup=lambda: safety.remove_tree(folder), **budget)


async def _new_job(request: Request) -> jobs.Job:
    """Read a search request (a form with an optional upload, or JSON) and queue it."""
    server = _server(request)
    if _is_json(request):
        try:
            form = await request.json()
        except ValueError:
            raise ZooIndexError("the request body is not valid JSON") from None
        if not isinstance(form, dict):
            raise ZooIndexError("send a JSON object: {\"path\": ..., \"dim\": 10, ...}")
        upload = None
    else:
        form = await request.form(max_files=1, max_fields=64)
        upload = form.get("file")
    request.state.form = form  # to show the form again after an error
    if isinstance(upload, UploadFile) and upload.filename:
        job = await _upload_job(server, form, upload)
    else:
        job = _path_job(server, form)
    return server.queue.submit(job)


async def search_page(request: Request):
    server = _server(request)
    if request.method == "POST":
        try:
            job = await _new_job(request)
        except (ZooIndexError, ValueError) as exc:
            form = getattr(request.state, "form", None) or {}
            return await _search_form(request, str(exc), _error_status(exc), form)
        # a search the cache answers is shown at once, with no progress page between
        await run_in_threadpool(server.queue.wait, job, ANSWER_AT_ONCE_S)
        return RedirectResponse(f"/search/{job.id}", status_code=303)
    return await _search_form(request, None, 200, request.query_params)


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("application/json")


async def _search_form(request: Request, error, status: int, values):
    server = _server(request)
    candidates = await run_in_threadpool(safety.data_candidates, server.settings.data)
    shown = [{"value": str(p), "label": _relative(p, server.settings.data)}
             for p in candidates]
    chosen = [v for v in _values(values, "scorers") if isinstance(v, str)]
    return server.page(request, "search.html", status, title="Search", nav="search",
                       error=error, candidates=shown, scorers=_scorer_names(),
                       form={k: _field(values, k) for k in (
                           "path", "scorer", "dim", "metric", "layer", "classes", "limit",
                           "split", "name", "seed", "budget", "top")},
                       extra=set(chosen))


def _relative(path: Path, roots) -> str:
    for root in roots:
        if path == root or path.is_relative_to(root):
            rel = path.relative_to(root)
            return f"{root.name}/{rel}" if str(rel) != "." else root.name
    return str(path)


def _job(request: Request) -> jobs.Job | None:
    return _server(request).queue.get(request.path_params["job"])


def _gone(request: Request):
    message = ("Searches are kept in memory while the server runs; this one is not (the "
               "server restarted, or it is one of the oldest). Its ranking is in the "
               "history if it finished.")
    if _wants_json(request):
        return _json({"error": message}, 404)
    return _server(request).page(request, "error.html", 404, title="Search not found",
                                 message=message)


def _ranking_rows(ranking) -> list[dict]:
    return [r.to_dict() for r in ranking.results]


def _summary(ranking) -> str:
    st = ranking.stats
    where = f" on {', '.join(st['providers'])}" if st.get("providers") else ""
    return (f"{st['ranked']} of {st['models']} models ranked, {st['skipped']} skipped, "
            f"in {ranking.seconds:.1f} s: {st['run']} run{where}, "
            f"{st['from_activations']} scored from cached activations, "
            f"{st['from_scores']} from cached scores")


async def job_page(request: Request):
    server = _server(request)
    job = _job(request)
    if job is None:
        return _gone(request)
    raced = job.budgeted
    return server.page(request, "job.html", title=f"Search: {job.label}", nav="search",
                       job=job, position=server.queue.position(job),
                       summary=(raced.summary[:1].upper() + raced.summary[1:] if raced
                                else _summary(job.ranking) if job.ranking else None),
                       rows=_ranking_rows(job.ranking) if job.ranking else [],
                       raced=raced, figure_names=[f for f in FIGURES if f != "ranking"])


async def job_events(request: Request):
    """The job's progress as server-sent events: ``queue`` (its place in the line),
    ``progress`` (one per model row), ``settled`` (the ranking or the error is there)."""
    server = _server(request)
    job = _job(request)
    if job is None:
        return _gone(request)

    def event(kind: str, data) -> str:
        return f"event: {kind}\ndata: {json.dumps(data, default=_jsonable)}\n\n"

    async def stream():
        sent, place = 0, None
        while True:
            position = server.queue.position(job)
            if job.state == jobs.QUEUED and position != place:
                place = position
                yield event("queue", {"position": position})
            elif job.state != jobs.QUEUED and place != "running":
                place = "running"
                yield event("running", {"state": job.state})
            rows = job.progress[sent:]
            for row in rows:
                yield event("progress", {**row, "line": jobs.progress_line(row)})
            sent += len(rows)
            if job.settled:
                yield event("settled", {"state": job.state, "error": job.error})
                return
            await asyncio.sleep(0.2)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store",
                                      "X-Accel-Buffering": "no"})


async def job_figure(request: Request):
    job = _job(request)
    figure = request.path_params["figure"]
    if job is None or figure not in FIGURES:
        return _gone(request) if job is None else Response("no such figure", 404)
    end = time.monotonic() + FIGURE_WAIT_S
    while job.figures is None and job.figures_error is None \
            and job.state not in (jobs.DONE, jobs.FAILED):
        if time.monotonic() > end:
            return Response("the figures are not drawn yet", 503,
                            media_type="text/plain")
        await asyncio.sleep(0.1)
    if job.figures is None:
        reason = job.figures_error or job.error or "no figures for this search"
        return Response(reason, 404, media_type="text/plain")
    return Response(job.figures[figure], media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


# -- history ----------------------------------------------------------------------


def _history(idx):
    from .. import history

    return history.targets(index=idx)


def _past(idx, key: str):
    from .. import history

    return history.target(key, index=idx)


async def history_page(request: Request):
    server = _server(request)
    targets = await server.call(_history)
    return server.page(request, "history.html", title="History", nav="history",
                       targets=targets)


async def past_target_page(request: Request):
    server = _server(request)
    try:
        past = await server.call(_past, request.path_params["key"])
    except LookupError as exc:
        return server.page(request, "error.html", 404, title="No such target",
                           message=str(exc))
    again = None
    try:
        path = safety.resolve_data_path(past.source, server.settings.data)
        again = "/search?" + urlencode({"path": str(path)})
    except TargetError:
        pass
    return server.page(request, "past.html", title=f"History: {past.source}",
                       nav="history", past=past, again=again, ranking_query=_ranking_query)


def _ranking_query(ranking) -> str:
    """The search form's fields for a past ranking's estimator and options."""
    query = {"scorer": ranking.estimator}
    query.update({k: v for k, v in ranking.params.items() if k in ("dim", "metric", "seed")})
    return urlencode(query)


# -- JSON ------------------------------------------------------------------------------


async def api_index(request: Request):
    return _json({"zooindex": __version__, "index": str(_server(request).settings.index),
                  "read_only": _server(request).settings.read_only,
                  "routes": ["/api/models", "/api/models/{name}", "/api/layers/{name}",
                             "/api/scorers", "POST /api/search", "/api/search/{id}",
                             "/api/history", "/api/history/{key}"]})


async def api_models(request: Request):
    server = _server(request)
    try:
        flt, _ = _zoo_filter(request.query_params)
    except ZooIndexError as exc:
        return _json({"error": str(exc)}, 400)

    def ls(idx):
        from ..zoo import ls as listing

        return listing(index=idx, filter=flt)

    return _json(await server.call(ls))


async def api_model(request: Request):
    server = _server(request)

    def show(idx, name):
        from ..zoo import show as shown

        return shown(name, index=idx)

    try:
        return _json(await server.call(show, request.path_params["name"]))
    except NotIndexedError as exc:
        return _json({"error": str(exc)}, 404)


async def api_layers(request: Request):
    server = _server(request)

    def layers(idx, name):
        record = idx.catalogue.get_model(name)
        return [{**l.to_dict(), "is_default": l.name == record.default_layer}
                for l in record.layers]

    try:
        return _json(await server.call(layers, request.path_params["name"]))
    except NotIndexedError as exc:
        return _json({"error": str(exc)}, 404)


async def api_scorers(request: Request):
    return _json(_scorer_names())


def job_json(server: Server, job: jobs.Job) -> dict:
    """A job as the API shows it; ``ranking`` mirrors :class:`zooindex.Ranking`, and
    for a search on a budget (its last round) each row has its ``images_seen``;
    ``budget`` mirrors :meth:`zooindex.budget.Budgeted.to_dict` with its ``dropped``
    models (``None``: a full search)."""
    out = {"id": job.id, "state": job.state, "position": server.queue.position(job),
           "target": job.target_info or {"source": job.label}, "error": job.error,
           "progress": list(job.progress), "page": f"/search/{job.id}",
           "history": f"/history/{job.target_key}" if job.target_key else None,
           "ranking": None, "budget": None, "figures": None}
    ranking = job.ranking
    if ranking is not None:
        out["ranking"] = {
            "target": ranking.target, "n": ranking.n, "classes": ranking.classes,
            "scorers": ranking.scorers, "members": ranking.members, "dim": ranking.dim,
            "metric": ranking.metric,
            "layer": ranking.options.layer if ranking.options else None,
            "seconds": round(ranking.seconds, 3), "stats": ranking.stats,
            "notes": ranking.notes, "confidence": ranking.confidence,
            "results": _ranking_rows(ranking)}
    if job.budgeted is not None:
        raced = job.budgeted
        for row in out["ranking"]["results"]:
            row["images_seen"] = raced.seen.get(row["model"])
        out["budget"] = {**raced.to_dict(), "dropped": raced.dropped}
    if job.figures is not None:
        out["figures"] = {name: f"/search/{job.id}/figures/{name}.png" for name in FIGURES}
    elif job.figures_error:
        out["figures_error"] = job.figures_error
    return out


async def _api_wait(request: Request, job: jobs.Job) -> None:
    try:
        wait = float(request.query_params.get("wait") or 0)
    except ValueError:
        wait = 0.0
    if wait > 0:
        await run_in_threadpool(_server(request).queue.wait, job,
                                min(wait, MAX_API_WAIT_S))


async def api_search(request: Request):
    server = _server(request)
    try:
        job = await _new_job(request)
    except (ZooIndexError, ValueError) as exc:
        return _json({"error": str(exc)}, _error_status(exc))
    await _api_wait(request, job)
    status = 200 if job.settled else 202
    return _json(job_json(server, job), status,
                 headers={"Location": f"/api/search/{job.id}"})


async def api_job(request: Request):
    job = _job(request)
    if job is None:
        return _gone(request)
    await _api_wait(request, job)
    return _json(job_json(_server(request), job))


async def api_history(request: Request):
    targets = await _server(request).call(_history)
    return _json([t.to_dict(rankings=False) for t in targets])


async def api_past_target(request: Request):
    try:
        past = await _server(request).call(_past, request.path_params["key"])
    except LookupError as exc:
        return _json({"error": str(exc)}, 404)
    return _json(past.to_dict())


__all__ = ["create_app", "Settings", "Server", "DEFAULT_MAX_UPLOAD", "job_json"]


def _depends_on(scorers, option: str) -> bool:
    """For the job page's pills: a scorer name the form let through but the registry
    does not know shows every option rather than failing the page."""
    from ..errors import ZooIndexError
    from ..estimators.combine import depends_on

    try:
        return depends_on(scorers or ("recommended",), option)
    except ZooIndexError:
        return True
