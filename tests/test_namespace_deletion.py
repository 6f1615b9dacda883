"""DELETE /projects/:id and /groups/:id, as GitLab's: owners only, everything inside goes,
the stored files are removed by the (eager, in tests) worker, and the deletion is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.domain.access import MAINTAINER, OWNER
from app.extensions import db
from app.models import AuditEvent, Group, Membership, Package, Project, StorageDeletion
from tests.dists import make_wheel
from tests.test_packages_api import stored_files


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def site(registry):
    registry.app.config["FORWARDING"] = False  # unknown names answer 404, not a redirect
    root = registry.user("root", admin=True)
    owner, maintainer = registry.user("olga"), registry.user("max")
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    lib = registry.project(group, "lib")
    tools = registry.project(sub, "tools")
    registry.member(owner, OWNER, group=group)
    registry.member(maintainer, MAINTAINER, group=group)
    admin_token = registry.token(root)
    for project, name in ((lib, "lib-pkg"), (tools, "tools-pkg")):
        filename, content = make_wheel(name, "1.0")
        assert registry.upload(project, filename, content, token=admin_token).status_code == 201
    tokens = {"root": admin_token, "olga": registry.token(owner), "max": registry.token(maintainer),
              "stranger": registry.token(registry.user("stranger"))}  # fmt: skip
    return {"group": group, "sub": sub, "lib": lib, "tools": tools, "tokens": tokens}


def test_owners_delete_a_project_and_the_workers_remove_its_files(registry, site):
    client, lib = registry.client, site["lib"]
    assert "lib_pkg-1.0-py3-none-any.whl" in stored_files(registry.app)
    url = f"/api/v4/projects/{lib.id}"
    assert client.delete(url).status_code == 401
    assert client.delete(url, headers=auth(site["tokens"]["stranger"])).status_code == 404
    refused = client.delete(url, headers=auth(site["tokens"]["max"]))
    assert refused.status_code == 403 and "only owners" in refused.json["message"]
    deleted = client.delete(url, headers=auth(site["tokens"]["olga"]))
    assert deleted.status_code == 202 and deleted.json == {"message": "202 Accepted"}
    assert db.session.get(Project, lib.id) is None
    assert db.session.query(Package).filter_by(project_id=lib.id).count() == 0
    files = stored_files(registry.app)
    assert "lib_pkg-1.0-py3-none-any.whl" not in files
    assert "tools_pkg-1.0-py3-none-any.whl" in files
    assert db.session.execute(select(func.count()).select_from(StorageDeletion)).scalar_one() == 0
    event = db.session.query(AuditEvent).filter_by(action="project_deleted").one()
    assert event.target_path == "team/lib" and event.entity_id == site["group"].id
    assert client.get(url, headers=auth(site["tokens"]["olga"])).status_code == 404
    index = "/api/v4/groups/team/-/packages/pypi/simple/lib-pkg/"
    assert client.get(index, headers=auth(site["tokens"]["olga"])).status_code == 404


def test_owners_delete_a_group_with_everything_inside(registry, site):
    client, group = registry.client, site["group"]
    url = f"/api/v4/groups/{group.id}"
    assert client.delete(url, headers=auth(site["tokens"]["max"])).status_code == 403
    deleted = client.delete(url, headers=auth(site["tokens"]["olga"]))
    assert deleted.status_code == 202
    for model in (Group, Project, Package, Membership):
        assert db.session.query(model).count() == 0, model
    assert not stored_files(registry.app) & {
        "lib_pkg-1.0-py3-none-any.whl", "tools_pkg-1.0-py3-none-any.whl"
    }  # fmt: skip
    event = db.session.query(AuditEvent).filter_by(action="group_deleted").one()
    assert event.target_path == "team" and event.entity_type == "Instance"
    assert client.get(url, headers=auth(site["tokens"]["root"])).status_code == 404


def test_a_subgroup_deletion_is_audited_on_its_parent(registry, site):
    client = registry.client
    deleted = client.delete("/api/v4/groups/team%2Fsub", headers=auth(site["tokens"]["root"]))
    assert deleted.status_code == 202
    assert db.session.get(Project, site["lib"].id) is not None
    event = db.session.query(AuditEvent).filter_by(action="group_deleted").one()
    assert event.entity_id == site["group"].id and event.target_path == "team/sub"
