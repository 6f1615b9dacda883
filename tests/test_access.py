"""The access table of the contract (section 4), on project and group indexes and files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.access import DEVELOPER, GUEST, MAINTAINER, OWNER, check_grant
from app.domain.accounts import create_job_token
from app.domain.errors import Forbidden
from app.extensions import db
from app.models import DeployToken, JobToken, PersonalAccessToken
from tests.conftest import basic
from tests.dists import make_wheel

CHALLENGE = 'Basic realm="Packyard"'


@pytest.fixture
def world(registry):
    """team (public) / lib (private), team/sub/open (public), other (private) / secret."""
    admin = registry.user("root", admin=True)
    admin_token = registry.token(admin)
    team = registry.group("team", "public")  # nothing is more visible than its group
    sub = registry.group("sub", "public", parent=team)
    other = registry.group("other")
    lib = registry.project(team, "lib")
    opened = registry.project(sub, "open", "public")
    secret = registry.project(other, "secret")
    for project, name in ((lib, "private-pkg"), (opened, "public-pkg"), (secret, "secret-pkg")):
        filename, content = make_wheel(name, "1.0")
        assert registry.upload(project, filename, content, token=admin_token).status_code == 201
    return {"admin": admin_token, "team": team, "sub": sub, "lib": lib, "open": opened,
            "secret": secret, "other": other}  # fmt: skip


def index(project, name: str = "") -> str:
    return f"/api/v4/projects/{project.id}/packages/pypi/simple/{name + '/' if name else ''}"


def group_index(group, name: str = "") -> str:
    return f"/api/v4/groups/{group.id}/-/packages/pypi/simple/{name + '/' if name else ''}"


def get(registry, url: str, token: str | None = None, headers: dict | None = None):
    return registry.client.get(url, headers={**(basic(token) if token else {}), **(headers or {})})


def test_anonymous_reads_public_projects(registry, world):
    assert get(registry, index(world["open"], "public-pkg")).status_code == 200
    assert get(registry, group_index(world["sub"], "public-pkg")).status_code == 200


@pytest.mark.parametrize("target", ["private", "missing project", "missing group", "private group"])
def test_anonymous_gets_401_for_anything_not_public(registry, world, target):
    url = {
        "private": index(world["lib"]),
        "missing project": "/api/v4/projects/4242/packages/pypi/simple/",
        "missing group": "/api/v4/groups/nope/-/packages/pypi/simple/",
        "private group": group_index(world["other"]),
    }[target]
    response = get(registry, url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_authenticated_stranger_gets_404_never_403(registry, world):
    stranger = registry.token(registry.user("stranger"))
    assert get(registry, index(world["lib"]), stranger).status_code == 404
    assert get(registry, "/api/v4/projects/4242/packages/pypi/simple/", stranger).status_code == 404
    assert get(registry, group_index(world["other"]), stranger).status_code == 404
    assert get(registry, index(world["open"], "public-pkg"), stranger).status_code == 200


def test_guest_sees_the_project_but_not_its_packages(registry, world):
    guest = registry.user("guest")
    registry.member(guest, 10, project=world["lib"])
    assert get(registry, index(world["lib"]), registry.token(guest)).status_code == 403


@pytest.mark.parametrize("level", [20, 30, 40, 50])
def test_reporter_and_above_read_private_packages(registry, world, level):
    user = registry.user("member")
    registry.member(user, level, group=world["team"])
    response = get(registry, index(world["lib"], "private-pkg"), registry.token(user))
    assert response.status_code == 200
    assert "private_pkg-1.0-py3-none-any.whl" in response.text


def test_read_api_scope_reads_but_does_not_write(registry, world):
    user = registry.user("dev")
    registry.member(user, 30, project=world["lib"])
    token = registry.token(user, ("read_api",))
    assert get(registry, index(world["lib"], "private-pkg"), token).status_code == 200
    filename, content = make_wheel("private-pkg", "2.0")
    assert registry.upload(world["lib"], filename, content, token=token).status_code == 403


@pytest.mark.parametrize("header", ["PRIVATE-TOKEN", "Bearer", "Basic"])
def test_every_credential_header_is_accepted(registry, world, header):
    token = world["admin"]
    headers = {
        "PRIVATE-TOKEN": {"PRIVATE-TOKEN": token},
        "Bearer": {"Authorization": f"Bearer {token}"},
        "Basic": basic(token, username="anything"),
    }[header]
    assert get(registry, index(world["lib"]), headers=headers).status_code == 200


def test_deploy_tokens_follow_their_scopes_and_binding(registry, world):
    lib, secret = world["lib"], world["secret"]
    read = registry.deploy_token(("read_package_registry",), project=lib)
    write = registry.deploy_token(("write_package_registry",), project=lib)
    assert get(registry, index(lib, "private-pkg"), read).status_code == 200
    assert get(registry, index(secret), read).status_code == 404
    filename, content = make_wheel("private-pkg", "2.0")
    assert registry.upload(lib, filename, content, token=read).status_code == 403
    assert registry.upload(lib, filename, content, token=write).status_code == 201
    assert registry.upload(secret, filename, content, token=write).status_code == 404


def test_group_deploy_token_reads_every_project_below_its_group(registry, world):
    token = registry.deploy_token(("read_package_registry",), group=world["team"])
    assert get(registry, index(world["lib"], "private-pkg"), token).status_code == 200
    root = get(registry, group_index(world["team"]), token)
    assert root.status_code == 200
    assert "private-pkg" in root.text and "public-pkg" in root.text
    assert get(registry, group_index(world["other"]), token).status_code == 404


def test_job_token_writes_its_project_only(registry, world):
    lib, secret = world["lib"], world["secret"]
    dev = registry.user("ci-user")
    registry.member(dev, 30, project=lib)
    _row, token = create_job_token(db.session, lib, dev.id, None)
    filename, content = make_wheel("private-pkg", "3.0")
    response = registry.upload(lib, filename, content, token=token)
    assert response.status_code == 201, response.text
    assert registry.client.get(index(lib), headers={"JOB-TOKEN": token}).status_code == 200
    assert get(registry, index(secret), token).status_code == 404
    assert get(registry, index(world["open"], "public-pkg"), token).status_code == 200


@pytest.mark.parametrize("model", [PersonalAccessToken, DeployToken, JobToken])
@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_expired_and_revoked_tokens_are_refused_like_wrong_ones(registry, world, model, how):
    lib = world["lib"]
    user = registry.user("holder")
    registry.member(user, 30, project=lib)
    token = {
        PersonalAccessToken: lambda: registry.token(user),
        DeployToken: lambda: registry.deploy_token(("read_package_registry",), project=lib),
        JobToken: lambda: create_job_token(db.session, lib, user.id, None)[1],
    }[model]()
    assert get(registry, index(lib), token).status_code == 200
    row = db.session.query(model).order_by(model.id.desc()).first()
    if how == "expired":
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    else:
        row.revoked = True
    db.session.commit()
    response = get(registry, index(lib), token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_tokens_are_stored_hashed_with_only_a_short_prefix_in_clear(registry, world):
    row = db.session.query(PersonalAccessToken).first()
    assert world["admin"] not in (row.token_hash, row.token_prefix)
    assert len(row.token_prefix) < 16 and world["admin"].startswith(row.token_prefix)


def test_group_index_lists_only_what_the_caller_may_read(registry, world):
    anonymous = get(registry, group_index(world["sub"]))
    assert "public-pkg" in anonymous.text
    reporter = registry.user("reporter")
    registry.member(reporter, 20, project=world["lib"])
    token = registry.token(reporter)
    listing = get(registry, group_index(world["team"]), token)
    assert listing.status_code == 200
    assert "private-pkg" in listing.text and "public-pkg" in listing.text
    assert "secret-pkg" not in listing.text
    outsider = registry.token(registry.user("outsider"))
    public_only = get(registry, group_index(world["sub"]), outsider)
    assert "public-pkg" in public_only.text and "private-pkg" not in public_only.text


def test_group_index_hides_a_name_that_exists_only_where_the_caller_may_not_read(registry, world):
    guest = registry.user("guest")
    registry.member(guest, 10, group=world["team"])
    token = registry.token(guest)
    assert get(registry, group_index(world["team"], "public-pkg"), token).status_code == 200
    assert get(registry, group_index(world["team"], "private-pkg"), token).status_code == 404


def test_internal_projects_are_read_by_any_signed_in_user(registry, world):
    internal = registry.project(world["team"], "internal", "internal")
    filename, content = make_wheel("internal-pkg", "1.0")
    assert registry.upload(internal, filename, content, token=world["admin"]).status_code == 201
    anyone = registry.token(registry.user("anyone"))
    assert get(registry, index(internal, "internal-pkg"), anyone).status_code == 200
    assert get(registry, index(internal, "internal-pkg")).status_code == 401


def test_files_follow_the_same_rules(registry, world):
    page = get(
        registry,
        index(world["lib"], "private-pkg"),
        world["admin"],
        {"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    file_url = page.json["files"][0]["url"]
    absolute = (
        f"/api/v4/projects/{world['lib'].id}/packages/pypi/files/" + file_url.split("files/")[1]
    )
    assert get(registry, absolute, world["admin"]).status_code == 200
    assert get(registry, absolute).status_code == 401
    stranger = registry.token(registry.user("stranger"))
    assert get(registry, absolute, stranger).status_code == 404
    via_group = (
        f"/api/v4/groups/{world['team'].id}/-/packages/pypi/files/" + file_url.split("files/")[1]
    )
    assert get(registry, via_group, world["admin"]).status_code == 200


def test_bulk_readable_projects_agree_with_project_access(registry, world):
    """The group index's two-query rule must say what project_access says, per project."""
    from app.domain.access import project_access, readable_project_ids
    from app.models import Group, Project
    from app.web.auth import authenticate
    from packyard import PresentedCredentials

    internal = registry.project(world["sub"], "internal", "internal")
    member = registry.user("member")
    registry.member(member, 20, group=world["team"])
    guest = registry.user("guest")
    registry.member(guest, 10, project=world["lib"])
    registry.member(guest, 30, project=internal)
    tokens = [
        None,
        world["admin"],
        registry.token(member),
        registry.token(member, ("read_api",)),
        registry.token(guest),
        registry.token(registry.user("outsider")),
        registry.deploy_token(("read_package_registry",), group=world["sub"]),
        registry.deploy_token(("write_package_registry",), project=world["lib"]),
        registry.deploy_token(("read_package_registry",), project=world["lib"]),
        create_job_token(db.session, world["lib"], member.id, None)[1],
    ]
    projects = db.session.query(Project).all()
    for token in tokens:
        with registry.app.test_request_context():
            identity = authenticate(PresentedCredentials(token, "basic") if token else None)
        for group in db.session.query(Group).all():
            below = [p for p in projects if p.full_path.startswith(group.full_path + "/")]
            expected = sorted(p.id for p in below if project_access(db.session, identity, p).read)
            assert sorted(readable_project_ids(db.session, identity, group)) == expected, (
                identity,
                group.full_path,
            )


@pytest.mark.parametrize(
    ("granter", "level", "refusal"),
    [
        (OWNER, OWNER, None),
        (MAINTAINER, MAINTAINER, None),
        (MAINTAINER, OWNER, "only owners can grant the Owner role"),
        (DEVELOPER, MAINTAINER, "you cannot grant a role above your own (Developer)"),
        (0, GUEST, "you cannot grant a role above your own (none)"),
    ],
)
def test_nobody_grants_a_role_above_their_own(granter, level, refusal):
    if refusal is None:
        check_grant(granter, level)
        return
    with pytest.raises(Forbidden) as refused:
        check_grant(granter, level)
    assert refused.value.message == f"403 Forbidden: {refusal}"
