"""Retention policies: settings on groups (inherited) and projects, protected releases, the
preview (dry run) in the API, then a real worker applying a policy to 30 releases."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, update

from app.domain.access import DEVELOPER, MAINTAINER
from app.extensions import db
from app.models import Package
from app.models.base import utcnow
from tests.dists import make_wheel
from tests.services import LiveServer, packyard_env
from tests.test_manage_ui import post, signed_in
from tests.test_ui import text


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def shelf(registry):
    """A project (in a subgroup) with releases of two names; demo 0.9.dev1 is 100 days old."""
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    project = registry.project(sub, "lib")
    maintainer, developer = registry.user("maintainer"), registry.user("developer")
    registry.member(maintainer, MAINTAINER, group=group)
    registry.member(developer, DEVELOPER, group=group)
    token = registry.token(maintainer)
    for name, version in (("demo", "0.9.dev1"), ("demo", "1.0"), ("demo", "1.1rc1"),
                          ("demo", "1.1"), ("demo", "2.0"), ("other", "0.1a1")):  # fmt: skip
        filename, content = make_wheel(name, version)
        assert registry.upload(project, filename, content, token=token).status_code == 201
    old = utcnow() - timedelta(days=100)
    for version in ("0.9.dev1", "1.1rc1"):
        db.session.execute(update(Package).where(Package.version == version).values(created_at=old))
    db.session.commit()
    ids = {(p.name, p.version): p.id for p in db.session.execute(select(Package)).scalars()}
    return {"group": group, "project": project, "token": token, "ids": ids,
            "developer": registry.token(developer)}  # fmt: skip


def previewed(client, shelf) -> dict[str, str]:
    url = f"/api/v4/projects/{shelf['project'].id}/packages/retention/preview"
    response = client.get(url, headers=auth(shelf["token"]))
    assert response.status_code == 200, response.text
    return {f"{p['name']} {p['version']}": p["retention_reason"] for p in response.json}


def test_no_policy_removes_nothing(client, shelf):
    assert previewed(client, shelf) == {}


def test_a_group_policy_is_inherited_and_a_project_setting_overrides_it(client, shelf):
    token = auth(shelf["token"])
    policy = {"retention_keep_n": 2, "retention_prerelease_days": 30}
    group = client.put(f"/api/v4/groups/{shelf['group'].id}", json=policy, headers=token)
    assert group.status_code == 200 and group.json["retention_keep_n"] == 2
    assert previewed(client, shelf) == {
        "demo 0.9.dev1": "beyond the newest 2",
        "demo 1.0": "beyond the newest 2",
        "demo 1.1rc1": "beyond the newest 2",
    }  # other 0.1a1 is the newest of its name: never removed
    project = client.put(f"/api/v4/projects/{shelf['project'].id}",
                         json={"retention_keep_n": 10}, headers=token)  # fmt: skip
    assert (
        project.json["retention_keep_n"] == 10 and project.json["retention_prerelease_days"] is None
    )
    assert previewed(client, shelf) == {
        "demo 0.9.dev1": "a pre-release older than 30 days",  # inherited from the group
        "demo 1.1rc1": "a pre-release older than 30 days",
    }


def test_protected_releases_are_kept(client, shelf):
    token = auth(shelf["token"])
    client.put(f"/api/v4/projects/{shelf['project'].id}", json={"retention_keep_n": 1},
               headers=token)  # fmt: skip
    package = f"/api/v4/projects/{shelf['project'].id}/packages/{shelf['ids'][('demo', '1.0')]}"
    assert client.post(package + "/protect", headers=auth(shelf["developer"])).status_code == 403
    protected = client.post(package + "/protect", headers=token)
    assert protected.status_code == 200 and protected.json["protected"] is True
    assert "demo 1.0" not in previewed(client, shelf)
    assert set(previewed(client, shelf)) == {"demo 0.9.dev1", "demo 1.1rc1", "demo 1.1"}
    assert client.post(package + "/unprotect", headers=token).json["protected"] is False
    assert "demo 1.0" in previewed(client, shelf)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_invalid_keep_n_is_400(client, shelf, value):
    url = f"/api/v4/projects/{shelf['project'].id}"
    response = client.put(url, json={"retention_keep_n": value}, headers=auth(shelf["token"]))
    assert response.status_code == 400


def test_the_preview_is_for_maintainers(client, shelf):
    for url in (f"/api/v4/projects/{shelf['project'].id}/packages/retention/preview",
                f"/api/v4/groups/{shelf['group'].id}/packages/retention/preview"):  # fmt: skip
        assert client.get(url, headers=auth(shelf["developer"])).status_code == 403
        assert client.get(url, headers=auth(shelf["token"])).status_code == 200


def test_the_group_preview_spans_its_projects(client, shelf):
    client.put(f"/api/v4/groups/{shelf['group'].id}", json={"retention_keep_n": 4},
               headers=auth(shelf["token"]))  # fmt: skip
    url = f"/api/v4/groups/{shelf['group'].id}/packages/retention/preview"
    listed = client.get(url, headers=auth(shelf["token"])).json
    assert [(p["project_path"], p["version"]) for p in listed] == [("team/sub/lib", "0.9.dev1")]


# --- a real worker ---------------------------------------------------------------------


def test_a_real_worker_applies_a_policy_to_30_releases(tmp_path: Path):
    env = packyard_env(tmp_path, SWEEP_INTERVAL="1", RETENTION_INTERVAL="2", UPSTREAM_MODE="off")
    server = LiveServer(tmp_path, env, worker=True, web_workers=2)
    try:
        group = server.api("POST", "/groups", json={"name": "Team", "path": "team"}).json()
        fields = {"name": "Lib", "path": "lib", "namespace_id": group["id"]}
        project = server.api("POST", "/projects", json=fields).json()
        packages = f"/projects/{project['id']}/packages"
        for n in range(30):
            filename, content = make_wheel("demo", f"1.0.{n}")
            uploaded = requests.post(
                f"{server.url}/api/v4{packages}/pypi",
                data={":action": "file_upload", "name": "demo", "version": f"1.0.{n}"},
                files={"content": (filename, content)}, auth=("__token__", server.admin_token),
                timeout=60,
            )  # fmt: skip
            assert uploaded.status_code == 201
        listed = server.api("GET", packages, params={"per_page": 100}).json()
        ids = {p["version"]: p["id"] for p in listed}
        assert server.api("POST", f"{packages}/{ids['1.0.3']}/protect").status_code == 200
        set_policy = server.api("PUT", f"/groups/{group['id']}", json={"retention_keep_n": 10})
        assert set_policy.status_code == 200
        preview = server.api("GET", f"{packages}/retention/preview", params={"per_page": 100})
        doomed = {f"1.0.{n}" for n in range(20) if n != 3}  # 19: the newest 10 and 1.0.3 stay
        assert {p["version"] for p in preview.json()} <= doomed  # the worker may have begun
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            left = server.api("GET", packages, params={"per_page": 100}).json()
            if len(left) <= 11:
                break
            time.sleep(0.5)
        kept = sorted(p["version"] for p in left)
        assert kept == sorted(["1.0.3", *(f"1.0.{n}" for n in range(20, 30))])
        events = server.api("GET", f"/projects/{project['id']}/audit_events",
                            params={"per_page": 100}).json()  # fmt: skip
        removed = [e for e in events if e["event_name"] == "package_deleted"]
        assert len(removed) == 19
        assert {e["details"]["author_name"] for e in removed} == {"retention policy"}
        files = tmp_path / "files"
        deadline = time.monotonic() + 30
        while len(stored := [p for p in files.rglob("*.whl")]) > 11 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sorted(p.name for p in stored) == sorted(
            f"demo-{v}-py3-none-any.whl" for v in kept
        )  # the storage is freed
    finally:
        server.stop()


def test_maintainers_set_a_policy_preview_it_and_protect_releases_in_the_pages(app, shelf):
    maintainer = signed_in(app, "maintainer")
    settings = "/team/-/group_settings"
    saved = post(maintainer, settings, {"name": "Team", "visibility": "private",
                                        "retention_keep_n": "3"}, settings)  # fmt: skip
    assert saved.status_code == 303
    preview_page = "/team/sub/lib/-/project_retention"
    shown = text(maintainer.get(preview_page))
    assert "demo 0.9.dev1" in shown and "beyond the newest 3" in shown
    assert "keep the newest 3 releases" in shown  # inherited from the group
    assert "demo 1.0" in shown
    package = f"/team/sub/lib/-/packages/{shelf['ids'][('demo', '1.0')]}"
    assert post(maintainer, f"{package}/protect", page=package).status_code == 303
    assert "protected" in text(maintainer.get(package))
    assert "demo 1.0" not in text(maintainer.get(preview_page))
    assert "demo 0.9.dev1" in text(maintainer.get("/team/-/group_retention"))
    assert maintainer.post(f"{package}/unprotect").status_code == 400  # no CSRF token
    developer = signed_in(app, "developer")
    assert developer.get(preview_page).status_code == 403
