"""The real python-gitlab client (from PyPI) against a live ``packyard serve``: groups,
projects, deploy tokens, packages and their files, personal access tokens, audit events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
import requests

from tests.dists import make_sdist, make_wheel
from tests.services import LiveServer, packyard_env

pytestmark = pytest.mark.e2e
JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    data = tmp_path_factory.mktemp("gitlab-client")
    server = LiveServer(data, packyard_env(data, FORWARDING="false"))
    try:
        yield server, data
    finally:
        server.stop()


def upload(server: LiveServer, project_id: int, dist: tuple[str, bytes], user: str, token: str):
    filename, content = dist
    name, version = filename.split("-")[:2]
    return requests.post(
        f"{server.url}/api/v4/projects/{project_id}/packages/pypi",
        data={":action": "file_upload", "name": name, "version": version.removesuffix(".tar.gz")},
        files={"content": (filename, content)},
        auth=(user, token),
        timeout=30,
    )


def stored(data: Path) -> set[str]:
    return {p.name for p in (data / "files").rglob("*") if p.is_file() and ".tmp" not in p.parts}


def wait_until(condition, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_python_gitlab_manages_groups_projects_tokens_and_packages(live):
    server, data = live
    gl = gitlab.Gitlab(server.url, private_token=server.admin_token)
    gl.auth()
    assert gl.user is not None and gl.user.username == "root"

    group = gl.groups.create({"name": "Team", "path": "team"})
    project = gl.projects.create({"name": "Lib", "path": "lib", "namespace_id": group.id})
    assert project.path_with_namespace == "team/lib"
    deploy = project.deploytokens.create(
        {"name": "ci", "scopes": ["read_package_registry", "write_package_registry"]}
    )
    assert deploy.token.startswith("pyd-dt-") and deploy.username

    dists = [make_wheel("demo", "1.0"), make_sdist("demo", "1.0"), make_wheel("demo", "2.0")]
    for dist in dists:
        response = upload(server, project.id, dist, deploy.username, deploy.token)
        assert response.status_code == 201, response.text

    packages = project.packages.list(get_all=True)
    assert [(p.name, p.version, p.package_type) for p in packages] == [
        ("demo", "1.0", "pypi"), ("demo", "2.0", "pypi"),
    ]  # fmt: skip
    assert packages[0]._links["web_path"] == f"/team/lib/-/packages/{packages[0].id}"
    assert [p.version for p in project.packages.list(get_all=True, package_version="2.0")] == [
        "2.0"
    ]
    assert len(group.packages.list(get_all=True)) == 2
    shown = project.packages.get(packages[0].id)
    assert shown.name == "demo" and [v["version"] for v in shown.versions] == ["2.0"]

    files = packages[0].package_files.list(get_all=True)
    assert sorted(f.file_name for f in files) == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]
    sdist = next(f for f in files if f.file_name.endswith(".tar.gz"))
    packages[0].package_files.delete(sdist.id)
    assert wait_until(lambda: "demo-1.0.tar.gz" not in stored(data))  # the worker's cleanup

    project.packages.delete(packages[0].id)
    packages[1].delete()
    assert project.packages.list(get_all=True) == []
    index = f"{server.url}/api/v4/projects/{project.id}/packages/pypi/simple/demo/"
    headers = {"PRIVATE-TOKEN": server.admin_token, "Accept": JSON}
    assert requests.get(index, headers=headers, timeout=10).status_code == 404
    assert wait_until(lambda: not stored(data))
    # A deleted filename may be uploaded again.
    response = upload(server, project.id, dists[0], deploy.username, deploy.token)
    assert response.status_code == 201
    page = requests.get(index, headers=headers, timeout=10).json()
    assert [f["filename"] for f in page["files"]] == ["demo-1.0-py3-none-any.whl"]

    listed = project.deploytokens.list(get_all=True)
    assert [t.name for t in listed] == ["ci"] and not hasattr(listed[0], "token")
    project.deploytokens.delete(deploy.id)
    refused = upload(server, project.id, make_wheel("demo", "3.0"), deploy.username, deploy.token)
    assert refused.status_code == 401


def test_python_gitlab_rotates_and_revokes_personal_access_tokens(live):
    server, _data = live
    admin = gitlab.Gitlab(server.url, private_token=server.admin_token)
    admin.auth()
    assert admin.user is not None
    created = admin.users.get(admin.user.id, lazy=True).personal_access_tokens.create(
        {"name": "laptop", "scopes": ["api"]}
    )
    mine = gitlab.Gitlab(server.url, private_token=created.token)
    own = mine.personal_access_tokens.get("self")
    assert own.id == created.id and own.name == "laptop"
    assert "laptop" in [t.name for t in admin.personal_access_tokens.list(get_all=True)]

    rotated = admin.personal_access_tokens.get(created.id)
    rotated.rotate()
    assert rotated.token != created.token and rotated.id != created.id
    with pytest.raises(gitlab.GitlabAuthenticationError):
        mine.auth()
    fresh = gitlab.Gitlab(server.url, private_token=rotated.token)
    fresh.auth()
    admin.personal_access_tokens.delete(rotated.id)
    with pytest.raises(gitlab.GitlabAuthenticationError):
        fresh.auth()

    events = [e.event_name for e in admin.audit_events.list(get_all=True)]
    assert {
        "personal_access_token_created", "personal_access_token_rotated",
        "personal_access_token_revoked",
    } <= set(events)  # fmt: skip
