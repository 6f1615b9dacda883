"""Each recent migration steps down and back up on SQLite and PostgreSQL, keeping the data
of the columns it does not own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask

from app.domain.access import MAINTAINER
from app.extensions import db
from app.migrations import alembic_config, upgrade
from tests.conftest import DATABASES, Registry, _migrated_app
from tests.dists import make_wheel
from tests.services import postgres_database

# revision -> (its parent, the columns it adds by table, the tables it creates)
STEPS: dict[str, tuple[str, dict[str, set[str]], set[str]]] = {
    "0018": ("0015", {"cache_generation": {"access_value"}}, set()),
    "0015": (
        "0017",
        {
            "groups": {"retention_keep_n", "retention_prerelease_days"},
            "projects": {"retention_keep_n", "retention_prerelease_days"},
            "packages": {"protected", "download_count", "last_downloaded_at"},
            "package_files": {"download_count", "last_downloaded_at"},
        },
        {"web_hooks", "web_hook_events", "web_hook_deliveries"},
    ),
    "0017": (
        "0014",
        {"upstream_files": {"metadata_fetch_started_at", "metadata_fetch_owner"}},
        set(),
    ),
    "0014": (
        "0013",
        {
            "groups": {"pypi_duplicates_allowed", "pypi_duplicate_exception_regex"},
            "projects": {
                "pypi_duplicates_allowed",
                "pypi_duplicate_exception_regex",
                "packages_enabled",
            },
        },
        {"package_protection_rules"},
    ),
    "0013": (
        "0012",
        {
            "groups": {"description"},
            "projects": {"description"},
            "package_files": {"retryable"},
        },
        set(),
    ),
}


@pytest.fixture(params=DATABASES)
def fresh_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app on an empty database of its own: the shared ones must stay at head."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/packyard.db"
        else:
            url = stack.enter_context(postgres_database())
        app = _migrated_app(tmp_path, url)
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns(table)}


def _tables() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def _snapshot() -> dict[str, list[tuple]]:
    """The rows of the columns every revision since 0012 has, to see they survive."""
    queries = {
        "groups": "SELECT id, path FROM groups ORDER BY id",
        "projects": "SELECT id, path, group_id FROM projects ORDER BY id",
        "packages": "SELECT id, name, version FROM packages ORDER BY id",
        "package_files": "SELECT id, package_id, filename, sha256 FROM package_files ORDER BY id",
    }
    with db.engine.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(sa.text(q))] for table, q in queries.items()}


def _indexes(table: str) -> set[str]:
    """Index names from the catalog: SQLite's reflection skips expression indexes."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
        if db.engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = :t"
    )
    with db.engine.connect() as conn:
        return set(conn.execute(sa.text(query), {"t": table}).scalars())


def test_recent_migrations_step_down_and_up_keeping_data(fresh_app):
    upgrade()
    registry = Registry(fresh_app, fresh_app.test_client())
    owner = registry.user("owner")
    group = registry.group("team")
    project = registry.project(group, "tools")
    registry.member(owner, MAINTAINER, project=project)
    token = registry.token(owner)
    project_ref = str(project.id)
    for version in ("1.0", "1.1"):
        filename, content = make_wheel("demo-pkg", version)
        assert registry.upload(project_ref, filename, content, token=token).status_code == 201
    db.session.remove()
    before = _snapshot()
    assert before["package_files"] and before["projects"]
    indexes = {table: _indexes(table) for table in before}
    config = alembic_config()

    for revision, (parent, columns, tables) in STEPS.items():
        command.downgrade(config, parent)
        db.engine.dispose()  # reflection must see the new schema
        for table, added in columns.items():
            assert not _columns(table) & added, (revision, table)
        assert not _tables() & tables, revision
        assert _snapshot() == before, revision
        for table, names in indexes.items():  # 0006's lower() indexes among them
            assert _indexes(table) >= names, (revision, table)
        command.upgrade(config, revision)
        db.engine.dispose()
        for table, added in columns.items():
            assert _columns(table) >= added, (revision, table)
        assert _tables() >= tables, revision
        assert _snapshot() == before, revision
        command.downgrade(config, parent)  # walk on down to the next revision's step
    db.engine.dispose()

    command.upgrade(config, "head")
    db.engine.dispose()
    assert _snapshot() == before
    assert {table: _indexes(table) for table in before} == indexes
    filename, content = make_wheel("demo-pkg", "1.2")
    assert registry.upload(project_ref, filename, content, token=token).status_code == 201
