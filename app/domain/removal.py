"""Deleting a project or a group with everything in it.

The rows go in one transaction (the database cascades from the group or project down to
packages, files, members and tokens); the stored files are queued as pending deletions
that the workers remove after the commit, as for a deleted package, and the sweeper
picks them up if the broker was down.  Only owners delete, and a group is not deleted
while something inside it is hidden from the caller: nobody removes what they cannot see.
"""

from __future__ import annotations

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import Session

from app.domain.access import OWNER, Access, group_access, project_access
from app.domain.audit import Actor, record
from app.domain.errors import Forbidden
from app.domain.identity import Identity
from app.models import Group, PackageFile, Project, StorageDeletion


def check_may_delete(access: Access, what: str) -> None:
    if access.role < OWNER:
        raise Forbidden(f"403 Forbidden: only owners delete a {what}")


def delete_project(session: Session, project: Project, actor: Actor) -> list[int]:
    """Delete the project; returns the storage deletions to send to the workers."""
    pending = _schedule(session, select(PackageFile.storage_key).where(
        PackageFile.project_id == project.id))  # fmt: skip
    record(session, actor, "project_deleted", project.group, "Project", project.id,
           project.full_path, {"files": len(pending)})  # fmt: skip
    session.execute(delete(Project).where(Project.id == project.id))
    session.commit()
    return pending


def delete_group(session: Session, group: Group, identity: Identity) -> list[int]:
    """Delete the group, its subgroups and projects; returns the storage deletions."""
    below = group.full_path + "/"
    hidden = _hidden_inside(session, identity, below)
    if hidden:
        raise Forbidden(
            f"403 Forbidden: {group.full_path} holds {hidden} group(s) or project(s) you "
            "cannot see; an administrator can delete it"
        )
    inside = select(Project.id).where(
        or_(Project.group_id == group.id, Project.full_path.startswith(below, autoescape=True))
    )
    pending = _schedule(
        session, select(PackageFile.storage_key).where(PackageFile.project_id.in_(inside))
    )
    parent = session.get(Group, group.parent_id) if group.parent_id else None
    record(session, identity, "group_deleted", parent, "Group", group.id, group.full_path,
           {"files": len(pending)})  # fmt: skip
    session.execute(delete(Group).where(Group.id == group.id))
    session.commit()
    return pending


def _hidden_inside(session: Session, identity: Identity, below: str) -> int:
    groups = session.execute(
        select(Group).where(Group.full_path.startswith(below, autoescape=True))
    ).scalars()
    projects = session.execute(
        select(Project).where(Project.full_path.startswith(below, autoescape=True))
    ).scalars()
    hidden = [g for g in groups if not group_access(session, identity, g).visible]
    hidden += [p for p in projects if not project_access(session, identity, p).visible]
    return len(hidden)


def _schedule(session: Session, storage_keys: Select[tuple[str]]) -> list[int]:
    keys = session.execute(storage_keys).scalars()
    rows = [StorageDeletion(storage_key=key) for key in keys]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]
