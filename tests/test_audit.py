"""The audit trail: every write leaves one event (actor, time, target) in its own
transaction, and admins read them through GitLab's audit events API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.domain.access import DEVELOPER, MAINTAINER, OWNER
from app.extensions import db
from app.models import AuditEvent
from tests.dists import make_wheel


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


def actions() -> list[tuple[str, str, str]]:
    rows = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
    return [(e.action, e.actor, e.target_type) for e in rows]


@pytest.fixture
def admin(registry):
    root = registry.user("root", admin=True)
    return {"user": root, "headers": auth(registry.token(root))}


def test_every_api_write_is_recorded_with_actor_and_target(registry, admin):
    client, headers = registry.client, admin["headers"]
    db.session.execute(AuditEvent.__table__.delete())  # the fixture's own events
    db.session.commit()
    user = client.post("/api/v4/users", json={"username": "alice"}, headers=headers).json
    client.post(
        f"/api/v4/users/{user['id']}/personal_access_tokens",
        json={"name": "laptop", "scopes": ["api"]}, headers=headers,
    )  # fmt: skip
    group = client.post("/api/v4/groups", json={"path": "team"}, headers=headers).json
    project = client.post(
        "/api/v4/projects", json={"path": "lib", "namespace_id": group["id"]}, headers=headers
    ).json
    client.post(
        f"/api/v4/groups/{group['id']}/members",
        json={"user_id": user["id"], "access_level": DEVELOPER}, headers=headers,
    )  # fmt: skip
    deploy = client.post(
        f"/api/v4/projects/{project['id']}/deploy_tokens",
        json={"name": "ci", "scopes": ["write_package_registry"]}, headers=headers,
    ).json  # fmt: skip
    filename, content = make_wheel("demo", "1.0")
    assert (
        registry.upload(str(project["id"]), filename, content, token=deploy["token"]).status_code
        == 201
    )
    packages = f"/api/v4/projects/{project['id']}/packages"
    package = client.get(packages, headers=headers).json[0]
    client.post(f"{packages}/{package['id']}/yank", json={"reason": "bad"}, headers=headers)
    client.post(f"{packages}/{package['id']}/unyank", headers=headers)
    client.delete(f"{packages}/{package['id']}", headers=headers)
    client.delete(f"/api/v4/projects/{project['id']}/deploy_tokens/{deploy['id']}", headers=headers)
    client.post(f"/api/v4/projects/{project['id']}/job_tokens", headers=headers)

    assert actions() == [
        ("user_created", "root", "User"),
        ("personal_access_token_created", "root", "PersonalAccessToken"),
        ("group_created", "root", "Group"),
        ("project_created", "root", "Project"),
        ("member_added", "root", "Member"),
        ("deploy_token_created", "root", "DeployToken"),
        ("package_file_uploaded", f"deploy token {deploy['username']}", "PackageFile"),
        ("package_yanked", "root", "Package"),
        ("package_unyanked", "root", "Package"),
        ("package_deleted", "root", "Package"),
        ("deploy_token_revoked", "root", "DeployToken"),
        ("job_token_created", "root", "JobToken"),
    ]
    events = {e.action: e for e in db.session.execute(select(AuditEvent)).scalars()}
    uploaded = events["package_file_uploaded"]
    assert uploaded.actor_user_id is None  # a deploy token has no user
    assert (uploaded.entity_type, uploaded.entity_id) == ("Project", project["id"])
    assert uploaded.target_path == f"team/lib/demo/1.0/{filename}"
    assert uploaded.details["size"] == len(content)
    deleted = events["package_deleted"]
    assert deleted.actor_user_id == admin["user"].id
    assert deleted.target_id == package["id"] and deleted.details == {"files": [filename]}
    assert events["package_yanked"].details == {"reason": "bad"}
    token_event = events["personal_access_token_created"]
    assert (token_event.entity_type, token_event.entity_id) == ("User", user["id"])
    assert "pyd-pat-" not in str(token_event.details)  # never a secret
    member = events["member_added"]
    assert (member.entity_type, member.entity_path) == ("Group", "team")
    assert member.details == {"user_id": user["id"], "access_level": DEVELOPER}
    assert datetime.now(UTC) - uploaded.created_at.replace(tzinfo=UTC) < timedelta(minutes=1)


def test_token_revocation_and_rotation_are_recorded(registry, admin):
    alice = registry.user("alice")
    token = registry.token(alice)
    own = registry.client.get("/api/v4/personal_access_tokens/self", headers=auth(token)).json
    rotated = registry.client.post(
        f"/api/v4/personal_access_tokens/{own['id']}/rotate", headers=auth(token)
    ).json
    registry.client.delete(
        f"/api/v4/personal_access_tokens/{rotated['id']}", headers=admin["headers"]
    )
    recent = actions()[-2:]
    assert recent == [
        ("personal_access_token_rotated", "alice", "PersonalAccessToken"),
        ("personal_access_token_revoked", "root", "PersonalAccessToken"),
    ]
    rotation = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "personal_access_token_rotated")
    ).scalar_one()
    assert rotation.details["previous_id"] == own["id"] and rotation.target_id == rotated["id"]


def test_refused_writes_leave_no_event(registry, admin):
    group = registry.group("team")
    project = registry.project(group, "lib")
    token = registry.token(admin["user"])
    filename, content = make_wheel("demo", "1.0")
    registry.upload(project, filename, content, token=token)
    before = actions()
    assert registry.upload(project, filename, content, token=token).status_code == 400
    member = {"user_id": admin["user"].id, "access_level": MAINTAINER}
    registry.client.post(
        f"/api/v4/groups/{group.id}/members", json=member, headers=admin["headers"]
    )
    again = registry.client.post(
        f"/api/v4/groups/{group.id}/members", json=member, headers=admin["headers"]
    )
    assert again.status_code == 409
    assert actions() == [*before, ("member_added", "root", "Member")]


def test_admins_read_events_in_gitlab_shape(registry, admin):
    group = registry.group("team")
    project = registry.project(group, "lib")
    filename, content = make_wheel("demo", "1.0")
    registry.upload(project, filename, content, token=registry.token(admin["user"]))
    response = registry.client.get("/api/v4/audit_events", headers=admin["headers"])
    assert response.status_code == 200
    newest = response.json[0]
    assert newest["event_name"] == "package_file_uploaded"
    assert newest["author_id"] == admin["user"].id
    assert (newest["entity_type"], newest["entity_id"]) == ("Project", project.id)
    assert newest["details"]["author_name"] == "root"
    assert newest["details"]["target_type"] == "PackageFile"
    assert newest["details"]["target_details"].endswith(filename)
    assert newest["details"]["entity_path"] == "team/lib"
    assert newest["created_at"].endswith("Z")
    assert int(response.headers["X-Total"]) == len(response.json) >= 4
    one = registry.client.get(f"/api/v4/audit_events/{newest['id']}", headers=admin["headers"])
    assert one.json == newest
    missing = registry.client.get("/api/v4/audit_events/99999", headers=admin["headers"])
    assert missing.status_code == 404


def test_audit_event_filters(registry, admin):
    group = registry.group("team")
    registry.project(group, "lib")

    def listed(**params):
        response = registry.client.get(
            "/api/v4/audit_events", query_string=params, headers=admin["headers"]
        )
        assert response.status_code == 200, response.json
        return [e["event_name"] for e in response.json]

    assert listed(entity_type="Group") == ["group_created"]
    assert listed(entity_type="Project", entity_id=999) == []
    assert listed(entity_type="User")[-1] == "user_created"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert listed(created_after=tomorrow) == []
    assert len(listed(created_before=tomorrow)) >= 3
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert "group_created" in listed(created_after=an_hour_ago)
    in_tokyo = (datetime.now(UTC) + timedelta(minutes=5)).astimezone().isoformat()
    assert "group_created" in listed(created_before=in_tokyo)


@pytest.mark.parametrize(
    "params",
    [{"entity_type": "Package"}, {"entity_id": 1}, {"created_after": "yesterday"},
     {"created_before": "2024-13-40"}, {"page": "x"}],
)  # fmt: skip
def test_invalid_filters_are_400(registry, admin, params):
    response = registry.client.get(
        "/api/v4/audit_events", query_string=params, headers=admin["headers"]
    )
    assert response.status_code == 400 and "message" in response.json


def test_who_may_read_events(registry, admin):
    group = registry.group("team")
    project = registry.project(group, "lib")
    roles = {}
    for name, level in (("owner", OWNER), ("maintainer", MAINTAINER), ("developer", DEVELOPER)):
        user = registry.user(name)
        registry.member(user, level, group=group)
        roles[name] = auth(registry.token(user))
    stranger = auth(registry.token(registry.user("stranger")))
    assert registry.client.get("/api/v4/audit_events").status_code == 401
    assert registry.client.get("/api/v4/audit_events", headers=roles["owner"]).status_code == 403
    project_events = f"/api/v4/projects/{project.id}/audit_events"
    assert registry.client.get(project_events, headers=roles["developer"]).status_code == 403
    assert registry.client.get(project_events, headers=stranger).status_code == 404
    listed = registry.client.get(project_events, headers=roles["maintainer"])
    assert [e["event_name"] for e in listed.json] == ["project_created"]
    group_events = f"/api/v4/groups/{group.id}/audit_events"
    assert registry.client.get(group_events, headers=roles["maintainer"]).status_code == 403
    owned = registry.client.get(group_events, headers=roles["owner"])
    assert owned.status_code == 200
    assert {e["event_name"] for e in owned.json} == {"group_created", "member_added"}
