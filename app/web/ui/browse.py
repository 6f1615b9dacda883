"""The package browser: home and search, groups, a project's packages, one package."""

from __future__ import annotations

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from app.domain.access import (
    all_readable_project_ids,
    group_access,
    project_access,
    readable_project_ids,
)
from app.domain.browse import latest_packages, package_detail, project_packages
from app.domain.errors import Forbidden, InvalidInput, NotFound
from app.domain.namespaces import group_chain, project_at
from app.domain.readme import render_description
from app.domain.settings import update_settings
from app.domain.upstream.policy import policy_for
from app.extensions import db
from app.models import Group, Project
from app.runtime import plugin_manager
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import (
    canonical_redirect,
    hidden,
    load_group,
    load_project,
    page_arg,
    search_arg,
)
from app.web.ui.install import install_instructions
from app.web.ui.members import user_page


@bp.get("/")
def home() -> str:
    identity = current_identity()
    search, page = search_arg(), page_arg()
    results = latest_packages(
        db.session, all_readable_project_ids(db.session, identity), search, page
    )
    groups: list[Group] = []
    if not search and page == 1:
        top = db.session.execute(
            select(Group).where(Group.parent_id.is_(None)).order_by(Group.path)
        ).scalars()
        groups = [g for g in top if group_access(db.session, identity, g).visible]
    return render_template("browse/home.html", results=results, search=search, groups=groups)


@bp.get("/<namespace:full_path>")
def group(full_path: str) -> str | Response:
    identity = current_identity()
    found, access = load_group(full_path)
    if found is None:
        # A project's own path leads to its packages, as GitLab's project page would.
        project = project_at(db.session, full_path)
        if project is not None and project_access(db.session, identity, project).visible:
            return redirect(url_for("ui.packages", full_path=project.full_path))
        signed_in = identity.user_id is not None
        if signed_in and "/" not in full_path and (page := user_page(full_path)) is not None:
            return page  # a user's web_url, as GitLab's
    if found is None or not access.visible:
        raise hidden(identity, "Group")
    if moved := canonical_redirect(found.full_path):
        return moved
    subgroups = db.session.execute(
        select(Group).where(Group.parent_id == found.id).order_by(Group.path)
    ).scalars()
    projects = db.session.execute(
        select(Project).where(Project.group_id == found.id).order_by(Project.path)
    ).scalars()
    search, page = search_arg(), page_arg()
    return render_template(
        "browse/group.html",
        group=found,
        upstream=_upstream_settings(found) if access.manage else None,
        access=access,
        ancestors=list(reversed(group_chain(db.session, found)[1:])),
        subgroups=[g for g in subgroups if group_access(db.session, identity, g).visible],
        projects=[p for p in projects if project_access(db.session, identity, p).visible],
        results=latest_packages(
            db.session, readable_project_ids(db.session, identity, found), search, page
        ),
        search=search,
    )


def _upstream_settings(group: Group) -> dict[str, object]:
    """What the group's upstream form shows: its own settings and what applies."""
    effective = policy_for(db.session, group, None, current_app.config["UPSTREAM_MODE"])
    return {"effective": effective, "modes": ("off", "redirect", "cache")}


@bp.post("/<namespace:full_path>/-/settings/upstream")
def group_upstream_settings(full_path: str) -> Response:
    """The group page's small form (maintainers): mode, allow and deny lists."""
    identity = current_identity()
    found, access = load_group(full_path)
    if found is None or not access.visible:
        raise hidden(identity, "Group")
    if not access.manage:
        raise Forbidden("403 Forbidden: maintainer access to the group is required")
    fields = ("upstream_mode", "upstream_allow", "upstream_deny")
    try:
        update_settings(db.session, found, {f: request.form.get(f, "") for f in fields}, identity)
    except InvalidInput as exc:
        flash(exc.message, "error")
    else:
        flash("Saved the upstream settings.")
    return redirect(url_for("ui.group", full_path=full_path) + "#upstream", code=303)


@bp.get("/<namespace:full_path>/-/packages")
def packages(full_path: str) -> str | Response:
    project, access = load_project(full_path)
    if moved := canonical_redirect(project.full_path):
        return moved
    search, page = search_arg(), page_arg()
    sections = plugin_manager().hook.project_page_sections(
        project=project, access=access, session=db.session
    )
    return render_template(
        "browse/project.html",
        project=project,
        access=access,
        groups=list(reversed(group_chain(db.session, project.group))),
        results=project_packages(db.session, project.id, search, page),
        search=search,
        sections=[Markup(section) for section in reversed(sections)],
    )


@bp.get("/<namespace:full_path>/-/packages/<int:package_id>")
def package(full_path: str, package_id: int) -> str | Response:
    project, access = load_project(full_path)
    if moved := canonical_redirect(project.full_path):
        return moved
    detail = package_detail(db.session, project.id, package_id)
    if detail is None:
        raise NotFound("404 Package Not Found")
    chain = group_chain(db.session, project.group)
    meta = detail.metadata
    return render_template(
        "browse/package.html",
        project=project,
        access=access,
        groups=list(reversed(chain)),
        detail=detail,
        meta=meta,
        description=render_description(
            meta.get("description"), meta.get("description_content_type")
        ),
        install=install_instructions(project, chain, detail.package),
    )
