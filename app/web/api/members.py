"""Members of groups and projects: list (direct, or ``/all`` with inherited), change a
role, remove. Adding is in ``groups`` and ``projects``."""

from __future__ import annotations

from flask import Response, jsonify

from app.domain.members import all_members, change_role, direct_members, find_membership, leave
from app.domain.members import remove_member as remove_membership
from app.extensions import db
from app.models import Group, Project, User
from app.web.api.common import api_user, body, int_param, on_both, paginate_list, required
from app.web.api.serializers import member_json
from app.web.auth import current_identity
from app.web.loaders import group_for, project_for


def _target(group_ref: str, project_ref: str, permission: str) -> tuple[Group | Project, int]:
    if group_ref:
        group, access = group_for(group_ref, permission)
        return group, access.role
    project, access = project_for(project_ref, permission)
    return project, access.role


@on_both("get", "/members")
def list_members(group_ref: str = "", project_ref: str = "") -> Response:
    api_user()
    target, _role = _target(group_ref, project_ref, "visible")
    members = direct_members(db.session, target)
    return paginate_list(members, lambda m: member_json(m.user, m.access_level))


@on_both("get", "/members/all")
def list_all_members(group_ref: str = "", project_ref: str = "") -> Response:
    api_user()
    target, _role = _target(group_ref, project_ref, "visible")
    members = all_members(db.session, target)
    return paginate_list(members, lambda m: member_json(m.user, m.access_level, m.source))


@on_both("get", "/members/<int:user_id>")
def get_member(user_id: int, group_ref: str = "", project_ref: str = "") -> Response:
    api_user()
    target, _role = _target(group_ref, project_ref, "visible")
    membership = find_membership(db.session, target, user_id)
    return jsonify(member_json(_user(user_id), membership.access_level))


@on_both("put", "/members/<int:user_id>")
def put_member(user_id: int, group_ref: str = "", project_ref: str = "") -> Response:
    api_user(write=True)
    target, role = _target(group_ref, project_ref, "manage")
    membership = find_membership(db.session, target, user_id)
    level = int_param(body(), "access_level") or int(required(body(), "access_level"))
    change_role(db.session, target, membership, level, granter_role=role,
                actor=current_identity())  # fmt: skip
    return jsonify(member_json(_user(user_id), membership.access_level))


@on_both("delete", "/members/<int:user_id>")
def delete_member(user_id: int, group_ref: str = "", project_ref: str = "") -> tuple[str, int]:
    _identity, caller = api_user(write=True)
    if caller.id == user_id:  # leaving: any member may, not only maintainers
        target, _role = _target(group_ref, project_ref, "visible")
        leave(db.session, target, find_membership(db.session, target, user_id), current_identity())
        return "", 204
    target, role = _target(group_ref, project_ref, "manage")
    membership = find_membership(db.session, target, user_id)
    remove_membership(db.session, target, membership, granter_role=role, actor=current_identity())
    return "", 204


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    assert user is not None  # a membership's foreign key
    return user
