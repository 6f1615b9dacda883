"""A task's log lines carry the id of the request that sent it (``app.logs``), and, with
``PACKYARD_LOG_FORMAT=json``, the worker logs JSON like the web."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from app.logs import TASK_HEADER, ContextFilter, JsonFormatter, request_id, task_name

_tokens: dict[str, tuple[Any, Any]] = {}  # task id -> context tokens to reset at postrun


@after_setup_logger.connect
@after_setup_task_logger.connect
def _formats(logger: logging.Logger, **_: Any) -> None:
    as_json = current_app.flask_app.config["LOG_FORMAT"] == "json"
    for handler in logger.handlers:
        handler.addFilter(ContextFilter())
        if as_json:
            handler.setFormatter(JsonFormatter())


@task_prerun.connect
def _enter(task_id: str, task: Any, **_: Any) -> None:
    sent_by = getattr(task.request, TASK_HEADER, None)
    _tokens[task_id] = (request_id.set(sent_by), task_name.set(task.name))


@task_postrun.connect
def _leave(task_id: str, **_: Any) -> None:
    tokens = _tokens.pop(task_id, None)
    if tokens is not None:
        request_id.reset(tokens[0])
        task_name.reset(tokens[1])
