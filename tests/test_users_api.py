"""Managing users through the API (GitLab's admin users API): list and search, show, edit,
block and unblock (ending sessions and tokens at once), delete keeping packages attributed;
and ``packyard create-admin --password``."""

from __future__ import annotations

import subprocess

import pytest

from app import create_app
from app.domain.accounts import create_job_token
from app.extensions import db
from app.models import AuditEvent, Package, User
from tests.conftest import basic
from tests.dists import make_wheel
from tests.services import BIN, packyard_env


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def people(registry):
    root = registry.user("root", admin=True)
    alice = registry.user("alice")
    bob = registry.user("bob")
    group = registry.group("team")
    project = registry.project(group, "lib")
    registry.member(alice, 40, project=project)
    return {
        "root": root,
        "alice": alice,
        "bob": bob,
        "project": project,
        "root_token": registry.token(root),
        "alice_token": registry.token(alice),
        "bob_token": registry.token(bob),
    }


def test_admins_list_and_search_users_others_are_refused(client, people):
    listed = client.get("/api/v4/users", headers=auth(people["root_token"]))
    assert listed.status_code == 200 and listed.headers["X-Total"] == "3"
    assert [u["username"] for u in listed.json] == ["root", "alice", "bob"]
    found = client.get("/api/v4/users?search=ALI", headers=auth(people["root_token"]))
    assert [u["username"] for u in found.json] == ["alice"]
    by_email = client.get("/api/v4/users?search=bob%40example", headers=auth(people["root_token"]))
    assert [u["username"] for u in by_email.json] == ["bob"]
    assert client.get("/api/v4/users", headers=auth(people["alice_token"])).status_code == 403
    assert client.get("/api/v4/users").status_code == 401


def test_a_user_is_shown_with_the_email_only_to_admins_and_themselves(client, people):
    alice_id = people["alice"].id
    as_bob = client.get(f"/api/v4/users/{alice_id}", headers=auth(people["bob_token"]))
    assert as_bob.status_code == 200 and "email" not in as_bob.json
    as_self = client.get(f"/api/v4/users/{alice_id}", headers=auth(people["alice_token"]))
    assert as_self.json["email"] == "alice@example.com" and as_self.json["state"] == "active"
    assert client.get("/api/v4/users/999", headers=auth(people["root_token"])).status_code == 404


def test_admins_edit_users_and_others_cannot(client, people):
    alice_id, root = people["alice"].id, people["root"]
    edited = client.put(
        f"/api/v4/users/{alice_id}",
        json={"email": "a@new.example.com", "admin": True},
        headers=auth(people["root_token"]),
    )
    assert edited.status_code == 200, edited.json
    assert edited.json["email"] == "a@new.example.com" and edited.json["is_admin"] is True
    taken = client.put(
        f"/api/v4/users/{alice_id}", json={"email": "BOB@example.com"},
        headers=auth(people["root_token"]),
    )  # fmt: skip
    assert taken.status_code == 409
    short = client.put(
        f"/api/v4/users/{alice_id}", json={"password": "short"}, headers=auth(people["root_token"])
    )
    assert short.status_code == 400 and "too short" in short.json["message"]
    demote_self = client.put(
        f"/api/v4/users/{root.id}", json={"admin": False}, headers=auth(people["root_token"])
    )
    assert demote_self.status_code == 403
    by_bob = client.put(
        f"/api/v4/users/{alice_id}", json={"admin": True}, headers=auth(people["bob_token"])
    )
    assert by_bob.status_code == 403
    actions = db.session.query(AuditEvent.action).filter_by(entity_id=alice_id).all()
    assert ("user_updated",) in actions


def test_blocking_ends_tokens_and_unblocking_restores_them(client, people, registry):
    alice, headers = people["alice"], auth(people["root_token"])
    job_token = create_job_token(db.session, people["project"], alice.id, None)[1]
    tokens = {
        "pat": auth(people["alice_token"]),
        "basic": basic(people["alice_token"], "alice"),
        "job": {"JOB-TOKEN": job_token},
    }
    where = f"/api/v4/projects/{people['project'].id}"
    for how in tokens.values():  # warm any identity cache first
        assert client.get(where, headers=how).status_code == 200
    assert client.post(f"/api/v4/users/{alice.id}/block", headers=headers).status_code == 201
    for name, how in tokens.items():
        refused = client.get(where, headers=how)
        assert refused.status_code == 401, name
    shown = client.get(f"/api/v4/users/{alice.id}", headers=headers)
    assert shown.json["state"] == "blocked"
    blocked = client.get("/api/v4/users?state=blocked", headers=headers)
    assert [u["username"] for u in blocked.json] == ["alice"]
    assert client.post(f"/api/v4/users/{alice.id}/unblock", headers=headers).status_code == 201
    assert client.get("/api/v4/user", headers=tokens["pat"]).status_code == 200
    own = client.post(f"/api/v4/users/{people['root'].id}/block", headers=headers)
    assert own.status_code == 403
    by_bob = client.post(f"/api/v4/users/{alice.id}/block", headers=auth(people["bob_token"]))
    assert by_bob.status_code == 403
    actions = [a for (a,) in db.session.query(AuditEvent.action).filter_by(entity_id=alice.id)]
    assert "user_blocked" in actions and "user_unblocked" in actions


def test_deleting_a_user_keeps_their_packages_attributed(client, people, registry):
    alice, project = people["alice"], people["project"]
    filename, content = make_wheel("alice-pkg", "1.0")
    upload = registry.upload(project, filename, content, token=people["alice_token"])
    assert upload.status_code == 201
    headers = auth(people["root_token"])
    assert client.delete(f"/api/v4/users/{alice.id}", headers=headers).status_code == 204
    assert db.session.get(User, alice.id) is None
    assert client.get("/api/v4/user", headers=auth(people["alice_token"])).status_code == 401
    package = db.session.query(Package).filter_by(normalized_name="alice-pkg").one()
    files = client.get(
        f"/api/v4/projects/{project.id}/packages/{package.id}/package_files", headers=headers
    )
    assert files.status_code == 200 and len(files.json) == 1
    listed = client.get(f"/api/v4/projects/{project.id}/packages/{package.id}", headers=headers)
    assert listed.status_code == 200
    assert client.delete(f"/api/v4/users/{people['root'].id}", headers=headers).status_code == 403
    assert client.delete(f"/api/v4/users/{alice.id}", headers=headers).status_code == 404
    deleted = db.session.query(AuditEvent).filter_by(action="user_deleted").one()
    assert deleted.target_path == "alice"


def test_create_admin_sets_a_password_from_stdin(tmp_path):
    env = packyard_env(tmp_path)
    subprocess.run([str(BIN / "packyard"), "db", "upgrade"], env=env, check=True)
    made = subprocess.run(
        [str(BIN / "packyard"), "create-admin", "ops", "--password"],
        env=env, input="a long passphrase\n", capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1].startswith("pyd-pat-")
    too_short = subprocess.run(
        [str(BIN / "packyard"), "create-admin", "ops", "--password"],
        env=env, input="short\n", capture_output=True, text=True,
    )  # fmt: skip
    assert too_short.returncode != 0 and "too short" in too_short.stderr
    app = create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False})
    with app.app_context():
        client = app.test_client()
        page = client.get("/users/sign_in").get_data(as_text=True)
        csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = client.post(
            "/users/sign_in",
            data={"username": "ops", "password": "a long passphrase", "csrf_token": csrf},
        )
        assert signed_in.status_code == 303
