"""Log lines, as text or as JSON (``PACKYARD_LOG_FORMAT=json``), carrying a request id.

The id comes from the request's ``X-Request-Id`` when it is sane, is made up otherwise,
and goes back in the response (``RequestIds``). Tasks sent while the request is served
carry it in their headers (``workers.dispatch``), so the worker's lines about a file show
the id of the request that uploaded it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
TASK_HEADER = "packyard_request_id"  # the task message header that carries it
_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

request_id: ContextVar[str | None] = ContextVar("packyard_request_id", default=None)
task_name: ContextVar[str | None] = ContextVar("packyard_task", default=None)


class RequestIds:
    """WSGI middleware: one id per request, in the logs' context and the response."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        rid = given if _SANE_ID.fullmatch(given) else _new_id()
        token = request_id.set(rid)

        def with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # A new list: the response cache answers with the same list for every hit.
            return start_response(status, [*headers, (REQUEST_ID_HEADER, rid)], exc_info)

        try:
            return self.wsgi_app(environ, with_id)
        finally:
            request_id.reset(token)


def _new_id() -> str:
    """A random prefix per process, then a counter: unique, and far cheaper per request
    than a uuid4 (a getrandom call each)."""
    return f"{_prefix}{next(_counter):08x}"


def _reseed() -> None:
    global _prefix, _counter
    _prefix, _counter = uuid.uuid4().hex[:16], itertools.count()


_prefix, _counter = "", itertools.count()
_reseed()
os.register_at_fork(after_in_child=_reseed)  # uWSGI forks its processes from one import


class ContextFilter(logging.Filter):
    """Puts the request id (and the task's name, in a worker) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task = task_name.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, task, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "task": getattr(record, "task", None),
            "pid": record.process,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(log_format: str, level: int | str = logging.INFO) -> None:
    """The root logger writes to stderr, as JSON or text, with the request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
