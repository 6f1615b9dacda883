"""Maintainer actions on the package page: yank (with a reason) and unyank, delete a
release or one of its files.  Each is a POST behind a confirmation step that works
without JavaScript; the domain functions are the API's."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from app.domain.errors import InvalidInput, NotFound
from app.domain.packages import (
    delete_file,
    delete_package,
    find_file,
    find_package,
    set_protected,
    unyank,
    yank,
)
from app.domain.protection import DELETE, caller_level, check_not_protected
from app.extensions import db
from app.models import Package, Project
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import load_project
from workers.tasks.cleanup import remove_stored_files
from workers.tasks.hooks import announce, queue, queue_file_deletion, send_events

PACKAGE = "/<namespace:full_path>/-/packages/<int:package_id>"


@bp.post(PACKAGE + "/yank")
def yank_release(full_path: str, package_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    yank(db.session, package, request.form.get("reason", ""), current_identity())
    announce(package, "yanked", current_identity())
    flash(f"Yanked {package.name} {package.version}: installers skip it unless pinned.")
    return _to_package(project, package)


@bp.post(PACKAGE + "/unyank")
def unyank_release(full_path: str, package_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    unyank(db.session, package, current_identity())
    flash(f"{package.name} {package.version} is no longer yanked.")
    return _to_package(project, package)


@bp.post(PACKAGE + "/protect")
def protect_release(full_path: str, package_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    set_protected(db.session, package, True, current_identity())
    flash(f"{package.name} {package.version} is protected: retention policies keep it.")
    return _to_package(project, package)


@bp.post(PACKAGE + "/unprotect")
def unprotect_release(full_path: str, package_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    set_protected(db.session, package, False, current_identity())
    flash(f"{package.name} {package.version} is no longer protected.")
    return _to_package(project, package)


@bp.post(PACKAGE + "/delete")
def delete_release(full_path: str, package_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    if request.form.get("confirm", "").strip() != package.version:
        raise InvalidInput(f"Not deleted: type the version, {package.version}, to confirm")
    name, version = package.name, package.version
    events = queue(package, "deleted", current_identity())  # committed with the deletion
    remove_stored_files(delete_package(db.session, package, current_identity()))
    send_events(events)
    flash(f"Deleted {name} {version}.")
    return redirect(url_for("ui.packages", full_path=project.full_path), code=303)


@bp.post(PACKAGE + "/files/<int:file_id>/delete")
def delete_release_file(full_path: str, package_id: int, file_id: int) -> ResponseReturnValue:
    project, package = _package(full_path, package_id)
    package_file = find_file(db.session, package, file_id)
    if package_file is None:
        raise NotFound("404 Package File Not Found")
    filename = package_file.filename
    events = queue_file_deletion(package_file, current_identity())
    remove_stored_files(delete_file(db.session, package_file, current_identity()))
    send_events(events)
    flash(f"Deleted {filename}.")
    if db.session.get(Package, package_id) is None:  # its last file: the release went too
        return redirect(url_for("ui.packages", full_path=project.full_path), code=303)
    return _to_package(project, package)


def _package(full_path: str, package_id: int) -> tuple[Project, Package]:
    project, access = load_project(full_path, "delete")
    package = find_package(db.session, project, package_id)
    if package is None:
        raise NotFound("404 Package Not Found")
    level = caller_level(current_identity(), access)
    check_not_protected(db.session, project, package.name, DELETE, level)
    return project, package


def _to_package(project: Project, package: Package) -> ResponseReturnValue:
    target = url_for("ui.package", full_path=project.full_path, package_id=package.id)
    return redirect(target, code=303)
