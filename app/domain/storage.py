"""Where package files live: a small backend interface and the URL-based chooser.

A backend implements four abstract methods (``store``, ``open``, ``delete``,
``exists``); everything else has a default that works on top of them, so a backend
written for an older Packyard keeps working:

- ``writer(key)`` streams a new file in. The default spools it to a local temporary
  file in ``temp_dir()`` and hands it to ``store`` on commit (what ``file://`` does:
  the bytes are renamed into place). Object stores override it to send the bytes while
  they arrive (S3 multipart upload), so an upload is never whole on local disk.
- ``open(key)`` must answer a *seekable* binary file: the worker reads a file through
  once to hash it, then reads a zip archive from its end. Remote backends may serve
  that with ranged reads (see ``plugins/storage_s3.py``).
- ``local_path``, ``presigned_url`` and ``keys`` are optional abilities; a backend
  without them answers None (or NotImplementedError for ``keys``).

Keys are relative, ``/``-separated, and never reused for other bytes: a key's file,
once committed, does not change until it is deleted.

Errors: a missing file is ``FileNotFoundError``; a storage that cannot be reached
(or fails) raises ``StorageError``, which the web answers with 503 and the workers
retry.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO
from urllib.parse import urlsplit

from app.domain.errors import PackyardError


class StorageError(PackyardError):
    """The storage failed or cannot be reached; transient, so workers retry."""

    status = 503


class StorageWriter(ABC):
    """One new file being written to ``key``: bytes go in with ``write``, and the file
    appears under its key only at ``commit``, whole, or never.

    ``abort`` discards what was written; it is safe to call at any time, more than once,
    and after ``commit`` (then it does nothing: removing a committed file is
    ``StorageBackend.delete``). Used as a context manager, a writer commits when the
    block ends normally and aborts when it raises::

        with store.writer(key) as out:
            shutil.copyfileobj(source, out)
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.committed = False

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Append ``data``; returns ``len(data)``. May send it to the storage already."""

    @abstractmethod
    def _commit(self) -> None:
        """Make the written bytes appear under ``key``, atomically."""

    @abstractmethod
    def _abort(self) -> None:
        """Discard what was written (and any half-made object); must not raise."""

    def commit(self) -> None:
        """Publish the file; if that fails, what was written is discarded and it raises."""
        if self.committed:
            return
        try:
            self._commit()
        except BaseException:
            self._abort()
            raise
        self.committed = True

    def abort(self) -> None:
        if not self.committed:
            self._abort()

    def __enter__(self) -> StorageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class StorageBackend(ABC):
    """The contract every storage backend keeps. Keys are relative, ``/``-separated."""

    @abstractmethod
    def store(self, key: str, source: Path) -> None:
        """Move the complete local file ``source`` to ``key``, atomically."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the stored file for reading, seekable; FileNotFoundError if missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    def writer(self, key: str) -> StorageWriter:
        """A writer for a new file at ``key`` (see ``StorageWriter``).

        The default spools to ``temp_dir()`` and calls ``store`` on commit; override it
        to stream the bytes to the storage as they are written."""
        return SpooledWriter(self, key)

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the file from, or None for remote backends."""
        return None

    def presigned_url(self, key: str, filename: str, expires_in: int) -> str | None:
        """A URL that lets anyone download the file for ``expires_in`` seconds, offered
        as ``filename``; None if the backend has none (downloads are then streamed)."""
        return None

    def keys(self) -> Iterator[str]:
        """Every stored key (for ``packyard storage migrate``), in no particular order."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its files")

    def temp_dir(self) -> Path:
        """Where the default ``writer`` spools; the same filesystem as the files when
        possible, so that ``store`` is a rename."""
        return Path(tempfile.gettempdir())

    def check(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Raise if the backend cannot be reached (used by /-/ready)."""


class SpooledWriter(StorageWriter):
    """Writes to a temporary file in the backend's ``temp_dir``, then ``store`` moves it."""

    def __init__(self, backend: StorageBackend, key: str) -> None:
        super().__init__(key)
        self._backend = backend
        fd, name = tempfile.mkstemp(dir=backend.temp_dir(), prefix="upload-")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._path = Path(name)

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def _commit(self) -> None:
        self._file.close()
        self._backend.store(self.key, self._path)

    def _abort(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


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
        """Rename into place, then make both the bytes and the name durable.

        Renaming before the fsyncs is safe because no committed row names the key until
        the caller commits one, after ``store`` returns (uploads get fresh keys, the
        upstream cache marks its row stored afterwards): a crash in between leaves an
        orphan, never a referenced partial file. And it halves
        the cost on a journalling filesystem such as ext4: the file's fsync commits the
        journal with the rename in it, so the directory's fsync finds nothing left to do
        (fsync, rename, fsync costs two journal commits).
        """
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
        _fsync_dir(target.parent)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def keys(self) -> Iterator[str]:
        for directory, dirnames, filenames in os.walk(self.root):
            if Path(directory) == self.root:
                dirnames[:] = [d for d in dirnames if d != ".tmp"]
            for name in filenames:
                yield (Path(directory) / name).relative_to(self.root).as_posix()

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
