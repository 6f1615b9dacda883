"""The ``packyard`` command: serve, worker, create-admin, db upgrade, upstream, backup,
check. Thin: calls the domain."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from app.config import EMBEDDED_BROKER, load_env_file
from app.domain.accounts import create_personal_token, ensure_admin
from app.domain.audit import SYSTEM
from app.domain.backup.create import BackupRefused, create_backup
from app.domain.backup.layout import BackupInvalid
from app.domain.backup.restore import RestoreRefused, restore_backup
from app.domain.errors import PackyardError
from app.domain.storage import StorageError, backend_for_url
from app.domain.storage_check import check_storage, repair
from app.domain.storage_migration import describe, migrate_storage, problems, recorded_hashes
from app.domain.upstream.records import cache_totals, files_query, purge
from app.domain.users import set_password
from app.extensions import db
from app.metrics.exposition import default_directory, serve_metrics, use_directory
from app.migrations import MigrationRefused, upgrade
from app.models import User
from app.plugin_manager import storage_factories
from app.runtime import plugin_manager, storage
from app.serving import DEFAULT_THREADS, serve_command
from app.web.ui.filters import filesize

DEFAULT_ADMIN = "root"  # GitLab's; "admin" is a reserved top-level route


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
        _upgrade()
    click.echo("database is up to date")


@main.group("storage")
def storage_group() -> None:
    """Package file storage."""


@storage_group.command("migrate")
@click.option("--to", "target_url", required=True, help="Storage URL to copy every file to.")
@click.option("--from", "source_url", help="Copy from here, not from PACKYARD_STORAGE_URL.")
def storage_migrate(target_url: str, source_url: str | None) -> None:
    """Copy every file to another storage, verifying each; resumable, safe while serving.

    Then set PACKYARD_STORAGE_URL to the new URL and restart, and run it once more with
    --from OLD_URL to pick up what was uploaded in between."""
    app = create_app()
    with app.app_context():
        source_url = source_url or app.config["STORAGE_URL"]
        if source_url == target_url:
            raise click.UsageError("--to is the storage files are copied from")
        factories = storage_factories(plugin_manager())
        source = backend_for_url(source_url, factories)
        target = backend_for_url(target_url, factories)
        try:
            target.check()
        except StorageError as exc:
            raise click.ClickException(f"cannot write to {target_url}: {exc.message}") from None
        recorded = recorded_hashes(db.session)
        db.session.remove()
    click.echo(f"copying from {source_url} to {target_url}")
    progress = migrate_storage(source, target, recorded, lambda p: click.echo(describe(p)))
    for line in problems(progress):
        click.echo(line, err=True)
    if not progress.ok:
        raise click.ClickException("some files were not copied (above); run it again")
    click.echo(f"done: set PACKYARD_STORAGE_URL={target_url} and restart")


def _upgrade() -> None:
    try:
        upgrade()
    except MigrationRefused as exc:
        raise click.ClickException(str(exc)) from None


@main.group("backup")
def backup_group() -> None:
    """Backups of the database and files."""


@backup_group.command("create")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
def backup_create(path: Path) -> None:
    """Write a consistent backup of the database and files to PATH (a new directory);
    safe while the registry serves."""
    app = create_app()
    with app.app_context():
        try:
            manifest = create_backup(db.engine, storage(), path, click.echo)
        except BackupRefused as exc:
            raise click.ClickException(str(exc)) from None
    rows = sum(t.rows for t in manifest.tables)
    click.echo(f"backup {manifest.id}: {rows} rows, {len(manifest.files)} files in {path}")
    for problem in manifest.problems:
        click.echo(f"not backed up: {problem}", err=True)
    if manifest.problems:
        raise click.ClickException("some files were not backed up (above)")


@backup_group.command("restore")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
def backup_restore(path: Path) -> None:
    """Restore the backup in PATH into this (empty) instance; run it again to continue an
    interrupted restore."""
    app = create_app()
    with app.app_context():
        try:
            manifest = restore_backup(db.engine, storage(), path, upgrade, click.echo)
        except (BackupInvalid, RestoreRefused) as exc:
            raise click.ClickException(str(exc)) from None
        _upgrade()  # a backup of an older release: bring the schema up to this one
    click.echo(f"restored backup {manifest.id} of {manifest.created_at}")


@main.command("check")
@click.option("--repair", "do_repair", is_flag=True, help="Fix what can be fixed.")
@click.option(
    "--grace", default=60.0, show_default=True,
    help="Seconds an orphan file must stay without a row before --repair removes it.",
)  # fmt: skip
def check(do_repair: bool, grace: float) -> None:
    """Find rows without files, files without rows and hash mismatches; exit 1 if any."""
    app = create_app()
    with app.app_context():
        findings = check_storage(db.session, storage(), click.echo)
        if do_repair:
            repair(db.session, storage(), findings, grace)
    for finding in findings:
        click.echo(finding.describe())
        if finding.repaired:
            click.echo(f"  repaired: {finding.repaired}")
        if finding.unrepairable:
            click.echo(f"  cannot repair: {finding.unrepairable}")
    if findings:
        raise click.ClickException(f"{len(findings)} problems found (above)")
    click.echo("no problems found")


@main.group("upstream")
def upstream_group() -> None:
    """The pull-through cache of the upstream index."""


@upstream_group.command("list")
@click.argument("name", required=False)
@click.option("--limit", default=100, show_default=True, help="Most recently used first.")
def upstream_list(name: str | None, limit: int) -> None:
    """The files pulled from the upstream (of NAME, or all): size, uses, last use."""
    with create_app().app_context():
        rows = db.session.execute(files_query(name).limit(limit)).scalars().all()
        totals = cache_totals(db.session)
    for row in rows:
        used = row.last_used_at or row.created_at
        state = "stored" if row.stored else f"not stored ({row.failures} failed)"
        click.echo(
            f"{row.normalized_name:30} {row.filename:60} {filesize(row.size):>10} "
            f"{row.hit_count:6} hits  last used {used:%Y-%m-%d %H:%M}  {state}"
        )
    click.echo(
        f"{totals.fetches} files fetched ({filesize(totals.bytes_stored)} kept), "
        f"{totals.hits} answered from the cache, {totals.failures} failures, "
        f"{totals.pages} pages kept"
    )


@upstream_group.command("purge")
@click.argument("name", required=False)
@click.option("--yes", is_flag=True, help="Do not ask before purging everything.")
def upstream_purge(name: str | None, yes: bool) -> None:
    """Remove the cached files and pages of NAME, or of every name (audited)."""
    if not name and not yes:
        click.confirm("Purge every cached upstream file and page?", abort=True)
    app = create_app()
    with app.app_context():
        total = db.session.execute(
            select(func.count()).select_from(files_query(name).subquery())
        ).scalar_one()
        with click.progressbar(length=total, label="Purging", show_pos=True) as bar:
            purged = purge(db.session, storage(), name, SYSTEM, progress=bar.update)
    click.echo(f"purged {purged.files} files ({filesize(purged.bytes)}) and {purged.pages} pages")


@main.command("create-admin")
@click.argument("username")
@click.option(
    "--password", "with_password", is_flag=True,
    help="Set a password to sign in with (prompted, or one line read from stdin).",
)  # fmt: skip
def create_admin(username: str, with_password: bool) -> None:
    """Create (or reuse) an admin and print a new api-scoped token as the last line."""
    password = _read_password() if with_password else None
    app = create_app()
    with app.app_context():
        try:
            user = ensure_admin(db.session, username)
            if password is not None:
                set_password(db.session, user, password, SYSTEM)
        except PackyardError as exc:
            raise click.ClickException(exc.message) from None
        name = user.username  # as stored: found whatever the case given
        _token, secret = create_personal_token(db.session, user, "create-admin", ["api"], None)
    click.echo(f"admin user: {name}")
    if password is not None:
        click.echo(f"password set: sign in at /users/sign_in as {name}")
    click.echo(secret)


def _read_password() -> str:
    """Prompted twice on a terminal; otherwise the first line of stdin."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@main.command("worker", context_settings={"ignore_unknown_options": True})
@click.option(
    "--metrics-port", type=int, default=None,
    help="Serve this worker's Prometheus metrics on 127.0.0.1:PORT/metrics (a worker on a "
    "host of its own; beside `packyard serve`, its /-/metrics has them already).",
)  # fmt: skip
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...], metrics_port: int | None, metrics_host: str) -> None:
    """A Celery worker for the configured broker (same as ``celery -A workers worker``)."""
    app = create_app()
    # Counted in the directory `packyard serve` on this host scrapes (if any).
    use_directory(default_directory(app.config["DATA_DIR"]), clean=False)
    if metrics_port is not None:
        serve_metrics(metrics_host, metrics_port)
    celery = app.extensions["celery"]
    celery.worker_main(["worker", "--loglevel=INFO", *celery_args])


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not start the embedded worker.")
@click.option("--workers", default=None, type=int, help="Web worker processes.")
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads per web process (see the README's Production section).",
)
def serve(host: str, port: int, no_worker: bool, workers: int | None, threads: int) -> None:
    """Serve the web app on uWSGI (and the embedded worker unless --no-worker)."""
    _check_port_free(host, port)
    app = create_app()
    with app.app_context():
        if app.config["DATABASE_URL"].startswith("sqlite"):
            _upgrade()
        _first_run_admin(app)
    # The uWSGI processes and the worker count in files here; /-/metrics sums them.
    use_directory(default_directory(app.config["DATA_DIR"]), clean=True)
    url = f"http://{host}:{port}/"
    click.echo(f"Packyard serving on {url}", err=False)
    sys.stdout.flush()
    worker = None if no_worker else _worker_command(app)
    command = serve_command(host, port, workers, worker=worker, threads=threads)
    sys.stderr.flush()
    # From here on, the small supervisor runs the server and the worker instead of this
    # process and the app it loaded (app.supervisor).
    os.execv(command[0], command)


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
        # As servers do: connections in TIME_WAIT from a previous run do not block it.
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
    click.echo(
        f"To sign in to the web pages, give it a password: packyard create-admin "
        f"{DEFAULT_ADMIN} --password"
    )


def _worker_command(app: Flask) -> list[str]:
    # The embedded worker runs as whoever ran `packyard serve`: no root lecture.
    quiet_as_root = "ignore:You're running the worker with superuser"
    return [sys.executable, "-W", quiet_as_root, "-m", "celery", "--quiet", "-A", "workers",
            "worker", "--loglevel=WARNING", *_worker_pool(app), "--without-mingle",
            "--without-gossip"]  # fmt: skip


def _worker_pool(app: Flask) -> list[str]:
    """With the embedded broker (SQLite), one consumer is enough, and it runs its tasks
    itself (``solo``): a prefork pool of one would add a second process of 60 MiB."""
    if app.config["BROKER_URL"] == EMBEDDED_BROKER:
        return ["--pool=solo"]
    return [f"--concurrency={os.cpu_count() or 2}"]
