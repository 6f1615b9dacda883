"""Members of groups and projects: listing (direct, or with those inherited from the groups
above), changing a role and removing, under GitLab's rules: nobody grants a role above
their own, nobody changes or removes a member whose role is above their own, and a group
keeps at least one owner once it has one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.access import ACCESS_LEVELS, OWNER, ROLE_NAMES, check_grant, group_chain_ids
from app.domain.audit import Actor, record
from app.domain.errors import Forbidden, InvalidInput, NotFound
from app.models import Group, Membership, Project, User


@dataclass(frozen=True)
class Member:
    """A user's role as seen on one group or project; ``source`` holds the membership
    (the group or project itself, or the ancestor group it is inherited from)."""

    user: User
    membership: Membership
    source: Group | Project

    @property
    def access_level(self) -> int:
        return self.membership.access_level

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.access_level, str(self.access_level))


def direct_members(session: Session, target: Group | Project) -> list[Member]:
    """Members of ``target`` itself, by username."""
    column = Membership.group_id if isinstance(target, Group) else Membership.project_id
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(column == target.id)
        .order_by(func.lower(User.username))
    ).all()
    return [Member(user, membership, target) for membership, user in rows]


def all_members(session: Session, target: Group | Project) -> list[Member]:
    """Direct and inherited members; a user in several places appears once, with their
    highest role (as GitLab's ``members/all``)."""
    parent = target.parent_id if isinstance(target, Group) else target.group_id
    sources: list[Group | Project] = [target]
    sources += [group for group_id in group_chain_ids(session, parent)
                if (group := session.get(Group, group_id)) is not None]  # fmt: skip
    best: dict[int, Member] = {}
    for source in sources:
        for member in direct_members(session, source):
            known = best.get(member.user.id)
            if known is None or member.access_level > known.access_level:
                best[member.user.id] = member
    return sorted(best.values(), key=lambda member: member.user.username.lower())


def find_membership(session: Session, target: Group | Project, user_id: int) -> Membership:
    column = Membership.group_id if isinstance(target, Group) else Membership.project_id
    membership = session.execute(
        select(Membership).where(column == target.id, Membership.user_id == user_id)
    ).scalar_one_or_none()
    if membership is None:
        raise NotFound("404 Member Not Found")
    return membership


def change_role(
    session: Session,
    target: Group | Project,
    membership: Membership,
    access_level: int,
    *,
    granter_role: int,
    actor: Actor,
) -> Membership:
    if access_level not in ACCESS_LEVELS:
        raise InvalidInput(f"access_level must be one of {sorted(ACCESS_LEVELS)}")
    _check_may_manage(membership, granter_role)
    check_grant(granter_role, access_level)
    if membership.access_level == OWNER and access_level != OWNER:
        _check_not_last_owner(session, target, membership)
    before = membership.access_level
    membership.access_level = access_level
    details = {"user_id": membership.user_id, "from": before, "to": access_level}
    record(session, actor, "member_updated", target, "Member", membership.id,
           _username(session, membership), details)  # fmt: skip
    session.commit()
    return membership


def remove_member(
    session: Session,
    target: Group | Project,
    membership: Membership,
    *,
    granter_role: int,
    actor: Actor,
) -> None:
    _check_may_manage(membership, granter_role)
    _end(session, target, membership, "member_removed", actor)


def leave(session: Session, target: Group | Project, membership: Membership, actor: Actor) -> None:
    """A member ends their own membership, whatever their role; a group's last owner
    cannot (someone must be able to manage it)."""
    _end(session, target, membership, "member_left", actor)


def _end(
    session: Session, target: Group | Project, membership: Membership, action: str, actor: Actor
) -> None:
    if membership.access_level == OWNER:
        _check_not_last_owner(session, target, membership)
    details = {"user_id": membership.user_id, "access_level": membership.access_level}
    record(session, actor, action, target, "Member", membership.id,
           _username(session, membership), details)  # fmt: skip
    session.delete(membership)
    session.commit()


def _check_may_manage(membership: Membership, granter_role: int) -> None:
    if membership.access_level > granter_role:
        raise Forbidden("403 Forbidden: this member's role is above your own")


def _check_not_last_owner(
    session: Session, target: Group | Project, membership: Membership
) -> None:
    if not isinstance(target, Group):
        return
    owners = session.execute(
        select(func.count()).where(
            Membership.group_id == target.id,
            Membership.access_level == OWNER,
            Membership.id != membership.id,
        )
    ).scalar_one()
    if owners == 0:
        raise Forbidden(
            "403 Forbidden: a group keeps at least one owner; make someone else owner first"
        )


def _username(session: Session, membership: Membership) -> str:
    user = session.get(User, membership.user_id)
    return user.username if user is not None else str(membership.user_id)
