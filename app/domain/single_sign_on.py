"""Single sign-on to the web pages through an OpenID provider: who the provider's
account is here, and which groups its claims put them in.

An account is known by its issuer and ``sub``, linked once (``external_identities``).
On first sign-in a user is created, named after ``preferred_username`` made valid and
unique; an existing user with the same email is never taken over silently. Group
memberships follow a configured claim at every sign-in: the groups the mapping names are
managed by the provider (added, changed or removed to match), others are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER
from app.domain.accounts import create_user, email_taken
from app.domain.audit import record
from app.domain.errors import Conflict, InvalidInput
from app.models import ExternalIdentity, Group, Membership, User

ACTOR = "single sign-on"
ROLES = {"guest": GUEST, "reporter": REPORTER, "developer": DEVELOPER,
         "maintainer": MAINTAINER, "owner": OWNER}  # fmt: skip
MAX_USERNAME = 60
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")


def username_candidates(claims: Mapping[str, Any]) -> Iterable[str]:
    """``preferred_username`` (or the email's local part, or ``user``) made valid, then
    the same with ``-2``, ``-3``... appended."""
    wanted = str(claims.get("preferred_username") or "")
    if not wanted and claims.get("email"):
        wanted = str(claims["email"]).split("@")[0]
    base = _NOT_ALLOWED.sub("-", wanted).strip("-._")[:MAX_USERNAME] or "user"
    yield base
    for number in range(2, 1000):
        yield f"{base}-{number}"


def user_for_sign_in(session: Session, issuer: str, claims: Mapping[str, Any]) -> User:
    """The user linked to the provider's account, created and linked on first sign-in."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise InvalidInput("the provider's ID token has no sub")
    linked = session.execute(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
        )
    ).scalar_one_or_none()
    if linked is not None:
        user = session.get(User, linked.user_id)
        assert user is not None  # the link is deleted with its user
        return user
    user = _create_user(session, claims)
    link = ExternalIdentity(user_id=user.id, issuer=issuer, subject=subject)
    session.add(link)
    session.flush()
    record(session, ACTOR, "external_identity_linked", user, "ExternalIdentity", link.id,
           user.username, {"issuer": issuer, "subject": subject})  # fmt: skip
    session.commit()
    return user


def _create_user(session: Session, claims: Mapping[str, Any]) -> User:
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    if email and email_taken(session, email):
        email = None  # emails are unique: the account is linked, never merged by address
    for username in username_candidates(claims):
        taken = session.execute(
            select(User.id).where(func.lower(User.username) == username.lower())
        ).first()
        if taken is not None:
            continue
        try:
            return create_user(session, username, email, None, False, actor=ACTOR)
        except Conflict:  # a deploy token's name, or a concurrent sign-in took it
            continue
    raise Conflict("no free username for this account")


# --- groups from a claim -------------------------------------------------------------


def parse_group_map(setting: object) -> dict[str, tuple[str, int]]:
    """``PACKYARD_OIDC_SIGNIN_GROUP_MAP``: claim value -> ``"group/path:role"``."""
    if not setting:
        return {}
    if not isinstance(setting, dict):
        raise ValueError("OIDC_SIGNIN_GROUP_MAP must be a JSON object")
    mapping = {}
    for value, target in setting.items():
        path, _, role = str(target).rpartition(":")
        if not path or role.lower() not in ROLES:
            raise ValueError(f"OIDC_SIGNIN_GROUP_MAP[{value!r}]: use 'group/path:role'")
        mapping[str(value)] = (path.strip("/"), ROLES[role.lower()])
    return mapping


def apply_group_claim(
    session: Session, user: User, values: object, mapping: dict[str, tuple[str, int]]
) -> None:
    """Make the user's roles in the mapped groups what the claim says, auditing changes."""
    if not mapping:
        return
    held = {str(v) for v in values} if isinstance(values, list) else {str(values or "")}
    wanted: dict[str, int] = {path: 0 for path, _ in mapping.values()}
    for value, (path, level) in mapping.items():
        if value in held:
            wanted[path] = max(wanted[path], level)
    for path, level in wanted.items():
        group = session.execute(select(Group).where(Group.full_path == path)).scalar_one_or_none()
        if group is not None:
            _set_role(session, user, group, level)
    session.commit()


def _set_role(session: Session, user: User, group: Group, level: int) -> None:
    membership = session.execute(
        select(Membership).where(Membership.user_id == user.id, Membership.group_id == group.id)
    ).scalar_one_or_none()
    if membership is not None and membership.access_level == level:
        return
    details = {"user_id": user.id, "access_level": level}
    if membership is None and level:
        membership = Membership(user_id=user.id, group_id=group.id, access_level=level)
        session.add(membership)
        session.flush()
        record(session, ACTOR, "member_added", group, "Member", membership.id, user.username,
               details)  # fmt: skip
    elif membership is not None and level:
        details["previous_access_level"] = membership.access_level
        membership.access_level = level
        record(session, ACTOR, "member_updated", group, "Member", membership.id, user.username,
               details)  # fmt: skip
    elif membership is not None:
        record(session, ACTOR, "member_removed", group, "Member", membership.id, user.username,
               {"user_id": user.id})  # fmt: skip
        session.delete(membership)
