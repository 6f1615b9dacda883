"""Hits of cached upstream files: counted in memory, written in batches
(``app.domain.counters``), so that a download served from storage never waits for a
database write.

They are statistics (the dashboard's hit ratio, the admins' listing), and ``last_used_at``
only needs days.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import UpstreamFile
from app.models.base import utcnow

FLUSH_EVERY = 1.0  # seconds


def store_hits(session: Session, hits: Mapping[int, int]) -> None:
    now = utcnow()
    for file_id, count in hits.items():
        session.execute(
            update(UpstreamFile)
            .where(UpstreamFile.id == file_id)
            .values(hit_count=UpstreamFile.hit_count + count, last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    session.commit()
