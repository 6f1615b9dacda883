"""The retention preview of a group or project: what its policy would remove now (a dry
run; the workers apply it).  Thin: app.domain.retention decides."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from app.domain.access import readable_project_ids
from app.domain.retention import effective_policy, preview
from app.extensions import db
from app.models import Group, Project
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.members import crumbs, load_target, require_manage

PAGES = {"group": "/<namespace:full_path>/-/group_retention",
         "project": "/<namespace:full_path>/-/project_retention"}  # fmt: skip


def _views(kind: str) -> None:
    def show(full_path: str) -> ResponseReturnValue:
        target, access = load_target(kind, full_path)
        require_manage(access)
        projects = _projects(target)
        removals = [removal for project in projects for removal in preview(db.session, project)]
        policy = effective_policy(db.session, target) if isinstance(target, Project) else None
        return render_template(
            "manage/retention.html", kind=kind, target=target, access=access,
            groups=crumbs(target), removals=removals, policy=policy,
        )  # fmt: skip

    bp.add_url_rule(PAGES[kind], f"{kind}_retention", show, methods=["GET"])


def _projects(target: Group | Project) -> list[Project]:
    if isinstance(target, Project):
        return [target]
    ids = readable_project_ids(db.session, current_identity(), target)
    query = select(Project).where(Project.id.in_(ids)).order_by(Project.full_path)
    return list(db.session.execute(query).scalars())


for _kind in ("group", "project"):
    _views(_kind)
