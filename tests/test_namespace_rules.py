"""Accounts and paths as GitLab has them (issue 14, items 14 and 15).

Usernames, emails and group and project paths are unique whatever their case, follow
GitLab's character rules, and no username or top-level group takes a top-level route.
Nothing is more visible than the group that holds it, and rows made before that rule
show no more than their group."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.domain.names import APP_TOP_LEVEL_ROUTES
from app.extensions import db
from app.migrations import MigrationRefused, upgrade
from app.models import Group, Project
from tests.conftest import basic
from tests.dists import make_wheel
from tests.services import postgres_database


@pytest.fixture
def admin(registry):
    return {"PRIVATE-TOKEN": registry.token(registry.user("root", admin=True))}


def post(registry, resource: str, headers: dict, **json):
    return registry.client.post(f"/api/v4/{resource}", json=json, headers=headers)


# --- item 14: users -----------------------------------------------------------------


def test_usernames_are_unique_whatever_their_case(registry, admin):
    assert post(registry, "users", admin, username="alice").status_code == 201
    for spelling in ("ALICE", "Alice", " alice "):
        taken = post(registry, "users", admin, username=spelling)
        assert taken.status_code == 409, spelling
        assert taken.json == {"message": "Username has already been taken"}


@pytest.mark.parametrize(
    "username", ["al ice", "-alice", "alice-", "al..ice", "alice.git", "ålice", "a/b", "x" * 256]
)
def test_usernames_follow_gitlabs_rules(registry, admin, username):
    refused = post(registry, "users", admin, username=username)
    assert refused.status_code == 400
    assert refused.json["message"].startswith("username is invalid")
    if len(username) < 256:
        assert "can contain only letters, digits" in refused.json["message"]


@pytest.mark.parametrize("username", ["api", "API", "users", "static", "admin", "help", "explore"])
def test_usernames_may_not_be_top_level_routes(registry, admin, username):
    refused = post(registry, "users", admin, username=username)
    assert refused.status_code == 400
    assert refused.json["message"] == f"username is reserved: {username!r} is a top-level route"


@pytest.mark.parametrize("email", ["e", "alice@example", "al ice@example.com", "@example.com"])
def test_emails_must_look_like_addresses(registry, admin, email):
    refused = post(registry, "users", admin, username="alice", email=email)
    assert refused.status_code == 400
    assert refused.json["message"].startswith("email is invalid")


def test_emails_are_unique_whatever_their_case(registry, admin):
    assert (
        post(registry, "users", admin, username="alice", email="a@example.com").status_code == 201
    )
    taken = post(registry, "users", admin, username="bob", email="A@Example.COM")
    assert taken.status_code == 409 and taken.json == {"message": "Email has already been taken"}
    assert post(registry, "users", admin, username="carol").status_code == 201  # no email
    assert post(registry, "users", admin, username="dave", email="").status_code == 201


def test_the_database_holds_the_rules_too(registry):
    """The unique indexes catch what bypasses the domain (another writer, a race)."""
    registry.user("alice")
    team = registry.group("team")
    registry.project(team, "lib")
    for statement in (
        "INSERT INTO users (username, is_admin, created_at) VALUES ('ALICE', false, '2024-01-01')",
        "INSERT INTO users (username, email, is_admin, created_at)"
        " VALUES ('other', 'ALICE@EXAMPLE.COM', false, '2024-01-01')",
        "INSERT INTO groups (name, path, full_path, visibility, created_at)"
        " VALUES ('T', 'TEAM', 'TEAM', 'private', '2024-01-01')",
        f"INSERT INTO projects (name, path, full_path, group_id, visibility, created_at)"
        f" VALUES ('L', 'LIB', 'team/LIB', {team.id}, 'private', '2024-01-01')",
    ):
        with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
            db.session.execute(sa.text(statement))


def test_sign_in_and_create_admin_find_users_whatever_their_case(app, registry):
    from app.domain.accounts import ensure_admin
    from app.domain.sign_in import check_password

    alice = registry.user("alice")
    assert check_password(db.session, "ALICE", "s3cret-pass") is alice
    assert ensure_admin(db.session, "Alice") is alice and alice.is_admin


def test_the_first_admin_is_root_as_in_gitlab():
    from app.cli import DEFAULT_ADMIN
    from app.domain.names import validate_top_level

    assert validate_top_level(DEFAULT_ADMIN, "username") == "root"


# --- item 14: groups and projects ---------------------------------------------------


def test_group_and_project_paths_are_unique_whatever_their_case(registry, admin):
    team = post(registry, "groups", admin, path="team")
    assert team.status_code == 201
    taken = post(registry, "groups", admin, path="TEAM")
    assert taken.status_code == 409
    assert taken.json["message"] == (
        "Failed to save group: TEAM has already been taken (by group team)"
    )
    group_id = team.json["id"]
    assert post(registry, "groups", admin, path="Sub", parent_id=group_id).status_code == 201
    assert post(registry, "groups", admin, path="sub", parent_id=group_id).status_code == 409
    assert post(registry, "projects", admin, path="Lib", namespace_id=group_id).status_code == 201
    assert post(registry, "projects", admin, path="lib", namespace_id=group_id).status_code == 409
    # A subgroup and a project of one group share its URLs: one path, either kind.
    clash = post(registry, "projects", admin, path="SUB", namespace_id=group_id)
    assert clash.status_code == 409 and "(by group team/Sub)" in clash.json["message"]
    clash = post(registry, "groups", admin, path="lib", parent_id=group_id)
    assert clash.status_code == 409 and "(by project team/Lib)" in clash.json["message"]
    other = post(registry, "groups", admin, path="other").json["id"]
    assert post(registry, "projects", admin, path="lib", namespace_id=other).status_code == 201


@pytest.mark.parametrize("path", ["bad path", "-team", "team-", "te..am", "team.atom", "tëam"])
def test_paths_follow_gitlabs_rules(registry, admin, path):
    group = post(registry, "groups", admin, path=path)
    assert group.status_code == 400
    assert group.json["message"].startswith(f"path is invalid: {path!r} can contain only")
    team = registry.group("team")
    project = post(registry, "projects", admin, path=path, namespace_id=team.id)
    assert project.status_code == 400 and "can contain only" in project.json["message"]


@pytest.mark.parametrize("path", ["api", "Users", "static", "help", "explore", "dashboard"])
def test_top_level_groups_may_not_take_a_top_level_route(registry, admin, path):
    refused = post(registry, "groups", admin, path=path)
    assert refused.status_code == 400
    assert refused.json["message"] == f"path is reserved: {path!r} is a top-level route"
    team = registry.group("team")
    assert post(registry, "groups", admin, path=path, parent_id=team.id).status_code == 201


def test_every_top_level_route_of_the_app_is_reserved(app):
    """The reserved words follow the URL map: a new top-level route must be added."""
    firsts = {
        rule.rule.split("/")[1]
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith("/<") and rule.rule != "/"
    }
    assert firsts and firsts <= APP_TOP_LEVEL_ROUTES, firsts - APP_TOP_LEVEL_ROUTES


def test_lookups_by_path_ignore_case(registry, admin):
    team = registry.group("Team", "public")
    lib = registry.project(team, "Lib", "public")
    filename, content = make_wheel("demo", "1.0")
    token = admin["PRIVATE-TOKEN"]
    assert registry.upload("team%2Flib", filename, content, token=token).status_code == 201
    client = registry.client
    assert client.get("/api/v4/groups/TEAM", headers=admin).json["id"] == team.id
    assert client.get("/api/v4/projects/team%2FLIB", headers=admin).json["id"] == lib.id
    assert client.get("/api/v4/projects/TEAM/lib/packages/pypi/simple/demo/").status_code == 200
    assert client.get("/api/v4/groups/team/-/packages/pypi/simple/demo/").status_code == 200
    # Web pages send the visitor on to the path as it is spelled, as GitLab does.
    assert client.get("/team?search=x").location == "/Team?search=x"
    assert client.get("/TEAM/LIB").location == "/Team/Lib/-/packages"
    assert client.get("/team/lib/-/packages").location == "/Team/Lib/-/packages"
    assert client.get("/Team/Lib/-/packages").status_code == 200


def test_a_hidden_group_is_not_revealed_by_its_spelling(registry, admin):
    registry.group("Secret")
    stranger = registry.user("stranger")
    response = registry.client.get(
        "/api/v4/groups/secret", headers={"PRIVATE-TOKEN": registry.token(stranger)}
    )
    assert response.status_code == 404
    assert registry.client.get("/secret").location.startswith("/users/sign_in")


# --- item 14: the migration and rows that already collide ---------------------------


def _app_at(tmp_path: Path, url: str) -> Flask:
    return create_app(
        {"DATA_DIR": str(tmp_path), "DATABASE_URL": url, "LOAD_ENTRYPOINT_PLUGINS": False}
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    with postgres_database() as url:
        yield url


COLLIDING_ROWS = [
    "INSERT INTO users (id, username, email, is_admin, created_at)"
    " VALUES (1, 'alice', 'a@example.com', false, '2024-01-01')",
    "INSERT INTO users (id, username, email, is_admin, created_at)"
    " VALUES (2, 'ALICE', 'b@example.com', false, '2024-01-01')",
    "INSERT INTO users (id, username, email, is_admin, created_at)"
    " VALUES (3, 'bob', 'B@Example.com', false, '2024-01-01')",
    "INSERT INTO groups (id, name, path, full_path, visibility, created_at)"
    " VALUES (1, 'Team', 'Team', 'Team', 'private', '2024-01-01')",
    "INSERT INTO groups (id, name, path, full_path, visibility, created_at)"
    " VALUES (2, 'team', 'team', 'team', 'private', '2024-01-01')",
]


def test_the_migration_names_rows_that_already_collide(tmp_path, empty_database):
    app = _app_at(tmp_path, empty_database)
    with app.app_context():
        upgrade("0003")
        with db.engine.begin() as connection:
            for statement in COLLIDING_ROWS:
                connection.execute(sa.text(statement))
        with pytest.raises(MigrationRefused) as refused:
            upgrade("0006")
        message = str(refused.value)
        assert "users.username: id 1 'alice', id 2 'ALICE'" in message
        assert "users.email: id 2 'b@example.com', id 3 'B@Example.com'" in message
        assert "groups.full_path: id 1 'Team', id 2 'team'" in message
        assert "projects" not in message
        with db.engine.begin() as connection:  # fixed by hand, it goes through
            connection.execute(sa.text("UPDATE users SET username = 'alice2' WHERE id = 2"))
            connection.execute(sa.text("UPDATE users SET email = NULL WHERE id = 3"))
            connection.execute(sa.text("DELETE FROM groups WHERE id = 2"))
        upgrade("0006")
        db.engine.dispose()


def test_db_upgrade_reports_collisions_without_a_traceback(tmp_path):
    from click.testing import CliRunner

    from app.cli import main

    url = f"sqlite:///{tmp_path}/old.db"
    with _app_at(tmp_path, url).app_context():
        upgrade("0003")
        with db.engine.begin() as connection:
            for statement in COLLIDING_ROWS[:2]:
                connection.execute(sa.text(statement))
        db.engine.dispose()
    result = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={"PACKYARD_DATABASE_URL": url, "PACKYARD_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "users.username: id 1 'alice', id 2 'ALICE'" in result.output
    assert "Traceback" not in result.output


# --- item 15: visibility ------------------------------------------------------------


def test_nothing_is_created_more_visible_than_its_group(registry, admin):
    team = post(registry, "groups", admin, path="team", visibility="private").json["id"]
    public = post(registry, "projects", admin, path="lib", namespace_id=team, visibility="public")
    assert public.status_code == 400
    assert public.json["message"] == (
        "visibility public is not allowed for project team/lib: group team is private, "
        "and nothing may be more visible than the group that holds it"
    )
    internal = post(registry, "groups", admin, path="sub", parent_id=team, visibility="internal")
    assert internal.status_code == 400 and "group team/sub" in internal.json["message"]
    assert post(registry, "projects", admin, path="lib", namespace_id=team).status_code == 201
    shared = post(registry, "groups", admin, path="shared", visibility="internal").json["id"]
    sub = post(registry, "groups", admin, path="sub", parent_id=shared, visibility="internal")
    assert sub.status_code == 201
    deep = post(
        registry, "projects", admin, path="deep", namespace_id=sub.json["id"], visibility="public"
    )
    assert deep.status_code == 400 and "group shared/sub is internal" in deep.json["message"]


def test_a_group_may_not_become_less_visible_than_what_it_holds(registry, admin):
    team = registry.group("team", "public")
    sub = registry.group("sub", "internal", parent=team)
    registry.project(sub, "open", "internal")
    registry.project(team, "lib", "public")
    refused = registry.client.put(
        f"/api/v4/groups/{team.id}", json={"visibility": "private"}, headers=admin
    )
    assert refused.status_code == 400
    assert refused.json["message"] == (
        "visibility private is not allowed for group team: group team/sub is internal; "
        "project team/lib is public; project team/sub/open is internal "
        "(make them less visible first)"
    )
    internal = registry.client.put(
        f"/api/v4/groups/{team.id}", json={"visibility": "internal"}, headers=admin
    )
    assert internal.json["message"].startswith(
        "visibility internal is not allowed for group team: project team/lib is public"
    )
    db.session.refresh(team)
    assert team.visibility == "public"  # nothing changed
    lib = registry.client.put("/api/v4/projects/team%2Flib", json={"visibility": "internal"},
                              headers=admin)  # fmt: skip
    assert lib.status_code == 200 and lib.json["visibility"] == "internal"
    lowered = registry.client.put(
        f"/api/v4/groups/{team.id}", json={"visibility": "internal"}, headers=admin
    )
    assert lowered.status_code == 200 and lowered.json["visibility"] == "internal"


def test_a_project_or_subgroup_may_not_be_made_more_visible_than_its_group(registry, admin):
    team = registry.group("team", "internal")
    sub = registry.group("sub", "private", parent=team)
    lib = registry.project(team, "lib")
    refused = registry.client.put(
        f"/api/v4/projects/{lib.id}", json={"visibility": "public"}, headers=admin
    )
    assert refused.status_code == 400
    assert "group team is internal" in refused.json["message"]
    refused = registry.client.put(
        f"/api/v4/groups/{sub.id}", json={"visibility": "public"}, headers=admin
    )
    assert refused.status_code == 400 and "group team/sub" in refused.json["message"]
    raised = registry.client.put(
        f"/api/v4/projects/{lib.id}", json={"visibility": "internal"}, headers=admin
    )
    assert raised.status_code == 200 and raised.json["visibility"] == "internal"
    bad = registry.client.put(
        f"/api/v4/projects/{lib.id}", json={"visibility": "secret"}, headers=admin
    )
    assert bad.status_code == 400


def test_only_owners_change_visibility(registry, admin):
    team = registry.group("team", "public")
    lib = registry.project(team, "lib")
    maintainer, owner = registry.user("maintainer"), registry.user("owner")
    registry.member(maintainer, 40, group=team)
    registry.member(owner, 50, group=team)
    url = f"/api/v4/projects/{lib.id}"
    as_maintainer = {"PRIVATE-TOKEN": registry.token(maintainer)}
    refused = registry.client.put(url, json={"visibility": "public"}, headers=as_maintainer)
    assert refused.status_code == 403
    same = registry.client.put(url, json={"visibility": "private"}, headers=as_maintainer)
    assert same.status_code == 200  # unchanged: nothing to refuse
    as_owner = {"PRIVATE-TOKEN": registry.token(owner)}
    assert (
        registry.client.put(url, json={"visibility": "public"}, headers=as_owner).status_code == 200
    )
    assert registry.client.get(url).json["visibility"] == "public"  # anonymous sees it now


def _legacy_world(registry, admin_token: str) -> dict:
    """Rows as they could be made before the rule: public inside private."""
    team = registry.group("team")
    sub = registry.group("sub", parent=team)
    lib = registry.project(sub, "lib")
    filename, content = make_wheel("leaky", "1.0")
    assert registry.upload(lib, filename, content, token=admin_token).status_code == 201
    db.session.execute(sa.update(Group).where(Group.id == sub.id).values(visibility="public"))
    db.session.execute(sa.update(Project).where(Project.id == lib.id).values(visibility="public"))
    db.session.commit()
    return {"team": team, "sub": sub, "lib": lib}


def test_rows_made_before_the_rule_show_no_more_than_their_group(registry, admin):
    world = _legacy_world(registry, admin["PRIVATE-TOKEN"])
    client = registry.client
    lib, sub = world["lib"], world["sub"]
    assert client.get(f"/api/v4/projects/{lib.id}/packages/pypi/simple/leaky/").status_code == 401
    assert client.get(f"/api/v4/groups/{sub.id}/-/packages/pypi/simple/").status_code == 401
    assert client.get(f"/api/v4/projects/{lib.id}").status_code == 401
    assert client.get("/api/v4/projects").json == []
    assert client.get("/api/v4/groups").json == []
    home = client.get("/").get_data(as_text=True)
    assert "leaky" not in home and "team/sub" not in home
    assert client.get("/team/sub/lib/-/packages").location.startswith("/users/sign_in")
    stranger = {"PRIVATE-TOKEN": registry.token(registry.user("stranger"))}
    assert client.get(f"/api/v4/projects/{lib.id}", headers=stranger).status_code == 404
    assert client.get("/api/v4/projects", headers=stranger).json == []
    # A credential bound elsewhere reads only what is public: a deploy token of another
    # project, a CI job token of another project.
    elsewhere = registry.project(registry.group("elsewhere"), "app")
    deploy = registry.deploy_token(("read_package_registry",), project=elsewhere)
    index = f"/api/v4/projects/{lib.id}/packages/pypi/simple/leaky/"
    assert client.get(index, headers=basic(deploy)).status_code == 404
    job = client.post(f"/api/v4/projects/{elsewhere.id}/job_tokens", json={}, headers=admin).json[
        "token"
    ]
    assert client.get(index, headers={"JOB-TOKEN": job}).status_code == 404
    # Members still read it, and its files are not marked for shared caches.
    member = registry.user("member")
    registry.member(member, 20, group=world["team"])
    page = client.get(
        index,
        headers={**basic(registry.token(member)), "Accept": "application/vnd.pypi.simple.v1+json"},
    )
    assert page.status_code == 200
    file_url = (
        f"/api/v4/projects/{lib.id}/packages/pypi/files/"
        + (page.json["files"][0]["url"].split("files/")[1])
    )
    download = client.get(file_url, headers=basic(registry.token(member)))
    assert download.status_code == 200 and "public" not in download.headers["Cache-Control"]


def test_bulk_readable_projects_use_the_effective_visibility(registry, admin):
    """The group index's bulk rule agrees with project_access on rows made before the rule."""
    from app.domain.access import all_readable_project_ids, project_access, readable_project_ids
    from app.domain.identity import ANONYMOUS

    world = _legacy_world(registry, admin["PRIVATE-TOKEN"])
    public = registry.group("pub", "public")
    shown = registry.project(public, "shown", "public")
    assert project_access(db.session, ANONYMOUS, world["lib"]).read is False
    assert readable_project_ids(db.session, ANONYMOUS, world["sub"]) == []
    assert readable_project_ids(db.session, ANONYMOUS, world["team"]) == []
    assert all_readable_project_ids(db.session, ANONYMOUS) == [shown.id]
