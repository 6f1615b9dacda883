"""Leases on an upstream file's row: one request at a time fetches from the upstream,
across processes and hosts.

A lease is a pair of columns, its holder and when it last showed life. The request whose
conditional UPDATE sets them holds it; the others wait for what it fetches, or take the
lease over once its holder has been silent for ``LEASE_TIMEOUT``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.domain.upstream.index import MAX_ERROR
from app.models import UpstreamFile
from app.models.base import utcnow

LEASE_TIMEOUT = timedelta(seconds=30)  # a holder silent this long is presumed gone


@dataclass(frozen=True)
class Lease:
    owner: InstrumentedAttribute[str | None]
    started: InstrumentedAttribute[datetime | None]


DOWNLOAD = Lease(UpstreamFile.fetch_owner, UpstreamFile.fetch_started_at)
METADATA = Lease(UpstreamFile.metadata_fetch_owner, UpstreamFile.metadata_fetch_started_at)


def claim(session: Session, file_id: int, lease: Lease, wanted: ColumnElement[bool]) -> str | None:
    """Take the lease if the row still needs fetching (``wanted``) and the lease is free
    or stale; the owner token, or None."""
    now, owner = utcnow(), uuid.uuid4().hex
    claimed = session.execute(
        update(UpstreamFile)
        .where(
            UpstreamFile.id == file_id,
            wanted,
            or_(lease.owner.is_(None), lease.started < now - LEASE_TIMEOUT),
        )
        .values({lease.started: now, lease.owner: owner})
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return owner if claimed.rowcount else None  # type: ignore[attr-defined]


def release(
    session: Session, file_id: int | None, lease: Lease, owner: str, error: str | None
) -> None:
    """Give the lease up; with ``error``, count a failure of the upstream."""
    session.rollback()
    values: dict[Any, Any] = {lease.started: None, lease.owner: None}
    if error is not None:
        values.update({UpstreamFile.failures: UpstreamFile.failures + 1,
                       UpstreamFile.last_error: error[:MAX_ERROR]})  # fmt: skip
    session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == file_id, lease.owner == owner)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
