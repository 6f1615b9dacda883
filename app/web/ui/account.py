"""Account pages: sign in and out, personal access tokens, and the admin's user list."""

from __future__ import annotations

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from app.domain.access import PAT_SCOPES
from app.domain.accounts import create_personal_token, create_user, revoke_personal_token
from app.domain.errors import InvalidInput, NotFound, PackyardError
from app.domain.identity import SignInChoice
from app.domain.sign_in import FAILED, end_sessions
from app.domain.sign_in_limits import SignInLimits, TooManyAttempts, password_sign_in
from app.domain.tokens import is_expired
from app.domain.users import users_query
from app.extensions import db
from app.models import PersonalAccessToken, User
from app.runtime import plugin_manager
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import admin_user, safe_next, search_arg, signed_in_user, viewer
from app.web.ui.sessions import forget_sign_in, start_browser_session

TOKENS = "/-/profile/personal_access_tokens"


@bp.route("/users/sign_in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if viewer().kind == "session":
            return redirect(target)
        return _sign_in_form(target, "", None)
    if any(choice.replaces_password for choice in _other_choices(target)):
        return _sign_in_form(target, "", "Password sign-in is turned off."), 403
    username, password = request.form.get("username", ""), request.form.get("password", "")
    limits = SignInLimits.from_config(current_app.config)
    try:
        user = password_sign_in(db.session, limits, username, password, request.remote_addr or "")
    except TooManyAttempts as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        return _sign_in_form(target, username, exc.message), 429, headers
    if user is None:
        return _sign_in_form(target, username, FAILED), 401
    start_browser_session(user)
    return redirect(target, code=303)


def _sign_in_form(target: str, username: str, error: str | None) -> str:
    choices = _other_choices(target)
    return render_template(
        "account/sign_in.html", next=target, error=error, username=username, choices=choices,
        passwords=not any(choice.replaces_password for choice in choices),
    )  # fmt: skip


def _other_choices(target: str) -> list[SignInChoice]:
    """Other ways to sign in that plugins offer (single sign-on)."""
    return list(plugin_manager().hook.sign_in_choices(next_url=target))


@bp.post("/users/sign_out")
def sign_out() -> Response:
    identity = viewer()
    if identity.kind == "session" and identity.user_id is not None:
        user = db.session.get(User, identity.user_id)
        if user is not None:
            end_sessions(db.session, user)
    forget_sign_in()
    flash("You have signed out.")
    return redirect(url_for("ui.home"), code=303)


@bp.get(TOKENS)
def tokens() -> str:
    return _tokens_page(signed_in_user())


@bp.post(TOKENS)
def create_token() -> tuple[str, int]:
    user = signed_in_user()
    try:
        _token, secret = create_personal_token(
            db.session,
            user,
            request.form.get("name", "").strip(),
            request.form.getlist("scopes"),
            request.form.get("expires_at") or None,
            actor=current_identity(),
        )
    except InvalidInput as exc:
        return _tokens_page(user, error=exc.message), 400
    return _tokens_page(user, new_token=secret), 201


@bp.post(TOKENS + "/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Response:
    user = signed_in_user()
    token = db.session.get(PersonalAccessToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("404 Token Not Found")
    revoke_personal_token(db.session, token, current_identity())
    flash(f"Revoked the token {token.name!r} ({token.token_prefix}…).")
    return redirect(url_for("ui.tokens"), code=303)


def _tokens_page(user: User, new_token: str | None = None, error: str | None = None) -> str:
    rows = db.session.execute(
        select(PersonalAccessToken)
        .where(PersonalAccessToken.user_id == user.id)
        .order_by(PersonalAccessToken.id.desc())
    ).scalars()
    listed = [(token, _token_state(token)) for token in rows]
    return render_template(
        "account/tokens.html",
        tokens=listed,
        scopes=sorted(PAT_SCOPES),
        new_token=new_token,
        error=error,
        form=request.form if error else {},
    )


def _token_state(token: PersonalAccessToken) -> str:
    if token.revoked:
        return "revoked"
    return "expired" if is_expired(token.expires_at) else "active"


@bp.route("/-/admin/users", methods=["GET", "POST"])
def admin_users() -> str | tuple[str, int] | Response:
    admin_user()
    error = None
    if request.method == "POST":
        form = request.form
        try:
            created = create_user(
                db.session,
                form.get("username", ""),
                form.get("email") or None,
                _new_password(form.get("password", "")),
                form.get("admin") == "on",
                actor=current_identity(),
            )
        except PackyardError as exc:
            error = exc.message
        else:
            flash(f"Created the user {created.username!r}.")
            return redirect(url_for("ui.admin_users"), code=303)
    search = search_arg()
    users = db.session.execute(users_query(search).limit(500)).scalars().all()
    page = render_template("account/admin_users.html", users=users, error=error, search=search)
    return (page, 400) if error else page


def _new_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("The password needs at least 8 characters.")
    return password
