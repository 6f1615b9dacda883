"""Projects: listing, creation, members, deploy tokens and CI job tokens."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from app.domain.access import group_access
from app.domain.accounts import create_deploy_token, create_job_token
from app.domain.errors import Forbidden, NotFound
from app.domain.namespaces import add_member, create_project, find_group
from app.domain.removal import check_may_delete, delete_project
from app.domain.settings import update_settings
from app.domain.tokens import as_utc
from app.extensions import db
from app.models import Project
from app.web.api import bp
from app.web.api.common import api_user, body, int_param, iso, paginate, required
from app.web.api.groups import _member_json, _user, _visible_ids
from app.web.api.serializers import deploy_token_json, project_json
from app.web.auth import current_identity
from app.web.loaders import project_for
from workers.tasks.cleanup import remove_stored_files


@bp.get("/projects")
def list_projects() -> Response:
    query = select(Project).where(Project.id.in_(_visible_ids(Project))).order_by(Project.id.desc())
    return paginate(query, project_json)


@bp.get("/projects/<ref:project_ref>")
def get_project(project_ref: str) -> Response:
    project, _ = project_for(project_ref, "visible")
    return jsonify(project_json(project))


@bp.put("/projects/<ref:project_ref>")
def put_project(project_ref: str) -> Response:
    api_user(write=True)
    project, access = project_for(project_ref, "manage")
    update_settings(db.session, project, body(), current_identity(), role=access.role)
    return jsonify(project_json(project))


@bp.post("/projects")
def post_project() -> tuple[Response, int]:
    identity, _user_row = api_user(write=True)
    params = body()
    group = find_group(db.session, int_param(params, "namespace_id") or 0)
    if group is None or not group_access(db.session, identity, group).visible:
        raise NotFound("404 Namespace Not Found")
    if not group_access(db.session, identity, group).manage:
        raise Forbidden("403 Forbidden: maintainer access to the namespace is required")
    path = params.get("path") or required(params, "name")
    project = create_project(
        db.session,
        params.get("name") or path,
        path,
        group,
        params.get("visibility") or "private",
        description=params.get("description"),
        actor=identity,
    )
    return jsonify(project_json(project)), 201


@bp.post("/projects/<ref:project_ref>/members")
def post_project_member(project_ref: str) -> tuple[Response, int]:
    api_user(write=True)
    project, access = project_for(project_ref, "manage")
    params = body()
    user = _user(params)
    membership = add_member(
        db.session,
        user,
        int_param(params, "access_level") or 0,
        project=project,
        actor=current_identity(),
        granter_role=access.role,
    )
    return jsonify(_member_json(user, membership.access_level)), 201


@bp.post("/projects/<ref:project_ref>/deploy_tokens")
def post_project_deploy_token(project_ref: str) -> tuple[Response, int]:
    api_user(write=True)
    project, _ = project_for(project_ref, "manage")
    params = body()
    token, secret = create_deploy_token(
        db.session,
        required(params, "name"),
        params.get("scopes"),
        project=project,
        username=params.get("username"),
        expires_at=params.get("expires_at"),
        actor=current_identity(),
    )
    return jsonify(deploy_token_json(token, secret)), 201


@bp.post("/projects/<ref:project_ref>/job_tokens")
def post_job_token(project_ref: str) -> tuple[Response, int]:
    identity, user = api_user(write=True)
    project, _ = project_for(project_ref, "write")
    token, secret = create_job_token(
        db.session, project, user.id, body().get("expires_in"), actor=identity
    )
    return jsonify({"token": secret, "expires_at": iso(as_utc(token.expires_at))}), 201


@bp.delete("/projects/<ref:project_ref>")
def delete_project_view(project_ref: str) -> tuple[Response, int]:
    identity, _user_row = api_user(write=True)
    project, access = project_for(project_ref, "manage")
    check_may_delete(access, "project")
    deletions = delete_project(db.session, project, identity)
    remove_stored_files(deletions)
    return jsonify({"message": "202 Accepted"}), 202
