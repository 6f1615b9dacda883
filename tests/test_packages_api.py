"""Packages REST API (contract section 5): list, show, delete, files, yank; permissions,
filters, pagination, and what the indexes and storage show afterwards."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.domain.access import DEVELOPER, GUEST, MAINTAINER, REPORTER
from app.extensions import db
from app.models import Package, PackageFile, StorageDeletion
from tests.dists import make_sdist, make_wheel

JSON = "application/vnd.pypi.simple.v1+json"


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def world(registry):
    """A private group with a project holding four releases, and one user per role."""
    registry.app.config["UPSTREAM_MODE"] = "off"  # unknown names answer 404, not a redirect
    root = registry.user("root", admin=True)
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    project = registry.project(group, "lib")
    other = registry.project(sub, "tools")
    tokens = {"admin": registry.token(root)}
    for role, level in (
        ("maintainer", MAINTAINER), ("developer", DEVELOPER), ("reporter", REPORTER),
        ("guest", GUEST),
    ):  # fmt: skip
        user = registry.user(role)
        registry.member(user, level, group=group)
        tokens[role] = registry.token(user)
        if role == "maintainer":
            tokens["maintainer_read_api"] = registry.token(user, ("read_api",))
    tokens["stranger"] = registry.token(registry.user("stranger"))
    uploads = [
        (project, make_wheel("Demo.Pkg", "1.0")),
        (project, make_sdist("Demo.Pkg", "1.0")),
        (project, make_wheel("Demo.Pkg", "2.0")),
        (project, make_wheel("other", "0.1")),
        (other, make_wheel("tool", "3.0")),
    ]
    for target, (filename, content) in uploads:
        name = {"dem": "Demo.Pkg", "oth": "other", "too": "tool"}[filename[:3]]
        response = registry.upload(target, filename, content, token=tokens["admin"], name=name)
        assert response.status_code == 201, response.text
    packages = {(p.name, p.version): p.id for p in db.session.execute(select(Package)).scalars()}
    return {
        "group": group, "sub": sub, "project": project, "other": other, "tokens": tokens,
        "packages": packages, "files": dict(content for _, content in uploads),
        "api": f"/api/v4/projects/{project.id}/packages",
    }  # fmt: skip


def stored_files(app) -> set[str]:
    root = Path(app.config["DATA_DIR"]) / "files"
    return {p.name for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


def test_list_project_packages_in_gitlab_shape(registry, world):
    response = registry.client.get(world["api"], headers=auth(world["tokens"]["reporter"]))
    assert response.status_code == 200
    assert [(p["name"], p["version"]) for p in response.json] == [
        ("Demo.Pkg", "1.0"), ("Demo.Pkg", "2.0"), ("other", "0.1"),
    ]  # fmt: skip
    first = response.json[0]
    project = world["project"]
    assert first["id"] == world["packages"][("Demo.Pkg", "1.0")]
    assert first["package_type"] == "pypi"
    assert first["status"] == "default"
    assert first["_links"]["web_path"] == f"/team/lib/-/packages/{first['id']}"
    assert first["_links"]["delete_api_path"].endswith(
        f"/api/v4/projects/{project.id}/packages/{first['id']}"
    )
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first["created_at"])
    assert first["pipeline"] is None and first["pipelines"] == []
    assert first["project_id"] == project.id and first["project_path"] == "team/lib"
    assert first["yanked"] is False
    assert response.headers["X-Total"] == "3"
    assert response.headers["X-Page"] == "1"


def test_filters(registry, world):
    headers = auth(world["tokens"]["reporter"])

    def names(**params):
        response = registry.client.get(world["api"], query_string=params, headers=headers)
        assert response.status_code == 200, response.json
        return [(p["name"], p["version"]) for p in response.json]

    assert names(package_name="demo") == [("Demo.Pkg", "1.0"), ("Demo.Pkg", "2.0")]
    assert names(package_name="demo-pkg") == [("Demo.Pkg", "1.0"), ("Demo.Pkg", "2.0")]
    assert names(package_name="%") == []  # no wildcards
    assert names(package_version="2.0") == [("Demo.Pkg", "2.0")]
    assert names(package_version="v2.0") == [("Demo.Pkg", "2.0")]  # PEP 440 normalized
    assert len(names(package_type="pypi")) == 3
    assert names(package_type="npm") == []
    assert names(status="default", include_versionless="true") != []
    assert names(status="processing") == [] and names(status="hidden") == []
    assert names(order_by="name", sort="desc")[0] == ("other", "0.1")
    assert names(order_by="version", sort="desc")[0] == ("Demo.Pkg", "2.0")
    assert names(order_by="created_at", sort="desc")[0] == ("other", "0.1")


@pytest.mark.parametrize(
    "params",
    [
        {"order_by": "size"}, {"order_by": "project_path"}, {"sort": "up"},
        {"package_type": "pip"}, {"status": "yanked"}, {"include_versionless": "maybe"},
        {"page": "one"}, {"per_page": "x"}, {"page": str(2**40)},
    ],
)  # fmt: skip
def test_invalid_list_parameters_are_400(registry, world, params):
    response = registry.client.get(
        world["api"], query_string=params, headers=auth(world["tokens"]["reporter"])
    )
    assert response.status_code == 400
    assert set(response.json) == {"message"}


def test_status_is_derived_from_the_files(registry, world):
    headers = auth(world["tokens"]["reporter"])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    files = db.session.execute(
        select(PackageFile).where(PackageFile.package_id == package_id)
    ).scalars().all()  # fmt: skip
    files[0].state = "processing"
    db.session.commit()
    listed = registry.client.get(
        world["api"], query_string={"status": "processing"}, headers=headers
    )
    assert [p["id"] for p in listed.json] == [package_id]
    assert listed.json[0]["status"] == "processing"
    for package_file in files:
        package_file.state = "error"
    db.session.commit()
    listed = registry.client.get(world["api"], query_string={"status": "error"}, headers=headers)
    assert [(p["id"], p["status"]) for p in listed.json] == [(package_id, "error")]
    defaults = registry.client.get(
        world["api"], query_string={"status": "default"}, headers=headers
    )
    assert package_id not in [p["id"] for p in defaults.json] and len(defaults.json) == 2


def test_pagination_headers_and_edges(registry, world):
    headers = auth(world["tokens"]["reporter"])
    first = registry.client.get(world["api"], query_string={"per_page": 2}, headers=headers)
    assert len(first.json) == 2
    assert first.headers["X-Total"] == "3" and first.headers["X-Total-Pages"] == "2"
    assert first.headers["X-Per-Page"] == "2" and first.headers["X-Next-Page"] == "2"
    assert first.headers["X-Prev-Page"] == ""
    links = dict(
        (rel, url) for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', first.headers["Link"])
    )
    assert set(links) == {"first", "last", "next"}
    assert parse_qs(urlsplit(links["next"]).query)["page"] == ["2"]
    second = registry.client.get(links["next"], headers=headers)
    assert [p["name"] for p in second.json] == ["other"]
    assert second.headers["X-Next-Page"] == "" and second.headers["X-Prev-Page"] == "1"
    beyond = registry.client.get(world["api"], query_string={"page": 9}, headers=headers)
    assert beyond.status_code == 200 and beyond.json == []
    assert beyond.headers["X-Page"] == "9" and beyond.headers["X-Total"] == "3"
    clamped = registry.client.get(world["api"], query_string={"per_page": 500}, headers=headers)
    assert clamped.headers["X-Per-Page"] == "100" and len(clamped.json) == 3


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("stranger", 404), ("guest", 403), ("reporter", 200), ("admin", 200)],
)
def test_read_permissions(registry, world, who, status):
    headers = {} if who == "anonymous" else auth(world["tokens"][who])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    for path in (
        world["api"],
        f"{world['api']}/{package_id}",
        f"{world['api']}/{package_id}/package_files",
        f"/api/v4/groups/{world['group'].id}/packages",
    ):
        response = registry.client.get(path, headers=headers)
        expected = 200 if "/groups/" in path and who == "guest" else status
        assert response.status_code == expected, (path, response.json)
        if expected >= 400:
            assert "message" in response.json
        if expected == 401:
            assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_public_project_packages_are_listed_to_anonymous_callers(registry, world):
    public_group = registry.group("pub", "public")
    public = registry.project(public_group, "open", "public")
    filename, content = make_wheel("shared", "1.0")
    registry.upload(public, filename, content, token=world["tokens"]["admin"])
    response = registry.client.get(f"/api/v4/projects/{public.id}/packages")
    assert response.status_code == 200 and [p["name"] for p in response.json] == ["shared"]
    group_list = registry.client.get("/api/v4/groups/pub/packages")
    assert [p["project_path"] for p in group_list.json] == ["pub/open"]
    deleting = registry.client.delete(
        f"/api/v4/projects/{public.id}/packages/{response.json[0]['id']}"
    )
    assert deleting.status_code == 401


def test_unknown_and_foreign_packages_are_404(registry, world):
    headers = auth(world["tokens"]["admin"])
    tool_id = world["packages"][("tool", "3.0")]  # in team/sub/tools, not team/lib
    for path in (f"{world['api']}/999999", f"{world['api']}/{tool_id}",
                 f"{world['api']}/{tool_id}/package_files", f"{world['api']}/{2**40}"):  # fmt: skip
        response = registry.client.get(path, headers=headers)
        assert response.status_code == 404 and "message" in response.json, path
    assert registry.client.delete(f"{world['api']}/{tool_id}", headers=headers).status_code == 404
    assert registry.client.get("/api/v4/projects/999/packages", headers=headers).status_code == 404


def test_show_package_lists_its_other_versions(registry, world):
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    response = registry.client.get(
        f"{world['api']}/{package_id}", headers=auth(world["tokens"]["reporter"])
    )
    assert response.status_code == 200
    assert response.json["name"] == "Demo.Pkg" and response.json["version"] == "1.0"
    assert [v["version"] for v in response.json["versions"]] == ["2.0"]


def test_package_files_in_gitlab_shape(registry, world):
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    response = registry.client.get(
        f"{world['api']}/{package_id}/package_files", headers=auth(world["tokens"]["reporter"])
    )
    assert response.status_code == 200
    assert [f["file_name"] for f in response.json] == [
        "demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz",
    ]  # fmt: skip
    wheel = response.json[0]
    content = world["files"]["demo_pkg-1.0-py3-none-any.whl"]
    assert wheel["size"] == len(content)
    assert wheel["file_sha256"] == hashlib.sha256(content).hexdigest()
    assert wheel["file_md5"] == hashlib.md5(content).hexdigest()
    assert wheel["package_id"] == package_id and wheel["pipelines"] == []
    by_name = registry.client.get(
        f"{world['api']}/{package_id}/package_files",
        query_string={"order_by": "file_name", "sort": "desc", "per_page": 1},
        headers=auth(world["tokens"]["reporter"]),
    )
    assert [f["file_name"] for f in by_name.json] == ["demo_pkg-1.0.tar.gz"]
    assert by_name.headers["X-Total"] == "2"
    assert wheel["error_reason"] is None


def test_package_files_say_why_a_file_failed(registry, world):
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    failed = db.session.execute(
        select(PackageFile).where(PackageFile.package_id == package_id).order_by(PackageFile.id)
    ).scalars().first()  # fmt: skip
    failed.state, failed.error_reason = "error", "Metadata version '9' does not match"
    db.session.commit()
    response = registry.client.get(
        f"{world['api']}/{package_id}/package_files", headers=auth(world["tokens"]["reporter"])
    )
    by_id = {f["id"]: f for f in response.json}
    assert by_id[failed.id]["status"] == "error"
    assert by_id[failed.id]["error_reason"] == "Metadata version '9' does not match"
    assert [f["error_reason"] for f in by_id.values() if f["id"] != failed.id] == [None]


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 401), ("stranger", 404), ("guest", 403), ("reporter", 403),
     ("developer", 403), ("maintainer_read_api", 403)],
)  # fmt: skip
def test_writes_need_maintainer_with_api_scope(registry, world, who, status):
    headers = {} if who == "anonymous" else auth(world["tokens"][who])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    file_id = db.session.execute(
        select(PackageFile.id).where(PackageFile.package_id == package_id)
    ).scalars().first()  # fmt: skip
    base = f"{world['api']}/{package_id}"
    for method, path in (
        ("DELETE", base), ("DELETE", f"{base}/package_files/{file_id}"),
        ("POST", f"{base}/yank"), ("POST", f"{base}/unyank"),
    ):  # fmt: skip
        response = registry.client.open(path, method=method, headers=headers)
        assert response.status_code == status, (method, path, response.json)
        assert "message" in response.json
    assert db.session.get(Package, package_id) is not None


def test_delete_package_cleans_storage_and_indexes(registry, world):
    app, client = registry.app, registry.client
    headers = auth(world["tokens"]["maintainer"])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    filenames = {"demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"}
    assert filenames <= stored_files(app)
    index = f"/api/v4/projects/{world['project'].id}/packages/pypi/simple/demo-pkg/"
    group_index = f"/api/v4/groups/{world['group'].id}/-/packages/pypi/simple/demo-pkg/"
    sha = hashlib.sha256(world["files"]["demo_pkg-1.0-py3-none-any.whl"]).hexdigest()
    files_url = f"/api/v4/projects/{world['project'].id}/packages/pypi/files"
    download = f"{files_url}/{sha}/demo_pkg-1.0-py3-none-any.whl"
    assert client.get(download, headers=headers).status_code == 200

    response = client.delete(f"{world['api']}/{package_id}", headers=headers)
    assert response.status_code == 204 and response.data == b""
    assert db.session.get(Package, package_id) is None
    assert not filenames & stored_files(app)  # the (eager) worker removed them
    assert db.session.execute(select(func.count()).select_from(StorageDeletion)).scalar_one() == 0
    for page in (index, group_index):
        listed = client.get(page, headers={**headers, "Accept": JSON}).json["files"]
        assert {f["filename"] for f in listed} == {"demo_pkg-2.0-py3-none-any.whl"}
    assert client.get(download, headers=headers).status_code == 404
    assert client.get(f"{world['api']}/{package_id}", headers=headers).status_code == 404
    again = client.delete(f"{world['api']}/{package_id}", headers=headers)
    assert again.status_code == 404

    filename, content = make_wheel("Demo.Pkg", "1.0")  # the same filename may come back
    assert registry.upload(world["project"], filename, content, token=world["tokens"]["developer"],
                           name="Demo.Pkg").status_code == 201  # fmt: skip
    assert filename in stored_files(app)


def test_delete_file_then_upload_it_again(registry, world):
    client, headers = registry.client, auth(world["tokens"]["maintainer"])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    files = client.get(f"{world['api']}/{package_id}/package_files", headers=headers).json
    wheel, sdist = files
    response = client.delete(
        f"{world['api']}/{package_id}/package_files/{wheel['id']}", headers=headers
    )
    assert response.status_code == 204
    assert wheel["file_name"] not in stored_files(registry.app)
    assert sdist["file_name"] in stored_files(registry.app)
    page = client.get(
        f"/api/v4/projects/{world['project'].id}/packages/pypi/simple/demo-pkg/", headers=headers
    )
    assert wheel["file_name"] not in page.text and sdist["file_name"] in page.text
    assert client.delete(
        f"{world['api']}/{package_id}/package_files/{wheel['id']}", headers=headers
    ).status_code == 404  # fmt: skip
    other_id = world["packages"][("other", "0.1")]
    assert client.delete(
        f"{world['api']}/{other_id}/package_files/{sdist['id']}", headers=headers
    ).status_code == 404  # a file of another package  # fmt: skip

    filename, content = make_wheel("Demo.Pkg", "1.0")
    again = registry.upload(world["project"], filename, content, token=world["tokens"]["developer"],
                            name="Demo.Pkg")  # fmt: skip
    assert again.status_code == 201
    # The last file going takes its package with it, and the name leaves the index.
    client.delete(f"{world['api']}/{package_id}/package_files/{sdist['id']}", headers=headers)
    remaining = client.get(f"{world['api']}/{package_id}/package_files", headers=headers).json
    assert [f["file_name"] for f in remaining] == [filename]
    client.delete(
        f"{world['api']}/{package_id}/package_files/{remaining[0]['id']}", headers=headers
    )
    assert db.session.get(Package, package_id) is None
    other_page = client.get(
        f"/api/v4/projects/{world['project'].id}/packages/pypi/simple/other/", headers=headers
    )
    assert other_page.status_code == 200


def test_a_lost_cleanup_task_is_made_up_for_by_the_sweeper(registry, world, monkeypatch):
    from workers.sweeper import sweep_deletions
    from workers.tasks import cleanup

    monkeypatch.setattr(cleanup, "send", lambda *args: None)  # the broker was down
    package_id = world["packages"][("other", "0.1")]
    response = registry.client.delete(
        f"{world['api']}/{package_id}", headers=auth(world["tokens"]["maintainer"])
    )
    assert response.status_code == 204
    assert "other-0.1-py3-none-any.whl" in stored_files(registry.app)
    registry.app.config["REDELIVER_AFTER"] = 0
    assert sweep_deletions(registry.app) == 1
    assert "other-0.1-py3-none-any.whl" not in stored_files(registry.app)
    assert sweep_deletions(registry.app) == 0


def test_yank_is_visible_in_every_index_until_unyanked(registry, world):
    client, headers = registry.client, auth(world["tokens"]["maintainer"])
    package_id = world["packages"][("Demo.Pkg", "1.0")]
    project_page = f"/api/v4/projects/{world['project'].id}/packages/pypi/simple/demo-pkg/"
    group_page = f"/api/v4/groups/{world['group'].id}/-/packages/pypi/simple/demo-pkg/"

    response = client.post(
        f"{world['api']}/{package_id}/yank", json={"reason": "broken <build>"}, headers=headers
    )
    assert response.status_code == 200
    assert response.json["yanked"] is True and response.json["yanked_reason"] == "broken <build>"
    for page in (project_page, group_page):
        html = client.get(page, headers=headers).text
        anchors = re.findall(r"<a ([^>]*)>([^<]+)</a>", html)
        yanked = {name for attributes, name in anchors if "data-yanked" in attributes}
        assert yanked == {"demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"}
        assert 'data-yanked="broken &lt;build&gt;"' in html
        files = client.get(page, headers={**headers, "Accept": JSON}).json["files"]
        marks = {f["filename"]: f["yanked"] for f in files}
        assert marks == {
            "demo_pkg-1.0-py3-none-any.whl": "broken <build>",
            "demo_pkg-1.0.tar.gz": "broken <build>",
            "demo_pkg-2.0-py3-none-any.whl": False,
        }
    listed = client.get(world["api"], headers=headers).json
    assert {p["version"]: p["yanked"] for p in listed if p["name"] == "Demo.Pkg"} == {
        "1.0": True, "2.0": False,
    }  # fmt: skip
    sha = hashlib.sha256(world["files"]["demo_pkg-1.0.tar.gz"]).hexdigest()
    still = client.get(
        f"/api/v4/projects/{world['project'].id}/packages/pypi/files/{sha}/demo_pkg-1.0.tar.gz",
        headers=headers,
    )
    assert still.status_code == 200  # a yanked file stays downloadable

    no_reason = client.post(f"{world['api']}/{package_id}/yank", headers=headers)
    assert no_reason.status_code == 200 and no_reason.json["yanked_reason"] is None
    files = client.get(project_page, headers={**headers, "Accept": JSON}).json["files"]
    assert {f["filename"]: f["yanked"] for f in files}["demo_pkg-1.0.tar.gz"] is True
    assert 'data-yanked=""' in client.get(project_page, headers=headers).text

    unyanked = client.post(f"{world['api']}/{package_id}/unyank", headers=headers)
    assert unyanked.status_code == 200 and unyanked.json["yanked"] is False
    for page in (project_page, group_page):
        assert "data-yanked" not in client.get(page, headers=headers).text
        files = client.get(page, headers={**headers, "Accept": JSON}).json["files"]
        assert all(f["yanked"] is False for f in files)


def test_yank_reason_errors(registry, world):
    headers = auth(world["tokens"]["maintainer"])
    url = f"{world['api']}/{world['packages'][('Demo.Pkg', '1.0')]}/yank"
    assert (
        registry.client.post(url, json={"reason": "x" * 1001}, headers=headers).status_code == 400
    )
    assert registry.client.post(url, json={"reason": {"a": 1}}, headers=headers).status_code == 400
    assert registry.client.post(f"{world['api']}/999/yank", headers=headers).status_code == 404


def test_group_packages_span_subgroups_and_readable_projects_only(registry, world):
    group_api = f"/api/v4/groups/{world['group'].id}/packages"
    reporter = auth(world["tokens"]["reporter"])
    everything = registry.client.get(group_api, query_string={"order_by": "project_path"},
                                     headers=reporter)  # fmt: skip
    assert everything.status_code == 200
    assert [(p["project_path"], p["name"]) for p in everything.json] == [
        ("team/lib", "Demo.Pkg"), ("team/lib", "Demo.Pkg"), ("team/lib", "other"),
        ("team/sub/tools", "tool"),
    ]  # fmt: skip
    direct = registry.client.get(group_api, query_string={"exclude_subgroups": "true"},
                                 headers=reporter)  # fmt: skip
    assert {p["project_path"] for p in direct.json} == {"team/lib"}
    sub_only = registry.client.get(f"/api/v4/groups/{world['sub'].id}/packages", headers=reporter)
    assert [p["name"] for p in sub_only.json] == ["tool"]
    guest = registry.client.get(group_api, headers=auth(world["tokens"]["guest"]))
    assert guest.status_code == 200 and guest.json == []  # sees the group, reads no project
    assert registry.client.get(
        group_api, query_string={"order_by": "size"}, headers=reporter
    ).status_code == 400  # fmt: skip
    assert registry.client.get("/api/v4/groups/nope/packages", headers=reporter).status_code == 404
