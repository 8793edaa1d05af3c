"""A web page for the zoo: browse it, search it, see why (``zooindex serve``).

People who never open a terminal see which models the team's index holds, what each
expects, and which fits their data, with the pictures ``zooindex report`` draws; scripts
get the same data as JSON under ``/api``. Routes: :mod:`zooindex.web.app`; searches
queued one at a time per index: :mod:`zooindex.web.jobs`; what the server accepts from a
browser (uploads, archives, paths): :mod:`zooindex.web.safety`.

The stack is Starlette, Jinja2 and uvicorn (the ``web`` extra). Starlette is the small,
well-kept ASGI toolkit under FastAPI: routing, form and upload parsing, streaming
responses for server-sent events, static files, and an in-process test client, with
nothing to generate; the pages need no OpenAPI schema or request models, so FastAPI's
layer on top would add weight without use. Jinja2 renders every page on the server, so
the pages work without a JavaScript build step, offline, from files inside the package:
one small plain script streams a running search's progress, and the pages work without
it. uvicorn serves the app. A Datasette plugin would browse the SQLite tables well, but
the pages here are the zoo's concepts (a model's layers, a ranking with its figures, a
search in a queue), not its tables.

Nothing here is imported by ``import zooindex`` or by the CLI until ``serve`` runs.
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """The ASGI app: see :func:`zooindex.web.app.create_app`."""
    from .app import create_app as make

    return make(*args, **kwargs)


__all__ = ["create_app"]
