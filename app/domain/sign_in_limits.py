"""Throttling password sign-in, by username and by client address.

The count lives in the database, so every web process shares it.  Each attempt is
committed *before* its password is checked and the count is read after: however many
attempts race, in however many processes, at most the limit of them get to check a
password.  A failed attempt keeps counting for the window; a successful one is deleted
with its username's failures (GitLab resets them too), but not with its address's.
Unknown usernames are counted exactly like known ones, so the answers cannot tell them
apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import ceil
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from app.domain.audit import record
from app.domain.errors import PackyardError
from app.domain.identity import ANONYMOUS
from app.domain.sign_in import check_password, user_named
from app.domain.tokens import as_utc
from app.models import SignInAttempt, User
from app.models.base import utcnow


@dataclass(frozen=True)
class SignInLimits:
    """Failures allowed per username and per address within ``window``; 0 is no limit."""

    per_username: int = 10
    per_address: int = 50
    window: timedelta = timedelta(minutes=15)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SignInLimits:
        return cls(
            int(config["SIGN_IN_FAILURES_PER_USER"]),
            int(config["SIGN_IN_FAILURES_PER_ADDRESS"]),
            timedelta(seconds=int(config["SIGN_IN_WINDOW"])),
        )


class TooManyAttempts(PackyardError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        minutes = ceil(retry_after / 60)
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"Too many failed sign-in attempts. Try again in {minutes} {unit}.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Attempt:
    id: int
    at: datetime
    username: str
    address: str
    username_key: str
    address_key: str


def password_sign_in(
    session: Session, limits: SignInLimits, username: str, password: str, address: str
) -> User | None:
    """The user whose password this is, or None; raises TooManyAttempts while the username
    or the address is locked (without checking the password)."""
    attempt = _begin(session, limits, username.strip(), address)
    user = check_password(session, username, password)
    if user is None:
        _failed(session, limits, attempt)
    else:
        _delete(session, _by_username(attempt))
    session.commit()
    return user


def _begin(session: Session, limits: SignInLimits, username: str, address: str) -> _Attempt:
    now = utcnow()
    _delete(session, SignInAttempt.created_at <= now - limits.window)
    keys = _key("username", username.lower()), _key("address", address)
    row = SignInAttempt(username_key=keys[0], address_key=keys[1], created_at=now)
    session.add(row)
    session.flush()
    attempt = _Attempt(row.id, now, username, address, *keys)
    session.commit()  # visible to every other attempt before we count
    wait = max(
        _wait(session, _by_username(attempt), attempt, limits.per_username, limits.window),
        _wait(session, _by_address(attempt), attempt, limits.per_address, limits.window),
    )
    if wait:
        _delete(session, SignInAttempt.id == attempt.id)  # refused unchecked: not a failure
        session.commit()
        raise TooManyAttempts(wait)
    return attempt


def _key(kind: str, value: str) -> str:
    # Hashed: a password typed into the username field is not kept in clear.
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


def _by_username(attempt: _Attempt) -> ColumnElement[bool]:
    return SignInAttempt.username_key == attempt.username_key


def _by_address(attempt: _Attempt) -> ColumnElement[bool]:
    return SignInAttempt.address_key == attempt.address_key


def _wait(
    session: Session,
    same_key: ColumnElement[bool],
    attempt: _Attempt,
    limit: int,
    window: timedelta,
) -> int:
    """Seconds until fewer than ``limit`` other attempts with the same key are in the
    window (0: fewer already)."""
    if limit <= 0:
        return 0
    nth_newest = session.execute(
        select(SignInAttempt.created_at)
        .where(
            same_key, SignInAttempt.id != attempt.id, SignInAttempt.created_at > attempt.at - window
        )
        .order_by(SignInAttempt.created_at.desc(), SignInAttempt.id.desc())
        .offset(limit - 1)
        .limit(1)
    ).scalar()
    if nth_newest is None:
        return 0
    left = as_utc(nth_newest) + window - attempt.at  # type: ignore[operator]
    return max(ceil(left.total_seconds()), 1)


def _failed(session: Session, limits: SignInLimits, attempt: _Attempt) -> None:
    """The attempt keeps counting; the failure that reaches a limit is audited, once."""
    for kind, same_key, limit in (
        ("username", _by_username(attempt), limits.per_username),
        ("address", _by_address(attempt), limits.per_address),
    ):
        if limit > 0 and _rank(session, same_key, attempt, limits.window) == limit:
            _record_lockout(session, kind, attempt, limits)


def _rank(
    session: Session, same_key: ColumnElement[bool], attempt: _Attempt, window: timedelta
) -> int:
    """How many attempts with the same key, up to this one, are in the window."""
    return session.execute(
        select(func.count()).where(
            same_key, SignInAttempt.id <= attempt.id, SignInAttempt.created_at > attempt.at - window
        )
    ).scalar_one()


def _record_lockout(session: Session, kind: str, attempt: _Attempt, limits: SignInLimits) -> None:
    """An event on the user when a known username is locked, on the instance otherwise."""
    user = user_named(session, attempt.username) if kind == "username" else None
    target = attempt.username if kind == "username" else attempt.address
    details = {
        "limit": kind,
        "username": attempt.username[:255],
        "address": attempt.address,
        "failures": limits.per_username if kind == "username" else limits.per_address,
        "window_seconds": int(limits.window.total_seconds()),
    }
    record(session, ANONYMOUS, "sign_in_locked", user, "SignIn", None, target[:255], details)


def _delete(session: Session, condition: ColumnElement[bool]) -> None:
    """Delete matching attempts, skipping rows another transaction is deleting: on
    PostgreSQL two deletes then never wait for each other (nor deadlock)."""
    doomed = select(SignInAttempt.id).where(condition).with_for_update(skip_locked=True)
    statement = delete(SignInAttempt).where(SignInAttempt.id.in_(doomed))
    session.execute(statement, execution_options={"synchronize_session": False})
