"""Where package files live: a small backend interface and the URL-based chooser.

Backends implement a few abstract methods; ``local_path`` and ``temp_dir`` have
defaults.  Uploads are first spooled to a local temporary file, then handed to
``store``, which must make the file appear atomically under its key.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from app.domain.errors import PackyardError


class StorageError(PackyardError):
    status = 503


class StorageBackend(ABC):
    """The contract every storage backend keeps. Keys are relative, ``/``-separated."""

    @abstractmethod
    def store(self, key: str, source: Path) -> None:
        """Move the complete local file ``source`` to ``key``, atomically."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the stored file for reading; FileNotFoundError if missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the file from, or None for remote backends."""
        return None

    def temp_dir(self) -> Path:
        """Where uploads are spooled before ``store``; same filesystem when possible."""
        return Path(tempfile.gettempdir())

    def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise if the backend cannot be reached (used by /-/ready)."""


class FileStorage(StorageBackend):
    """Local disk: write to a temporary file, fsync, rename into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"Invalid storage key: {key!r}")
        return path

    def store(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(source, target)
        _fsync_dir(target.parent)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def temp_dir(self) -> Path:
        return self.root / ".tmp"

    def check(self) -> None:
        with tempfile.NamedTemporaryFile(dir=self.temp_dir()):
            pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


BackendFactory = Callable[[str], StorageBackend]


def backend_for_url(url: str, factories: dict[str, BackendFactory]) -> StorageBackend:
    """Pick the backend registered for the URL's scheme."""
    scheme = urlsplit(url).scheme
    try:
        factory = factories[scheme]
    except KeyError:
        known = ", ".join(sorted(factories)) or "none"
        raise ValueError(f"No storage backend for {url!r} (registered: {known})") from None
    return factory(url)
