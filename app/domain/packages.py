"""Packages as the REST API sees them: listing with GitLab's filters, status, yank, delete.

A package's status is derived from its files, in GitLab's terms: ``processing`` while any
file is, ``error`` when every file is, ``default`` otherwise.  Yanking (PEP 592) marks a
release, and every index shows it at once: indexes are computed from these rows.
Deleting removes the rows and records each stored file in ``storage_deletions`` in the
same transaction; the worker (or, if its task is lost, the sweeper) removes the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import ColumnElement, Select, and_, delete, exists, false, not_, or_, select
from sqlalchemy.orm import Session, selectinload

from app.domain.audit import Actor, record
from app.domain.errors import Forbidden, InvalidInput
from app.domain.names import normalize, release_key
from app.domain.storage import StorageBackend
from app.models import Package, PackageFile, Project, StorageDeletion
from app.models.base import utcnow

PACKAGE_TYPE = "pypi"
# GitLab's package types: any other value is a 400; only pypi ever matches here.
PACKAGE_TYPES = frozenset(
    {"conan", "maven", "npm", "pypi", "composer", "nuget", "helm", "terraform_module",
     "golang", "generic", "debian", "rubygems", "rpm", "ml_model", "cargo"}
)  # fmt: skip
# GitLab's statuses; hidden and pending_destruction are never used by Packyard.
STATUSES = ("default", "hidden", "processing", "error", "pending_destruction")
ORDER_BY = ("created_at", "name", "version", "type")
GROUP_ORDER_BY = (*ORDER_BY, "project_path")
MAX_YANK_REASON = 1000


@dataclass(frozen=True)
class PackageQuery:
    """GitLab's list parameters, validated."""

    package_name: str | None = None
    package_version: str | None = None
    package_type: str | None = None
    status: str | None = None
    order_by: str = "created_at"
    sort: str = "asc"
    include_versionless: bool = False  # every PyPI package has a version: no effect


def check_packages_enabled(project: Project) -> None:
    """Uploads to a project whose Packages switch is off are refused (403)."""
    if not project.packages_enabled:
        raise Forbidden(
            f"403 Forbidden: packages are disabled in the project {project.full_path}"
            " (its packages_enabled setting)"
        )


def with_packages_enabled(session: Session, project_ids: Iterable[int]) -> list[int]:
    """The given projects whose packages are enabled: only those reach a group index."""
    query = select(Project.id).where(Project.id.in_(list(project_ids)), Project.packages_enabled)
    return sorted(session.execute(query).scalars())


def parse_package_query(params: Mapping[str, Any], *, group: bool = False) -> PackageQuery:
    """Validate list parameters; a value GitLab would refuse is an InvalidInput (400)."""
    order_by = params.get("order_by") or "created_at"
    if order_by not in (GROUP_ORDER_BY if group else ORDER_BY):
        raise InvalidInput("order_by does not have a valid value")
    sort = params.get("sort") or "asc"
    if sort not in ("asc", "desc"):
        raise InvalidInput("sort does not have a valid value")
    package_type = params.get("package_type") or None
    if package_type is not None and package_type not in PACKAGE_TYPES:
        raise InvalidInput("package_type does not have a valid value")
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput("status does not have a valid value")
    return PackageQuery(
        package_name=params.get("package_name") or None,
        package_version=params.get("package_version") or None,
        package_type=package_type,
        status=status,
        order_by=order_by,
        sort=sort,
        include_versionless=parse_bool(params.get("include_versionless"), "include_versionless"),
    )


def parse_bool(value: Any, name: str) -> bool:
    """A boolean as GitLab's API takes it (true/false, 1/0, yes/no...)."""
    if value is None or value == "" or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "t", "on"):
        return True
    if text in ("false", "0", "no", "f", "off"):
        return False
    raise InvalidInput(f"{name} is invalid")


def _file_in(*states: str) -> ColumnElement[bool]:
    return exists().where(PackageFile.package_id == Package.id, PackageFile.state.in_(states))


def status_condition(status: str) -> ColumnElement[bool]:
    """SQL for "the package has this derived status"."""
    processing = _file_in("processing")
    all_error = and_(_file_in("error"), not_(_file_in("processing", "default")))
    if status == "processing":
        return processing
    if status == "error":
        return all_error
    if status == "default":
        return and_(not_(processing), not_(all_error))
    return false()  # a status Packyard never gives


def package_status(package: Package) -> str:
    states = {f.state for f in package.files}
    if "processing" in states:
        return "processing"
    if states == {"error"}:
        return "error"
    return "default"


def packages_query(project_ids: Iterable[int], where: PackageQuery) -> Select[tuple[Package]]:
    """Packages of ``project_ids`` matching ``where``, in its order (ties by id)."""
    query = (
        select(Package)
        .join(Project, Project.id == Package.project_id)
        .where(Package.project_id.in_(list(project_ids)))
        .options(selectinload(Package.files), selectinload(Package.project))
    )
    if where.package_type not in (None, PACKAGE_TYPE):
        query = query.where(Package.id.is_(None))
    if where.package_name:
        name = where.package_name
        query = query.where(
            or_(
                Package.name.icontains(name, autoescape=True),
                Package.normalized_name.contains(normalize(name), autoescape=True),
            )
        )
    if where.package_version:
        query = query.where(_version_is(where.package_version))
    if where.status:
        query = query.where(status_condition(where.status))
    column = {
        "created_at": Package.created_at,
        "name": Package.normalized_name,
        "version": Package.version,
        "type": Package.id,  # one type: the order is creation order
        "project_path": Project.full_path,
    }[where.order_by]
    direction = (lambda c: c.desc()) if where.sort == "desc" else (lambda c: c.asc())
    return query.order_by(direction(column), direction(Package.id))


def _version_is(version: str) -> ColumnElement[bool]:
    """The version as written, or any PEP 440 equal one (``v1.0`` and ``1.0.0`` are ``1``)."""
    try:
        canonical = release_key(Version(version))
    except InvalidVersion:
        return Package.version == version
    return or_(Package.version == version, Package.canonical_version == canonical)


def find_package(session: Session, project: Project, package_id: int) -> Package | None:
    package = session.get(Package, package_id)
    return package if package is not None and package.project_id == project.id else None


def find_file(session: Session, package: Package, file_id: int) -> PackageFile | None:
    package_file = session.get(PackageFile, file_id)
    return (
        package_file if package_file is not None and package_file.package_id == package.id else None
    )


def package_path(package: Package) -> str:
    return f"{package.project.full_path}/{package.name}/{package.version}"


def delete_package(session: Session, package: Package, actor: Actor) -> list[int]:
    """Delete the package and its files' rows; returns the storage deletions to run
    once committed (the caller sends them to the worker)."""
    pending = schedule_deletions(session, package.files)
    details = {"files": [f.filename for f in package.files]}
    record(
        session, actor, "package_deleted", package.project, "Package", package.id,
        package_path(package), details,
    )  # fmt: skip
    for package_file in package.files:
        session.delete(package_file)
    session.delete(package)
    session.commit()
    return pending


def delete_file(session: Session, package_file: PackageFile, actor: Actor) -> list[int]:
    """Delete one file's row; a package left with no file goes too, so that its name
    disappears from the indexes. The filename may be uploaded again afterwards."""
    package = package_file.package
    pending = schedule_deletions(session, [package_file])
    record(
        session, actor, "package_file_deleted", package.project, "PackageFile", package_file.id,
        f"{package_path(package)}/{package_file.filename}", {"sha256": package_file.sha256},
    )  # fmt: skip
    session.delete(package_file)
    session.flush()
    session.expire(package, ["files"])
    if not package.files:
        session.delete(package)
    session.commit()
    return pending


def schedule_deletions(session: Session, files: Iterable[PackageFile]) -> list[int]:
    """Record the files' stored bytes for removal once this transaction commits."""
    rows = [StorageDeletion(storage_key=f.storage_key) for f in files]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def yank(session: Session, package: Package, reason: str | None, actor: Actor) -> None:
    """Mark the release yanked (PEP 592); yanking again replaces the reason."""
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_YANK_REASON:
        raise InvalidInput(f"reason is longer than {MAX_YANK_REASON} characters")
    package.yanked = True
    package.yanked_reason = reason
    record(
        session, actor, "package_yanked", package.project, "Package", package.id,
        package_path(package), {"reason": reason},
    )  # fmt: skip
    session.commit()


def unyank(session: Session, package: Package, actor: Actor) -> None:
    if package.yanked:
        package.yanked = False
        package.yanked_reason = None
        record(
            session, actor, "package_unyanked", package.project, "Package", package.id,
            package_path(package),
        )  # fmt: skip
    session.commit()


def set_protected(session: Session, package: Package, protected: bool, actor: Actor) -> None:
    """Mark the release as kept by every retention policy (app.domain.retention), or not."""
    if package.protected != protected:
        package.protected = protected
        action = "package_protected" if protected else "package_unprotected"
        record(session, actor, action, package.project, "Package", package.id,
               package_path(package))  # fmt: skip
    session.commit()


def purge_deletions(session: Session, store: StorageBackend, deletion_ids: Iterable[int]) -> int:
    """Remove the stored files of these pending deletions, then their rows. Idempotent:
    a deletion already done is skipped. Returns how many files were removed."""
    done = 0
    for deletion_id in deletion_ids:
        row = session.get(StorageDeletion, deletion_id)
        if row is None:
            continue
        store.delete(row.storage_key)  # a missing file is not an error
        session.execute(delete(StorageDeletion).where(StorageDeletion.id == deletion_id))
        session.commit()
        done += 1
    return done


def stale_deletions(session: Session, older_than: timedelta, limit: int = 500) -> list[int]:
    """Pending deletions older than ``older_than``: their task was lost (broker down)."""
    cutoff = utcnow() - older_than
    return list(
        session.execute(
            select(StorageDeletion.id)
            .where(StorageDeletion.created_at < cutoff)
            .order_by(StorageDeletion.id)
            .limit(limit)
        ).scalars()
    )
