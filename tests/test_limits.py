"""Upload size limits and storage quotas per instance, group and project, and their API."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.domain.limits import effective_upload_limit
from app.extensions import db
from app.models import Group, Package, PackageFile, Project
from tests.conftest import Registry
from tests.dists import make_wheel

INSTANCE = 4096


@pytest.fixture
def world(registry: Registry):
    """team (private) > team/sub > team/sub/lib, plus team/app and a sibling team2/other."""
    admin = registry.user("root", admin=True)
    team = registry.group("team")
    sub = registry.group("sub", parent=team)
    team2 = registry.group("team2")
    registry.app.config["MAX_UPLOAD_SIZE"] = INSTANCE
    return {
        "token": registry.token(admin),
        "team": team,
        "sub": sub,
        "lib": registry.project(sub, "lib"),
        "app": registry.project(team, "app"),
        "other": registry.project(team2, "other"),
    }


def set_attr(row: Group | Project, **values: int | None) -> None:
    for name, value in values.items():
        setattr(row, name, value)
    db.session.commit()


def count(model: type) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def stored_files(app) -> list[Path]:
    root = Path(app.config["DATA_DIR"]) / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def big_wheel(name: str = "demo-pkg", version: str = "1.0", size: int = 10_000):
    return make_wheel(name, version, payload=b"x" * size)


# Upload size limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, INSTANCE),
        ({"team": 2000}, 2000),
        ({"team": 2000, "sub": 3000}, 3000),  # the nearest group wins
        ({"team": 2000, "sub": 3000, "lib": 500}, 500),  # the project wins
        ({"sub": None, "team": 100_000}, 100_000),  # null inherits, even a larger value
        ({"lib": 100_000}, 100_000),  # above the instance: a namespace may allow more
    ],
)
def test_effective_limit_is_the_nearest_setting(registry, world, settings, expected):
    for key, value in settings.items():
        set_attr(world[key], max_upload_size=value)
    assert effective_upload_limit(db.session, world["lib"], INSTANCE) == expected


def test_a_group_limit_below_the_file_is_413_and_leaves_nothing(registry, world):
    set_attr(world["team"], max_upload_size=100_000)
    set_attr(world["sub"], max_upload_size=3000)  # the nearest group wins over its parent
    response = registry.upload(world["lib"], *big_wheel(), token=world["token"])
    assert response.status_code == 413, response.text
    assert response.text.strip() == "File too large: the limit is 3000 bytes"
    assert count(PackageFile) == count(Package) == 0
    assert stored_files(registry.app) == []


def test_a_project_limit_above_the_instance_accepts_the_file(registry, world):
    # The whole-request cap follows the effective limit, not the instance's.
    registry.app.config["MAX_CONTENT_LENGTH"] = INSTANCE + 1024
    set_attr(world["team"], max_upload_size=1000)
    set_attr(world["lib"], max_upload_size=200_000)
    response = registry.upload(world["lib"], *big_wheel(size=20_000), token=world["token"])
    assert response.status_code == 201, response.text
    # Elsewhere the instance limit still applies.
    refused = registry.upload(world["other"], *big_wheel(size=20_000), token=world["token"])
    assert refused.status_code == 413
    assert count(PackageFile) == 1


def test_the_instance_limit_applies_without_settings(registry, world):
    response = registry.upload(world["lib"], *big_wheel(), token=world["token"])
    assert response.status_code == 413
    assert f"{INSTANCE}" in response.text


# Storage quotas --------------------------------------------------------------------


def test_project_quota_refuses_the_upload_that_would_exceed_it(registry, world):
    first = big_wheel("demo-pkg", "1.0", size=3000)
    second = big_wheel("demo-pkg", "2.0", size=3000)
    lib = world["lib"]
    registry.app.config["MAX_UPLOAD_SIZE"] = 100_000
    set_attr(lib, storage_quota=len(first[1]) + len(second[1]) - 1)
    assert registry.upload(lib, *first, token=world["token"]).status_code == 201
    response = registry.upload(lib, *second, token=world["token"])
    assert response.status_code == 400
    assert response.text.strip().startswith(
        f"Storage quota exceeded: project team/sub/lib may use {lib.storage_quota} bytes,"
        f" {len(first[1])} are used"
    )
    assert "Storage quota exceeded" in response.status  # twine shows the reason phrase
    assert count(PackageFile) == 1 and count(Package) == 1  # no row for 2.0
    assert len(stored_files(registry.app)) == 1
    # Exactly filling the quota is allowed.
    set_attr(lib, storage_quota=len(first[1]) + len(second[1]))
    assert registry.upload(lib, *second, token=world["token"]).status_code == 201


def test_group_quota_counts_every_project_below_it(registry, world):
    registry.app.config["MAX_UPLOAD_SIZE"] = 100_000
    in_sub = big_wheel("one", "1.0", size=3000)
    in_team = big_wheel("two", "1.0", size=3000)
    elsewhere = big_wheel("three", "1.0", size=50_000)
    assert registry.upload(world["other"], *elsewhere, token=world["token"]).status_code == 201
    set_attr(world["team"], storage_quota=len(in_sub[1]) + len(in_team[1]) - 1)
    assert registry.upload(world["lib"], *in_sub, token=world["token"]).status_code == 201
    response = registry.upload(world["app"], *in_team, token=world["token"])
    assert response.status_code == 400
    assert (
        f"group team may use {world['team'].storage_quota} bytes, {len(in_sub[1])} are used"
        in response.text
    )  # team2/other does not count
    assert count(PackageFile) == 2
    assert len(stored_files(registry.app)) == 2


def test_every_applicable_quota_applies(registry, world):
    registry.app.config["MAX_UPLOAD_SIZE"] = 100_000
    wheel = big_wheel(size=3000)
    set_attr(world["lib"], storage_quota=1_000_000)  # a generous project quota...
    set_attr(world["sub"], storage_quota=len(wheel[1]) - 1)  # ...does not lift its group's
    response = registry.upload(world["lib"], *wheel, token=world["token"])
    assert response.status_code == 400
    assert "group team/sub may use" in response.text
    assert count(PackageFile) == 0 and stored_files(registry.app) == []


# The REST API ----------------------------------------------------------------------


def put(registry, path: str, token: str | None, **kwargs):
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return registry.client.put(f"/api/v4{path}", headers=headers, **kwargs)


def test_admin_sets_and_clears_group_settings(registry, world):
    team = world["team"]
    response = put(
        registry, f"/groups/{team.id}", world["token"],
        json={"max_upload_size": 1000, "storage_quota": 5000, "forwarding": False},
    )  # fmt: skip
    assert response.status_code == 200, response.json
    assert response.json["id"] == team.id
    assert response.json["max_upload_size"] == 1000
    assert response.json["storage_quota"] == 5000
    assert response.json["forwarding"] is False
    shown = registry.client.get(
        f"/api/v4/groups/{team.id}", headers={"PRIVATE-TOKEN": world["token"]}
    )
    assert shown.json["storage_quota"] == 5000
    # Only what is given changes; null clears (inherits again).
    cleared = put(registry, "/groups/team", world["token"], json={"storage_quota": None})
    assert cleared.json["storage_quota"] is None
    assert cleared.json["max_upload_size"] == 1000 and cleared.json["forwarding"] is False
    db.session.expire_all()
    assert db.session.get(Group, team.id).storage_quota is None


def test_maintainer_may_not_lift_limits_an_admin_sets(registry, world):
    maintainer = registry.user("maint")
    registry.member(maintainer, 40, group=world["team"])
    response = put(
        registry, "/projects/team%2Fsub%2Flib", registry.token(maintainer),
        data={"storage_quota": "0"},
    )  # fmt: skip
    assert response.status_code == 403
    assert "administrators" in response.json["message"]
    forwarding = put(
        registry, "/groups/team", registry.token(maintainer), json={"forwarding": False}
    )
    assert forwarding.status_code == 200 and forwarding.json["forwarding"] is False


def test_admin_sets_project_settings_with_form_fields(registry, world):
    admin = registry.user("admin2", admin=True)
    response = put(
        registry, "/projects/team%2Fsub%2Flib", registry.token(admin),
        data={"max_upload_size": "200000", "storage_quota": "0"},
    )  # fmt: skip
    assert response.status_code == 200, response.json
    assert response.json["path_with_namespace"] == "team/sub/lib"
    assert response.json["max_upload_size"] == 200_000
    assert response.json["storage_quota"] == 0
    assert "forwarding" not in response.json  # a group setting
    db.session.expire_all()
    lib = db.session.get(Project, world["lib"].id)
    assert effective_upload_limit(db.session, lib, INSTANCE) == 200_000


BAD_VALUES = {
    "negative": {"storage_quota": -1},
    "negative string": {"max_upload_size": "-5"},
    "text": {"max_upload_size": "abc"},
    "fraction": {"storage_quota": 1.5},
    "boolean size": {"max_upload_size": True},
    "zero limit": {"max_upload_size": 0},
    "too large": {"storage_quota": 2**63},
    "bad flag": {"forwarding": "maybe"},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_400_and_change_nothing(registry, world, values):
    body = {"max_upload_size": 1234, **values}  # a valid field next to the bad one
    response = put(registry, f"/groups/{world['team'].id}", world["token"], json=body)
    assert response.status_code == 400
    assert next(iter(values)) in response.json["message"]
    db.session.expire_all()
    assert db.session.get(Group, world["team"].id).max_upload_size is None


def test_project_bad_value_is_400(registry, world):
    response = put(
        registry, f"/projects/{world['lib'].id}", world["token"], json={"storage_quota": "x"}
    )
    assert response.status_code == 400
    assert "storage_quota" in response.json["message"]


@pytest.mark.parametrize("kind", ["groups", "projects"])
def test_who_may_change_settings(registry, world, kind):
    target = world["team"] if kind == "groups" else world["lib"]
    path = f"/{kind}/{target.id}"
    developer = registry.user("dev")
    registry.member(developer, 30, group=world["team"])
    stranger = registry.user("stranger")
    body = {"json": {"storage_quota": 1}}
    assert put(registry, path, registry.token(developer), **body).status_code == 403
    assert put(registry, path, registry.token(stranger), **body).status_code == 404
    anonymous = put(registry, path, None, **body)
    assert anonymous.status_code == 401
    assert anonymous.json == {"message": "401 Unauthorized"}
    read_only = registry.token(registry.user("reader", admin=True), scopes=("read_api",))
    assert put(registry, path, read_only, **body).status_code == 403
    assert put(registry, f"/{kind}/99999", registry.token(stranger), **body).status_code == 404
    db.session.expire_all()
    assert db.session.get(type(target), target.id).storage_quota is None
