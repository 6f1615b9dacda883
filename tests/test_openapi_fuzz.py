"""Schemathesis drives every operation of the OpenAPI document against the app, in
process, as an admin: no answer may be a server error, and every answer must match its
documented status, content type and schema.

Bounded to finish well under 3 minutes: a fixed number of examples per operation,
derandomized (the same cases every run), on SQLite only."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from app.domain.access import DEVELOPER
from app.domain.accounts import (
    create_deploy_token,
    create_personal_token,
    create_user,
    ensure_admin,
)
from app.domain.namespaces import add_member, create_group, create_project
from app.extensions import db
from app.migrations import upgrade
from app.models import User
from app.web.api.openapi import document
from tests.dists import make_wheel

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
_started: list[float] = []


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app with a little of everything, so that ids like 1 and 2 reach real rows."""
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        {"DATA_DIR": str(tmp), "DATABASE_URL": f"sqlite:///{tmp}/fuzz.db",
         "LOAD_ENTRYPOINT_PLUGINS": False, "FORWARDING": False}
    )  # fmt: skip
    app.extensions["celery"].conf.task_always_eager = True
    with app.app_context():
        upgrade()
        root = ensure_admin(db.session, "root")
        _token, secret = create_personal_token(db.session, root, "seed", ["api"], None)
        # Nothing is more visible than its group: public team, for the public sub below.
        group = create_group(db.session, "Team", "team", None, "public")
        sub = create_group(db.session, "Sub", "sub", group, "public")
        project = create_project(db.session, "Lib", "lib", group, "private")
        create_project(db.session, "Open", "open", sub, "public")
        helper = create_user(db.session, "helper", None, None, admin=False)
        add_member(db.session, helper, DEVELOPER, group=group)
        create_deploy_token(db.session, "ci", ["read_package_registry"], project=project)
        create_deploy_token(db.session, "mirror", ["read_package_registry"], group=group)
        project_id = project.id
    client = app.test_client()
    for version in SEEDED_VERSIONS:
        filename, content = make_wheel("demo", version)
        response = client.post(
            f"/api/v4/projects/{project_id}/packages/pypi",
            data={"name": "demo", "version": version, "content": (io.BytesIO(content), filename)},
            headers={"PRIVATE-TOKEN": secret},
        )
        assert response.status_code == 201, response.text
    _started.append(time.monotonic())
    yield app
    with app.app_context():
        db.engine.dispose()


# Loaded from the same function that serves /api/v4/openapi.json (tests/test_openapi.py
# checks it is served); the cases are sent to ``fuzz_app`` in process.
schema = schemathesis.openapi.from_dict(document())
# Path parameters that name rows of ``fuzz_app`` most of the time, so that cases get past
# the lookups into the views' own work. Deleting packages takes 1 and 2 (the coverage phase
# deletes package 1, the documented example), deleting files 3 and 4 (file n is the only
# file of package n), so that packages 5 and 6 stay for the other operations.
REAL_PATH_VALUES = {
    "id": st.sampled_from(["1", "2", "3", "team", "team/lib", "team/sub", "team/sub/open"]),
    "package_id": st.integers(5, 6),
    "file_id": st.integers(5, 6),
    "token_id": st.integers(1, 200),
    "user_id": st.integers(1, 3),
    "event_id": st.integers(1, 20),
}
SEEDED_VERSIONS = ("1.0", "2.0", "3.0", "4.0", "5.0", "6.0")


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not path_parameters:
        return st.just(path_parameters)
    real = {name: REAL_PATH_VALUES[name] for name in path_parameters if name in REAL_PATH_VALUES}
    deleting = context.operation is not None and context.operation.method.upper() == "DELETE"
    if deleting and "package_id" in real:
        real["package_id"] = st.integers(3, 4) if "file_id" in real else st.integers(1, 2)
    existing = st.fixed_dictionaries(real).map(lambda values: _same_file(path_parameters, values))
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda real_ones: existing if real_ones else st.just(path_parameters)
    )


def _same_file(generated: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    if "file_id" in real:
        real = {**real, "file_id": real["package_id"]}
    return {**generated, **real}


def admin_headers(app: Flask) -> dict[str, str]:
    """A fresh admin token for each case: a case may revoke or rotate the one before."""
    with app.app_context():
        root = db.session.query(User).filter_by(username="root").one()
        _token, secret = create_personal_token(db.session, root, "fuzz", ["api"], None)
        db.session.remove()
    return {"PRIVATE-TOKEN": secret}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_answers_match_the_document(case, fuzz_app):
    response = case.call(headers=admin_headers(fuzz_app), app=fuzz_app)
    # Werkzeug's own redirects (``//`` merged into ``/``) are HTML, not API answers.
    redirected = 300 <= response.status_code < 400
    case.validate_response(response, checks=[not_a_server_error] if redirected else CHECKS)


def test_the_run_was_bounded():
    """The run above must leave room in ``make test``: well under three minutes."""
    if _started:
        assert time.monotonic() - _started[0] < 150
