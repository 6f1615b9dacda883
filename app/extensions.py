"""Flask extensions, created unbound and initialised by the app factory."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.domain.errors import DATABASE_OUTAGES
from app.models.base import Base

db = SQLAlchemy(model_class=Base)


def init_database(app: Flask) -> None:
    db.init_app(app)
    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs
    # them in reverse) and leaves that one nothing to do.
    app.teardown_appcontext(_end_session)


def _end_session(_error: BaseException | None) -> None:
    """End the request's (or task's) session, even when its connection has died.

    Closing rolls back an open transaction; on a connection the server has closed that
    fails, and the error would escape the request after its answer was made. The failed
    close has already invalidated the connection and ended the transaction, so a second
    close succeeds.
    """
    try:
        db.session.remove()
    except DATABASE_OUTAGES:
        db.session.remove()


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The embedded default has several processes (web workers, the Celery worker) on one
    # file: WAL lets readers proceed while one writes.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
