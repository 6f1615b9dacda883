"""Configuration: defaults, then PACKYARD_* environment variables, then a test mapping."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url

DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024
DEFAULT_UPSTREAM_URL = "https://pypi.org/simple/"
EMBEDDED_BROKER = "embedded"
# Seconds a new PostgreSQL connection may take: a request must not wait longer on a
# database that is unreachable (libpq's default is to wait as long as TCP does).
CONNECT_TIMEOUT = 3
LIBPQ = ("psycopg", "psycopg2")  # drivers that take libpq's connect_timeout


def load_env_file(path: Path | None = None) -> None:
    """Read ``./.env`` (if any) into the environment; real environment variables win."""
    from dotenv import load_dotenv

    load_dotenv(path or Path.cwd() / ".env", override=False)


def load_config(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    app.config.update(
        DATA_DIR="./var",
        DATABASE_URL=None,
        BROKER_URL=None,
        STORAGE_URL=None,
        MAX_UPLOAD_SIZE=DEFAULT_MAX_UPLOAD_SIZE,
        # Package forwarding: names no local project has are redirected to this index,
        # unless a group turns it off (app.domain.forwarding).
        UPSTREAM_URL=DEFAULT_UPSTREAM_URL,
        FORWARDING=True,
        SECRET_KEY=None,
        BASE_URL=None,
        PROXY_COUNT=0,
        # The web pages' session cookie (HttpOnly by default): SameSite=Lax, and Secure on
        # HTTPS requests; SESSION_COOKIE_SECURE=true also marks it Secure on plain HTTP.
        SESSION_COOKIE_NAME="packyard_session",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,
        PERMANENT_SESSION_LIFETIME=14 * 24 * 3600,
        LOAD_ENTRYPOINT_PLUGINS=True,
        # Reliability (seconds): an unacknowledged task returns to the queue after
        # VISIBILITY_TIMEOUT (Redis); a file still processing REDELIVER_AFTER after its
        # task was sent is sent again by the workers' sweeper, which looks every
        # SWEEP_INTERVAL.  Together they bound how long a lost task delays a file.
        VISIBILITY_TIMEOUT=60,
        REDELIVER_AFTER=60,
        SWEEP_INTERVAL=15,
    )
    app.config.from_prefixed_env(prefix="PACKYARD")
    app.config.update(overrides or {})
    _derive(app.config)


def _derive(config: dict[str, Any]) -> None:
    """Fill in the defaults that depend on the data directory."""
    data_dir = Path(config["DATA_DIR"]).resolve()
    config["DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config["DATABASE_URL"] = config["DATABASE_URL"] or f"sqlite:///{data_dir}/packyard.db"
    config["STORAGE_URL"] = config["STORAGE_URL"] or f"file://{data_dir}/files"
    config["BROKER_URL"] = config["BROKER_URL"] or EMBEDDED_BROKER
    config["MAX_UPLOAD_SIZE"] = int(config["MAX_UPLOAD_SIZE"])
    config["FORWARDING"] = _as_bool(config["FORWARDING"])
    config["UPSTREAM_URL"] = str(config["UPSTREAM_URL"] or "").strip()
    config["SECRET_KEY"] = config["SECRET_KEY"] or _secret_key(data_dir)
    config["SQLALCHEMY_DATABASE_URI"] = database_uri(config["DATABASE_URL"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["DATABASE_URL"])
    # Text fields (a long description) may be large; files are streamed, not held.
    config.setdefault("MAX_FORM_MEMORY_SIZE", 16 * 1024 * 1024)
    # The upload view resizes this per request from the project's effective limit.
    config["MAX_CONTENT_LENGTH"] = config["MAX_UPLOAD_SIZE"] + config["MAX_FORM_MEMORY_SIZE"]


def _as_bool(value: Any) -> bool:
    """JSON-parsed env values arrive as bools or numbers; other spellings as strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def database_uri(url: str) -> str:
    """The SQLAlchemy URL, with a connect timeout for libpq unless the URL sets its own."""
    parsed = make_url(url)
    libpq = parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in LIBPQ
    if not libpq or "connect_timeout" in parsed.query:
        return url
    timeout = {"connect_timeout": str(CONNECT_TIMEOUT)}
    return parsed.update_query_dict(timeout).render_as_string(hide_password=False)


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def broker_url(config: Mapping[str, Any]) -> str:
    """The Celery broker; the embedded default is a SQLite queue in the data dir."""
    if config["BROKER_URL"] == EMBEDDED_BROKER:
        return f"packyard-sqla+sqlite:///{config['DATA_DIR']}/broker.db"
    return str(config["BROKER_URL"])


def _secret_key(data_dir: Path) -> str:
    """Generated once into the data dir, so sessions survive restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        # Write aside, then link: concurrent starters never read a half-written key.
        fd, tmp = tempfile.mkstemp(dir=data_dir)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
