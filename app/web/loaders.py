"""Loading the group or project a URL names, with the access rules applied."""

from __future__ import annotations

from dataclasses import dataclass

from app.caching.process import access_cache
from app.domain.access import (
    Access,
    effective_visibility,
    group_access,
    project_access,
    readable_project_ids,
    require,
)
from app.domain.errors import NotFound, Unauthenticated
from app.domain.namespaces import find_group, find_project
from app.domain.packages import with_packages_enabled
from app.extensions import db
from app.models import Group, Project
from app.web.auth import current_identity


def project_for(ref: str, permission: str) -> tuple[Project, Access]:
    """The project, if the caller has ``permission`` (visible/read/write/delete/manage)."""
    identity = current_identity()
    project = find_project(db.session, ref)
    if project is None:
        raise _missing(identity.is_anonymous, "Project")
    access = project_access(db.session, identity, project)
    require(identity, access, permission, "Project")
    return project, access


def group_for(ref: str, permission: str) -> tuple[Group, Access]:
    identity = current_identity()
    group = find_group(db.session, ref)
    if group is None:
        raise _missing(identity.is_anonymous, "Group")
    access = group_access(db.session, identity, group)
    require(identity, access, permission, "Group")
    return group, access


def readable_project_ids_in(group: Group) -> list[int]:
    """Projects of the group and its subgroups whose packages the caller may read."""
    return readable_project_ids(db.session, current_identity(), group)


@dataclass(frozen=True)
class IndexScope:
    """What one index URL may show its caller: cacheable plain values, no ORM rows."""

    title: str
    project_ids: tuple[int, ...]
    # Where the upstream mode is decided for names not found: the project (for a project
    # index), then its group chain.
    forward_group_id: int
    public: bool  # shared caches may keep its files
    forward_project_id: int | None = None


def project_index_scope(ref: str) -> IndexScope:
    def compute() -> IndexScope:
        project, _ = project_for(ref, "read")
        if not project.packages_enabled:  # its files are kept, and served again once on
            raise NotFound("404 Not Found: packages are disabled in this project")
        public = effective_visibility(db.session, project) == "public"
        return IndexScope(project.full_path, (project.id,), project.group_id, public, project.id)

    return access_cache().get(("project-scope", ref, current_identity()), compute)


def group_index_scope(ref: str) -> IndexScope:
    def compute() -> IndexScope:
        group, _ = group_for(ref, "read")
        ids = tuple(with_packages_enabled(db.session, readable_project_ids_in(group)))
        # Only what is public reaches an anonymous caller: shared caches may keep it.
        return IndexScope(group.full_path, ids, group.id, current_identity().is_anonymous)

    return access_cache().get(("group-scope", ref, current_identity()), compute)


def _missing(anonymous: bool, what: str) -> Exception:
    # Anonymous callers cannot tell "missing" from "private": both ask for credentials.
    return Unauthenticated("401 Unauthorized") if anonymous else NotFound(f"404 {what} Not Found")
