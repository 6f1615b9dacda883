"""Configuration: defaults, then PACKYARD_* environment variables, then a test mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url

DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024
# Text form fields (a long description) are held in memory, files are streamed.
DEFAULT_MAX_FORM_FIELD_SIZE = 4 * 1024 * 1024
DEFAULT_UPSTREAM_URL = "https://pypi.org/simple/"
UPSTREAM_MODES = ("off", "redirect", "cache")
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
        # Downloads from storage that can sign URLs (s3://) answer a redirect to one.
        STORAGE_REDIRECT=False,
        MAX_UPLOAD_SIZE=DEFAULT_MAX_UPLOAD_SIZE,
        # Flask's name for the per-field limit; set here, as Flask's own default (500 kB)
        # would otherwise win.
        MAX_FORM_MEMORY_SIZE=DEFAULT_MAX_FORM_FIELD_SIZE,
        # Names no local project has, or ever had, go to this index (app.domain.upstream):
        # UPSTREAM_MODE off (404), redirect (307) or cache (a pull-through cache). Groups and
        # projects may override it; the older FORWARDING=false means off.
        UPSTREAM_URL=DEFAULT_UPSTREAM_URL,
        UPSTREAM_MODE=None,
        FORWARDING=True,
        UPSTREAM_TTL=600,  # seconds a kept page is served before the workers refresh it
        UPSTREAM_KEEP_DAYS=90,  # cached files unused this long are removed
        UPSTREAM_TIMEOUT=3,  # seconds to connect to the upstream
        UPSTREAM_READ_TIMEOUT=30,  # seconds the upstream may stay silent mid-answer
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
        # Password sign-in (app.domain.sign_in_limits): failed attempts allowed per username
        # and per client address within SIGN_IN_WINDOW seconds; 0 turns a limit off.
        SIGN_IN_FAILURES_PER_USER=10,
        SIGN_IN_FAILURES_PER_ADDRESS=50,
        SIGN_IN_WINDOW=900,
        # Reliability (seconds): an unacknowledged task returns to the queue after
        # VISIBILITY_TIMEOUT (Redis); a file still processing REDELIVER_AFTER after its
        # task was sent is sent again by the workers' sweeper, which looks every
        # SWEEP_INTERVAL.  Together they bound how long a lost task delays a file.
        VISIBILITY_TIMEOUT=60,
        REDELIVER_AFTER=60,
        SWEEP_INTERVAL=15,
        # Webhooks (workers.tasks.hooks): seconds a receiver has to answer, retries after
        # a failed POST, and the first retry's delay (doubled for each next one).
        WEBHOOK_TIMEOUT=5,
        WEBHOOK_RETRIES=5,
        WEBHOOK_RETRY_DELAY=10,
        # Seconds between two writes of each web process's download counts (at most 60:
        # the contract wants them current within a minute).
        DOWNLOAD_FLUSH_INTERVAL=5,
        # Seconds between two applications of the retention policies by the workers.
        RETENTION_INTERVAL=3600,
        METRICS_TOKEN=None,  # when set, /-/metrics wants it as a Bearer token
        LOG_FORMAT="text",  # or "json": one JSON object per log line, with the request id
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
    config["STORAGE_REDIRECT"] = _as_bool(config["STORAGE_REDIRECT"])
    config["UPSTREAM_URL"] = str(config["UPSTREAM_URL"] or "").strip()
    config["UPSTREAM_MODE"] = _upstream_mode(config["UPSTREAM_MODE"], config["FORWARDING"])
    for name, minimum in (("UPSTREAM_TTL", 0), ("UPSTREAM_KEEP_DAYS", 1)):
        config[name] = _number(config, name, minimum, int)
    config["WEBHOOK_RETRIES"] = _number(config, "WEBHOOK_RETRIES", 0, int)
    config["RETENTION_INTERVAL"] = _number(config, "RETENTION_INTERVAL", 1, float)
    for name in ("UPSTREAM_TIMEOUT", "UPSTREAM_READ_TIMEOUT", "WEBHOOK_TIMEOUT"):
        config[name] = _number(config, name, 0.1, float)
    config["WEBHOOK_RETRY_DELAY"] = _number(config, "WEBHOOK_RETRY_DELAY", 0, float)
    config["DOWNLOAD_FLUSH_INTERVAL"] = min(
        _number(config, "DOWNLOAD_FLUSH_INTERVAL", 0.1, float), 60.0
    )
    config["SQLALCHEMY_DATABASE_URI"] = database_uri(config["DATABASE_URL"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["DATABASE_URL"])
    config["MAX_FORM_MEMORY_SIZE"] = int(config["MAX_FORM_MEMORY_SIZE"])
    # The upload view resizes this per request from the project's effective limit.
    config["MAX_CONTENT_LENGTH"] = request_size_limit(config["MAX_UPLOAD_SIZE"], config)


def request_size_limit(file_limit: int, config: Mapping[str, Any]) -> int:
    """The largest request body: a file of ``file_limit`` bytes and its text fields.

    Room for four fields at their limit covers a description at its limit, the other
    metadata and the multipart framing; no upload the fields' own limit admits is bigger.
    """
    return file_limit + 4 * int(config["MAX_FORM_MEMORY_SIZE"])


def _as_bool(value: Any) -> bool:
    """JSON-parsed env values arrive as bools or numbers; other spellings as strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _upstream_mode(value: Any, forwarding: bool) -> str:
    """The instance's upstream mode; unset, it follows FORWARDING (redirect, or off)."""
    if value is None or str(value).strip() == "":
        return "redirect" if forwarding else "off"
    mode = str(value).strip().lower()
    if mode not in UPSTREAM_MODES:
        raise ValueError(f"PACKYARD_UPSTREAM_MODE must be one of {', '.join(UPSTREAM_MODES)}")
    return mode


def _number(config: Mapping[str, Any], name: str, minimum: float, kind: type) -> Any:
    try:
        number = kind(config[name])
    except (TypeError, ValueError):
        number = None
    if isinstance(config[name], bool) or number is None or number < minimum:
        raise ValueError(f"PACKYARD_{name} must be a number of at least {minimum}")
    return number


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
