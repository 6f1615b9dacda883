"""Account management pages: change your own password; admins edit, reset, block,
unblock and delete users.  Thin: ``app.domain.users`` does the work the API does too."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from app.domain.errors import InvalidInput, NotFound, PackyardError
from app.domain.users import block_user, delete_user, set_password, unblock_user, update_user
from app.extensions import db
from app.models import Membership, User
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import admin_user, signed_in_user

PASSWORD_PAGE = "/-/profile/password"


@bp.route(PASSWORD_PAGE, methods=["GET", "POST"])
def change_password() -> ResponseReturnValue:
    user = signed_in_user()
    if request.method == "GET":
        return render_template("account/password.html")
    form = request.form
    try:
        if form.get("password", "") != form.get("password_confirmation", ""):
            raise InvalidInput("The new passwords do not match.")
        set_password(
            db.session,
            user,
            form.get("password", ""),
            current_identity(),
            current=form.get("current_password", ""),
        )
    except PackyardError as exc:
        return render_template("account/password.html", error=exc.message), 400
    # A new password ends every session, this one too: sign in again, as GitLab asks.
    session.clear()
    flash("Password changed. Sign in with your new password.")
    return redirect(url_for("ui.sign_in"), code=303)


@bp.get("/-/admin/users/<int:user_id>")
def admin_user_page(user_id: int) -> str:
    admin_user()
    return _user_page(_user(user_id))


def _user_page(user: User, error: str | None = None) -> str:
    memberships = db.session.query(Membership).filter_by(user_id=user.id).count()
    return render_template(
        "account/admin_user.html", user=user, memberships=memberships, error=error
    )


@bp.post("/-/admin/users/<int:user_id>")
def admin_edit_user(user_id: int) -> ResponseReturnValue:
    admin = admin_user()
    user = _user(user_id)
    params = {"email": request.form.get("email", ""), "admin": request.form.get("admin") == "on"}
    return _act(
        user,
        lambda: update_user(db.session, user, params, current_identity(), admin),
        f"Saved {user.username!r}.",
    )


@bp.post("/-/admin/users/<int:user_id>/password")
def admin_reset_password(user_id: int) -> ResponseReturnValue:
    admin_user()
    user = _user(user_id)
    password = request.form.get("password", "")
    return _act(
        user,
        lambda: set_password(db.session, user, password, current_identity()),
        f"Set a new password for {user.username!r}; their sessions ended.",
    )


@bp.post("/-/admin/users/<int:user_id>/block")
def admin_block_user(user_id: int) -> ResponseReturnValue:
    admin = admin_user()
    user = _user(user_id)
    done = f"Blocked {user.username!r}: their sessions and tokens stopped working."
    return _act(user, lambda: block_user(db.session, user, current_identity(), admin), done)


@bp.post("/-/admin/users/<int:user_id>/unblock")
def admin_unblock_user(user_id: int) -> ResponseReturnValue:
    admin_user()
    user = _user(user_id)
    return _act(
        user,
        lambda: unblock_user(db.session, user, current_identity()),
        f"Unblocked {user.username!r}.",
    )


@bp.post("/-/admin/users/<int:user_id>/delete")
def admin_delete_user(user_id: int) -> ResponseReturnValue:
    admin = admin_user()
    user = _user(user_id)
    name = user.username
    if request.form.get("confirm", "").strip().lower() != name.lower():
        return _user_page(user, f"Type {name!r} to confirm deleting this user."), 400
    try:
        delete_user(db.session, user, current_identity(), admin)
    except PackyardError as exc:
        return _user_page(user, exc.message), exc.status
    flash(f"Deleted the user {name!r}; their packages stay, attributed to them.")
    return redirect(url_for("ui.admin_users"), code=303)


def _act(user: User, action: Callable[[], object], done: str) -> ResponseReturnValue:
    """Run ``action``; back to the user's page with ``done``, or the page with the error."""
    try:
        action()
    except PackyardError as exc:
        db.session.rollback()
        return _user_page(user, exc.message), exc.status
    flash(done)
    return _to_user(user)


def _to_user(user: User) -> Response:
    return redirect(url_for("ui.admin_user_page", user_id=user.id), code=303)


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("404 User Not Found")
    return user
