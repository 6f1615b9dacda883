"""Users and their personal access tokens."""

from __future__ import annotations

from flask import Response, jsonify

from app.domain.accounts import create_personal_token, create_user
from app.domain.errors import NotFound
from app.extensions import db
from app.models import User
from app.web.api import bp
from app.web.api.common import api_user, as_bool, body, require_admin, required
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
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("404 User Not Found")
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
