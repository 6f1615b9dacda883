"""Users and the tokens they mint."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.domain.access import DEPLOY_TOKEN_SCOPES, PAT_SCOPES
from app.domain.errors import Conflict, InvalidInput
from app.domain.tokens import DEPLOY_PREFIX, JOB_PREFIX, PAT_PREFIX, clear_prefix, hash_token, mint
from app.models import DeployToken, Group, JobToken, PersonalAccessToken, Project, User

DEFAULT_JOB_TOKEN_TTL = 3600
MAX_JOB_TOKEN_TTL = 24 * 3600


def create_user(
    session: Session, username: str, email: str | None, password: str | None, admin: bool
) -> User:
    username = (username or "").strip()
    if not username or len(username) > 255 or "/" in username:
        raise InvalidInput("username is invalid")
    user = User(
        username=username,
        email=email,
        password_hash=generate_password_hash(password) if password else None,
        is_admin=admin,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise Conflict("Username has already been taken") from None
    session.commit()
    return user


def ensure_admin(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        return create_user(session, username, None, None, admin=True)
    if not user.is_admin:
        user.is_admin = True
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
    """``expires_at`` as GitLab takes it: a date (YYYY-MM-DD) or an ISO 8601 time."""
    if value in (None, ""):
        return None
    try:
        text = str(value)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("expires_at is invalid") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_personal_token(
    session: Session, user: User, name: str, scopes: object, expires_at: object
) -> tuple[PersonalAccessToken, str]:
    if not name:
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
) -> tuple[DeployToken, str]:
    if not name:
        raise InvalidInput("name is missing")
    secret = mint(DEPLOY_PREFIX)
    token = DeployToken(
        name=name,
        username=username or "",
        scopes=",".join(parse_scopes(scopes, DEPLOY_TOKEN_SCOPES)),
        expires_at=parse_expiry(expires_at),
        project_id=project.id if project else None,
        group_id=group.id if group else None,
        token_hash=hash_token(secret),
        token_prefix=clear_prefix(secret),
    )
    session.add(token)
    session.flush()
    token.username = token.username or f"gitlab+deploy-token-{token.id}"
    session.commit()
    return token, secret


def create_job_token(
    session: Session, project: Project, user_id: int, expires_in: object
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
    session.commit()
    return token, secret
