"""Listing, revoking and rotating tokens (GitLab's shapes). Secrets are only ever shown
when a token is created or rotated.

Personal access tokens: a user manages their own; an admin manages anyone's. ``self`` is
the token the request authenticates with. Deploy tokens: maintainers of their project or
group; the instance-wide list is for admins.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from app.domain.access import MAINTAINER, Access
from app.domain.accounts import (
    deploy_tokens_query,
    personal_tokens_query,
    revoke_deploy_token,
    revoke_personal_token,
    rotate_personal_token,
)
from app.domain.errors import Forbidden, NotFound
from app.domain.packages import parse_bool
from app.domain.tokens import find_live_token
from app.extensions import db
from app.models import DeployToken, Group, PersonalAccessToken, Project
from app.web.api import bp
from app.web.api.common import api_user, body, int_param, paginate, require_admin
from app.web.api.serializers import deploy_token_json, personal_token_json
from app.web.auth import current_identity, presented_credentials
from app.web.loaders import group_for, project_for

PAT = "/personal_access_tokens"


@bp.get(PAT)
def list_personal_tokens() -> Response:
    _identity, caller = api_user()
    user_id = int_param(request.args.to_dict(), "user_id")
    if not caller.is_admin:
        if user_id not in (None, caller.id):
            raise Forbidden("403 Forbidden: only admins may list other users' tokens")
        user_id = caller.id
    revoked = request.args.get("revoked")
    query = personal_tokens_query(
        user_id,
        state=request.args.get("state") or None,
        revoked=None if revoked in (None, "") else parse_bool(revoked, "revoked"),
        search=request.args.get("search") or None,
    )
    return paginate(query, personal_token_json)


@bp.get(PAT + "/self")
def get_own_personal_token() -> Response:
    return jsonify(personal_token_json(_self_token(write=False)))


@bp.get(PAT + "/<int:token_id>")
def get_personal_token(token_id: int) -> Response:
    return jsonify(personal_token_json(_personal_token(token_id, write=False)))


@bp.delete(PAT + "/self")
def revoke_own_personal_token() -> tuple[str, int]:
    revoke_personal_token(db.session, _self_token(write=True), current_identity())
    return "", 204


@bp.delete(PAT + "/<int:token_id>")
def revoke_personal_token_by_id(token_id: int) -> tuple[str, int]:
    token = _personal_token(token_id, write=True)
    revoke_personal_token(db.session, token, current_identity())
    return "", 204


@bp.post(PAT + "/self/rotate")
def rotate_own_personal_token() -> Response:
    return _rotate(_self_token(write=True))


@bp.post(PAT + "/<int:token_id>/rotate")
def rotate_personal_token_by_id(token_id: int) -> Response:
    return _rotate(_personal_token(token_id, write=True))


def _rotate(token: PersonalAccessToken) -> Response:
    successor, secret = rotate_personal_token(
        db.session, token, body().get("expires_at"), current_identity()
    )
    return jsonify(personal_token_json(successor, secret))


def _personal_token(token_id: int, *, write: bool) -> PersonalAccessToken:
    """The caller's own token, or anyone's for an admin; others' tokens are not found."""
    _identity, caller = api_user(write=write)
    token = db.session.get(PersonalAccessToken, token_id)
    if token is None or (token.user_id != caller.id and not caller.is_admin):
        raise NotFound("404 Token Not Found")
    return token


def _self_token(*, write: bool) -> PersonalAccessToken:
    identity, _caller = api_user(write=write)
    credentials = presented_credentials()
    token = None
    if identity.kind == "personal_token" and credentials is not None:
        token, _reason = find_live_token(db.session, PersonalAccessToken, credentials.secret)
    if token is None:
        raise NotFound("404 Token Not Found: the request is not made with a personal token")
    return token


@bp.get("/deploy_tokens")
def list_all_deploy_tokens() -> Response:
    require_admin()
    return paginate(deploy_tokens_query(active=_active_filter()), deploy_token_json)


@bp.get("/projects/<ref:project_ref>/deploy_tokens")
def list_project_deploy_tokens(project_ref: str) -> Response:
    project = _managed_project(project_ref, write=False)
    return paginate(
        deploy_tokens_query(project=project, active=_active_filter()), deploy_token_json
    )


@bp.get("/projects/<ref:project_ref>/deploy_tokens/<int:token_id>")
def get_project_deploy_token(project_ref: str, token_id: int) -> Response:
    project = _managed_project(project_ref, write=False)
    return jsonify(deploy_token_json(_deploy_token(token_id, project_id=project.id)))


@bp.delete("/projects/<ref:project_ref>/deploy_tokens/<int:token_id>")
def revoke_project_deploy_token(project_ref: str, token_id: int) -> tuple[str, int]:
    project = _managed_project(project_ref, write=True)
    token = _deploy_token(token_id, project_id=project.id)
    revoke_deploy_token(db.session, token, current_identity())
    return "", 204


@bp.get("/groups/<ref:group_ref>/deploy_tokens")
def list_group_deploy_tokens(group_ref: str) -> Response:
    group = _managed_group(group_ref, write=False)
    return paginate(deploy_tokens_query(group=group, active=_active_filter()), deploy_token_json)


@bp.get("/groups/<ref:group_ref>/deploy_tokens/<int:token_id>")
def get_group_deploy_token(group_ref: str, token_id: int) -> Response:
    group = _managed_group(group_ref, write=False)
    return jsonify(deploy_token_json(_deploy_token(token_id, group_id=group.id)))


@bp.delete("/groups/<ref:group_ref>/deploy_tokens/<int:token_id>")
def revoke_group_deploy_token(group_ref: str, token_id: int) -> tuple[str, int]:
    group = _managed_group(group_ref, write=True)
    token = _deploy_token(token_id, group_id=group.id)
    revoke_deploy_token(db.session, token, current_identity())
    return "", 204


def _managed_project(ref: str, *, write: bool) -> Project:
    """The project, if the caller maintains it (reading needs no api scope, as in GitLab)."""
    api_user(write=write)
    project, access = project_for(ref, "visible")
    _require_maintainer(access, write)
    return project


def _managed_group(ref: str, *, write: bool) -> Group:
    api_user(write=write)
    group, access = group_for(ref, "visible")
    _require_maintainer(access, write)
    return group


def _require_maintainer(access: Access, write: bool) -> None:
    if not (access.manage if write else access.role >= MAINTAINER):
        raise Forbidden("403 Forbidden: maintainer access is required")


def _deploy_token(
    token_id: int, *, project_id: int | None = None, group_id: int | None = None
) -> DeployToken:
    token = db.session.get(DeployToken, token_id)
    if token is None or (token.project_id, token.group_id) != (project_id, group_id):
        raise NotFound("404 Deploy Token Not Found")
    return token


def _active_filter() -> bool | None:
    value = request.args.get("active")
    return None if value in (None, "") else parse_bool(value, "active")
