"""Groups: listing, creation, subgroups, members and deploy tokens."""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import select

from app.domain.access import OWNER, group_access, project_access
from app.domain.accounts import create_deploy_token
from app.domain.errors import Forbidden, NotFound
from app.domain.namespaces import add_member, create_group, find_group
from app.domain.removal import check_may_delete, delete_group
from app.domain.settings import update_settings
from app.extensions import db
from app.models import Group, Project, User
from app.web.api import bp
from app.web.api.common import api_user, body, int_param, paginate, required
from app.web.api.serializers import deploy_token_json, group_json, member_json, project_json
from app.web.auth import current_identity
from app.web.loaders import group_for
from workers.tasks.cleanup import remove_stored_files


def _visible_ids(model: type[Group] | type[Project]) -> list[int]:
    identity = current_identity()
    rows = db.session.execute(select(model)).scalars()
    check = group_access if model is Group else project_access
    return [row.id for row in rows if check(db.session, identity, row).visible]  # type: ignore[arg-type]


@bp.get("/groups")
def list_groups() -> Response:
    query = select(Group).where(Group.id.in_(_visible_ids(Group))).order_by(Group.full_path)
    return paginate(query, group_json)


@bp.get("/groups/<ref:group_ref>")
def get_group(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "visible")
    return jsonify(group_json(group))


@bp.put("/groups/<ref:group_ref>")
def put_group(group_ref: str) -> Response:
    api_user(write=True)
    group, access = group_for(group_ref, "manage")
    update_settings(db.session, group, body(), current_identity(), role=access.role)
    return jsonify(group_json(group))


@bp.get("/groups/<ref:group_ref>/subgroups")
def list_subgroups(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "visible")
    query = (
        select(Group)
        .where(Group.parent_id == group.id, Group.id.in_(_visible_ids(Group)))
        .order_by(Group.path)
    )
    return paginate(query, group_json)


@bp.get("/groups/<ref:group_ref>/projects")
def list_group_projects(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "visible")
    query = (
        select(Project)
        .where(Project.group_id == group.id, Project.id.in_(_visible_ids(Project)))
        .order_by(Project.path)
    )
    return paginate(query, project_json)


@bp.post("/groups")
def post_group() -> tuple[Response, int]:
    identity, user = api_user(write=True)
    params = body()
    parent = None
    if (parent_id := int_param(params, "parent_id")) is not None:
        parent = find_group(db.session, parent_id)
        if parent is None or not group_access(db.session, identity, parent).visible:
            raise NotFound("404 Group Not Found")
        if not group_access(db.session, identity, parent).manage:
            raise Forbidden("403 Forbidden")
    group = create_group(
        db.session,
        params.get("name") or required(params, "path"),
        required(params, "path"),
        parent,
        params.get("visibility") or "private",
        description=params.get("description"),
        actor=identity,
    )
    if not user.is_admin:
        add_member(db.session, user, OWNER, group=group, actor=identity)
    return jsonify(group_json(group)), 201


@bp.post("/groups/<ref:group_ref>/members")
def post_group_member(group_ref: str) -> tuple[Response, int]:
    api_user(write=True)
    group, access = group_for(group_ref, "manage")
    params = body()
    user = _user(params)
    level = int_param(params, "access_level") or 0
    membership = add_member(
        db.session, user, level, group=group, actor=current_identity(), granter_role=access.role
    )
    return jsonify(_member_json(user, membership.access_level)), 201


@bp.post("/groups/<ref:group_ref>/deploy_tokens")
def post_group_deploy_token(group_ref: str) -> tuple[Response, int]:
    api_user(write=True)
    group, _ = group_for(group_ref, "manage")
    params = body()
    token, secret = create_deploy_token(
        db.session,
        required(params, "name"),
        params.get("scopes"),
        group=group,
        username=params.get("username"),
        expires_at=params.get("expires_at"),
        actor=current_identity(),
    )
    return jsonify(deploy_token_json(token, secret)), 201


def _user(params: dict[str, object]) -> User:
    user = db.session.get(User, int_param(params, "user_id") or 0)
    if user is None:
        raise NotFound("404 User Not Found")
    return user


def _member_json(user: User, access_level: int) -> dict[str, object]:
    return member_json(user, access_level)


@bp.delete("/groups/<ref:group_ref>")
def delete_group_view(group_ref: str) -> tuple[Response, int]:
    identity, _user_row = api_user(write=True)
    group, access = group_for(group_ref, "manage")
    check_may_delete(access, "group")
    deletions = delete_group(db.session, group, identity)
    remove_stored_files(deletions)
    return jsonify({"message": "202 Accepted"}), 202
