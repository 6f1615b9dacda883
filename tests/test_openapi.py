"""The OpenAPI document: served publicly, valid OpenAPI 3.1, and true to the routes: a
route under /api/v4 that is not documented (or a documented one that does not exist)
fails here."""

from __future__ import annotations

import re

import pytest
import schemathesis
from flask import Flask

from app import create_app

# The PyPI endpoints follow PEP 503/691 and twine's upload protocol, documented elsewhere.
UNDOCUMENTED_BLUEPRINTS = ("pypi.",)
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    tmp = tmp_path_factory.mktemp("openapi")
    return create_app(
        {"DATA_DIR": str(tmp), "DATABASE_URL": f"sqlite:///{tmp}/x.db",
         "LOAD_ENTRYPOINT_PLUGINS": False}
    )  # fmt: skip


@pytest.fixture(scope="module")
def document(bare_app: Flask) -> dict:
    response = bare_app.test_client().get("/api/v4/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.json


def routes(app: Flask) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every REST route, with GitLab's parameter names."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v4/") or rule.endpoint.startswith(
            UNDOCUMENTED_BLUEPRINTS
        ):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule.removeprefix("/api/v4"))
        path = path.replace("{group_ref}", "{id}").replace("{project_ref}", "{id}")
        found |= {(method, path) for method in rule.methods & METHODS}
    return found


def documented(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method.upper() in METHODS
    }


def test_every_route_is_documented_and_nothing_else(bare_app, document):
    missing = routes(bare_app) - documented(document)
    extra = documented(document) - routes(bare_app)
    assert not missing, f"routes missing from app/web/api/openapi.py: {sorted(missing)}"
    assert not extra, f"documented operations with no route: {sorted(extra)}"


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v4"}]
    schemathesis.openapi.from_dict(document).validate()


def test_path_parameters_are_declared(document):
    for path, operations in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_errors_and_security_are_described(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["PrivateToken"] == {"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN"}
    assert schemes["BearerToken"]["scheme"] == "bearer"
    assert schemes["BasicAuth"]["scheme"] == "basic"
    assert document["components"]["schemas"]["Error"]["required"] == ["message"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            if path != "/openapi.json":
                assert "401" in responses or "404" in responses, (method, path)
            error = responses["default"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_the_document_is_public(bare_app):
    response = bare_app.test_client().get(
        "/api/v4/openapi.json", headers={"PRIVATE-TOKEN": "wrong"}
    )
    # Bad credentials do not matter: the document is never behind authentication.
    assert response.status_code == 200


def test_package_files_state_why_they_failed(document):
    properties = document["components"]["schemas"]["PackageFile"]["properties"]
    assert properties["error_reason"]["type"] == ["string", "null"]
    assert "error" in properties["error_reason"]["description"]
