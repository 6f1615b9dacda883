"""Groups, projects and memberships: lookup by id or path, creation, roles, visibility.

Paths follow GitLab's rules (``app.domain.names``) and are unique within their group,
ignoring case, as GitLab's are; lookups by path ignore case too. Nothing is more visible
than the group that holds it.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.access import (
    ACCESS_LEVELS,
    check_grant,
    effective_visibility,
    group_chain_of,
    parent_path,
    visibility_rank,
)
from app.domain.audit import Actor, record
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.names import validate_path, validate_top_level
from app.models import Group, Membership, Project, User
from app.models.namespaces import VISIBILITIES

T = TypeVar("T")
MAX_ID = 2**31 - 1  # ids are INTEGER columns
MAX_NAME = 255
MAX_FULL_PATH = 1024
MAX_DESCRIPTION = 2000  # GitLab's limit
# Words that start a sub-resource in URLs (``/projects/team/lib/packages/...``).
RESERVED_PATHS = frozenset(
    {"-", "packages", "members", "deploy_tokens", "job_tokens", "subgroups", "projects",
     "personal_access_tokens", "audit_events", "uploads"}
)  # fmt: skip


def find_group(session: Session, ref: str | int) -> Group | None:
    """The group of an API ``:id``: a number, or a full path."""
    ref = str(ref).strip("/")
    if ref.isascii() and ref.isdigit():
        return session.get(Group, int(ref)) if int(ref) <= MAX_ID else None
    return group_at(session, ref)


def find_project(session: Session, ref: str | int) -> Project | None:
    """The project of an API ``:id``: a number, or a full path."""
    ref = str(ref).strip("/")
    if ref.isascii() and ref.isdigit():
        return session.get(Project, int(ref)) if int(ref) <= MAX_ID else None
    return project_at(session, ref)


def group_at(session: Session, full_path: str) -> Group | None:
    """The group at ``full_path``, whatever its case (as GitLab finds it)."""
    return session.execute(
        select(Group).where(func.lower(Group.full_path) == func.lower(full_path))
    ).scalar_one_or_none()


def project_at(session: Session, full_path: str) -> Project | None:
    """The project at ``full_path``, whatever its case (as GitLab finds it)."""
    return session.execute(
        select(Project).where(func.lower(Project.full_path) == func.lower(full_path))
    ).scalar_one_or_none()


def parse_description(name: str, value: object) -> str | None:
    """Plain text shown escaped on the group or project page; empty or null clears it."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or "\x00" in value:
        raise InvalidInput(f"{name} is invalid (text of at most {MAX_DESCRIPTION} characters)")
    return value.strip().replace("\r\n", "\n") or None


def _check(name: str, path: str, full_path: str, visibility: str, *, top_level: bool) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise InvalidInput(f"name is invalid (at most {MAX_NAME} characters)")
    if top_level:
        validate_top_level(path)
    else:
        validate_path(path)
    if path.lower() in RESERVED_PATHS:
        raise InvalidInput(f"path is reserved: {path!r}")
    if visibility not in VISIBILITIES:
        raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if len(full_path) > MAX_FULL_PATH:
        raise InvalidInput(f"the full path is longer than {MAX_FULL_PATH} characters")


def _check_path_free(session: Session, full_path: str, what: str) -> None:
    """A group and a project of one group share the URL space: one path, either kind,
    whatever its case (GitLab's rule; the database's unique indexes hold it per kind)."""
    for kind, find in (("group", group_at), ("project", project_at)):
        taken = find(session, full_path)
        if taken is not None:
            raise Conflict(
                f"Failed to save {what}: {full_path} has already been taken "
                f"(by {kind} {taken.full_path})"
            )


def check_fits_group(session: Session, group: Group, visibility: str, what: str) -> None:
    """Nothing is more visible than the group that holds it (at any height)."""
    ceiling = effective_visibility(session, group)
    if visibility_rank(visibility) > visibility_rank(ceiling):
        raise InvalidInput(
            f"visibility {visibility} is not allowed for {what}: group {group.full_path} "
            f"is {ceiling}, and nothing may be more visible than the group that holds it"
        )


def check_holds_nothing_more_visible(session: Session, group: Group, visibility: str) -> None:
    """A group may not become less visible than a subgroup or project inside it."""
    allowed = VISIBILITIES[: visibility_rank(visibility) + 1]
    below = group.full_path + "/"
    offenders = [
        f"{kind} {path} is {shown}"
        for kind, model in (("group", Group), ("project", Project))
        for path, shown in session.execute(
            select(model.full_path, model.visibility)
            .where(model.full_path.startswith(below, autoescape=True))
            .where(model.visibility.not_in(allowed))
            .order_by(model.full_path)
            .limit(5)
        )
    ]
    if offenders:
        raise InvalidInput(
            f"visibility {visibility} is not allowed for group {group.full_path}: "
            f"{'; '.join(offenders)} (make them less visible first)"
        )


def create_group(
    session: Session,
    name: str,
    path: str,
    parent: Group | None,
    visibility: str,
    *,
    description: object = None,
    actor: Actor = None,
) -> Group:
    full_path = f"{parent.full_path}/{path}" if parent else path
    _check(name, path, full_path, visibility, top_level=parent is None)
    if parent is not None:
        check_fits_group(session, parent, visibility, f"group {full_path}")
    _check_path_free(session, full_path, "group")
    group = Group(
        name=name or path,
        path=path,
        full_path=full_path,
        parent_id=parent.id if parent else None,
        visibility=visibility,
        description=parse_description("description", description),
    )
    _insert(session, group, f"Failed to save group: {full_path} has already been taken")
    record(session, actor, "group_created", group, "Group", group.id, full_path)
    session.commit()
    return group


def create_project(
    session: Session,
    name: str,
    path: str,
    group: Group,
    visibility: str,
    *,
    description: object = None,
    actor: Actor = None,
) -> Project:
    full_path = f"{group.full_path}/{path}"
    _check(name, path, full_path, visibility, top_level=False)
    check_fits_group(session, group, visibility, f"project {full_path}")
    _check_path_free(session, full_path, "project")
    project = Project(
        name=name or path,
        path=path,
        full_path=full_path,
        group_id=group.id,
        visibility=visibility,
        description=parse_description("description", description),
    )
    _insert(session, project, f"Failed to save project: {full_path} has already been taken")
    record(session, actor, "project_created", project, "Project", project.id, full_path)
    session.commit()
    return project


def add_member(
    session: Session,
    user: User,
    access_level: int,
    *,
    group: Group | None = None,
    project: Project | None = None,
    actor: Actor = None,
    granter_role: int | None = None,
) -> Membership:
    """Make ``user`` a member. ``granter_role`` is the granting caller's role there; None
    when the instance itself grants (the CLI, or a group's creator becoming its owner)."""
    if access_level not in ACCESS_LEVELS:
        raise InvalidInput(f"access_level must be one of {sorted(ACCESS_LEVELS)}")
    if granter_role is not None:
        check_grant(granter_role, access_level)
    membership = Membership(
        user_id=user.id,
        group_id=group.id if group else None,
        project_id=project.id if project else None,
        access_level=access_level,
    )
    _insert(session, membership, "Member already exists")
    entity = group or project
    assert entity is not None
    details = {"user_id": user.id, "access_level": access_level}
    record(session, actor, "member_added", entity, "Member", membership.id, user.username, details)
    session.commit()
    return membership


def _insert(session: Session, row: T, conflict: str) -> T:
    """Add ``row`` in a savepoint; the caller records the event and commits."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(conflict) from None
    return row


def require_group(session: Session, ref: str | int) -> Group:
    group = find_group(session, ref)
    if group is None:
        raise NotFound("404 Group Not Found")
    return group


def group_chain(session: Session, group: Group | Project) -> list[Group]:
    """The group and its ancestors, nearest first (see ``group_chain_of``). Given a
    project, the chain of its group, without loading the group first."""
    if isinstance(group, Project):
        return group_chain_of(session, group.group_id, parent_path(group.full_path))
    return group_chain_of(session, group.id, group.full_path)
