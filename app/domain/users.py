"""Managing users: search, edit, passwords, block and unblock, delete (GitLab's admin API).

A blocked user keeps their rows but neither signs in nor uses any token: the auth plugins
refuse them, and blocking changes the session nonce so every open session ends at once.
Deleting a user keeps their packages, which name their uploader as text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.domain.audit import Actor, record
from app.domain.errors import Conflict, Forbidden, InvalidInput
from app.domain.names import validate_email
from app.domain.sign_in import end_sessions
from app.models import JobToken, Membership, PersonalAccessToken, User
from app.models.accounts import ACTIVE, BLOCKED

MIN_PASSWORD = 8  # GitLab's minimum
MAX_PASSWORD = 1024


def users_query(search: str | None = None, state: str | None = None) -> Select[tuple[User]]:
    """Users by id, as GitLab lists them; ``search`` matches username or email."""
    query = select(User).order_by(User.id)
    if search:
        query = query.where(
            or_(
                User.username.icontains(search, autoescape=True),
                User.email.icontains(search, autoescape=True),
            )
        )
    if state is not None:
        if state not in (ACTIVE, BLOCKED):
            raise InvalidInput("state does not have a valid value")
        query = query.where(User.state == state)
    return query


def check_new_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password is too short (minimum is {MIN_PASSWORD} characters)")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password is too long (maximum is {MAX_PASSWORD} characters)")
    return password


def set_password(
    session: Session, user: User, password: object, actor: Actor, *, current: str | None = None
) -> None:
    """A new password; with ``current`` (a user changing their own) that must match first.

    The session version covers the password hash, so every session of the user ends."""
    if current is not None and not (
        user.password_hash and check_password_hash(user.password_hash, current)
    ):
        raise InvalidInput("current password is wrong")
    user.password_hash = generate_password_hash(check_new_password(password))
    record(session, actor, "user_password_changed", user, "User", user.id, user.username)
    session.commit()


def update_user(
    session: Session, user: User, params: dict[str, Any], actor: Actor, caller: User
) -> User:
    """GitLab's ``PUT /users/:id``: ``email``, ``password`` and ``admin``."""
    changed: dict[str, Any] = {}
    if "email" in params:
        email = validate_email(params["email"]) if params["email"] else None
        if email and email.lower() != (user.email or "").lower() and _email_taken(session, email):
            raise Conflict("Email has already been taken")
        user.email, changed["email"] = email, email
    if "admin" in params:
        admin = str(params["admin"]).lower() in ("1", "true", "yes", "on")
        if caller.id == user.id and not admin:
            raise Forbidden("403 Forbidden: you cannot remove your own admin access")
        user.is_admin, changed["admin"] = admin, admin
    if params.get("password"):
        user.password_hash = generate_password_hash(check_new_password(params["password"]))
        changed["password"] = "changed"
    if changed:
        record(session, actor, "user_updated", user, "User", user.id, user.username, changed)
    session.commit()
    return user


def _email_taken(session: Session, email: str) -> bool:
    query = select(User.id).where(func.lower(User.email) == email.lower()).limit(1)
    return session.execute(query).first() is not None


def block_user(session: Session, user: User, actor: Actor, caller: User) -> None:
    """Block: no sign-in, no token works, and every session ends now."""
    if caller.id == user.id:
        raise Forbidden("403 Forbidden: you cannot block yourself")
    if user.state != BLOCKED:
        user.state = BLOCKED
        record(session, actor, "user_blocked", user, "User", user.id, user.username)
    end_sessions(session, user)  # commits


def unblock_user(session: Session, user: User, actor: Actor) -> None:
    if user.state != ACTIVE:
        user.state = ACTIVE
        record(session, actor, "user_unblocked", user, "User", user.id, user.username)
    session.commit()


def delete_user(session: Session, user: User, actor: Actor, caller: User) -> None:
    """Remove the user, their memberships and tokens; packages keep their uploader's name
    and audit events keep the actor's name."""
    if caller.id == user.id:
        raise Forbidden("403 Forbidden: you cannot delete yourself")
    record(session, actor, "user_deleted", user, "User", user.id, user.username)
    for model in (Membership, PersonalAccessToken, JobToken):
        session.execute(delete(model).where(model.user_id == user.id))
    session.delete(user)
    session.commit()
