"""Caching of the hot read paths, kept exact by counters that writes move.

- ``generation``: the counters (the data and access generations) and the session listeners
  that move them;
- ``process``: each web process's LRU caches, each dropped whenever its generation moved;
- ``responses``: the WSGI middleware that answers repeats of index requests.

The counters' rows are a model like any other: ``app.models.cache``.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask

from app.caching.generation import GenerationReader, watch_writes
from app.caching.process import FOLLOWS_ACCESS, ProcessCache
from app.caching.responses import ResponseCache
from app.extensions import db


def init_app(app: Flask, path_marker: str, credential_headers: Iterable[str]) -> None:
    """Give ``app`` its process caches, and the response cache for paths with
    ``path_marker`` keyed on ``credential_headers``.

    Writes through ``db.session`` move the generations from now on."""
    watch_writes(db.session)
    with app.app_context():  # the engine is the app's
        reader = GenerationReader(db.engine)
    cache = app.extensions["packyard.cache"] = ProcessCache(reader)
    app.extensions["packyard.access_cache"] = ProcessCache(reader, follows=FOLLOWS_ACCESS)
    responses = ResponseCache(app.wsgi_app, cache, path_marker, credential_headers)
    app.wsgi_app = responses  # type: ignore[method-assign]
