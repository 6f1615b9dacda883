"""A WSGI app that fails outside any view, adapted as ``packyard serve`` adapts its app;
``tests/test_serving.py`` serves it on uWSGI (``--module tests.failing_wsgi:create()``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from app.serving import WSGIApp, for_uwsgi


def _fails(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/after-start":
        # As Flask does when its teardown fails: the response was started, then it raises.
        start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("failed outside any view")


def create() -> WSGIApp:
    return for_uwsgi(_fails)
