"""Forwarding unknown names to an upstream index, and never a name Packyard holds.

The upstream is a closed local port (unit tests) or a tiny local index served from a
thread (the end-to-end test with pip): never the internet."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app import create_app
from app.domain.names import normalize
from app.extensions import db
from tests.conftest import Registry, basic
from tests.dists import make_wheel
from tests.services import BIN, LiveServer, packyard_env

UPSTREAM = "http://127.0.0.1:9/simple/"


@pytest.fixture
def world(registry: Registry):
    """team (private) > team/sub > team/sub/lib; secret/vault holds ``private-thing``."""
    admin = registry.user("root", admin=True)
    admin_token = registry.token(admin)
    team = registry.group("team")
    sub = registry.group("sub", parent=team)
    lib = registry.project(sub, "lib")
    secret = registry.group("secret")
    vault = registry.project(secret, "vault")
    assert (
        registry.upload(vault, *make_wheel("Private.Thing", "1.0"), token=admin_token).status_code
        == 201
    )
    assert (
        registry.upload(lib, *make_wheel("local-pkg", "1.0"), token=admin_token).status_code == 201
    )
    reader = registry.user("reader")
    registry.member(reader, 20, group=team)
    registry.app.config.update(UPSTREAM_URL=UPSTREAM, UPSTREAM_MODE="redirect")
    return {
        "team": team,
        "sub": sub,
        "lib": lib,
        "vault": vault,
        "token": registry.token(reader),
        "admin_token": admin_token,
    }


def project_page(world, name: str) -> str:
    return f"/api/v4/projects/{world['lib'].id}/packages/pypi/simple/{name}/"


def group_page(group, name: str) -> str:
    return f"/api/v4/groups/{group.id}/-/packages/pypi/simple/{name}/"


def get(registry, url: str, token: str | None):
    return registry.client.get(url, headers=basic(token) if token else {})


def set_forwarding(group, value: bool | None) -> None:
    group.forwarding = value
    db.session.commit()


def test_unknown_name_on_a_project_page_redirects_upstream(registry, world):
    response = get(registry, project_page(world, "requests"), world["token"])
    assert response.status_code == 307
    assert response.headers["Location"] == "http://127.0.0.1:9/simple/requests/"


def test_unknown_name_on_a_group_page_redirects_upstream(registry, world):
    for group in (world["team"], world["sub"]):
        response = get(registry, group_page(group, "requests"), world["token"])
        assert response.status_code == 307
        assert response.headers["Location"] == "http://127.0.0.1:9/simple/requests/"


def test_a_non_normalized_name_is_normalized_first(registry, world):
    first = get(registry, project_page(world, "Flask_SQLAlchemy"), world["token"])
    assert first.status_code == 301 and first.headers["Location"].endswith("/flask-sqlalchemy/")
    second = get(registry, project_page(world, "flask-sqlalchemy"), world["token"])
    assert second.headers["Location"] == "http://127.0.0.1:9/simple/flask-sqlalchemy/"


def test_a_local_name_is_served_not_forwarded(registry, world):
    response = get(registry, project_page(world, "local-pkg"), world["token"])
    assert response.status_code == 200
    assert "local_pkg-1.0-py3-none-any.whl" in response.text


def test_a_name_held_by_another_project_is_never_forwarded(registry, world):
    """Dependency confusion: the reader cannot read secret/vault, yet gets a plain 404,
    the same answer as for a name nobody has with forwarding off."""
    for url in (project_page(world, "private-thing"), group_page(world["team"], "private-thing")):
        response = get(registry, url, world["token"])
        assert response.status_code == 404
        assert "Location" not in response.headers
        registry.app.config["UPSTREAM_MODE"] = "off"
        plain = get(registry, url.replace("private-thing", "nobody-has-it"), world["token"])
        registry.app.config["UPSTREAM_MODE"] = "redirect"
        assert (response.status, response.text) == (plain.status, plain.text)


def test_a_name_held_by_an_unreadable_project_of_the_same_group_is_not_forwarded(registry, world):
    hidden = registry.project(world["team"], "hidden")
    registry.member(registry.user("someone"), 30, project=hidden)
    assert (
        registry.upload(
            hidden, *make_wheel("hidden-pkg", "1.0"), token=world["admin_token"]
        ).status_code
        == 201
    )
    outsider = registry.user("outsider")
    registry.member(outsider, 20, project=world["lib"])
    token = registry.token(outsider)
    assert get(registry, project_page(world, "hidden-pkg"), token).status_code == 404


def delete_every_release(registry, world, project, normalized: str) -> None:
    headers = {"PRIVATE-TOKEN": world["admin_token"]}
    api = f"/api/v4/projects/{project.id}/packages"
    for package in registry.client.get(api, headers=headers).json:
        if normalize(package["name"]) == normalized:
            assert (
                registry.client.delete(f"{api}/{package['id']}", headers=headers).status_code == 204
            )


def test_a_deleted_name_stays_reserved_and_is_never_forwarded(registry, world):
    """Dependency confusion after a delete: the last release of a name going must not
    open the name to the upstream index."""
    delete_every_release(registry, world, world["vault"], "private-thing")
    delete_every_release(registry, world, world["lib"], "local-pkg")
    for name in ("private-thing", "local-pkg"):
        for url in (project_page(world, name), group_page(world["team"], name),
                    group_page(world["sub"], name)):  # fmt: skip
            response = get(registry, url, world["token"])
            assert response.status_code == 404, (url, response.status)
            assert "Location" not in response.headers
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == 307


def test_a_name_is_reserved_in_any_spelling(registry, world):
    delete_every_release(registry, world, world["vault"], "private-thing")
    first = get(registry, project_page(world, "private_thing"), world["token"])
    assert first.status_code == 301  # to the normalized name, which is not forwarded
    assert get(registry, project_page(world, "private-thing"), world["token"]).status_code == 404


def admin(world) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world["admin_token"]}


def test_admins_list_reserved_names(registry, world):
    listed = registry.client.get("/api/v4/reserved_names", headers=admin(world))
    assert listed.status_code == 200
    assert [n["name"] for n in listed.json] == ["local-pkg", "private-thing"]
    assert listed.headers["X-Total"] == "2"
    assert all(n["created_at"] for n in listed.json)
    assert [n["published"] for n in listed.json] == [True, True]
    delete_every_release(registry, world, world["lib"], "local-pkg")
    again = registry.client.get("/api/v4/reserved_names", headers=admin(world)).json
    assert [(n["name"], n["published"]) for n in again] == [
        ("local-pkg", False), ("private-thing", True),
    ]  # fmt: skip
    refused = registry.client.get("/api/v4/reserved_names", headers=basic(world["token"]))
    assert refused.status_code == 403


def test_an_admin_releases_a_deleted_name_and_it_is_forwarded_again(registry, world):
    delete_every_release(registry, world, world["lib"], "local-pkg")
    assert get(registry, project_page(world, "local-pkg"), world["token"]).status_code == 404
    reader = registry.client.delete("/api/v4/reserved_names/local-pkg",
                                    headers=basic(world["token"]))  # fmt: skip
    assert reader.status_code == 403
    released = registry.client.delete("/api/v4/reserved_names/Local_Pkg", headers=admin(world))
    assert released.status_code == 204, released.json
    response = get(registry, project_page(world, "local-pkg"), world["token"])
    assert response.status_code == 307
    assert response.headers["Location"] == "http://127.0.0.1:9/simple/local-pkg/"
    events = registry.client.get("/api/v4/audit_events", headers=admin(world)).json
    event = events[0]
    assert event["event_name"] == "reserved_name_released"
    assert event["details"]["author_name"] == "root"
    assert event["details"]["target_type"] == "ReservedName"
    assert event["details"]["target_details"] == "local-pkg"
    again = registry.client.delete("/api/v4/reserved_names/local-pkg", headers=admin(world))
    assert again.status_code == 404 and again.json["message"]


def test_a_published_name_cannot_be_released(registry, world):
    response = registry.client.delete("/api/v4/reserved_names/private-thing", headers=admin(world))
    assert response.status_code == 409
    assert "secret/vault" in response.json["message"]
    assert (
        get(registry, group_page(world["team"], "private-thing"), world["token"]).status_code == 404
    )


def test_publishing_a_released_name_reserves_it_again(registry, world):
    delete_every_release(registry, world, world["lib"], "local-pkg")
    registry.client.delete("/api/v4/reserved_names/local-pkg", headers=admin(world))
    upload = registry.upload(world["lib"], *make_wheel("Local.Pkg", "2.0"),
                             token=world["admin_token"])  # fmt: skip
    assert upload.status_code == 201
    delete_every_release(registry, world, world["lib"], "local-pkg")
    assert get(registry, project_page(world, "local-pkg"), world["token"]).status_code == 404


def test_instance_switch(registry, world):
    registry.app.config["UPSTREAM_MODE"] = "off"
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == 404
    assert get(registry, group_page(world["team"], "requests"), world["token"]).status_code == 404


@pytest.mark.parametrize(
    ("instance", "team", "sub", "forwarded"),
    [
        (True, None, None, True),  # the instance decides
        (False, None, None, False),
        (False, True, None, True),  # a group overrides the instance, for its subgroups too
        (True, False, None, False),
        (True, False, True, True),  # the nearest group wins
        (False, True, False, False),
    ],
)
def test_group_setting_inherits_down_the_chain(registry, world, instance, team, sub, forwarded):
    registry.app.config["UPSTREAM_MODE"] = "redirect" if instance else "off"
    set_forwarding(world["team"], team)
    set_forwarding(world["sub"], sub)
    expected = 307 if forwarded else 404
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == expected
    assert (
        get(registry, group_page(world["sub"], "requests"), world["token"]).status_code == expected
    )
    # The team's own page follows the team's chain only.
    team_forwarded = team if team is not None else instance
    team_page = get(registry, group_page(world["team"], "requests"), world["token"])
    assert team_page.status_code == (307 if team_forwarded else 404)


def test_group_forwarding_is_set_through_the_api(registry, world):
    headers = {"PRIVATE-TOKEN": world["admin_token"]}
    off = registry.client.put(
        f"/api/v4/groups/{world['sub'].id}", json={"forwarding": False}, headers=headers
    )
    assert off.status_code == 200 and off.json["forwarding"] is False
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == 404
    registry.client.put(
        f"/api/v4/groups/{world['sub'].id}", json={"forwarding": None}, headers=headers
    )
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == 307


def test_the_root_index_is_never_forwarded(registry, world):
    empty = registry.project(world["team"], "empty")
    response = get(registry, f"/api/v4/projects/{empty.id}/packages/pypi/simple/", world["token"])
    assert response.status_code == 200
    group_root = get(
        registry, f"/api/v4/groups/{world['team'].id}/-/packages/pypi/simple/", world["token"]
    )
    assert group_root.status_code == 200


def test_callers_who_may_not_read_are_not_forwarded(registry, world):
    anonymous = get(registry, project_page(world, "requests"), None)
    assert anonymous.status_code == 401
    stranger = registry.token(registry.user("stranger"))
    assert get(registry, project_page(world, "requests"), stranger).status_code == 404
    guest = registry.user("guest")
    registry.member(guest, 10, project=world["lib"])
    assert get(registry, project_page(world, "requests"), registry.token(guest)).status_code == 403


def test_invalid_names_and_an_empty_upstream_are_404(registry, world):
    assert get(registry, project_page(world, "-bad-"), world["token"]).status_code == 404
    registry.app.config["UPSTREAM_URL"] = ""
    assert get(registry, project_page(world, "requests"), world["token"]).status_code == 404


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), ("0", False), ("no", False), ("true", True), ("1", True)],
)
def test_forwarding_environment_variable(monkeypatch, tmp_path, raw, expected):
    monkeypatch.setenv("PACKYARD_FORWARDING", raw)
    monkeypatch.setenv("PACKYARD_UPSTREAM_URL", "http://mirror.internal/simple/")
    app = create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False})
    assert app.config["FORWARDING"] is expected
    assert app.config["UPSTREAM_MODE"] == ("redirect" if expected else "off")
    assert app.config["UPSTREAM_URL"] == "http://mirror.internal/simple/"


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("PACKYARD_FORWARDING", raising=False)
    monkeypatch.delenv("PACKYARD_UPSTREAM_URL", raising=False)
    app = create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False})
    assert app.config["FORWARDING"] is True
    assert app.config["UPSTREAM_MODE"] == "redirect"
    assert app.config["UPSTREAM_URL"] == "https://pypi.org/simple/"


# End to end: pip follows the redirect to a second, local index ----------------------


class _Upstream(SimpleHTTPRequestHandler):
    authorizations: list[str | None] = []

    def do_GET(self) -> None:
        type(self).authorizations.append(self.headers.get("Authorization"))
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, tuple[str, bytes], type[_Upstream]]]:
    """A PEP 503 index with one wheel, served from a thread on a loopback port."""
    root = tmp_path / "upstream"
    filename, content = wheel = make_wheel("upstream-only", "1.0")
    (root / "files").mkdir(parents=True)
    (root / "files" / filename).write_bytes(content)
    page = root / "simple" / "upstream-only" / "index.html"
    page.parent.mkdir(parents=True)
    sha = hashlib.sha256(content).hexdigest()
    page.write_text(
        "<!DOCTYPE html><html><body>"
        f'<a href="../../files/{filename}#sha256={sha}">{filename}</a></body></html>'
    )
    handler = type("Handler", (_Upstream,), {"authorizations": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", wheel, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.e2e
def test_pip_downloads_a_forwarded_name_from_the_upstream(upstream, tmp_path):
    upstream_url, (filename, content), handler = upstream
    data = tmp_path / "packyard"
    data.mkdir()
    server = LiveServer(data, packyard_env(data, UPSTREAM_URL=upstream_url))
    try:
        group = server.api("POST", "/groups", data={"name": "Team", "path": "team"}).json()
        project = server.api(
            "POST", "/projects", data={"path": "lib", "namespace_id": group["id"]}
        ).json()
        host = server.url.removeprefix("http://")
        index = f"http://__token__:{server.admin_token}@{host}/api/v4/projects/{project['id']}/packages/pypi/simple/"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        dest = tmp_path / "downloads"
        result = subprocess.run(
            [str(BIN / "python"), "-m", "pip", "download", "--no-deps", "--no-cache-dir",
             "--index-url", index, "--dest", str(dest), "upstream-only==1.0"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (dest / filename).read_bytes() == content
    # The token went to Packyard only: pip dropped it on the redirect to another origin.
    assert handler.authorizations and not any(handler.authorizations)
