"""The cache generations: counters that every relevant write moves, in its own transaction.

Index pages and access decisions are cached per process (app.caching).  Rather than
finding every cache entry a write could touch, any write to the rows that pages and
decisions are made of moves a counter in the same transaction; readers compare it (one
read per request) and drop their caches when it moved.  Caches are therefore never stale,
and no code path has to remember to invalidate: the listeners below watch the app's
sessions (``watch_writes``, called by the app factory), for ORM flushes and for bulk
INSERT/UPDATE/DELETE statements alike.

There are two counters. The data generation moves with every watched write. The access
generation moves only with writes to who may do what (``ACCESS``: users, tokens,
memberships, groups, projects), so an upload or a processed file, which change pages
only, leaves every cached identity and scope in place.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from itertools import chain
from typing import Any, NamedTuple

from sqlalchemy import Engine, create_engine, event, inspect, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.pool import NullPool

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
    PublisherToken,
    ReservedName,
    TrustedPublisher,
    User,
)
from app.models.cache import GENERATION_ROW

# Who may do what: identities, scopes and access decisions are made of these rows only.
ACCESS = (
    Project, Group, Membership, User,
    PersonalAccessToken, DeployToken, JobToken, PublisherToken, TrustedPublisher,
)  # fmt: skip
WATCHED = (
    *ACCESS, Package, PackageFile,
    ReservedName,  # a release reopens a name to the upstream
)  # fmt: skip
# Columns that no page or access decision is made of: the worker's record of its
# attempts. Writing only these leaves every cache in place.
BOOKKEEPING = {PackageFile: frozenset({"attempts", "started_at", "enqueued_at"})}
_BUMPED = "packyard.generation_bumped"
# An execution option for a bulk UPDATE of watched rows that changes nothing a page or an
# access decision is made of (download counts): it leaves every cache in place.
KEEPS_CACHES = {"packyard_keeps_caches": True}


_READ = f"SELECT value, access_value FROM cache_generation WHERE id = {GENERATION_ROW}"


class Generations(NamedTuple):
    """The counters as one read found them."""

    data: int  # every watched write moves it: pages, files, forwarding decisions
    access: int  # writes to ``ACCESS`` rows move it (and ``data``): identities, scopes


def current_generation(engine: Engine) -> Generations:
    """Plain SQL on a pooled connection, no ORM session."""
    with engine.connect() as connection:
        return Generations(*connection.exec_driver_sql(_READ).one())


class GenerationReader:
    """Reads the generation on every cached request, on DBAPI connections of its own.

    A pooled read costs a checkout, a pre-ping on PostgreSQL, a reset on return and a
    result object: several times the 15 µs query itself, on the hottest path there is.
    Instead, a read takes an idle connection from a lock-free queue and puts it back: there
    are as many connections as reads ever ran at once, and they do not belong to threads,
    which some servers retire when idle (granian after 30 s) and start anew under load.
    The connections are in autocommit mode, so every read sees the latest commit.
    A query that fails drops its connection and falls back to a pooled read (a database
    that restarted has closed them all: the pool reconnects). A connection that cannot be
    opened raises SQLAlchemy's error, as a pooled read would: the database is down.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._held: list[Any] = []  # every connection this process opened
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._direct: Engine | None = None
        if _is_sqlite(engine) and engine.url.database in (None, "", ":memory:"):
            return  # an in-memory database cannot be opened twice: pooled reads
        # Connections come from a pool-less engine and are detached from it: they are ours.
        connect_args = {"check_same_thread": False, "timeout": 30} if _is_sqlite(engine) else {}
        self._direct = create_engine(engine.url, poolclass=NullPool, connect_args=connect_args)
        event.listen(engine, "engine_disposed", self.close)

    def read(self) -> Generations:
        if self._direct is None:
            return current_generation(self._engine)
        connection = self._checkout()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(_READ)
                rows = cursor.fetchall()  # exhausted: no read snapshot stays open
            finally:
                cursor.close()
        except self._direct.dialect.loaded_dbapi.Error:
            self._discard(connection)  # the next read opens a fresh one
            return current_generation(self._engine)
        self._idle.put(connection)
        return Generations(*rows[0])

    def close(self, *_args: Any) -> None:
        """Close every connection (the engine was disposed, or the app is done)."""
        with self._lock:
            held, self._held = self._held, []
            self._idle = queue.SimpleQueue()
        if self._pid != os.getpid():
            return  # a forked parent's connections: closing would end them for the parent
        for connection in held:
            with contextlib.suppress(Exception):  # already broken is as good as closed
                connection.close()

    def _checkout(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            with self._lock:
                self._pid, self._held, self._idle = os.getpid(), [], queue.SimpleQueue()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._connect()

    def _connect(self) -> Any:
        assert self._direct is not None
        dbapi = self._direct.dialect.loaded_dbapi
        try:
            fairy = self._direct.raw_connection()
        except dbapi.Error as error:  # raw_connection() does not wrap it, connect() would
            raise DBAPIError.instance(None, None, error, dbapi.Error) from error
        connection = fairy.dbapi_connection
        fairy.detach()
        if isinstance(connection, sqlite3.Connection):
            connection.isolation_level = None
        else:
            connection.rollback()
            connection.autocommit = True
        with self._lock:
            self._held.append(connection)
        return connection

    def _discard(self, connection: Any) -> None:
        with self._lock:
            if connection in self._held:
                self._held.remove(connection)
        with contextlib.suppress(Exception):  # already broken is as good as closed
            connection.close()


def _is_sqlite(engine: Engine) -> bool:
    return engine.url.get_backend_name() == "sqlite"


def bump(session: Session, *, access: bool = False) -> None:
    """Move the data generation, and with ``access`` the access generation too; each at
    most once per transaction."""
    bumped: set[str] = session.info.setdefault(_BUMPED, set())
    moves = {
        column: getattr(CacheGeneration, column) + 1
        for column in (("value", "access_value") if access else ("value",))
        if column not in bumped
    }
    if moves:
        bumped.update(moves)
        session.execute(
            update(CacheGeneration).where(CacheGeneration.id == GENERATION_ROW).values(moves)
        )


def _bump_on_flush(session: Session, _context: Any, _instances: Any) -> None:
    dirty = (o for o in session.dirty if isinstance(o, WATCHED) and _cached(o))
    written = [o for o in chain(session.new, session.deleted, dirty) if isinstance(o, WATCHED)]
    if written:
        bump(session, access=any(isinstance(o, ACCESS) for o in written))


def _cached(obj: object) -> bool:
    """Whether ``obj``'s pending changes touch a column that a cache is made of."""
    state = inspect(obj)
    changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
    return bool(changed - BOOKKEEPING.get(type(obj), frozenset()))


def _bump_on_bulk_write(state: ORMExecuteState) -> None:
    mapper = state.bind_mapper
    written = state.is_insert or state.is_update or state.is_delete
    if not (written and mapper and issubclass(mapper.class_, WATCHED)):
        return
    if not (state.is_update and state.execution_options.get("packyard_keeps_caches")):
        bump(state.session, access=issubclass(mapper.class_, ACCESS))


def _reset(session: Session, transaction: SessionTransaction) -> None:
    # The root transaction only: a released savepoint's bump is still pending in it.
    if transaction.parent is None:
        session.info.pop(_BUMPED, None)


def _reset_after_rollback(session: Session, _previous: Any) -> None:
    # Also after a savepoint's rollback, which may have undone the bump: bump again.
    session.info.pop(_BUMPED, None)


_LISTENERS = (
    ("before_flush", _bump_on_flush),
    ("do_orm_execute", _bump_on_bulk_write),
    ("after_transaction_end", _reset),
    ("after_soft_rollback", _reset_after_rollback),
)


def watch_writes(sessions: Any) -> None:
    """Move the generation on every write through ``sessions`` (a Session class, a
    sessionmaker or a scoped_session).  Attaching twice changes nothing."""
    for identifier, listener in _LISTENERS:
        if not event.contains(sessions, identifier, listener):
            event.listen(sessions, identifier, listener)
