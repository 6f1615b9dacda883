"""Users and the tokens they mint."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.domain.access import DEPLOY_TOKEN_SCOPES, PAT_SCOPES
from app.domain.audit import Actor, record
from app.domain.errors import Conflict, InvalidInput
from app.domain.names import validate_email, validate_top_level
from app.domain.tokens import (
    DEPLOY_PREFIX,
    JOB_PREFIX,
    PAT_PREFIX,
    clear_prefix,
    hash_token,
    is_expired,
    mint,
)
from app.models import DeployToken, Group, JobToken, PersonalAccessToken, Project, User

DEFAULT_JOB_TOKEN_TTL = 3600
DEFAULT_DEPLOY_USERNAME = "gitlab+deploy-token-"  # + the token's id, as GitLab names them
_DEPLOY_USERNAME = re.compile(r"^[A-Za-z0-9._+-]+$")  # GitLab's rule for deploy token names
ROTATED_TOKEN_TTL = timedelta(days=7)  # GitLab's default for a rotated token
MAX_JOB_TOKEN_TTL = 24 * 3600


def create_user(
    session: Session,
    username: str,
    email: str | None,
    password: str | None,
    admin: bool,
    *,
    actor: Actor = None,
) -> User:
    """A new user. Usernames follow GitLab's rules, and usernames and emails are unique
    whatever their case (GitLab answers 409 for a name or address already taken)."""
    username = validate_top_level(_text(username, "username").strip(), "username")
    if _deploy_token_name(session, username):
        raise Conflict("Username has already been taken")
    email = _text(email, "email").strip()
    email = validate_email(email) if email else None
    password = _text(password, "password", 1024) or None
    if find_user(session, username) is not None:
        raise Conflict("Username has already been taken")
    if email and email_taken(session, email):
        raise Conflict("Email has already been taken")
    user = User(
        username=username,
        email=email,
        password_hash=generate_password_hash(password) if password else None,
        is_admin=admin,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:  # taken meanwhile
        raise Conflict("Username or email has already been taken") from None
    record(session, actor, "user_created", user, "User", user.id, username, {"admin": admin})
    session.commit()
    return user


def find_user(session: Session, username: str) -> User | None:
    """The user of that name, whatever its case (as GitLab finds them)."""
    return session.execute(
        select(User).where(func.lower(User.username) == func.lower(username))
    ).scalar_one_or_none()


def email_taken(session: Session, email: str) -> bool:
    """Whether a user has this email address, whatever its case."""
    found = session.execute(
        select(User.id).where(func.lower(User.email) == func.lower(email)).limit(1)
    )
    return found.first() is not None


def _text(value: object, name: str, max_length: int = 255) -> str:
    """A text field as stored: a string of at most ``max_length`` characters (or none)."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(f"{name} is invalid (text of at most {max_length} characters)")
    return value


def ensure_admin(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        return create_user(session, username, None, None, admin=True)
    if not user.is_admin:
        user.is_admin = True
        record(session, None, "user_admin_granted", user, "User", user.id, username)
        session.commit()
    return user


def parse_scopes(scopes: object, allowed: frozenset[str]) -> list[str]:
    if isinstance(scopes, str):
        scopes = [s for s in scopes.replace(",", " ").split() if s]
    if not isinstance(scopes, list) or not scopes:
        raise InvalidInput("scopes is missing")
    unknown = sorted(set(map(str, scopes)) - allowed)
    if unknown:
        raise InvalidInput(f"scopes does not have a valid value: {', '.join(unknown)}")
    return sorted(set(map(str, scopes)))


def parse_expiry(value: object) -> datetime | None:
    """``expires_at`` as GitLab takes it: a date (YYYY-MM-DD, over at its midnight UTC) or
    an ISO 8601 time, still to come: a token that would be born expired is refused."""
    expiry = parse_time(value, "expires_at")
    if expiry is not None and is_expired(expiry):
        raise InvalidInput("expires_at must be in the future")
    return expiry


def parse_time(value: object, name: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 time, as an aware UTC datetime (SQLite keeps
    no offset, so every stored and compared time is UTC)."""
    if value in (None, ""):
        return None
    try:
        text = str(value).strip()
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{name} is invalid") from None


def create_personal_token(
    session: Session,
    user: User,
    name: str,
    scopes: object,
    expires_at: object,
    *,
    actor: Actor = None,
) -> tuple[PersonalAccessToken, str]:
    if not _text(name, "name"):
        raise InvalidInput("name is missing")
    secret = mint(PAT_PREFIX)
    token = PersonalAccessToken(
        user_id=user.id,
        name=name,
        scopes=",".join(parse_scopes(scopes, PAT_SCOPES)),
        expires_at=parse_expiry(expires_at),
        token_hash=hash_token(secret),
        token_prefix=clear_prefix(secret),
    )
    session.add(token)
    session.flush()
    _record_token(session, actor, "personal_access_token_created", token)
    session.commit()
    return token, secret


def create_deploy_token(
    session: Session,
    name: str,
    scopes: object,
    *,
    project: Project | None = None,
    group: Group | None = None,
    username: str | None = None,
    expires_at: object = None,
    actor: Actor = None,
) -> tuple[DeployToken, str]:
    if not _text(name, "name"):
        raise InvalidInput("name is missing")
    username = _deploy_token_username(session, username)
    secret = mint(DEPLOY_PREFIX)
    token = DeployToken(
        name=name,
        username=username,
        scopes=",".join(parse_scopes(scopes, DEPLOY_TOKEN_SCOPES)),
        expires_at=parse_expiry(expires_at),
        project_id=project.id if project else None,
        group_id=group.id if group else None,
        token_hash=hash_token(secret),
        token_prefix=clear_prefix(secret),
    )
    session.add(token)
    session.flush()
    token.username = token.username or f"{DEFAULT_DEPLOY_USERNAME}{token.id}"
    _record_token(session, actor, "deploy_token_created", token)
    session.commit()
    return token, secret


def _deploy_token_username(session: Session, username: object) -> str:
    """A chosen deploy token username (or "" for the default): GitLab's characters, and
    never a user's or another token's name, so that nothing a token does reads as a user's."""
    name = _text(username, "username").strip()
    if not name:
        return ""
    if not _DEPLOY_USERNAME.match(name):
        raise InvalidInput("username is invalid: use letters, digits, '.', '+', '_' or '-'")
    if name.lower().startswith(DEFAULT_DEPLOY_USERNAME):
        raise InvalidInput(f"username is invalid: {DEFAULT_DEPLOY_USERNAME}N is a default name")
    if _deploy_token_name(session, name) or find_user(session, name) is not None:
        raise InvalidInput(f"username {name!r} is taken by a user or another deploy token")
    return name


def _deploy_token_name(session: Session, username: str) -> bool:
    """Whether a deploy token has this username (in any case) or could get it by default."""
    lowered = username.lower()
    if lowered.startswith(DEFAULT_DEPLOY_USERNAME):
        return True
    query = select(DeployToken.id).where(func.lower(DeployToken.username) == lowered)
    return session.execute(query.limit(1)).first() is not None


def create_job_token(
    session: Session, project: Project, user_id: int, expires_in: object, *, actor: Actor = None
) -> tuple[JobToken, str]:
    try:
        ttl = int(expires_in) if expires_in not in (None, "") else DEFAULT_JOB_TOKEN_TTL  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidInput("expires_in must be a number of seconds") from None
    if not 0 < ttl <= MAX_JOB_TOKEN_TTL:
        raise InvalidInput(f"expires_in must be between 1 and {MAX_JOB_TOKEN_TTL} seconds")
    secret = mint(JOB_PREFIX)
    token = JobToken(
        project_id=project.id,
        user_id=user_id,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        token_hash=hash_token(secret),
        token_prefix=clear_prefix(secret),
    )
    session.add(token)
    session.flush()
    record(session, actor, "job_token_created", project, "JobToken", token.id, project.full_path)
    session.commit()
    return token, secret


def revoke_personal_token(session: Session, token: PersonalAccessToken, actor: Actor) -> None:
    """Revoke the token; revoking it again changes nothing."""
    if not token.revoked:
        token.revoked = True
        _record_token(session, actor, "personal_access_token_revoked", token)
    session.commit()


def rotate_personal_token(
    session: Session, token: PersonalAccessToken, expires_at: object, actor: Actor
) -> tuple[PersonalAccessToken, str]:
    """Revoke ``token`` and mint its successor: same user, name and scopes (GitLab's
    rotate). The new token expires at ``expires_at``, by default a week from now."""
    if token.revoked:
        raise InvalidInput("Token already revoked")
    expiry = parse_expiry(expires_at) or datetime.now(UTC) + ROTATED_TOKEN_TTL
    token.revoked = True
    secret = mint(PAT_PREFIX)
    successor = PersonalAccessToken(
        user_id=token.user_id,
        name=token.name,
        scopes=token.scopes,
        expires_at=expiry,
        token_hash=hash_token(secret),
        token_prefix=clear_prefix(secret),
    )
    session.add(successor)
    session.flush()
    _record_token(
        session, actor, "personal_access_token_rotated", successor, {"previous_id": token.id}
    )
    session.commit()
    return successor, secret


def revoke_deploy_token(session: Session, token: DeployToken, actor: Actor) -> None:
    if not token.revoked:
        token.revoked = True
        _record_token(session, actor, "deploy_token_revoked", token)
    session.commit()


def _record_token(
    session: Session,
    actor: Actor,
    action: str,
    token: PersonalAccessToken | DeployToken,
    details: dict[str, object] | None = None,
) -> None:
    """A token's event belongs to its user, or to the project or group of a deploy token."""
    entity: User | Project | Group | None
    if isinstance(token, PersonalAccessToken):
        entity = session.get(User, token.user_id)
    elif token.project_id is not None:
        entity = session.get(Project, token.project_id)
    else:
        entity = session.get(Group, token.group_id)
    assert entity is not None  # foreign keys
    info = {"name": token.name, "scopes": token.scope_list, **(details or {})}
    record(session, actor, action, entity, type(token).__name__, token.id, token.name, info)


def token_is_active(expires_at_column: Any, revoked_column: Any) -> ColumnElement[bool]:
    """SQL for "neither revoked nor expired"."""
    not_expired = or_(expires_at_column.is_(None), expires_at_column > datetime.now(UTC))
    return and_(revoked_column.is_(False), not_expired)


def personal_tokens_query(
    user_id: int | None, *, state: str | None = None, revoked: bool | None = None,
    search: str | None = None,
) -> Select[tuple[PersonalAccessToken]]:  # fmt: skip
    """Personal access tokens (of one user, or everyone's), with GitLab's filters."""
    query = select(PersonalAccessToken).order_by(PersonalAccessToken.id)
    if user_id is not None:
        query = query.where(PersonalAccessToken.user_id == user_id)
    active = token_is_active(PersonalAccessToken.expires_at, PersonalAccessToken.revoked)
    if state == "active":
        query = query.where(active)
    elif state == "inactive":
        query = query.where(not_(active))
    elif state is not None:
        raise InvalidInput("state does not have a valid value")
    if revoked is not None:
        query = query.where(PersonalAccessToken.revoked.is_(revoked))
    if search:
        query = query.where(PersonalAccessToken.name.icontains(search, autoescape=True))
    return query


def deploy_tokens_query(
    *, project: Project | None = None, group: Group | None = None, active: bool | None = None
) -> Select[tuple[DeployToken]]:
    """Deploy tokens of a project, of a group, or (neither given) of the whole instance."""
    query = select(DeployToken).order_by(DeployToken.id)
    if project is not None:
        query = query.where(DeployToken.project_id == project.id)
    if group is not None:
        query = query.where(DeployToken.group_id == group.id)
    if active is not None:
        condition = token_is_active(DeployToken.expires_at, DeployToken.revoked)
        query = query.where(condition if active else not_(condition))
    return query
