"""Admin REST API basics (contract section 5): success and error answers."""

from __future__ import annotations

import pytest

from app.extensions import db
from tests.conftest import basic


@pytest.fixture
def admin(registry):
    user = registry.user("root", admin=True)
    return {"PRIVATE-TOKEN": registry.token(user)}


def test_current_user(registry, admin):
    response = registry.client.get("/api/v4/user", headers=admin)
    assert response.status_code == 200
    assert response.json["username"] == "root" and response.json["is_admin"] is True
    assert registry.client.get("/api/v4/user").status_code == 401
    assert registry.client.get("/api/v4/user").json == {"message": "401 Unauthorized"}


def test_admin_creates_users_and_their_tokens(registry, admin):
    created = registry.client.post(
        "/api/v4/users",
        json={"username": "alice", "email": "a@example.com", "password": "pw-123456"},
        headers=admin,
    )
    assert created.status_code == 201, created.json
    user_id = created.json["id"]
    token = registry.client.post(
        f"/api/v4/users/{user_id}/personal_access_tokens",
        json={"name": "laptop", "scopes": ["read_api"], "expires_at": "2099-01-01"},
        headers=admin,
    )
    assert token.status_code == 201
    assert token.json["scopes"] == ["read_api"]
    assert token.json["token"].startswith("pyd-pat-")
    assert token.json["expires_at"].startswith("2099-01-01")
    me = registry.client.get("/api/v4/user", headers={"PRIVATE-TOKEN": token.json["token"]})
    assert me.json["username"] == "alice"


def test_user_errors(registry, admin):
    duplicate = registry.client.post("/api/v4/users", json={"username": "root"}, headers=admin)
    assert duplicate.status_code == 409 and "message" in duplicate.json
    missing = registry.client.post("/api/v4/users", json={}, headers=admin)
    assert missing.status_code == 400 and "username" in missing.json["message"]
    bad_scope = registry.client.post(
        "/api/v4/users/1/personal_access_tokens", json={"name": "x", "scopes": ["sudo"]},
        headers=admin,
    )  # fmt: skip
    assert bad_scope.status_code == 400
    assert registry.client.post(
        "/api/v4/users/999/personal_access_tokens", json={"name": "x", "scopes": ["api"]},
        headers=admin,
    ).status_code == 404  # fmt: skip
    plain = {"PRIVATE-TOKEN": registry.token(registry.user("plain"))}
    forbidden = registry.client.post("/api/v4/users", json={"username": "x"}, headers=plain)
    assert forbidden.status_code == 403 and "message" in forbidden.json
    not_json = registry.client.post(
        "/api/v4/users", data="[1]", content_type="application/json", headers=admin
    )
    assert not_json.status_code == 400


def test_groups_and_projects(registry, admin):
    group = registry.client.post(
        "/api/v4/groups", data={"name": "Team", "path": "team"}, headers=admin
    )
    assert group.status_code == 201
    assert group.json["full_path"] == "team" and group.json["visibility"] == "private"
    sub = registry.client.post(
        "/api/v4/groups",
        json={"name": "Sub", "path": "sub", "parent_id": group.json["id"], "visibility": "private"},
        headers=admin,
    )
    assert sub.status_code == 201 and sub.json["full_path"] == "team/sub"
    project = registry.client.post(
        "/api/v4/projects", json={"name": "Lib", "path": "lib", "namespace_id": sub.json["id"]},
        headers=admin,
    )  # fmt: skip
    assert project.status_code == 201
    assert project.json["path_with_namespace"] == "team/sub/lib"
    by_path = registry.client.get("/api/v4/projects/team%2Fsub%2Flib", headers=admin)
    assert by_path.status_code == 200 and by_path.json["id"] == project.json["id"]
    subgroups = registry.client.get("/api/v4/groups/team/subgroups", headers=admin)
    assert [g["full_path"] for g in subgroups.json] == ["team/sub"]
    projects = registry.client.get(f"/api/v4/groups/{sub.json['id']}/projects", headers=admin)
    assert [p["id"] for p in projects.json] == [project.json["id"]]
    assert registry.client.get("/api/v4/groups/team%2Fsub", headers=admin).status_code == 200


def test_namespace_errors(registry, admin):
    assert registry.client.post(
        "/api/v4/groups", json={"name": "x", "path": "bad path"}, headers=admin
    ).status_code == 400  # fmt: skip
    assert registry.client.post(
        "/api/v4/groups", json={"name": "x", "path": "packages"}, headers=admin
    ).status_code == 400  # fmt: skip
    assert registry.client.post(
        "/api/v4/groups", json={"path": "x", "visibility": "secret"}, headers=admin
    ).status_code == 400  # fmt: skip
    registry.client.post("/api/v4/groups", json={"path": "team"}, headers=admin)
    taken = registry.client.post("/api/v4/groups", json={"path": "team"}, headers=admin)
    assert taken.status_code in (400, 409) and "taken" in taken.json["message"]
    assert registry.client.post(
        "/api/v4/projects", json={"path": "lib", "namespace_id": 999}, headers=admin
    ).status_code == 404  # fmt: skip
    assert registry.client.get("/api/v4/projects/999", headers=admin).status_code == 404
    assert registry.client.get("/api/v4/groups/nope", headers=admin).status_code == 404


def test_listings_show_only_what_the_caller_may_see(registry, admin):
    team = registry.group("team")
    registry.project(team, "hidden")
    public = registry.group("pub", "public")
    registry.project(public, "shown", "public")
    stranger = {"PRIVATE-TOKEN": registry.token(registry.user("stranger"))}
    groups = registry.client.get("/api/v4/groups", headers=stranger).json
    assert [g["full_path"] for g in groups] == ["pub"]
    projects = registry.client.get("/api/v4/projects", headers=stranger).json
    assert [p["path_with_namespace"] for p in projects] == ["pub/shown"]
    assert registry.client.get("/api/v4/groups/team", headers=stranger).status_code == 404
    anonymous = registry.client.get("/api/v4/projects").json
    assert [p["path_with_namespace"] for p in anonymous] == ["pub/shown"]
    everything = registry.client.get("/api/v4/projects", headers=admin).json
    assert len(everything) == 2


def test_pagination_headers(registry, admin):
    group = registry.group("team")
    for index in range(5):
        registry.project(group, f"p{index}")
    page = registry.client.get("/api/v4/projects?per_page=2&page=2", headers=admin)
    assert len(page.json) == 2
    assert page.headers["X-Total"] == "5"
    assert page.headers["X-Total-Pages"] == "3"
    assert page.headers["X-Page"] == "2" and page.headers["X-Per-Page"] == "2"
    assert page.headers["X-Next-Page"] == "3" and page.headers["X-Prev-Page"] == "1"
    assert 'rel="next"' in page.headers["Link"] and 'rel="first"' in page.headers["Link"]
    last = registry.client.get("/api/v4/projects?per_page=2&page=3", headers=admin)
    assert len(last.json) == 1 and last.headers["X-Next-Page"] == ""
    beyond = registry.client.get("/api/v4/projects?per_page=2&page=9", headers=admin)
    assert beyond.status_code == 200 and beyond.json == []
    bad = registry.client.get("/api/v4/projects?per_page=zero", headers=admin)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("query", "page", "per_page"),
    [
        ("page=2147483647&per_page=100", "2147483647", "100"),  # the largest offset
        ("page=-4&per_page=-4", "1", "1"),
        ("page=0&per_page=0", "1", "20"),
        ("per_page=1000", "1", "100"),
    ],
)
def test_pagination_arguments_are_bounded(registry, admin, query, page, per_page):
    registry.project(registry.group("team"), "lib")
    response = registry.client.get(f"/api/v4/projects?{query}", headers=admin)
    assert response.status_code == 200
    assert response.headers["X-Page"] == page and response.headers["X-Per-Page"] == per_page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=99999999999999999999", "page is out of range"),
        ("per_page=99999999999999999999", "per_page is out of range"),
        ("page=abc", "page is invalid"),
        ("per_page=1e3", "per_page is invalid"),
    ],
)
def test_pagination_arguments_out_of_range_are_400(registry, admin, query, message):
    response = registry.client.get(f"/api/v4/projects?{query}", headers=admin)
    assert response.status_code == 400 and response.json["message"] == message


def test_members_roles_and_who_may_add_them(registry, admin):
    team = registry.group("team")
    project = registry.project(team, "lib")
    dev = registry.user("dev")
    added = registry.client.post(
        f"/api/v4/projects/{project.id}/members", json={"user_id": dev.id, "access_level": 30},
        headers=admin,
    )  # fmt: skip
    assert added.status_code == 201 and added.json["access_level"] == 30
    dev_token = {"PRIVATE-TOKEN": registry.token(dev)}
    other = registry.user("other")
    refused = registry.client.post(
        f"/api/v4/projects/{project.id}/members", json={"user_id": other.id, "access_level": 30},
        headers=dev_token,
    )  # fmt: skip
    assert refused.status_code == 403
    bad_level = registry.client.post(
        f"/api/v4/groups/{team.id}/members", json={"user_id": other.id, "access_level": 35},
        headers=admin,
    )  # fmt: skip
    assert bad_level.status_code == 400
    again = registry.client.post(
        f"/api/v4/projects/{project.id}/members", json={"user_id": dev.id, "access_level": 30},
        headers=admin,
    )  # fmt: skip
    assert again.status_code == 409
    assert registry.client.post(
        f"/api/v4/groups/{team.id}/members", json={"user_id": 999, "access_level": 30},
        headers=admin,
    ).status_code == 404  # fmt: skip


def test_nobody_grants_a_role_above_their_own(registry, admin):
    from app.models import Membership

    team = registry.group("team")
    project = registry.project(team, "lib")
    keeper, boss = registry.user("keeper"), registry.user("boss")
    registry.member(keeper, 40, group=team)  # maintainer of the group and so of the project
    registry.member(boss, 50, group=team)
    as_keeper = {"PRIVATE-TOKEN": registry.token(keeper)}
    as_boss = {"PRIVATE-TOKEN": registry.token(boss)}

    def grant(where: str, user, level: int, headers):
        return registry.client.post(
            f"/api/v4/{where}/members", json={"user_id": user.id, "access_level": level},
            headers=headers,
        )  # fmt: skip

    for where in (f"projects/{project.id}", f"groups/{team.id}"):
        hopeful = registry.user(f"hopeful-{where[0]}")
        refused = grant(where, hopeful, 50, as_keeper)
        assert refused.status_code == 403
        assert refused.json["message"] == "403 Forbidden: only owners can grant the Owner role"
        assert not db.session.query(Membership).filter_by(user_id=hopeful.id).count()
        assert grant(where, registry.user(f"peer-{where[0]}"), 40, as_keeper).status_code == 201
        assert grant(where, registry.user(f"heir-{where[0]}"), 50, as_boss).status_code == 201
        assert grant(where, registry.user(f"chosen-{where[0]}"), 50, admin).status_code == 201


def test_group_creator_becomes_owner(registry, admin):
    user = registry.user("maker")
    token = {"PRIVATE-TOKEN": registry.token(user)}
    group = registry.client.post("/api/v4/groups", json={"path": "mine"}, headers=token)
    assert group.status_code == 201
    project = registry.client.post(
        "/api/v4/projects", json={"path": "lib", "namespace_id": group.json["id"]}, headers=token
    )
    assert project.status_code == 201


def test_deploy_tokens(registry, admin):
    team = registry.group("team")
    project = registry.project(team, "lib")
    created = registry.client.post(
        f"/api/v4/projects/{project.id}/deploy_tokens",
        json={"name": "ci", "scopes": ["read_package_registry"], "username": "robot"},
        headers=admin,
    )
    assert created.status_code == 201
    assert created.json["username"] == "robot" and created.json["token"].startswith("pyd-dt-")
    group_token = registry.client.post(
        f"/api/v4/groups/{team.id}/deploy_tokens",
        json={"name": "all", "scopes": ["read_package_registry", "write_package_registry"]},
        headers=admin,
    )
    assert group_token.status_code == 201
    assert group_token.json["username"].startswith("gitlab+deploy-token-")
    bad = registry.client.post(
        f"/api/v4/projects/{project.id}/deploy_tokens", json={"name": "x", "scopes": ["api"]},
        headers=admin,
    )  # fmt: skip
    assert bad.status_code == 400
    reporter = registry.user("reporter")
    registry.member(reporter, 20, project=project)
    refused = registry.client.post(
        f"/api/v4/projects/{project.id}/deploy_tokens",
        json={"name": "x", "scopes": ["read_package_registry"]},
        headers={"PRIVATE-TOKEN": registry.token(reporter)},
    )
    assert refused.status_code == 403


def test_job_tokens(registry, admin):
    team = registry.group("team")
    project = registry.project(team, "lib")
    created = registry.client.post(
        f"/api/v4/projects/{project.id}/job_tokens", json={"expires_in": 600}, headers=admin
    )
    assert created.status_code == 201
    assert set(created.json) >= {"token", "expires_at"}
    index = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    as_ci = basic(created.json["token"], username="gitlab-ci-token")
    assert registry.client.get(index, headers=as_ci).status_code == 200
    too_long = registry.client.post(
        f"/api/v4/projects/{project.id}/job_tokens", json={"expires_in": 10**9}, headers=admin
    )
    assert too_long.status_code == 400
    job = {"JOB-TOKEN": created.json["token"]}
    assert registry.client.get("/api/v4/user", headers=job).status_code == 403


def test_read_api_scope_cannot_write_through_the_api(registry, admin):
    user = registry.user("reader", admin=True)
    reader = {"PRIVATE-TOKEN": registry.token(user, ("read_api",))}
    assert registry.client.get("/api/v4/user", headers=reader).status_code == 200
    refused = registry.client.post("/api/v4/groups", json={"path": "x"}, headers=reader)
    assert refused.status_code == 403


def test_unknown_route_and_method_answer_json(registry, admin):
    missing = registry.client.get("/api/v4/nothing", headers=admin)
    assert missing.status_code == 404 and "message" in missing.json
    wrong_method = registry.client.delete("/api/v4/users", headers=admin)
    assert wrong_method.status_code == 405 and "message" in wrong_method.json
