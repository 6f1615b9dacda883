"""The cache generation: a counter that every relevant write moves, in its own transaction.

Index pages and access decisions are cached per process (app.web.cache).  Rather than
finding every cache entry a write could touch, any write to the rows that pages and
decisions are made of moves one counter in the same transaction; readers compare it
(one primary-key read per request) and drop their caches when it moved.  Caches are
therefore never stale, and no code path has to remember to invalidate: the hooks below
watch the session, for ORM flushes and for bulk UPDATE/DELETE statements alike.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy import Engine, event, update
from sqlalchemy.orm import ORMExecuteState, Session

from app.models import (
    CacheGeneration,
    DeployToken,
    Group,
    JobToken,
    Membership,
    Package,
    PackageFile,
    PersonalAccessToken,
    Project,
    User,
)
from app.models.cache import GENERATION_ROW

WATCHED = (
    Package, PackageFile, Project, Group, Membership, User,
    PersonalAccessToken, DeployToken, JobToken,
)  # fmt: skip
_BUMPED = "packyard.generation_bumped"


_READ = f"SELECT value FROM cache_generation WHERE id = {GENERATION_ROW}"


def current_generation(engine: Engine) -> int:
    """Read on every cached request: plain SQL on a pooled connection, no ORM session."""
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(_READ).scalar_one())


def bump(session: Session) -> None:
    """Move the counter, once per transaction."""
    if session.info.get(_BUMPED):
        return
    session.info[_BUMPED] = True
    session.execute(
        update(CacheGeneration)
        .where(CacheGeneration.id == GENERATION_ROW)
        .values(value=CacheGeneration.value + 1)
    )


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    changed = chain(
        session.new, session.deleted, (o for o in session.dirty if session.is_modified(o))
    )
    if any(isinstance(obj, WATCHED) for obj in changed):
        bump(session)


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk_write(state: ORMExecuteState) -> None:
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper and issubclass(mapper.class_, WATCHED):
        bump(state.session)


@event.listens_for(Session, "after_commit")
def _reset(session: Session) -> None:
    session.info.pop(_BUMPED, None)


@event.listens_for(Session, "after_soft_rollback")
def _reset_after_rollback(session: Session, _previous: Any) -> None:
    # Also after a savepoint's rollback, which may have undone the bump: bump again.
    session.info.pop(_BUMPED, None)
