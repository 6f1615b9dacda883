"""The Celery app and its tasks. ``celery -A workers worker`` finds ``workers.celery``."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Built on first use, so importing a task module does not create an app.
    if name in ("celery", "app"):
        from app import create_app

        return create_app().extensions["celery"]
    raise AttributeError(name)
