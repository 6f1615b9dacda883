"""Single sign-on accounts and the group claim (app.domain.single_sign_on), on both
databases; the browser flow against a real provider is in test_sso.py."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from app.domain.access import DEVELOPER, MAINTAINER, OWNER
from app.domain.single_sign_on import (
    apply_group_claim,
    parse_group_map,
    user_for_sign_in,
    username_candidates,
)
from app.extensions import db
from app.models import AuditEvent, Membership

ISSUER = "https://id.example.com"


def first(claims: dict, count: int = 3) -> list[str]:
    return list(itertools.islice(username_candidates(claims), count))


def test_usernames_are_made_valid():
    assert first({"preferred_username": "Alice Smith"}) == ["Alice-Smith", "Alice-Smith-2",
                                                            "Alice-Smith-3"]  # fmt: skip
    assert first({"preferred_username": "../team/x"}, 1) == ["team-x"]
    assert first({"email": "bob@corp.example"}, 1) == ["bob"]
    assert first({}, 1) == ["user"]
    assert len(first({"preferred_username": "x" * 300}, 1)[0]) == 60


def test_group_map_setting():
    assert parse_group_map({"eng": "acme/sub:Developer"}) == {"eng": ("acme/sub", DEVELOPER)}
    assert parse_group_map(None) == {}
    for bad in ({"eng": "acme"}, {"eng": "acme:king"}, ["eng"]):
        with pytest.raises(ValueError):
            parse_group_map(bad)


def test_accounts_are_linked_by_issuer_and_subject_only(registry):
    registry.user("alice")  # taken: the new account gets alice-2
    existing = registry.user("dana")  # same email as the provider's account
    claims = {"sub": "s-1", "preferred_username": "alice", "email": existing.email}
    user = user_for_sign_in(db.session, ISSUER, claims)
    assert user.username == "alice-2" and user.id != existing.id
    renamed = {**claims, "preferred_username": "someone-else"}
    assert user_for_sign_in(db.session, ISSUER, renamed).id == user.id
    other_issuer = user_for_sign_in(db.session, "https://other.example.com", claims)
    assert other_issuer.id != user.id and other_issuer.username == "alice-3"
    linked = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.action == "external_identity_linked")
    ).all()
    assert len(linked) == 2


def test_group_claim_sets_roles_in_mapped_groups_only(registry):
    user = registry.user("carol")
    acme, other = registry.group("acme"), registry.group("other")
    registry.member(user, OWNER, group=other)  # not in the mapping: left alone
    mapping = parse_group_map({"eng": "acme:developer", "leads": "acme:maintainer",
                               "ghosts": "missing:guest"})  # fmt: skip

    def role(group) -> int | None:
        return db.session.execute(
            select(Membership.access_level).where(
                Membership.user_id == user.id, Membership.group_id == group.id
            )
        ).scalar_one_or_none()

    apply_group_claim(db.session, user, ["eng"], mapping)
    assert role(acme) == DEVELOPER
    apply_group_claim(db.session, user, ["eng", "leads", "ghosts"], mapping)
    assert role(acme) == MAINTAINER
    apply_group_claim(db.session, user, "nothing", mapping)
    assert role(acme) is None and role(other) == OWNER
    actions = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.actor == "single sign-on")
    ).scalars()
    assert list(actions) == ["member_added", "member_updated", "member_removed"]


def test_a_malformed_group_map_stops_the_app_at_start(tmp_path):
    from app import create_app

    with pytest.raises(ValueError, match="group/path:role"):
        create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False,
                    "OIDC_SIGNIN_GROUP_MAP": {"eng": "acme"}})  # fmt: skip
