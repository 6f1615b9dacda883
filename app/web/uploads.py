"""Streaming multipart uploads: file parts go straight to a temporary file in the
storage's temp dir while every digest is computed, and a part over the size limit
is refused (413) at the byte that crosses it, before it is stored."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

from app.domain.hashing import MultiDigest
from app.domain.uploads import ReceivedFile
from app.runtime import storage


class HashingSpool:
    """A writable, then readable, temporary file that hashes what is written to it."""

    def __init__(self, directory: Path, limit: int) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self.path = Path(name)
        self.digest = MultiDigest()
        self.limit = limit

    def write(self, data: bytes) -> int:
        if self.digest.size + len(data) > self.limit:
            self.close()
            raise RequestEntityTooLarge(f"File too large: the limit is {self.limit} bytes")
        self.digest.update(data)
        return self._file.write(data)

    def received(self) -> ReceivedFile:
        """The complete file, flushed, for the domain to validate and store."""
        self._file.flush()
        return ReceivedFile(self.path, self.digest)

    def close(self) -> None:
        """Close and remove the temporary file (a no-op once storage moved it away)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def __getattr__(self, name: str) -> Any:
        # read, seek, tell, readline... as the multipart parser and FileStorage need.
        return getattr(self._file, name)


class SpoolingRequest(Request):
    """Flask request whose file parts are hashing spools; ``upload_limit`` is per request."""

    upload_limit: int | None = None

    def limit_uploads(self, limit: int) -> None:
        """Set the per-file limit before the body is read.  The whole-request cap (Flask's
        MAX_CONTENT_LENGTH, sized from the instance limit) follows it, so that a project
        or group may allow larger files than the instance."""
        self.upload_limit = limit
        self.max_content_length = limit + current_app.config["MAX_FORM_MEMORY_SIZE"]

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        limit = self.upload_limit or current_app.config["MAX_UPLOAD_SIZE"]
        if content_length is not None and content_length > limit:
            raise RequestEntityTooLarge(f"File too large: the limit is {limit} bytes")
        spool = HashingSpool(storage().temp_dir(), limit)
        self._spools.append(spool)
        return spool  # type: ignore[return-value]

    @property
    def _spools(self) -> list[HashingSpool]:
        return self.environ.setdefault("packyard.spools", [])  # type: ignore[no-any-return]

    def close(self) -> None:
        super().close()
        for spool in self._spools:
            spool.close()
