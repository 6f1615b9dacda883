"""Users and their personal access tokens."""

from __future__ import annotations

from flask import Response, jsonify, request

from app.domain.accounts import create_personal_token, create_user
from app.domain.errors import NotFound
from app.domain.users import block_user, delete_user, unblock_user, update_user, users_query
from app.extensions import db
from app.models import User
from app.web.api import bp
from app.web.api.common import api_user, as_bool, body, paginate, require_admin, required
from app.web.api.serializers import personal_token_json, user_json
from app.web.auth import current_identity


@bp.get("/user")
def current_user() -> Response:
    _identity, user = api_user()
    return jsonify(user_json(user))


@bp.post("/users")
def post_user() -> tuple[Response, int]:
    require_admin()
    params = body()
    user = create_user(
        db.session,
        required(params, "username"),
        params.get("email"),
        params.get("password"),
        as_bool(params.get("admin", False)),
        actor=current_identity(),
    )
    return jsonify(user_json(user)), 201


@bp.post("/users/<int:user_id>/personal_access_tokens")
def post_personal_token(user_id: int) -> tuple[Response, int]:
    _identity, caller = api_user(write=True)
    if not caller.is_admin and caller.id != user_id:
        require_admin()
    user = _user_row(user_id)
    params = body()
    token, secret = create_personal_token(
        db.session,
        user,
        required(params, "name"),
        params.get("scopes"),
        params.get("expires_at"),
        actor=current_identity(),
    )
    return jsonify(personal_token_json(token, secret)), 201


@bp.get("/users")
def list_users() -> Response:
    require_admin()
    args = request.args
    return paginate(users_query(args.get("search"), args.get("state") or None), user_json)


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Response:
    _identity, caller = api_user()
    shown = user_json(_user_row(user_id))
    if not caller.is_admin and caller.id != user_id:
        shown.pop("email")  # as GitLab: addresses are for admins and their owner
    return jsonify(shown)


@bp.put("/users/<int:user_id>")
def put_user(user_id: int) -> Response:
    admin = require_admin()
    user = update_user(db.session, _user_row(user_id), body(), current_identity(), admin)
    return jsonify(user_json(user))


@bp.post("/users/<int:user_id>/block")
def post_block_user(user_id: int) -> tuple[Response, int]:
    admin = require_admin()
    block_user(db.session, _user_row(user_id), current_identity(), admin)
    return jsonify(True), 201


@bp.post("/users/<int:user_id>/unblock")
def post_unblock_user(user_id: int) -> tuple[Response, int]:
    require_admin()
    unblock_user(db.session, _user_row(user_id), current_identity())
    return jsonify(True), 201


@bp.delete("/users/<int:user_id>")
def delete_user_view(user_id: int) -> tuple[str, int]:
    admin = require_admin()
    delete_user(db.session, _user_row(user_id), current_identity(), admin)
    return "", 204


def _user_row(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("404 User Not Found")
    return user
