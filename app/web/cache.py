"""Process-local caches for the hot read paths, exact thanks to the cache generation.

A request reads the generation once (app.domain.generation); if any write moved it
since the cache was filled, the whole cache is dropped.  Entries hold plain values
(ids, bytes, identities), never ORM objects, so they outlive the request's session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import current_app, request

from app.domain.generation import GenerationReader
from app.extensions import db

T = TypeVar("T")
MAX_ENTRIES = 20_000
_SYNCED = "packyard.cache_synced"
_READER = "packyard.generation_reader"
_READER_LOCK = threading.Lock()


class ProcessCache:
    """A bounded LRU mapping, cleared whenever the generation it was filled at moves on."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._generation: int | None = None
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def sync(self, generation: int) -> None:
        if generation != self._generation:
            with self._lock:
                self._entries.clear()
                self._generation = generation

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]  # type: ignore[no-any-return]
            generation = self._generation
        value = compute()  # outside the lock: may run queries
        with self._lock:
            if generation == self._generation:  # not filled from a stale generation
                self._entries[key] = value
                if len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return value


def request_cache() -> ProcessCache:
    """The app's cache, synced with the database's generation once per request."""
    cache: ProcessCache = current_app.extensions["packyard.cache"]
    if not request.environ.get(_SYNCED):
        cache.sync(_generation_reader().read())
        request.environ[_SYNCED] = True
    return cache


def _generation_reader() -> GenerationReader:
    # Made on first use: the engine exists only inside an app context.
    extensions = current_app.extensions
    reader = extensions.get(_READER)
    if reader is None:
        with _READER_LOCK:
            reader = extensions.setdefault(_READER, GenerationReader(db.engine))
    return reader  # type: ignore[no-any-return]
