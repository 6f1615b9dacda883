"""The ``packyard`` command: serve, worker, create-admin, db upgrade. Thin: calls the domain."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.config import EMBEDDED_BROKER, load_env_file
from app.domain.accounts import create_personal_token, ensure_admin
from app.extensions import db
from app.migrations import upgrade
from app.models import User

DEFAULT_ADMIN = "admin"


@click.group()
def main() -> None:
    """Packyard: a private Python package registry."""
    load_env_file()


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations (Alembic)."""
    with create_app().app_context():
        upgrade()
    click.echo("database is up to date")


@main.command("create-admin")
@click.argument("username")
def create_admin(username: str) -> None:
    """Create (or reuse) an admin and print a new api-scoped token as the last line."""
    app = create_app()
    with app.app_context():
        user = ensure_admin(db.session, username)
        _token, secret = create_personal_token(db.session, user, "create-admin", ["api"], None)
    click.echo(f"admin user: {username}")
    click.echo(secret)


@main.command("worker", context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """A Celery worker for the configured broker (same as ``celery -A workers worker``)."""
    celery = create_app().extensions["celery"]
    celery.worker_main(["worker", "--loglevel=INFO", *celery_args])


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not start the embedded worker.")
@click.option("--workers", default=None, type=int, help="Web worker processes.")
def serve(host: str, port: int, no_worker: bool, workers: int | None) -> None:
    """Serve the web app on uWSGI (and the embedded worker unless --no-worker)."""
    _check_port_free(host, port)
    app = create_app()
    with app.app_context():
        if app.config["DATABASE_URL"].startswith("sqlite"):
            upgrade()
        _first_run_admin(app)
    url = f"http://{host}:{port}/"
    click.echo(f"Packyard serving on {url}", err=False)
    sys.stdout.flush()
    worker_process = None if no_worker else _start_worker(app)
    try:
        _run_server(host, port, workers)
    finally:
        if worker_process is not None:
            worker_process.send_signal(signal.SIGTERM)
            try:
                worker_process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker_process.kill()


def _check_port_free(host: str, port: int) -> None:
    """Fail now, with a clear message, if ``host:port`` is taken.

    uWSGI would fail later, among its start-up lines; servers that bind with SO_REUSEPORT
    (granian, gunicorn's ``reuse_port``) would even share the port with a second server.
    """
    if port == 0:
        raise click.BadParameter(
            "give a port number: the URL printed and served must be known", param_hint="--port"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn does: connections in TIME_WAIT from a previous run do not block it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))  # no SO_REUSEPORT: fails if anyone holds the port
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _first_run_admin(app: Flask) -> None:
    if db.session.execute(select(func.count()).select_from(User)).scalar_one():
        return
    user = ensure_admin(db.session, DEFAULT_ADMIN)
    _token, secret = create_personal_token(db.session, user, "first run", ["api"], None)
    click.echo(f"Created admin user {DEFAULT_ADMIN!r}; its api token (shown once):")
    click.echo(f"  {secret}")


def _start_worker(app: Flask) -> subprocess.Popen[bytes]:
    # A single embedded worker process; with SQLite one consumer is enough.
    concurrency = "1" if app.config["BROKER_URL"] == EMBEDDED_BROKER else str(os.cpu_count() or 2)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "--quiet", "-A", "workers", "worker",
         "--loglevel=WARNING", f"--concurrency={concurrency}", "--without-mingle",
         "--without-gossip"],
        # The embedded worker runs as whoever ran `packyard serve`; no root lecture.
        env={**os.environ, "PYTHONWARNINGS": "ignore:You're running the worker with superuser"},
    )  # fmt: skip


# uWSGI's request log in Apache's combined format, plus the time taken.
ACCESS_LOG_FORMAT = (
    '%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) '
    '"%(referer)" "%(uagent)" %(msecs)ms'
)


UWSGI_APP = "app.serving:create_uwsgi_app()"


def _run_server(host: str, port: int, workers: int | None, app: str = UWSGI_APP) -> None:
    """Serve the WSGI app ``app`` (uWSGI's ``module:callable``) on uWSGI until SIGTERM/SIGINT.

    uWSGI serves Packyard's pages about 4 times as fast as gunicorn here and keeps the
    reason phrase twine shows (granian, faster still, drops it): ``bench/servers.py``
    measures the candidates, ``bench/SERVERS.md`` has the figures. uWSGI runs as a child
    process (pyuwsgi ends its process with exit(), which would skip our clean-up).
    """
    command = [sys.executable, "-c", "import sys, pyuwsgi; pyuwsgi.run(sys.argv[1:])"]
    server = subprocess.Popen([*command, *_uwsgi_options(host, port, workers, app)])
    forward = lambda signum, _frame: server.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode != 0:
        raise click.ClickException(f"uWSGI exited with status {returncode}")


def _uwsgi_options(host: str, port: int, workers: int | None, app: str) -> list[str]:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    access_log = os.environ.get("PACKYARD_ACCESS_LOG")
    if not access_log:
        logging = ["--disable-logging"]
    else:
        destination = "stdio" if access_log == "-" else f"file:{access_log}"
        logging = ["--req-logger", destination, "--log-format", ACCESS_LOG_FORMAT]
    return [
        "--strict",  # an unknown option is an error, not a warning
        "--http11-socket", address,
        "--module", app,
        "--need-app",
        "--master",
        "--processes", str(workers or min(os.cpu_count() or 1, 8)),
        "--threads", "4",
        "--thunder-lock",  # one process accepts at a time: connections spread evenly
        "--shared-import", "app",  # imported once, before the fork: less CPU and memory
        "--lazy-apps",  # each process makes its own app: no connections shared over fork
        "--single-interpreter",
        "--die-on-term",  # SIGTERM stops (uWSGI's default is to reload)
        "--listen", str(_listen_backlog()),
        "--buffer-size", "65535",  # request headers up to 64 KiB (default: 4 KiB)
        "--socket-timeout", "120",  # a slow client's upload may pause (default: 4 s)
        # One request per connection, said plainly: uWSGI's keep-alive on this socket drops
        # idle connections that clients would then try to reuse.
        "--add-header", "Connection: close",
        "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception",
        *logging,
    ]  # fmt: skip


def _listen_backlog(wanted: int = 1024) -> int:
    """uWSGI refuses to start with a backlog over the kernel's ``somaxconn``."""
    try:
        return min(wanted, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return 128
