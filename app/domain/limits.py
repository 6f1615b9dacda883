"""Upload size limits and storage quotas of projects and groups.

The size limit inherits: the project's setting wins, then the nearest group's up the
parent chain, then the instance's.  Quotas do not inherit, they add up: every quota set
on the project or on a group above it applies, to the bytes stored below it.
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.domain.errors import QuotaExceeded
from app.domain.namespaces import group_chain
from app.models import Group, PackageFile, Project


def effective_upload_limit(session: Session, project: Project, instance_default: int) -> int:
    """The largest file, in bytes, that may be uploaded to ``project``."""
    if project.max_upload_size is not None:
        return project.max_upload_size
    for group in group_chain(session, project):
        if group.max_upload_size is not None:
            return group.max_upload_size
    return instance_default


def check_storage_quota(session: Session, project: Project, size: int) -> None:
    """Refuse ``size`` more bytes in ``project`` if they would exceed any applicable quota.

    One aggregate query per level that has a quota.  Concurrent uploads may each pass
    and together overshoot by at most one file each, as on PyPI.
    """
    levels: list[tuple[str, str, int, Select[tuple[int]]]] = []
    if project.storage_quota is not None:
        query = _used().where(PackageFile.project_id == project.id)
        levels.append(("project", project.full_path, project.storage_quota, query))
    for group in group_chain(session, project):
        if group.storage_quota is not None:
            levels.append(("group", group.full_path, group.storage_quota, _used_in(group)))
    for kind, path, quota, query in levels:
        used = int(session.execute(query).scalar_one())
        if used + size > quota:
            raise QuotaExceeded(
                f"Storage quota exceeded: {kind} {path} may use {quota} bytes, {used} are"
                f" used, and the file has {size}"
            )


def _used() -> Select[tuple[int]]:
    return select(func.coalesce(func.sum(PackageFile.size), 0))


def _used_in(group: Group) -> Select[tuple[int]]:
    """Bytes in every project of the group and its subgroups."""
    return (
        _used()
        .join(Project, Project.id == PackageFile.project_id)
        .where(Project.full_path.startswith(group.full_path + "/", autoescape=True))
    )
