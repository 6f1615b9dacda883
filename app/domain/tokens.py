"""Minting and hashing secrets. Only a hash and a short clear prefix are stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ExecutableOption

T = TypeVar("T", bound=Any)

PAT_PREFIX = "pyd-pat-"
DEPLOY_PREFIX = "pyd-dt-"
JOB_PREFIX = "pyd-job-"
CLEAR_PREFIX_LENGTH = 12


def mint(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(30)


def hash_token(secret: str) -> str:
    # Tokens carry 240 bits of entropy, so a fast hash is enough (as GitHub and GitLab do).
    return hashlib.sha256(secret.encode()).hexdigest()


def clear_prefix(secret: str) -> str:
    return secret[:CLEAR_PREFIX_LENGTH]


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    expires_at = as_utc(expires_at)
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))


def find_live_token(
    session: Session, model: type[T], secret: str, *options: ExecutableOption
) -> tuple[T | None, str | None]:
    """The token row for ``secret`` and None, or None and why it is refused; ``options``
    load what the caller reads next in the same query (its user: one round trip, not two)."""
    token = session.execute(
        select(model).where(model.token_hash == hash_token(secret)).options(*options)
    ).scalar_one_or_none()
    if token is None:
        return None, "unknown token"
    if token.revoked:
        return None, "token revoked"
    if is_expired(token.expires_at):
        return None, "token expired"
    return token, None
