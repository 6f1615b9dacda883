"""The queries behind the package browser pages.

Each takes the ids of the projects the visitor may read (``app.domain.access``) and
loads only the columns a page shows: the deferred ``core_metadata`` is read for one
file of the package page only; lists and searches use the files' ``summary`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from packaging.version import InvalidVersion, Version
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.domain.names import normalize
from app.domain.tokens import as_utc
from app.models import Package, PackageFile, Project

T = TypeVar("T")
PER_PAGE = 50
MAX_SEARCH = 200
# Pages past this are empty anyway; it keeps the row offset a 64-bit integer.
MAX_PAGE = 2**31 - 1


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max((self.total + self.per_page - 1) // self.per_page, 1)

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class PackageRow:
    """A package (one name and version of a project) as the lists show it."""

    id: int
    name: str
    version: str
    project_path: str
    created_at: datetime
    yanked: bool
    summary: str | None = None
    status: str | None = None  # the files' combined state, on project lists


@dataclass(frozen=True)
class VersionRow:
    id: int
    version: str
    yanked: bool
    created_at: datetime


@dataclass(frozen=True)
class PackageDetail:
    package: Package
    files: list[PackageFile]
    versions: list[VersionRow]  # newest first, every version of the name in the project
    metadata: dict[str, Any]  # core metadata of one processed file, {} before processing


def _matches(text: str) -> Any:
    conditions = [
        Package.name.icontains(text, autoescape=True),
        Package.id.in_(
            select(PackageFile.package_id).where(
                PackageFile.summary.icontains(text, autoescape=True)
            )
        ),
    ]
    if normalized := normalize(text).strip("-"):
        conditions.append(Package.normalized_name.contains(normalized, autoescape=True))
    return or_(*conditions)


def latest_packages(
    session: Session, project_ids: list[int], search: str = "", page: int = 1
) -> Page[PackageRow]:
    """The newest version of each package name of each project, by name.

    With ``search``, only names where the name or a version's summary contains it."""
    page = _bounded(page)
    # "Latest" is the newest release that is neither yanked nor failed (every file in
    # error); a name with no such release shows its newest, marked as it is.
    failed = (
        select(
            PackageFile.package_id,
            func.min(case((PackageFile.state == "error", 1), else_=0)).label("failed"),
        )
        .group_by(PackageFile.package_id)
        .subquery()
    )
    usable = and_(Package.yanked.is_(False), func.coalesce(failed.c.failed, 0) == 0)
    latest = (
        select(
            func.coalesce(func.max(case((usable, Package.id))), func.max(Package.id)).label("id")
        )
        .outerjoin(failed, failed.c.package_id == Package.id)
        .where(Package.project_id.in_(project_ids))
        .group_by(Package.project_id, Package.normalized_name)
    )
    if search := search.strip()[:MAX_SEARCH]:
        latest = latest.having(func.max(case((_matches(search), 1), else_=0)) == 1)
    ids = latest.subquery()
    total = session.execute(select(func.count()).select_from(ids)).scalar_one()
    rows = session.execute(
        select(
            Package.id,
            Package.name,
            Package.version,
            Project.full_path,
            Package.created_at,
            Package.yanked,
        )
        .join(Project, Project.id == Package.project_id)
        .where(Package.id.in_(select(ids.c.id)))
        .order_by(Package.normalized_name, Project.full_path)
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    summaries = _summaries(session, [row[0] for row in rows])
    items = [
        PackageRow(pid, name, version, path, _utc(created), yanked, summaries.get(pid))
        for pid, name, version, path, created, yanked in rows
    ]
    return Page(items, total, page, PER_PAGE)


def _bounded(page: int) -> int:
    return min(max(page, 1), MAX_PAGE)


def _summaries(session: Session, package_ids: list[int]) -> dict[int, str]:
    """The summary of each package, from its newest file that has one."""
    if not package_ids:
        return {}
    rows = session.execute(
        select(PackageFile.package_id, PackageFile.summary)
        .where(PackageFile.package_id.in_(package_ids), PackageFile.summary.is_not(None))
        .order_by(PackageFile.id)
    )
    return {package_id: summary for package_id, summary in rows if summary}


def project_packages(
    session: Session, project_id: int, search: str = "", page: int = 1
) -> Page[PackageRow]:
    """Every package (name and version) of a project, newest first, like GitLab's list."""
    page = _bounded(page)
    query = select(Package.id).where(Package.project_id == project_id)
    if search := search.strip()[:MAX_SEARCH]:
        query = query.where(_matches(search))
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    processing = func.sum(case((PackageFile.state == "processing", 1), else_=0))
    failed = func.sum(case((PackageFile.state == "error", 1), else_=0))
    rows = session.execute(
        select(
            Package.id,
            Package.name,
            Package.version,
            Package.created_at,
            Package.yanked,
            processing,
            failed,
            func.count(PackageFile.id),
        )
        .outerjoin(PackageFile, PackageFile.package_id == Package.id)
        .where(
            Package.id.in_(
                query.order_by(Package.id.desc()).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
            )
        )
        .group_by(Package.id, Package.name, Package.version, Package.created_at, Package.yanked)
        .order_by(Package.id.desc())
    ).all()
    summaries = _summaries(session, [row[0] for row in rows])
    items = [
        PackageRow(
            pid,
            name,
            version,
            "",
            _utc(created),
            yanked,
            summaries.get(pid),
            _status(processing or 0, failed or 0, count),
        )
        for pid, name, version, created, yanked, processing, failed, count in rows
    ]
    return Page(items, total, page, PER_PAGE)


def _status(processing: int, failed: int, count: int) -> str:
    if count == 0:
        return "empty"
    if processing:
        return "processing"
    return "error" if failed == count else "default"


def package_detail(session: Session, project_id: int, package_id: int) -> PackageDetail | None:
    package = session.get(Package, package_id)
    if package is None or package.project_id != project_id:
        return None
    files = list(
        session.execute(
            select(PackageFile).where(PackageFile.package_id == package.id).order_by(PackageFile.id)
        ).scalars()
    )
    versions = session.execute(
        select(Package.id, Package.version, Package.yanked, Package.created_at).where(
            Package.project_id == project_id, Package.normalized_name == package.normalized_name
        )
    ).all()
    ordered = sorted(
        (
            VersionRow(vid, version, yanked, _utc(created))
            for vid, version, yanked, created in versions
        ),
        key=_version_key,
        reverse=True,
    )
    return PackageDetail(package, files, ordered, _metadata(session, package.id))


def _utc(moment: datetime) -> datetime:
    return as_utc(moment) or moment


def _version_key(row: VersionRow) -> tuple[int, Version | str, int]:
    try:
        return (1, Version(row.version), row.id)
    except InvalidVersion:
        return (0, row.version, row.id)


def _metadata(session: Session, package_id: int) -> dict[str, Any]:
    """Core metadata of the package's newest processed file, wheels first."""
    row = session.execute(
        select(PackageFile.core_metadata)
        .where(PackageFile.package_id == package_id, PackageFile.state == "default")
        .order_by(PackageFile.filename.like("%.whl").desc(), PackageFile.id.desc())
        .limit(1)
    ).first()
    return dict(row[0] or {}) if row else {}
