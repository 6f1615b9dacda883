"""Signing in to the web pages with a password, and the version stamp that ends sessions.

A browser session (a signed cookie) holds a user id and a *session version*: a digest of
the user's ``session_nonce`` and password hash.  Signing out changes the nonce and a new
password changes the hash, so every cookie issued before either stops working, on every
device, even a copy someone kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.domain.accounts import find_user
from app.models import User

FAILED = "Invalid username or password."


@dataclass(frozen=True)
class SessionStamp:
    """What the session cookie keeps to name its user."""

    user_id: int
    version: str

    def as_cookie(self) -> dict[str, Any]:
        return {"uid": self.user_id, "ver": self.version}

    @classmethod
    def from_cookie(cls, value: object) -> SessionStamp | None:
        """The stamp ``as_cookie`` made, or None for anything else."""
        if not isinstance(value, dict):
            return None
        user_id, version = value.get("uid"), value.get("ver")
        if not isinstance(user_id, int) or not isinstance(version, str):
            return None
        return cls(user_id, version)


@cache
def _decoy_hash() -> str:
    # Checked against when the user does not exist, so both failures take as long.
    return generate_password_hash(secrets.token_urlsafe(16))


def user_named(session: Session, username: str) -> User | None:
    """The user who signs in with this username (whatever its case)."""
    return find_user(session, (username or "").strip())


def check_password(session: Session, username: str, password: str) -> User | None:
    """The user whose password this is, or None; unknown users cost a hash check too."""
    user = user_named(session, username)
    stored = user.password_hash if user is not None and not user.is_blocked else None
    matches = check_password_hash(stored or _decoy_hash(), password or "")
    return user if matches and stored else None


def session_version(user: User) -> str:
    material = f"{user.session_nonce or ''}\0{user.password_hash or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def start_session(session: Session, user: User) -> SessionStamp:
    if not user.session_nonce:
        user.session_nonce = secrets.token_hex(16)
        session.commit()
    return SessionStamp(user.id, session_version(user))


def end_sessions(session: Session, user: User) -> None:
    """Sign the user out everywhere: every session cookie issued so far stops working."""
    user.session_nonce = secrets.token_hex(16)
    session.commit()


def session_user(session: Session, stamp: SessionStamp) -> User | None:
    """The user a session stamp names, if its version is still current."""
    user = session.get(User, stamp.user_id)
    if user is None or not user.session_nonce or user.is_blocked:
        return None
    return user if hmac.compare_digest(session_version(user), stamp.version) else None
