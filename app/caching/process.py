"""The process caches: bounded LRU mappings per web process, exact thanks to the generations.

A request reads the generations once (``app.caching.generation``).  Each cache follows
one of them and is dropped whole when it moved since the cache was filled: the data cache
(pages, files) on any watched write, the access cache (identities, scopes) only when who
may do what changed.  Entries hold plain values (ids, bytes, identities), never ORM
objects, so they outlive the request's session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import current_app, request

from app.caching.generation import GenerationReader, Generations
from app.domain.errors import DATABASE_OUTAGES

T = TypeVar("T")
MAX_ENTRIES = 20_000
# The generation a cache follows: a field of Generations (not generation.ACCESS, the tables).
FOLLOWS_DATA, FOLLOWS_ACCESS = "data", "access"
_GENERATIONS = "packyard.generations"
_SYNC_FAILED = "packyard.cache_sync_failed"


class ProcessCache:
    """A bounded LRU mapping, cleared whenever the generation it follows moves on."""

    def __init__(
        self,
        generation: GenerationReader,
        max_entries: int = MAX_ENTRIES,
        follows: str = FOLLOWS_DATA,
    ) -> None:
        self._read_generation = generation.read
        self._follows = follows
        self._synced = f"packyard.cache_synced.{follows}"
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._generation: int | None = None
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def sync(self, environ: dict[str, Any]) -> None:
        """Drop everything if the generation moved; read once per request (WSGI environ)."""
        if environ.get(self._synced):
            return
        generation = getattr(_generations(environ, self._read_generation), self._follows)
        environ[self._synced] = True
        if generation != self._generation:
            with self._lock:
                self._entries.clear()
                self._generation = generation

    def peek(self, key: Hashable) -> Any:
        """The entry or None, without computing it; a hit counts as recent use."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            return None

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]  # type: ignore[no-any-return]
            generation = self._generation
        value = compute()  # outside the lock: may run queries
        self.put(key, value, generation)
        return value

    def put(self, key: Hashable, value: Any, generation: int | None) -> None:
        """Keep ``value`` if it was computed at the current generation."""
        with self._lock:
            if generation == self._generation:  # not filled from a stale generation
                self._entries[key] = value
                if len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)

    @property
    def generation(self) -> int | None:
        return self._generation


def _generations(environ: dict[str, Any], read: Callable[[], Generations]) -> Generations:
    """The generations, read once per request for every cache.

    A read that failed because the database is down fails again at once for the rest of
    the request: one attempt per request, not one per cache lookup."""
    if (generations := environ.get(_GENERATIONS)) is not None:
        return generations  # type: ignore[no-any-return]
    if (failure := environ.get(_SYNC_FAILED)) is not None:
        raise failure
    try:
        generations = environ[_GENERATIONS] = read()
    except DATABASE_OUTAGES as error:
        environ[_SYNC_FAILED] = error
        raise
    return generations


def request_cache() -> ProcessCache:
    """The app's data cache (pages, files), synced once per request."""
    cache: ProcessCache = current_app.extensions["packyard.cache"]
    cache.sync(request.environ)
    return cache


def access_cache() -> ProcessCache:
    """The app's access cache (identities, scopes), synced once per request: uploads and
    processing leave it in place."""
    cache: ProcessCache = current_app.extensions["packyard.access_cache"]
    cache.sync(request.environ)
    return cache
