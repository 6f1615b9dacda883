"""Hits of cached upstream files: counted in memory, written in batches by a thread of each
process, so that a download served from storage never waits for a database write.

A process that dies loses at most its last second of counts: they are statistics (the
dashboard's hit ratio, the admins' listing), and ``last_used_at`` only needs days.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import UpstreamFile
from app.models.base import utcnow

log = logging.getLogger(__name__)
FLUSH_EVERY = 1.0  # seconds


class HitCounter:
    def __init__(self, write: Callable[[HitCounter], None], every: float = FLUSH_EVERY) -> None:
        """``write(counter)`` runs on the writer thread: it calls ``flush`` with a session."""
        self._write = write
        self._every = every
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid: int | None = None

    def add(self, file_id: int) -> None:
        with self._lock:
            self._pending[file_id] += 1
            if self._pid != os.getpid():  # first hit in this process (a fork starts anew)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="upstream-hits", daemon=True).start()

    def flush(self, session: Session) -> int:
        """Write the hits counted so far; returns how many."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return 0
        now = utcnow()
        for file_id, hits in sorted(pending.items()):  # one order: no deadlock between writers
            session.execute(
                update(UpstreamFile)
                .where(UpstreamFile.id == file_id)
                .values(hit_count=UpstreamFile.hit_count + hits, last_used_at=now)
                .execution_options(synchronize_session=False)
            )
        session.commit()
        return sum(pending.values())

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            try:
                self._write(self)
            except Exception:  # the database may be down: the counts wait for the next round
                log.exception("could not write the hits of cached upstream files")
