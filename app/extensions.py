"""Flask extensions, created unbound and initialised by the app factory."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.models.base import Base

db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The embedded default has several processes (web workers, the Celery worker) on one
    # file: WAL lets readers proceed while one writes.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
