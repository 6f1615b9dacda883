"""Shared fixtures: an app per test on SQLite and on PostgreSQL, a registry builder, dists."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.domain.accounts import (
    create_deploy_token,
    create_personal_token,
    create_user,
)
from app.domain.namespaces import add_member, create_group, create_project
from app.extensions import db
from app.migrations import upgrade
from app.models import Group, Project, User
from tests.dists import make_sdist, make_wheel
from tests.s3server import S3Server, credentials_env
from tests.services import postgres_database, private_postgres  # noqa: F401  (a fixture)

DATABASES = ["sqlite", "postgresql"]


def _migrated_app(tmp: Path, database_url: str) -> Flask:
    app = create_app(
        {"DATA_DIR": str(tmp), "DATABASE_URL": database_url, "LOAD_ENTRYPOINT_PLUGINS": False}
    )
    app.extensions["celery"].conf.task_always_eager = True  # tasks run inline in unit tests
    return app


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once; each test gets a copy."""
    tmp = tmp_path_factory.mktemp("sqlite-template")
    app = _migrated_app(tmp, f"sqlite:///{tmp}/template.db")
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return tmp / "template.db"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_database() as url:
        app = _migrated_app(tmp_path_factory.mktemp("pg-migrate"), url)
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        target = tmp_path / "packyard.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            t
            for t in sa.inspect(conn).get_table_names()
            if t not in ("alembic_version", "cache_generation")  # rows the migrations own
        ]
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = _migrated_app(tmp_path, database_url)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Registry:
    """Builds users, groups, projects and tokens through the domain services."""

    app: Flask
    client: FlaskClient

    def user(self, username: str, *, admin: bool = False) -> User:
        return create_user(db.session, username, f"{username}@example.com", "s3cret-pass", admin)

    def token(self, user: User, scopes: tuple[str, ...] = ("api",), **kw: Any) -> str:
        return create_personal_token(db.session, user, "test", list(scopes), kw.get("expires_at"))[
            1
        ]

    def deploy_token(self, scopes: tuple[str, ...], **where: Any) -> str:
        return create_deploy_token(db.session, "deploy", list(scopes), **where)[1]

    def group(self, path: str, visibility: str = "private", parent: Group | None = None) -> Group:
        return create_group(db.session, path.title(), path, parent, visibility)

    def project(self, group: Group, path: str, visibility: str = "private") -> Project:
        return create_project(db.session, path.title(), path, group, visibility)

    def member(self, user: User, level: int, **where: Any) -> None:
        add_member(db.session, user, level, **where)

    def upload(
        self,
        project: Project | str,
        filename: str,
        content: bytes,
        *,
        token: str | None,
        name: str | None = None,
        version: str | None = None,
        headers: dict[str, str] | None = None,
        **fields: str,
    ) -> Any:
        ref = project if isinstance(project, str) else str(project.id)
        stem = filename.split("-")
        data: dict[str, Any] = {
            ":action": "file_upload",
            "name": name if name is not None else stem[0],
            "version": version
            if version is not None
            else stem[1].split(".tar")[0].removesuffix(".zip"),
            "content": (io.BytesIO(content), filename),
            **fields,
        }
        return self.client.post(
            f"/api/v4/projects/{ref}/packages/pypi",
            data=data,
            headers=headers or (basic(token) if token else {}),
            content_type="multipart/form-data",
        )

    def releases(
        self, project: Project, token: str, name: str, versions: tuple[str, ...]
    ) -> dict[str, bytes]:
        """A wheel and an sdist of each version uploaded; their content by filename."""
        files = {}
        for version in versions:
            for filename, content in (make_wheel(name, version), make_sdist(name, version)):
                assert self.upload(project, filename, content, token=token).status_code == 201
                files[filename] = content
        return files


def basic(token: str, username: str = "__token__") -> dict[str, str]:
    import base64

    raw = base64.b64encode(f"{username}:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def registry(app: Flask, client: FlaskClient) -> Registry:
    return Registry(app, client)


@pytest.fixture
def wheel() -> tuple[str, bytes]:
    return make_wheel("demo-pkg", "1.0", requires_python=">=3.8")


@pytest.fixture
def sdist() -> tuple[str, bytes]:
    return make_sdist("demo-pkg", "1.0", requires_python=">=3.8")


# A real S3-compatible server, one per test module that asks for it.
@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3") / "root")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials in the standard AWS variables, as boto3 reads them."""
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
