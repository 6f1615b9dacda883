"""Caching of the hot read paths, kept exact by one counter that every write moves.

- ``generation``: the counter (the cache generation) and the session listeners that move it;
- ``process``: each web process's LRU cache, dropped whenever the generation moved;
- ``responses``: the WSGI middleware that answers repeats of index requests.

The counter's row is a model like any other: ``app.models.cache``.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask

from app.caching.generation import GenerationReader, watch_writes
from app.caching.process import ProcessCache
from app.caching.responses import ResponseCache
from app.extensions import db


def init_app(app: Flask, path_marker: str, credential_headers: Iterable[str]) -> None:
    """Give ``app`` its process cache, and the response cache for paths with ``path_marker``
    keyed on ``credential_headers``.

    Writes through ``db.session`` move the generation from now on."""
    watch_writes(db.session)
    with app.app_context():  # the engine is the app's
        cache = app.extensions["packyard.cache"] = ProcessCache(GenerationReader(db.engine))
    responses = ResponseCache(app.wsgi_app, cache, path_marker, credential_headers)
    app.wsgi_app = responses  # type: ignore[method-assign]
