"""Packages of projects and groups: list, show, delete, files, yank (GitLab's shapes).

Reading needs read access to the project (reporter, or a public project); deleting a
package or a file, yanking and unyanking need ``delete`` (maintainer): GitLab has no
yank, and a yank changes what every installer resolves, like a delete.  A package
protection rule on the name may ask for more (``app.domain.protection``).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select

from app.domain.errors import InvalidInput, NotFound
from app.domain.packages import (
    PACKAGE_TYPE,
    delete_file,
    delete_package,
    find_file,
    find_package,
    package_status,
    packages_query,
    parse_bool,
    parse_package_query,
    set_protected,
    unyank,
    yank,
)
from app.domain.protection import DELETE, caller_level, check_not_protected
from app.domain.retention import Removal, preview
from app.extensions import db
from app.models import Package, PackageFile, Project
from app.web.api import bp
from app.web.api.common import body, iso, paginate, paginate_list
from app.web.auth import current_identity
from app.web.loaders import group_for, project_for, readable_project_ids_in
from workers.tasks.cleanup import remove_stored_files
from workers.tasks.hooks import announce, queue, queue_file_deletion, send_events

PACKAGE = "/projects/<ref:project_ref>/packages/<int:package_id>"
FILE_ORDER = {"id": PackageFile.id, "file_name": PackageFile.filename}


@bp.get("/projects/<ref:project_ref>/packages")
def list_project_packages(project_ref: str) -> Response:
    project, _ = project_for(project_ref, "read")
    where = parse_package_query(request.args)
    return paginate(packages_query([project.id], where), package_json)


@bp.get("/groups/<ref:group_ref>/packages")
def list_group_packages(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "read")
    where = parse_package_query(request.args, group=True)
    project_ids = readable_project_ids_in(group)
    if parse_bool(request.args.get("exclude_subgroups"), "exclude_subgroups"):
        direct = select(Project.id).where(Project.group_id == group.id)
        project_ids = sorted(set(project_ids) & set(db.session.execute(direct).scalars()))
    return paginate(packages_query(project_ids, where), package_json)


@bp.get(PACKAGE)
def get_package(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "read")
    return jsonify({**package_json(package), "versions": _other_versions(package)})


@bp.delete(PACKAGE)
def remove_package(project_ref: str, package_id: int) -> tuple[str, int]:
    package = _package(project_ref, package_id, "delete")
    events = queue(package, "deleted", current_identity())  # committed with the deletion
    remove_stored_files(delete_package(db.session, package, current_identity()))
    send_events(events)
    return "", 204


@bp.get(PACKAGE + "/package_files")
def list_package_files(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "read")
    order_by = request.args.get("order_by") or "id"
    if order_by not in FILE_ORDER and order_by != "created_at":
        raise InvalidInput("order_by does not have a valid value")
    sort = request.args.get("sort") or "asc"
    if sort not in ("asc", "desc"):
        raise InvalidInput("sort does not have a valid value")
    column = FILE_ORDER.get(order_by, PackageFile.id)  # files are created in id order
    ordering = (
        [column.desc(), PackageFile.id.desc()] if sort == "desc" else [column, PackageFile.id]
    )
    query = select(PackageFile).where(PackageFile.package_id == package.id).order_by(*ordering)
    return paginate(query, package_file_json)


@bp.delete(PACKAGE + "/package_files/<int:file_id>")
def remove_package_file(project_ref: str, package_id: int, file_id: int) -> tuple[str, int]:
    package = _package(project_ref, package_id, "delete")
    package_file = find_file(db.session, package, file_id)
    if package_file is None:
        raise NotFound("404 Package File Not Found")
    events = queue_file_deletion(package_file, current_identity())
    remove_stored_files(delete_file(db.session, package_file, current_identity()))
    send_events(events)
    return "", 204


@bp.post(PACKAGE + "/yank")
def yank_package(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "delete")
    reason = body().get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInput("reason is invalid")
    yank(db.session, package, reason, current_identity())
    announce(package, "yanked", current_identity())
    return jsonify(package_json(package))


@bp.post(PACKAGE + "/protect")
def protect_package(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "delete")
    set_protected(db.session, package, True, current_identity())
    return jsonify(package_json(package))


@bp.post(PACKAGE + "/unprotect")
def unprotect_package(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "delete")
    set_protected(db.session, package, False, current_identity())
    return jsonify(package_json(package))


@bp.get("/projects/<ref:project_ref>/packages/retention/preview")
def preview_project_retention(project_ref: str) -> Response:
    project, _ = project_for(project_ref, "manage")
    return paginate_list(preview(db.session, project), removal_json)


@bp.get("/groups/<ref:group_ref>/packages/retention/preview")
def preview_group_retention(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "manage")
    projects = db.session.execute(
        select(Project).where(Project.id.in_(readable_project_ids_in(group))).order_by(Project.id)
    ).scalars()
    return paginate_list([r for p in projects for r in preview(db.session, p)], removal_json)


def removal_json(removal: Removal) -> dict[str, Any]:
    return {**package_json(removal.package), "retention_reason": removal.reason}


@bp.post(PACKAGE + "/unyank")
def unyank_package(project_ref: str, package_id: int) -> Response:
    package = _package(project_ref, package_id, "delete")
    unyank(db.session, package, current_identity())
    return jsonify(package_json(package))


def _package(project_ref: str, package_id: int, permission: str) -> Package:
    """The package; for ``delete`` (also yank), only if no protection rule forbids it."""
    project, access = project_for(project_ref, permission)
    package = find_package(db.session, project, package_id)
    if package is None:
        raise NotFound("404 Package Not Found")
    if permission == "delete":
        level = caller_level(current_identity(), access)
        check_not_protected(db.session, project, package.name, DELETE, level)
    return package


def _other_versions(package: Package) -> list[dict[str, Any]]:
    others = db.session.execute(
        select(Package)
        .where(
            Package.project_id == package.project_id,
            Package.normalized_name == package.normalized_name,
            Package.id != package.id,
        )
        .order_by(Package.id)
    ).scalars()
    return [
        {"id": other.id, "version": other.version, "created_at": iso(other.created_at),
         "pipelines": [], "tags": []}
        for other in others
    ]  # fmt: skip


def package_json(package: Package) -> dict[str, Any]:
    project = package.project
    api_path = f"/api/v4/projects/{project.id}/packages/{package.id}"
    return {
        "id": package.id,
        "name": package.name,
        "version": package.version,
        "package_type": PACKAGE_TYPE,
        "status": package_status(package),
        "_links": {
            "web_path": f"/{project.full_path}/-/packages/{package.id}",
            "delete_api_path": request.host_url.rstrip("/") + api_path,
        },
        "created_at": iso(package.created_at),
        "last_downloaded_at": iso(package.last_downloaded_at),
        "download_count": package.download_count,
        "project_id": project.id,
        "project_path": project.full_path,
        "pipeline": None,
        "pipelines": [],
        "tags": [],
        "yanked": package.yanked,
        "yanked_reason": package.yanked_reason,
        "protected": package.protected,
    }


def package_file_json(package_file: PackageFile) -> dict[str, Any]:
    return {
        "id": package_file.id,
        "package_id": package_file.package_id,
        "created_at": iso(package_file.created_at),
        "file_name": package_file.filename,
        "size": package_file.size,
        "file_md5": package_file.md5,
        "file_sha1": None,
        "file_sha256": package_file.sha256,
        "status": package_file.state,
        "error_reason": package_file.error_reason if package_file.state == "error" else None,
        "requires_python": package_file.requires_python,
        "download_count": package_file.download_count,
        "last_downloaded_at": iso(package_file.last_downloaded_at),
        "pipelines": [],
    }
