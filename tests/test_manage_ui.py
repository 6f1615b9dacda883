"""Management pages (issue 17), through the Flask test client: accounts, members, groups and
projects, deploy tokens, package actions.  Each flow is checked as its intended user, as a
user who must not have it, signed out, and without a CSRF token."""

from __future__ import annotations

import re

import pytest

from app.domain.access import DEVELOPER, MAINTAINER
from app.extensions import db
from app.models import AuditEvent, DeployToken, Package, User
from tests.conftest import basic
from tests.dists import make_sdist, make_wheel
from tests.test_ui import PASSWORD, csrf_token, sign_in, text


@pytest.fixture
def people(registry):
    root = registry.user("root", admin=True)
    alice = registry.user("alice")
    dev = registry.user("dev")
    group = registry.group("team")
    project = registry.project(group, "lib")
    registry.member(alice, MAINTAINER, group=group)
    registry.member(dev, DEVELOPER, project=project)
    return {"root": root, "alice": alice, "dev": dev, "group": group, "project": project}


def signed_in(app, username: str):
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


def post(client, path: str, data: dict | None = None, page: str = "/"):
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, page)})


# --- accounts -------------------------------------------------------------------------


def test_users_change_their_own_password_and_sign_in_again(app, people):
    client = signed_in(app, "dev")
    page = "/-/profile/password"
    wrong = post(client, page, {"current_password": "nope", "password": "new-password-1",
                                "password_confirmation": "new-password-1"}, page)  # fmt: skip
    assert wrong.status_code == 400 and "current password is wrong" in text(wrong)
    mismatch = post(client, page, {"current_password": PASSWORD, "password": "new-password-1",
                                   "password_confirmation": "other-password"}, page)  # fmt: skip
    assert mismatch.status_code == 400 and "do not match" in text(mismatch)
    changed = post(client, page, {"current_password": PASSWORD, "password": "new-password-1",
                                  "password_confirmation": "new-password-1"}, page)  # fmt: skip
    assert changed.status_code == 303 and changed.headers["Location"].endswith("/users/sign_in")
    assert client.get(page).status_code == 302  # the old session ended
    assert sign_in(app.test_client(), "dev", PASSWORD).status_code == 401
    assert sign_in(app.test_client(), "dev", "new-password-1").status_code == 303
    assert app.test_client().get(page).status_code == 302  # signed out: sent to sign in
    refused = client.post(page, data={"current_password": PASSWORD})
    assert refused.status_code == 400 and "CSRF" in text(refused)


def test_admins_search_reset_block_unblock_and_delete_users(app, people):
    admin = signed_in(app, "root")
    dev_id = people["dev"].id
    found = admin.get("/-/admin/users?search=de")
    assert f"/-/admin/users/{dev_id}" in text(found) and "alice" not in text(found)
    page = f"/-/admin/users/{dev_id}"
    dev_browser = signed_in(app, "dev")

    reset = post(admin, f"{page}/password", {"password": "reset-password"}, page)
    assert reset.status_code == 303
    assert dev_browser.get("/-/profile/password").status_code == 302  # session ended
    dev_browser = signed_in_with(app, "dev", "reset-password")

    blocked = post(admin, f"{page}/block", page=page)
    assert blocked.status_code == 303 and "blocked" in text(admin.get(page))
    assert dev_browser.get("/-/profile/password").status_code == 302
    assert sign_in(app.test_client(), "dev", "reset-password").status_code == 401
    assert post(admin, f"{page}/unblock", page=page).status_code == 303
    assert sign_in(app.test_client(), "dev", "reset-password").status_code == 303

    unconfirmed = post(admin, f"{page}/delete", {"confirm": "someone"}, page)
    assert unconfirmed.status_code == 400 and db.session.get(User, dev_id) is not None
    deleted = post(admin, f"{page}/delete", {"confirm": "dev"}, page)
    assert deleted.status_code == 303
    db.session.expire_all()
    assert db.session.get(User, dev_id) is None
    actions = {a for (a,) in db.session.query(AuditEvent.action).filter_by(entity_id=dev_id)}
    assert {"user_password_changed", "user_blocked", "user_unblocked", "user_deleted"} <= actions


def test_admins_cannot_block_or_delete_themselves_in_the_page(app, people):
    admin = signed_in(app, "root")
    page = f"/-/admin/users/{people['root'].id}"
    refused = post(admin, f"{page}/block", page=page)
    assert refused.status_code == 403 and "cannot block yourself" in text(refused)
    refused = post(admin, f"{page}/delete", {"confirm": "root"}, page)
    assert refused.status_code == 403


def test_user_admin_pages_are_for_admins_only(app, people):
    page = f"/-/admin/users/{people['dev'].id}"
    alice = signed_in(app, "alice")
    assert alice.get(page).status_code == 404
    assert post(alice, f"{page}/block").status_code == 404
    assert app.test_client().get(page).status_code == 302
    admin = signed_in(app, "root")
    no_csrf = admin.post(f"{page}/block")
    assert no_csrf.status_code == 400
    db.session.expire_all()
    assert db.session.get(User, people["dev"].id).state == "active"


def signed_in_with(app, username: str, password: str):
    client = app.test_client()
    assert sign_in(client, username, password).status_code == 303
    return client


# --- members ---------------------------------------------------------------------------


def test_maintainers_add_change_and_remove_members_in_the_page(app, people, registry):
    registry.user("newbie")
    alice = signed_in(app, "alice")  # maintainer of the group
    page = "/team/-/group_members"
    shown = text(alice.get(page))
    assert "Add member" in shown and "Owner</option>" not in shown  # no role above her own
    added = post(alice, page, {"username": "NEWBIE", "access_level": "30"}, page)
    assert added.status_code == 303
    listing = text(alice.get(page))
    assert "newbie" in listing and "Added newbie as Developer" in listing
    newbie_id = db.session.query(User).filter_by(username="newbie").one().id
    above = post(alice, page, {"username": "dev", "access_level": "50"}, page)
    assert above.status_code == 403 and "only owners" in text(above)
    unknown = post(alice, page, {"username": "ghost", "access_level": "30"}, page)
    assert unknown.status_code == 400 and "No user is called" in text(unknown)
    changed = post(alice, f"{page}/{newbie_id}", {"access_level": "20"}, page)
    assert changed.status_code == 303 and "Reporter" in text(alice.get(page))
    removed = post(alice, f"{page}/{newbie_id}/remove", page=page)
    assert removed.status_code == 303 and "newbie" not in text(alice.get(page))
    no_csrf = alice.post(page, data={"username": "newbie", "access_level": "30"})
    assert no_csrf.status_code == 400


def test_project_members_page_shows_inherited_members_with_their_source(app, people):
    admin = signed_in(app, "root")
    listing = text(admin.get("/team/lib/-/project_members"))
    assert "alice" in listing and 'href="/team"' in listing  # inherited from the group
    assert "dev" in listing and "direct" in listing


def test_developers_see_members_but_no_maintainer_buttons(app, people):
    dev = signed_in(app, "dev")
    listing = dev.get("/team/lib/-/project_members")
    assert listing.status_code == 200 and "alice" in text(listing)
    assert "Add member" not in text(listing) and "Remove" not in text(listing)
    assert "Settings" not in text(dev.get("/team/lib/-/packages"))
    page = "/team/lib/-/project_members"
    refused = post(dev, page, {"username": "root", "access_level": "10"}, page)
    assert refused.status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in_from_members_pages(app, people):
    visitor = app.test_client()
    assert visitor.get("/team/-/group_members").status_code == 302
    assert visitor.get("/team/lib/-/project_members").status_code == 302


# --- groups, projects, settings, deletion ----------------------------------------------


def test_a_user_creates_a_group_subgroup_and_project_in_pages(app, people):
    alice = signed_in(app, "alice")
    assert "New group" in text(alice.get("/"))
    made = post(alice, "/-/groups/new", {"name": "Rockets", "path": "rockets",
                                        "visibility": "private"}, "/-/groups/new")  # fmt: skip
    assert made.status_code == 303 and made.headers["Location"].endswith("/rockets")
    group_page = text(alice.get("/rockets"))
    assert "New subgroup" in group_page and "Settings" in group_page  # she owns it now
    page = "/-/groups/new?parent=rockets"
    sub = post(alice, "/-/groups/new", {"parent": "rockets", "name": "Stage", "path": "stage",
                                        "visibility": "public"}, page)  # fmt: skip
    assert sub.status_code == 400 and "visib" in text(sub).lower()  # never above its group
    sub = post(alice, "/-/groups/new", {"parent": "rockets", "name": "Stage", "path": "stage",
                                        "visibility": "private"}, page)  # fmt: skip
    assert sub.status_code == 303
    page = "/-/projects/new?namespace=rockets/stage"
    fields = {"namespace": "rockets/stage", "name": "Engine", "visibility": "private"}
    project = post(alice, "/-/projects/new", {**fields, "path": "engine"}, page)
    assert project.status_code == 303
    assert project.headers["Location"].endswith("/rockets/stage/engine/-/packages")
    taken = post(alice, "/-/projects/new", {**fields, "path": "ENGINE"}, page)
    assert taken.status_code == 409
    dev = signed_in(app, "dev")
    assert dev.get("/-/projects/new?namespace=team").status_code == 403
    assert app.test_client().get("/-/groups/new").status_code == 302
    no_csrf = alice.post("/-/groups/new", data={"name": "X", "path": "x"})
    assert no_csrf.status_code == 400


def test_owners_edit_settings_and_delete_a_project_and_a_group(app, people, registry):
    alice = signed_in(app, "alice")  # maintainer: edits settings, but owners delete
    page = "/team/lib/-/project_settings"
    shown = text(alice.get(page))
    assert "Save settings" in shown and "Delete project" not in shown
    assert "Only owners change the visibility" in shown
    assert post(alice, f"{page}/delete", {"confirm": "team/lib"}, page).status_code == 403
    admin = signed_in(app, "root")
    saved = post(admin, page, {"visibility": "private", "max_upload_size": "1000"}, page)
    assert saved.status_code == 303
    db.session.expire_all()
    assert people["project"].max_upload_size == 1000
    upstream_by_maintainer = post(alice, "/team/-/group_settings", {"visibility": "private",
                                  "upstream_mode": "cache"}, "/team/-/group_settings")  # fmt: skip
    assert upstream_by_maintainer.status_code == 303
    db.session.expire_all()
    assert people["group"].upstream_mode == "cache"
    in_project = post(alice, page, {"visibility": "private", "upstream_mode": "off"}, page)
    assert in_project.status_code == 303
    db.session.expire_all()
    assert people["project"].upstream_mode == "off"
    unconfirmed = post(admin, f"{page}/delete", {"confirm": "lib"}, page)
    assert unconfirmed.status_code == 400 and "to confirm" in text(unconfirmed)
    deleted = post(admin, f"{page}/delete", {"confirm": "team/lib"}, page)
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith("/team")
    group_page = "/team/-/group_settings"
    assert post(admin, f"{group_page}/delete", {"confirm": "team"}, group_page).status_code == 303
    actions = {a for (a,) in db.session.query(AuditEvent.action)}
    assert {"project_deleted", "group_deleted", "settings_changed"} <= actions


def test_developers_get_no_settings_or_token_pages(app, people):
    dev = signed_in(app, "dev")
    for page in ("/team/lib/-/project_settings", "/team/lib/-/project_deploy_tokens"):
        assert dev.get(page).status_code == 403
    assert "Deploy tokens" not in text(dev.get("/team/lib/-/packages"))


# --- deploy tokens ---------------------------------------------------------------------


def test_maintainers_create_list_and_revoke_deploy_tokens(app, people, client):
    alice = signed_in(app, "alice")
    page = "/team/-/group_deploy_tokens"
    created = post(alice, page, {"name": "ci", "scopes": "read_package_registry"}, page)
    assert created.status_code == 201
    secret = re.search(r"(pyd-dt-[A-Za-z0-9_-]+)", text(created)).group(1)
    username = re.search(r"Username: <code>([^<]+)</code>", text(created)).group(1)
    index = "/api/v4/projects/team%2Flib/packages/pypi/simple/"
    assert client.get(index, headers=basic(secret, username)).status_code == 200
    assert secret not in text(alice.get(page))  # shown once
    token_id = db.session.query(DeployToken).filter_by(name="ci").one().id
    bad = post(alice, page, {"name": "x", "scopes": "api"}, page)
    assert bad.status_code == 400 and "scopes" in text(bad)
    revoked = post(alice, f"{page}/{token_id}/revoke", page=page)
    assert revoked.status_code == 303
    assert client.get(index, headers=basic(secret, username)).status_code == 401
    assert "revoked" in text(alice.get(page))
    other = "/team/lib/-/project_deploy_tokens"
    assert post(alice, f"{other}/{token_id}/revoke", page=other).status_code == 404


# --- package actions --------------------------------------------------------------------


@pytest.fixture
def released(registry, people):
    token = registry.token(people["root"])
    for version in ("1.0", "2.0"):
        filename, content = make_wheel("rocket", version)
        assert registry.upload(people["project"], filename, content, token=token).status_code == 201
        filename, content = make_sdist("rocket", version)
        assert registry.upload(people["project"], filename, content, token=token).status_code == 201
    rows = db.session.query(Package).filter_by(normalized_name="rocket").all()
    return {p.version: p.id for p in rows}


def test_maintainers_yank_unyank_and_delete_from_the_package_page(app, people, released, client):
    alice = signed_in(app, "alice")
    page = f"/team/lib/-/packages/{released['2.0']}"
    shown = text(alice.get(page))
    assert "Yank…" in shown and "Delete release…" in shown
    yanked = post(alice, f"{page}/yank", {"reason": "broken wheel"}, page)
    assert yanked.status_code == 303
    after = text(alice.get(page))
    assert "This release is yanked: broken wheel" in after and "Unyank" in after
    admin_token = registry_token(people["root"])
    index = client.get("/api/v4/projects/team%2Flib/packages/pypi/simple/rocket/",
                       headers={"PRIVATE-TOKEN": admin_token})  # fmt: skip
    assert 'data-yanked="broken wheel"' in text(index)
    assert post(alice, f"{page}/unyank", page=page).status_code == 303
    assert "This release is yanked" not in text(alice.get(page))

    package = db.session.get(Package, released["1.0"])
    file_ids = [f.id for f in package.files]
    old = f"/team/lib/-/packages/{released['1.0']}"
    one = post(alice, f"{old}/files/{file_ids[0]}/delete", page=old)
    assert one.status_code == 303 and one.headers["Location"].endswith(old)
    unconfirmed = post(alice, f"{old}/delete", {"confirm": "2.0"}, old)
    assert unconfirmed.status_code == 400 and "to confirm" in text(unconfirmed)
    gone = post(alice, f"{old}/delete", {"confirm": "1.0"}, old)
    assert gone.status_code == 303 and gone.headers["Location"].endswith("/team/lib/-/packages")
    db.session.expire_all()
    assert db.session.get(Package, released["1.0"]) is None
    actions = {a for (a,) in db.session.query(AuditEvent.action)}
    assert {"package_yanked", "package_unyanked", "package_file_deleted",
            "package_deleted"} <= actions  # fmt: skip


def test_developers_and_visitors_get_no_package_actions(app, people, released):
    page = f"/team/lib/-/packages/{released['2.0']}"
    dev = signed_in(app, "dev")
    shown = text(dev.get(page))
    assert "Yank" not in shown and "Delete" not in shown
    assert post(dev, f"{page}/yank", {"reason": "x"}, page).status_code == 403
    assert post(dev, f"{page}/delete", {"confirm": "2.0"}, page).status_code == 403
    visitor = app.test_client()
    assert visitor.post(f"{page}/yank", data={"csrf_token": csrf_token(visitor)}).status_code == 401
    alice = signed_in(app, "alice")
    assert alice.post(f"{page}/yank", data={"reason": "no csrf"}).status_code == 400
    assert db.session.get(Package, released["2.0"]).yanked is False


def registry_token(user) -> str:
    from app.domain.accounts import create_personal_token

    return create_personal_token(db.session, user, "t", ["api"], None)[1]


def test_a_users_web_url_opens_their_page(app, people, client, registry):
    token = registry.token(people["root"])
    shown = client.get(f"/api/v4/users/{people['dev'].id}", headers={"PRIVATE-TOKEN": token})
    path = shown.json["web_url"].removeprefix("http://localhost")
    assert path == "/dev"
    alice = signed_in(app, "alice")
    page = alice.get(path)
    assert page.status_code == 200 and "team/lib" in text(page) and "Developer" in text(page)
    outsider = registry.user("outsider")
    assert outsider.id
    assert "team/lib" not in text(signed_in(app, "outsider").get(path))
    assert app.test_client().get(path).status_code == 302  # signed out: sign in first


def test_latest_skips_yanked_and_failed_releases_and_failed_ones_are_marked(
    app, people, released, registry
):
    token = registry.token(people["root"])
    broken = registry.upload(  # gzip's magic passes the upload; the worker fails it
        people["project"], "rocket-3.0.tar.gz", b"\x1f\x8b but then not gzip",
        token=token, name="rocket", version="3.0",
    )  # fmt: skip
    assert broken.status_code == 201
    alice = signed_in(app, "alice")
    listed = text(alice.get("/"))
    assert re.search(r'>rocket</a>\s*<span class="version">2.0</span>', listed)
    page = f"/team/lib/-/packages/{released['2.0']}"
    post(alice, f"{page}/yank", {"reason": "bad"}, page)
    assert re.search(r'>rocket</a>\s*<span class="version">1.0</span>', text(alice.get("/")))
    failed_id = (
        db.session.query(Package).filter_by(normalized_name="rocket", version="3.0").one().id
    )
    failed_page = text(alice.get(f"/team/lib/-/packages/{failed_id}"))
    assert "This release failed" in failed_page and "rocket-3.0.tar.gz:" in failed_page
    assert "pip install" not in failed_page and "Delete release…" in failed_page
    gone = post(alice, f"/team/lib/-/packages/{failed_id}/delete", {"confirm": "3.0"})
    assert gone.status_code == 303


def test_maintainers_rename_a_project_and_the_api_too(app, people, registry, client):
    alice = signed_in(app, "alice")
    page = "/team/lib/-/project_settings"
    assert post(alice, page, {"name": "Library", "visibility": "private"}, page).status_code == 303
    assert "<h1>Library" in text(alice.get("/team/lib/-/packages"))
    empty = post(alice, page, {"name": "  ", "visibility": "private"}, page)
    assert empty.status_code == 400 and "name is invalid" in text(empty)
    token = registry.token(people["alice"])
    renamed = client.put("/api/v4/groups/team", json={"name": "The Team"},
                         headers={"PRIVATE-TOKEN": token})  # fmt: skip
    assert renamed.status_code == 200 and renamed.json["name"] == "The Team"
    assert renamed.json["full_path"] == "team"


EVIL = 'Rockets & <script>alert("x")</script>\nSecond line'


def test_descriptions_of_groups_and_projects_in_pages_escaped(app, people):
    alice = signed_in(app, "alice")
    made = post(alice, "/-/groups/new", {"name": "Rockets", "path": "rockets",
                "visibility": "private", "description": EVIL}, "/-/groups/new")  # fmt: skip
    assert made.status_code == 303
    page = text(alice.get("/rockets"))
    assert "Rockets &amp; &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\nSecond line" in page
    assert "<script>alert" not in page
    settings = "/team/lib/-/project_settings"
    assert 'name="description"' in text(alice.get(settings))
    saved = post(alice, settings, {"name": "Lib", "visibility": "private",
                 "description": "  Shared <b>code</b>  "}, settings)  # fmt: skip
    assert saved.status_code == 303
    assert "Shared &lt;b&gt;code&lt;/b&gt;</p>" in text(alice.get("/team/lib/-/packages"))
    too_long = post(alice, settings, {"name": "Lib", "description": "x" * 2001}, settings)
    assert too_long.status_code == 400 and "description is invalid" in text(too_long)
    cleared = post(alice, settings, {"name": "Lib", "description": ""}, settings)
    assert cleared.status_code == 303
    db.session.expire_all()
    assert people["project"].description is None


def test_descriptions_through_the_api(app, people, registry, client):
    headers = {"PRIVATE-TOKEN": registry.token(people["alice"])}
    group = client.post("/api/v4/groups", json={"path": "docs", "description": "All the docs"},
                        headers=headers)  # fmt: skip
    assert group.status_code == 201 and group.json["description"] == "All the docs"
    fields = {"path": "guide", "namespace_id": group.json["id"], "description": "The guide"}
    project = client.post("/api/v4/projects", json=fields, headers=headers)
    assert project.status_code == 201 and project.json["description"] == "The guide"
    assert client.get("/api/v4/projects/docs%2Fguide", headers=headers).json["description"] == (
        "The guide"
    )
    changed = client.put("/api/v4/groups/docs", json={"description": "Docs, all"}, headers=headers)
    assert changed.status_code == 200 and changed.json["description"] == "Docs, all"
    cleared = client.put("/api/v4/projects/docs%2Fguide", json={"description": None},
                         headers=headers)  # fmt: skip
    assert cleared.status_code == 200 and cleared.json["description"] == ""
    bad = client.put("/api/v4/groups/docs", json={"description": ["a", "b"]}, headers=headers)
    assert bad.status_code == 400 and "description" in bad.json["message"]
    assert client.get("/api/v4/groups/team", headers=headers).json["description"] == ""
    events = db.session.query(AuditEvent).filter_by(action="settings_changed").all()
    assert any((e.details or {}).get("description") == "Docs, all" for e in events)


def test_members_leave_from_the_page_but_not_the_last_owner(app, people):
    dev = signed_in(app, "dev")
    page = "/team/lib/-/project_members"
    shown = text(dev.get(page))
    assert "Leave project" in shown and "You are Developer here" in shown
    assert dev.post(f"{page}/leave").status_code == 400  # no CSRF token
    left = post(dev, f"{page}/leave", page=page)
    assert left.status_code == 303 and left.headers["Location"] == "/"
    assert "You left team/lib" in text(dev.get("/"))
    assert dev.get(page).status_code == 404  # private: hidden from her now
    assert app.test_client().post(f"{page}/leave").status_code in (302, 400)
    alice = signed_in(app, "alice")
    made = post(alice, "/-/groups/new", {"name": "Solo", "path": "solo",
                "visibility": "private"}, "/-/groups/new")  # fmt: skip
    assert made.status_code == 303
    solo = "/solo/-/group_members"
    refused = post(alice, f"{solo}/leave", page=solo)
    assert refused.status_code == 403 and "at least one owner" in text(refused)
    team = "/team/-/group_members"
    assert post(alice, f"{team}/leave", page=team).status_code == 303
    root = signed_in(app, "root")  # admins see everything but belong nowhere: no button
    assert "Leave group" not in text(root.get(team))
    actions = [a for (a,) in db.session.query(AuditEvent.action).filter_by(action="member_left")]
    assert len(actions) == 2
