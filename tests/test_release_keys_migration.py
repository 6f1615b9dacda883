"""The migration that adds reserved names and PEP 440 release keys, run on a database that
holds what older Packyards wrote: two releases of one PEP 440 version, and names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.migrations import upgrade
from tests.services import postgres_database

BEFORE = "0009"  # the last revision before reserved names and release keys
NOW = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    with postgres_database() as url:
        yield url


def insert(table: str, **values: object) -> None:
    columns = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    db.session.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)


def package(id: int, project_id: int, name: str, version: str, **extra: object) -> None:
    normalized = name.lower().replace("_", "-").replace(".", "-")
    values = dict(yanked=False, yanked_reason=None) | extra
    insert(
        "packages", id=id, project_id=project_id, name=name, normalized_name=normalized,
        version=version, canonical_version=version, updated_at=NOW, created_at=NOW, **values,
    )  # fmt: skip


def package_file(id: int, package_id: int, project_id: int, filename: str) -> None:
    insert(
        "package_files", id=id, package_id=package_id, project_id=project_id, filename=filename,
        size=1, sha256="0" * 64, md5="0" * 32, blake2_256="0" * 64, storage_key=filename,
        state="default", attempts=0, created_at=NOW,
    )  # fmt: skip


def rows(query: str) -> list[tuple]:
    return [tuple(row) for row in db.session.execute(sa.text(query))]


def test_old_data_is_migrated(empty_database, tmp_path):
    app = create_app(
        {"DATA_DIR": str(tmp_path), "DATABASE_URL": empty_database,
         "LOAD_ENTRYPOINT_PLUGINS": False}
    )  # fmt: skip
    with app.app_context():
        upgrade(BEFORE)
        insert("groups", id=1, name="Team", path="team", full_path="team", visibility="private",
               created_at=NOW)  # fmt: skip
        for project_id, path in ((1, "lib"), (2, "fork")):
            insert("projects", id=project_id, name=path, path=path, full_path=f"team/{path}",
                   group_id=1, visibility="private", created_at=NOW)  # fmt: skip
        package(1, 1, "Demo.Pkg", "6.0")
        package(2, 1, "demo_pkg", "6.0.0", yanked=True, yanked_reason="broken build")
        package(3, 1, "demo-pkg", "6")
        package(4, 1, "demo-pkg", "6.1")
        package(5, 2, "demo-pkg", "6.0.0")  # another project: its own release
        package(6, 2, "Gone.Soon", "1.0")
        package_file(1, 1, 1, "demo_pkg-6.0-py3-none-any.whl")
        package_file(2, 2, 1, "demo_pkg-6.0.0-py3-none-any.whl")
        package_file(3, 2, 1, "demo_pkg-6.0.0.tar.gz")
        package_file(4, 3, 1, "demo_pkg-6-py3-none-any.whl")
        package_file(5, 4, 1, "demo_pkg-6.1-py3-none-any.whl")
        package_file(6, 5, 2, "demo_pkg-6.0.0-py3-none-any.whl")
        package_file(7, 6, 2, "gone_soon-1.0-py3-none-any.whl")
        db.session.commit()

        upgrade()

        # 6.0, 6.0.0 and 6 of team/lib are one release now: the first keeps its spelling,
        # takes every file, and is yanked because one of them was.
        assert rows(
            "SELECT id, project_id, version, canonical_version, yanked, yanked_reason"
            " FROM packages ORDER BY id"
        ) == [
            (1, 1, "6.0", "6", True, "broken build"),
            (4, 1, "6.1", "6.1", False, None),
            (5, 2, "6.0.0", "6", False, None),
            (6, 2, "1.0", "1", False, None),
        ]
        assert rows("SELECT id, package_id FROM package_files ORDER BY id") == [
            (1, 1), (2, 1), (3, 1), (4, 1), (5, 4), (6, 5), (7, 6),
        ]  # fmt: skip
        assert rows("SELECT name FROM reserved_names ORDER BY name") == [
            ("demo-pkg",), ("gone-soon",),
        ]  # fmt: skip
        db.session.remove()
        db.engine.dispose()
