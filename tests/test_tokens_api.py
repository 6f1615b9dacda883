"""Token management API: list, show, revoke and rotate personal access tokens; list, show
and revoke deploy tokens. Secrets appear only when a token is created or rotated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.access import DEVELOPER, MAINTAINER
from app.domain.accounts import create_job_token, create_personal_token
from app.domain.tokens import hash_token
from app.extensions import db
from app.models import DeployToken, JobToken, PackageFile, PersonalAccessToken
from tests.conftest import basic
from tests.dists import make_wheel


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def people(registry):
    root = registry.user("root", admin=True)
    alice = registry.user("alice")
    bob = registry.user("bob")
    group = registry.group("team")
    project = registry.project(group, "lib")
    registry.member(alice, MAINTAINER, group=group)
    registry.member(bob, DEVELOPER, group=group)
    laptop, laptop_secret = create_personal_token(db.session, alice, "laptop", ["api"], None)
    return {
        "root": root, "alice": alice, "bob": bob, "group": group, "project": project,
        "admin": auth(registry.token(root)), "alice_token": laptop, "alice_secret": laptop_secret,
        "as_alice": auth(laptop_secret), "as_bob": auth(registry.token(bob)),
    }  # fmt: skip


def test_list_own_tokens_without_secrets(registry, people):
    create_personal_token(db.session, people["alice"], "ci", ["read_api"], "2099-01-01")
    response = registry.client.get("/api/v4/personal_access_tokens", headers=people["as_alice"])
    assert response.status_code == 200
    assert [t["name"] for t in response.json] == ["laptop", "ci"]
    assert all("token" not in t for t in response.json)
    assert response.json[0]["user_id"] == people["alice"].id
    assert response.json[0]["active"] is True and response.json[0]["revoked"] is False
    assert response.json[1]["scopes"] == ["read_api"]
    assert response.headers["X-Total"] == "2"
    search = registry.client.get(
        "/api/v4/personal_access_tokens", query_string={"search": "LAP"}, headers=people["as_alice"]
    )
    assert [t["name"] for t in search.json] == ["laptop"]


def test_only_admins_list_other_users_tokens(registry, people):
    alice_id = people["alice"].id
    as_admin = registry.client.get(
        "/api/v4/personal_access_tokens", query_string={"user_id": alice_id},
        headers=people["admin"],
    )  # fmt: skip
    assert [t["name"] for t in as_admin.json] == ["laptop"]
    everyone = registry.client.get("/api/v4/personal_access_tokens", headers=people["admin"])
    assert len(everyone.json) == 3  # root's, alice's and bob's
    as_bob = registry.client.get(
        "/api/v4/personal_access_tokens", query_string={"user_id": alice_id},
        headers=people["as_bob"],
    )  # fmt: skip
    assert as_bob.status_code == 403 and "message" in as_bob.json
    assert registry.client.get("/api/v4/personal_access_tokens").status_code == 401
    bad = registry.client.get(
        "/api/v4/personal_access_tokens", query_string={"state": "sleepy"}, headers=people["admin"]
    )
    assert bad.status_code == 400


def test_show_and_revoke(registry, people):
    token_id = people["alice_token"].id
    url = f"/api/v4/personal_access_tokens/{token_id}"
    shown = registry.client.get(url, headers=people["as_alice"])
    assert shown.status_code == 200 and shown.json["name"] == "laptop" and "token" not in shown.json
    assert registry.client.get(url, headers=people["as_bob"]).status_code == 404
    assert registry.client.delete(url, headers=people["as_bob"]).status_code == 404
    assert registry.client.get(url, headers=people["admin"]).status_code == 200
    missing = registry.client.get("/api/v4/personal_access_tokens/999", headers=people["admin"])
    assert missing.status_code == 404

    revoked = registry.client.delete(url, headers=people["admin"])
    assert revoked.status_code == 204
    refused = registry.client.get("/api/v4/user", headers=people["as_alice"])
    assert refused.status_code == 401  # a revoked token is refused like a wrong one
    after = registry.client.get(url, headers=people["admin"]).json
    assert after["revoked"] is True and after["active"] is False
    assert registry.client.delete(url, headers=people["admin"]).status_code == 204  # idempotent
    inactive = registry.client.get(
        "/api/v4/personal_access_tokens",
        query_string={"user_id": people["alice"].id, "state": "inactive"},
        headers=people["admin"],
    )
    assert [t["id"] for t in inactive.json] == [token_id]


def test_self_endpoints(registry, people):
    me = registry.client.get("/api/v4/personal_access_tokens/self", headers=people["as_alice"])
    assert me.status_code == 200 and me.json["id"] == people["alice_token"].id
    basic_me = registry.client.get(
        "/api/v4/personal_access_tokens/self", headers=basic(people["alice_secret"])
    )
    assert basic_me.json["id"] == people["alice_token"].id
    gone = registry.client.delete("/api/v4/personal_access_tokens/self", headers=people["as_alice"])
    assert gone.status_code == 204
    assert registry.client.get("/api/v4/user", headers=people["as_alice"]).status_code == 401


def test_rotate_returns_a_new_secret_and_revokes_the_old_one(registry, people):
    token = people["alice_token"]
    response = registry.client.post(
        f"/api/v4/personal_access_tokens/{token.id}/rotate", headers=people["as_alice"]
    )
    assert response.status_code == 200
    rotated = response.json
    assert rotated["token"].startswith("pyd-pat-") and rotated["id"] != token.id
    assert rotated["name"] == "laptop" and rotated["scopes"] == ["api"]
    week = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    assert rotated["expires_at"] == week
    assert registry.client.get("/api/v4/user", headers=people["as_alice"]).status_code == 401
    new = auth(rotated["token"])
    assert registry.client.get("/api/v4/user", headers=new).json["username"] == "alice"
    again = registry.client.post(
        f"/api/v4/personal_access_tokens/{token.id}/rotate", headers=new
    )  # fmt: skip
    assert again.status_code == 400 and "revoked" in again.json["message"]

    chosen = registry.client.post(
        "/api/v4/personal_access_tokens/self/rotate", json={"expires_at": "2099-03-04"},
        headers=new,
    )  # fmt: skip
    assert chosen.status_code == 200 and chosen.json["expires_at"] == "2099-03-04"
    latest = auth(chosen.json["token"])
    past = registry.client.post(
        "/api/v4/personal_access_tokens/self/rotate", json={"expires_at": "2001-01-01"},
        headers=latest,
    )  # fmt: skip
    assert past.status_code == 400
    bad = registry.client.post(
        "/api/v4/personal_access_tokens/self/rotate", json={"expires_at": "soon"}, headers=latest
    )
    assert bad.status_code == 400


def test_rotate_and_revoke_need_the_api_scope(registry, people):
    read_only = auth(registry.token(people["alice"], ("read_api",)))
    token_id = people["alice_token"].id
    assert registry.client.get(
        f"/api/v4/personal_access_tokens/{token_id}", headers=read_only
    ).status_code == 200  # fmt: skip
    for method, path in (
        ("DELETE", f"/api/v4/personal_access_tokens/{token_id}"),
        ("POST", f"/api/v4/personal_access_tokens/{token_id}/rotate"),
    ):
        assert registry.client.open(path, method=method, headers=read_only).status_code == 403


def test_deploy_tokens_list_show_revoke(registry, people):
    project, group = people["project"], people["group"]
    created = registry.client.post(
        f"/api/v4/projects/{project.id}/deploy_tokens",
        json={"name": "ci", "scopes": ["read_package_registry"]}, headers=people["as_alice"],
    )  # fmt: skip
    assert created.status_code == 201 and "token" in created.json
    secret = created.json["token"]
    registry.client.post(
        f"/api/v4/groups/{group.id}/deploy_tokens",
        json={"name": "mirror", "scopes": ["read_package_registry"]}, headers=people["as_alice"],
    )  # fmt: skip
    listed = registry.client.get(
        f"/api/v4/projects/{project.id}/deploy_tokens", headers=people["as_alice"]
    )
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json] == ["ci"] and "token" not in listed.json[0]
    token_id = listed.json[0]["id"]
    group_listed = registry.client.get(
        f"/api/v4/groups/{group.id}/deploy_tokens", headers=people["as_alice"]
    )
    assert [t["name"] for t in group_listed.json] == ["mirror"]
    every = registry.client.get("/api/v4/deploy_tokens", headers=people["admin"])
    assert [t["name"] for t in every.json] == ["ci", "mirror"]
    not_admin = registry.client.get("/api/v4/deploy_tokens", headers=people["as_alice"])
    assert not_admin.status_code == 403

    one = f"/api/v4/projects/{project.id}/deploy_tokens/{token_id}"
    assert registry.client.get(one, headers=people["as_alice"]).json["name"] == "ci"
    assert registry.client.get(
        f"/api/v4/groups/{group.id}/deploy_tokens/{token_id}", headers=people["as_alice"]
    ).status_code == 404  # not the group's token  # fmt: skip
    index = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    assert registry.client.get(index, headers=basic(secret, "ci")).status_code == 200
    assert registry.client.delete(one, headers=people["as_bob"]).status_code == 403
    assert registry.client.delete(one, headers=people["as_alice"]).status_code == 204
    assert registry.client.get(index, headers=basic(secret, "ci")).status_code == 401
    assert registry.client.get(one, headers=people["as_alice"]).json["revoked"] is True
    active = registry.client.get(
        f"/api/v4/projects/{project.id}/deploy_tokens", query_string={"active": "true"},
        headers=people["as_alice"],
    )  # fmt: skip
    assert active.json == []


def test_deploy_token_permissions(registry, people):
    project = people["project"]
    url = f"/api/v4/projects/{project.id}/deploy_tokens"
    assert registry.client.get(url).status_code == 401
    assert registry.client.get(url, headers=people["as_bob"]).status_code == 403  # developer
    stranger = auth(registry.token(registry.user("stranger")))
    assert registry.client.get(url, headers=stranger).status_code == 404
    assert registry.client.get(f"{url}/999", headers=people["as_alice"]).status_code == 404
    read_api = auth(registry.token(people["alice"], ("read_api",)))
    assert registry.client.get(url, headers=read_api).status_code == 200  # reading: read_api ok
    assert registry.client.delete(f"{url}/1", headers=read_api).status_code == 403
    deploy = registry.deploy_token(("read_package_registry",), project=project)
    assert registry.client.get(url, headers=auth(deploy)).status_code == 403


def test_secrets_are_stored_hashed(registry, people):
    token = db.session.get(PersonalAccessToken, people["alice_token"].id)
    assert people["alice_secret"] not in (token.token_hash, token.token_prefix)
    registry.deploy_token(("read_package_registry",), project=people["project"])
    deploy = db.session.query(DeployToken).one()
    assert len(deploy.token_prefix) == 12 and len(deploy.token_hash) == 64


def test_a_deploy_token_username_is_never_a_users_or_another_tokens(registry, people):
    url = f"/api/v4/projects/{people['project'].id}/deploy_tokens"

    def create(username: str):
        return registry.client.post(
            url, json={"name": "ci", "scopes": ["read_package_registry"], "username": username},
            headers=people["as_alice"],
        )  # fmt: skip

    for taken in ("bob", "BOB", " root "):
        refused = create(taken)
        assert refused.status_code == 400
        assert refused.json["message"] == (
            f"username {taken.strip()!r} is taken by a user or another deploy token"
        )
    assert create("ci-bot").status_code == 201
    assert create("CI-Bot").status_code == 400
    assert create("gitlab+deploy-token-99").status_code == 400  # the form of default names
    assert create("two words").status_code == 400
    assert db.session.query(DeployToken).count() == 1
    for later in ("ci-bot", "Ci-Bot"):
        user = registry.client.post(
            "/api/v4/users", json={"username": later}, headers=people["admin"]
        )
        assert user.status_code == 409, later
        assert user.json["message"] == "Username has already been taken"
    default_form = registry.client.post(  # '+' is not a username character at all
        "/api/v4/users", json={"username": "gitlab+deploy-token-7"}, headers=people["admin"]
    )
    assert default_form.status_code == 400


def test_a_deploy_tokens_uploads_and_events_name_the_token(registry, people):
    project = people["project"]
    created = registry.client.post(
        f"/api/v4/projects/{project.id}/deploy_tokens",
        json={"name": "ci", "scopes": ["write_package_registry"], "username": "ci-bot"},
        headers=people["as_alice"],
    )
    filename, content = make_wheel("demo", "1.0")
    uploaded = registry.upload(project, filename, content, token=created.json["token"])
    assert uploaded.status_code == 201
    package_file = db.session.query(PackageFile).one()
    assert package_file.uploaded_by == "deploy token ci-bot"
    events = registry.client.get("/api/v4/audit_events", headers=people["admin"]).json
    upload = next(e for e in events if e["event_name"] == "package_file_uploaded")
    assert upload["author_id"] is None
    assert upload["details"]["author_name"] == "deploy token ci-bot"


def test_refused_tokens_all_get_one_answer_whatever_the_reason(registry, people):
    """Revoked, expired and unknown tokens are refused like wrong ones: one message."""
    alice, project = people["alice"], people["project"]
    revoked = registry.token(alice)
    expired = registry.token(alice)
    deploy_revoked = registry.deploy_token(("read_package_registry",), project=project)
    deploy_expired = registry.deploy_token(("read_package_registry",), project=project)
    job = create_job_token(db.session, project, alice.id, None)[1]
    past = datetime.now(UTC) - timedelta(days=1)
    for model, secret, change in [
        (PersonalAccessToken, revoked, {"revoked": True}),
        (PersonalAccessToken, expired, {"expires_at": past}),
        (DeployToken, deploy_revoked, {"revoked": True}),
        (DeployToken, deploy_expired, {"expires_at": past}),
        (JobToken, job, {"expires_at": past}),
    ]:
        row = db.session.query(model).filter_by(token_hash=hash_token(secret)).one()
        for field, value in change.items():
            setattr(row, field, value)
    db.session.commit()
    unknown = ["pyd-pat-nosuchtoken", "pyd-dt-nosuchtoken", "pyd-job-nosuchtoken", "other"]
    index = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    for secret in [revoked, expired, deploy_revoked, deploy_expired, job, *unknown]:
        api = registry.client.get("/api/v4/user", headers=auth(secret))
        assert (api.status_code, api.json) == (401, {"message": "401 Unauthorized"}), secret
        pypi = registry.client.get(index, headers=basic(secret))
        assert (pypi.status_code, pypi.text) == (401, "401 Unauthorized\n"), secret
        assert pypi.headers["WWW-Authenticate"] == 'Basic realm="Packyard"'


def test_a_token_that_would_be_born_expired_is_refused(registry, people):
    project, group, alice = people["project"], people["group"], people["alice"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    today = datetime.now(UTC).date().isoformat()  # a date expires at its midnight (UTC)
    for expires_at in (yesterday, a_minute_ago, today):
        for url, fields in [
            (f"/api/v4/users/{alice.id}/personal_access_tokens", {"scopes": ["api"]}),
            (f"/api/v4/projects/{project.id}/deploy_tokens", {"scopes": ["read_package_registry"]}),
            (f"/api/v4/groups/{group.id}/deploy_tokens", {"scopes": ["read_package_registry"]}),
        ]:
            body = {"name": "late", "expires_at": expires_at, **fields}
            refused = registry.client.post(url, json=body, headers=people["as_alice"])
            assert refused.status_code == 400, (url, expires_at)
            assert refused.json == {"message": "expires_at must be in the future"}
    for expires_in in (0, -60):
        job = registry.client.post(
            f"/api/v4/projects/{project.id}/job_tokens",
            json={"expires_in": expires_in}, headers=people["as_alice"],
        )  # fmt: skip
        assert job.status_code == 400
    assert db.session.query(DeployToken).count() == 0
    assert db.session.query(PersonalAccessToken).filter_by(name="late").count() == 0
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    created = registry.client.post(
        f"/api/v4/users/{alice.id}/personal_access_tokens",
        json={"name": "soon", "scopes": ["api"], "expires_at": tomorrow},
        headers=people["as_alice"],
    )
    assert created.status_code == 201
