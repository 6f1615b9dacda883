"""Members API, as GitLab's: list direct and inherited members, change a role, remove;
nobody grants or touches a role above their own, and a group keeps an owner."""

from __future__ import annotations

import pytest

from app.domain.access import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER
from app.extensions import db
from app.models import AuditEvent, Membership, User


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


@pytest.fixture
def team(registry):
    root = registry.user("root", admin=True)
    owner, maint, dev, guest = (registry.user(n) for n in ("olga", "max", "dev", "gus"))
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    project = registry.project(sub, "lib")
    registry.member(owner, OWNER, group=group)
    registry.member(maint, MAINTAINER, group=group)
    registry.member(dev, DEVELOPER, group=sub)
    registry.member(guest, GUEST, project=project)
    registry.member(maint, DEVELOPER, project=project)  # lower than inherited: all shows 40
    people = (("root", root), ("olga", owner), ("max", maint), ("dev", dev), ("gus", guest))
    tokens = {name: registry.token(user) for name, user in people}
    ids = {"olga": owner.id, "max": maint.id, "dev": dev.id, "gus": guest.id}
    return {"group": group, "sub": sub, "project": project, "tokens": tokens, "ids": ids}


def test_direct_and_inherited_members_are_listed(client, team):
    headers = auth(team["tokens"]["dev"])
    direct = client.get(f"/api/v4/projects/{team['project'].id}/members", headers=headers)
    assert direct.status_code == 200 and direct.headers["X-Total"] == "2"
    assert {(m["username"], m["access_level"]) for m in direct.json} == {
        ("gus", GUEST), ("max", DEVELOPER)
    }  # fmt: skip
    every = client.get(f"/api/v4/projects/{team['project'].id}/members/all", headers=headers)
    levels = {m["username"]: m["access_level"] for m in every.json}
    assert levels == {"olga": OWNER, "max": MAINTAINER, "dev": DEVELOPER, "gus": GUEST}
    sources = {m["username"]: m["membership_source"]["full_path"] for m in every.json}
    assert sources["olga"] == "team" and sources["gus"] == "team/sub/lib"
    group_members = client.get("/api/v4/groups/team/members", headers=headers)
    assert {m["username"] for m in group_members.json} == {"olga", "max"}
    sub_all = client.get(f"/api/v4/groups/{team['sub'].id}/members/all", headers=headers)
    assert {m["username"] for m in sub_all.json} == {"olga", "max", "dev"}
    one = client.get(f"/api/v4/groups/team/members/{team['ids']['max']}", headers=headers)
    assert one.json["access_level"] == MAINTAINER
    paged = client.get("/api/v4/groups/team/members?per_page=1&page=2", headers=headers)
    assert len(paged.json) == 1 and paged.headers["X-Total"] == "2"


def test_outsiders_do_not_see_members(client, registry, team):
    stranger = registry.token(registry.user("stranger"))
    hidden = client.get("/api/v4/groups/team/members", headers=auth(stranger))
    assert hidden.status_code == 404
    assert client.get("/api/v4/groups/team/members").status_code == 401


def test_roles_change_within_the_granters_own_role(client, team):
    ids, tokens, group = team["ids"], team["tokens"], team["group"]
    path = f"/api/v4/groups/{group.id}/members"
    as_max = auth(tokens["max"])
    to_owner = client.put(f"{path}/{ids['max']}", json={"access_level": OWNER}, headers=as_max)
    assert to_owner.status_code == 403 and "only owners" in to_owner.json["message"]
    touch_owner = client.put(f"{path}/{ids['olga']}", json={"access_level": GUEST}, headers=as_max)
    assert touch_owner.status_code == 403 and "above your own" in touch_owner.json["message"]
    assert client.delete(f"{path}/{ids['olga']}", headers=as_max).status_code == 403
    demoted = client.put(
        f"{path}/{ids['max']}", json={"access_level": REPORTER}, headers=auth(tokens["olga"])
    )
    assert demoted.status_code == 200 and demoted.json["access_level"] == REPORTER
    now_reporter = client.put(f"{path}/{ids['max']}", json={"access_level": 30}, headers=as_max)
    assert now_reporter.status_code == 403  # a reporter manages nobody
    bad = client.put(
        f"{path}/{ids['max']}", json={"access_level": 35}, headers=auth(tokens["olga"])
    )
    assert bad.status_code == 400
    missing = client.put(f"{path}/{ids['dev']}", json={"access_level": 30},
                         headers=auth(tokens["olga"]))  # fmt: skip
    assert missing.status_code == 404  # dev is a member of the subgroup, not of this group
    actions = [a for (a,) in db.session.query(AuditEvent.action).filter_by(entity_id=group.id)]
    assert "member_updated" in actions


def test_members_are_removed_but_a_group_keeps_an_owner(client, team):
    ids, tokens = team["ids"], team["tokens"]
    as_olga = auth(tokens["olga"])
    last = client.delete(f"/api/v4/groups/team/members/{ids['olga']}", headers=as_olga)
    assert last.status_code == 403 and "at least one owner" in last.json["message"]
    demote_last = client.put(
        f"/api/v4/groups/team/members/{ids['olga']}", json={"access_level": 40}, headers=as_olga
    )
    assert demote_last.status_code == 403
    project = team["project"]
    by_dev = client.delete(
        f"/api/v4/projects/{project.id}/members/{ids['gus']}", headers=auth(tokens["dev"])
    )
    assert by_dev.status_code == 403
    removed = client.delete(f"/api/v4/projects/{project.id}/members/{ids['gus']}", headers=as_olga)
    assert removed.status_code == 204
    assert db.session.query(Membership).filter_by(user_id=ids["gus"]).count() == 0
    assert (
        client.get(f"/api/v4/projects/{project.id}", headers=auth(tokens["gus"])).status_code == 404
    )
    event = db.session.query(AuditEvent).filter_by(action="member_removed").one()
    assert event.target_path == "gus" and event.entity_id == project.id


def test_members_leave_on_their_own_but_not_the_last_owner(client, registry, team):
    ids, tokens, project = team["ids"], team["tokens"], team["project"]
    as_gus = auth(tokens["gus"])  # a guest: manages nothing, yet may leave
    others = client.delete(f"/api/v4/projects/{project.id}/members/{ids['max']}", headers=as_gus)
    assert others.status_code == 403
    left = client.delete(f"/api/v4/projects/{project.id}/members/{ids['gus']}", headers=as_gus)
    assert left.status_code == 204
    assert client.get(f"/api/v4/projects/{project.id}", headers=as_gus).status_code == 404
    again = client.delete(f"/api/v4/projects/{project.id}/members/{ids['gus']}", headers=as_gus)
    assert again.status_code == 404  # no longer sees it
    dev = client.delete(
        f"/api/v4/groups/team%2Fsub/members/{ids['dev']}", headers=auth(tokens["dev"])
    )
    assert dev.status_code == 204
    inherited = client.delete(
        f"/api/v4/projects/{project.id}/members/{ids['olga']}", headers=auth(tokens["olga"])
    )
    assert inherited.status_code == 404  # her role comes from team: she leaves team, not this
    last = client.delete(f"/api/v4/groups/team/members/{ids['olga']}", headers=auth(tokens["olga"]))
    assert last.status_code == 403 and "at least one owner" in last.json["message"]
    read_only = client.delete(
        f"/api/v4/groups/team/members/{ids['max']}",
        headers=auth(registry.token(db.session.get(User, ids["max"]), ("read_api",))),
    )
    assert read_only.status_code == 403  # leaving writes: the api scope
    events = db.session.query(AuditEvent).filter_by(action="member_left").all()
    assert {e.target_path for e in events} == {"gus", "dev"}
