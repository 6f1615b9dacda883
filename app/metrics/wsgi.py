"""``RequestMetrics``: the WSGI middleware counting every request, outermost so that the
response cache's answers count too. Cheap: a few string tests, one clock pair, label
children cached per (family, method, status), and counts added in memory (``TALLY``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from app.metrics import HTTP_LATENCY, HTTP_REQUESTS, SERVED_BYTES, file_kind
from app.metrics.tally import TALLY

# Checked in order, on the path: the first match names the request's family.
FAMILIES = (
    ("/packages/pypi/simple", "simple"),
    ("/packages/pypi/files/", "files"),
    ("/packages/pypi", "upload"),
    ("/api/", "api"),
    ("/-/metrics", "metrics"),
    ("/-/health", "ops"),
    ("/-/ready", "ops"),
    ("/_/oidc/", "oidc"),
    ("/static/", "static"),
)


def route_family(path: str) -> str:
    for marker, family in FAMILIES:
        if marker in path:
            return family
    return "ui"


class RequestMetrics:
    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app
        # Label children by their labels: labels() takes a lock and builds a key each time.
        self._children: dict[tuple[str, str, str], Any] = {}
        self._families: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        family = route_family(environ.get("PATH_INFO", ""))
        started = time.perf_counter()

        def counting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            TALLY.observe(self._latency(family), time.perf_counter() - started)
            method = environ.get("REQUEST_METHOD", "")
            TALLY.add(self._requests(family, method if method in _METHODS else "other", status[:3]))
            if family == "files" and status.startswith("200"):
                _count_served(environ.get("PATH_INFO", ""), headers)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, counting)

    def _requests(self, family: str, method: str, status: str) -> Any:
        key = (family, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUESTS.labels(*key)
        return child

    def _latency(self, family: str) -> Any:
        child = self._families.get(family)
        if child is None:
            child = self._families[family] = HTTP_LATENCY.labels(family)
        return child


def _count_served(path: str, headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        if name.lower() == "content-length" and value.isdigit():
            TALLY.add(SERVED_BYTES.labels(file_kind(path)), int(value))


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
