"""Counts kept in memory and written in batches by a thread of each process, so that a
request that counts (a download, a hit of the upstream cache) never waits for a database
write.

Each process writes its counts every ``every`` seconds, and once more when it exits
normally (``atexit``: uWSGI runs it when a worker stops or reloads).  A process that is
killed loses at most its last ``every`` seconds of counts.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session

from app.background import start_daemon_thread

log = logging.getLogger(__name__)
EXIT_ATTEMPTS = 5

Store = Callable[[Session, Mapping[int, int]], None]  # adds counts by row id; commits


class BatchCounter:
    def __init__(
        self, store: Store, write: Callable[[BatchCounter], None], every: float, name: str
    ) -> None:
        """``store(session, counts)`` writes counts; ``write(counter)`` runs on the writer
        thread and calls ``flush`` with a session (in an app context)."""
        self._store = store
        self._write = write
        self._every = every
        self._name = name
        self._pending: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid: int | None = None

    def add(self, row_id: int) -> None:
        with self._lock:
            self._pending[row_id] += 1
            if self._pid != os.getpid():  # first count in this process (a fork starts anew)
                self._pid = os.getpid()
                start_daemon_thread(self._run, self._name)
                atexit.register(self._write_at_exit)

    def flush(self, session: Session) -> int:
        """Write the counts so far; returns how many. Counts a failed write held are
        added back, for the next round."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return 0
        try:
            self._store(session, dict(sorted(pending.items())))  # one order: no deadlock
        except BaseException:
            session.rollback()
            with self._lock:
                self._pending.update(pending)
            raise
        return sum(pending.values())

    def _run(self) -> None:
        while not self._wake.wait(self._every):
            self._write_now()

    def _write_at_exit(self) -> None:
        """The last write has no next round: a busy database (the other processes stop and
        write at the same moment) is given a few more tries."""
        for attempt in range(EXIT_ATTEMPTS):
            try:
                self._write(self)
                return
            except Exception:
                if attempt == EXIT_ATTEMPTS - 1:
                    log.exception("could not write the counts of %s at exit", self._name)
                    return
                time.sleep(0.2 * (attempt + 1))

    def _write_now(self) -> None:
        try:
            self._write(self)
        except Exception:  # the database may be down: the counts wait for the next round
            log.exception("could not write the counts of %s", self._name)
