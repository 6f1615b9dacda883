"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled briskly.

Registered as the ``packyard-sqla`` transport (URL ``packyard-sqla+sqlite:///...``): a
URL's scheme picks the transport class, so a subclass is only used under its own name.

kombu's channel locks the file (``BEGIN IMMEDIATE``) and runs two queries per queue per
poll, and keeps every consumed message as an invisible row.  This channel polls only when
the file changed since a queue was last found empty (SQLite's ``data_version``, read on a
connection of its own), and deletes consumed messages while it is idle.
"""

from __future__ import annotations

import sqlite3
import time
from queue import Empty
from typing import Any

from celery.worker import state as worker_state
from kombu.transport import TRANSPORT_ALIASES, sqlalchemy
from kombu.utils.json import dumps
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ALIAS = "packyard-sqla"
# kombu's virtual transports sleep this long when every queue is empty (default 1 s):
# it is the latency an upload waits before the embedded worker sees its task.
POLLING_INTERVAL = 0.05
BUSY_POLLING_INTERVAL = 0.002  # right after a delivery (see EmbeddedTransport)
PURGE_CONSUMED_EVERY = 60.0  # seconds


class EmbeddedChannel(sqlalchemy.Channel):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._empty_at: dict[str, int] = {}  # queue -> data_version when last found empty
        self._watcher: sqlite3.Connection | None = None
        self._purged_at = time.monotonic()
        self._queue_ids: dict[str, int] = {}  # kombu never deletes a queue row

    def _engine_from_config(self) -> Any:
        engine = super()._engine_from_config()
        event.listen(engine, "connect", _no_fsync_per_commit)
        return engine

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """One INSERT, without kombu's queue lookup and ORM unit of work per message."""
        queue_id = self._queue_ids.get(queue)
        if queue_id is None:
            queue_id = self._queue_ids[queue] = self._get_or_create(queue).id
        insert = self.message_cls.__table__.insert()
        try:
            self.session.execute(
                insert.values(payload=dumps(payload), queue_id=queue_id, visible=True, version=1)
            )
            self.session.commit()
        except OperationalError:
            self.session.rollback()
            raise  # the publish fails and can be retried, as in kombu

    def _get(self, queue: str) -> Any:
        version = self._data_version()
        if version is not None and self._empty_at.get(queue) == version:
            self.connection.polled = True  # nothing was committed since: no message
            raise Empty()
        try:
            return super()._get(queue)
        except Empty:
            # Read before the query: a message committed since then changes the version.
            if version is not None:
                self._empty_at[queue] = version
            self.connection.polled = True  # the transport backs off while polls find nothing
            self._purge_consumed()
            raise

    def _data_version(self) -> int | None:
        """Changes whenever another connection commits to the broker's file."""
        try:
            if self._watcher is None:
                database = make_url(self.connection.client.hostname).database
                if not database or database == ":memory:":
                    return None
                self._watcher = sqlite3.connect(
                    database, isolation_level=None, check_same_thread=False
                )
            return int(self._watcher.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            self._watcher = None
            return None  # poll as kombu does

    def _purge_consumed(self) -> None:
        if time.monotonic() - self._purged_at < PURGE_CONSUMED_EVERY:
            return
        self._purged_at = time.monotonic()
        message = self.message_cls
        try:
            self.session.query(message).filter(message.visible.is_(False)).delete(
                synchronize_session=False
            )
            self.session.commit()
        except OperationalError:  # the file is busy: next time
            self.session.rollback()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        super().close()


def _no_fsync_per_commit(dbapi_connection: Any, _record: Any) -> None:
    # WAL with synchronous=NORMAL survives crashes; a power cut may lose the last commits,
    # that is tasks, which the sweeper resends for every file still processing.
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class EmbeddedTransport(sqlalchemy.Transport):  # type: ignore[misc]
    """kombu's transport, polling every few milliseconds right after a delivery and
    backing off, doubling its interval, while polls find the queues empty.

    kombu also sleeps a polling interval whenever the worker cannot take a message yet
    (its one prefetched task is still running), so a fixed 50 ms would cap a backlog at
    20 tasks a second. Those sleeps poll nothing, so they keep the short interval. A
    fixed 2 ms while tasks trickle in (twine's uploads, 10 to 100 ms apart) would cost
    the worker more CPU than the tasks do (each poll is about 0.1 ms of Python): backing
    off, a gap of 100 ms is 6 polls instead of 50.
    """

    Channel = EmbeddedChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.interval = POLLING_INTERVAL
        self.polled = False  # set by the channel when a poll found nothing
        super().__init__(*args, **kwargs)

    @property
    def polling_interval(self) -> float:
        return self.interval

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's loop, reading the interval before each sleep rather than once, and
        ending as soon as the worker is told to stop: Celery's loop for transports like
        this one checks for a stop only between two 2-second waits, then waits once more."""
        started = time.monotonic()
        while True:
            if worker_state.should_stop is not None or worker_state.should_terminate is not None:
                raise TimeoutError()  # no new task: the worker's warm shutdown has begun
            self.polled = False
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            if self.polled:
                self.interval = min(self.interval * 2, POLLING_INTERVAL)
            if timeout is not None and time.monotonic() - started >= timeout:
                raise TimeoutError()  # socket.timeout, which Celery expects
            time.sleep(min(self.interval, timeout) if timeout else self.interval)

    def _deliver(self, message: Any, queue: str) -> None:
        self.interval = BUSY_POLLING_INTERVAL
        super()._deliver(message, queue)


TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:EmbeddedTransport")
