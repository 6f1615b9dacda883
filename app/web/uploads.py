"""Streaming multipart uploads: file parts go straight to a temporary file in the
storage's temp dir while every digest is computed, and a part over the size limit
is refused (413) at the byte that crosses it, before it is stored.  A file whose first
bytes are not what its name says (a ".whl" that is no zip) is refused (400) as soon as
they arrive.  A text field over its limit (MAX_FORM_MEMORY_SIZE) is a 400: 413 is for
the file alone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from app.config import request_size_limit
from app.domain.archives import SIGNATURE_SIZE, check_signature
from app.domain.errors import InvalidInput
from app.domain.hashing import MultiDigest
from app.domain.uploads import ReceivedFile
from app.runtime import storage


class FileTooLarge(RequestEntityTooLarge):
    """The file part is over its limit (any other 413 of the form parser is a text field's)."""


class HashingSpool:
    """A writable, then readable, temporary file that hashes what is written to it."""

    def __init__(self, directory: Path, limit: int, filename: str | None = None) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self.path = Path(name)
        self.digest = MultiDigest()
        self.limit = limit
        self.filename = filename or ""
        self.head = b""  # the first bytes, for the signature check

    def write(self, data: bytes) -> int:
        if self.digest.size + len(data) > self.limit:
            self.close()
            raise FileTooLarge(f"File too large: the limit is {self.limit} bytes")
        if len(self.head) < SIGNATURE_SIZE:
            self._read_head(data)
        self.digest.update(data)
        return self._file.write(data)

    def _read_head(self, data: bytes) -> None:
        """Keep the first bytes; once there are enough, refuse a file they disprove at
        once, rather than after the whole body (the domain checks shorter files)."""
        self.head += data[: SIGNATURE_SIZE - len(self.head)]
        if len(self.head) == SIGNATURE_SIZE:
            try:
                check_signature(self.filename, self.head)
            except InvalidInput:
                self.close()
                raise

    def received(self) -> ReceivedFile:
        """The complete file, flushed, for the domain to validate and store."""
        self._file.flush()
        return ReceivedFile(self.path, self.digest, self.head)

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
        self.max_content_length = request_size_limit(limit, current_app.config)
        if self.content_length is not None and self.content_length > self.max_content_length:
            raise RequestEntityTooLarge(
                f"Request too large: the limit is {self.max_content_length} bytes, for a file"
                f" of at most {limit} bytes and its form fields"
            )

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except FileTooLarge:
            raise
        except RequestEntityTooLarge:
            if self._read_past_the_cap():
                raise
            # werkzeug's answer to a text field over MAX_FORM_MEMORY_SIZE (or to more
            # than MAX_FORM_PARTS fields): the form is wrong, not too large a file.
            raise InvalidInput(
                "Form field too large: text fields such as the description may have at most"
                f" {current_app.config['MAX_FORM_MEMORY_SIZE']} bytes"
                f" (and a form at most {current_app.config['MAX_FORM_PARTS']} fields)"
            ) from None

    def _read_past_the_cap(self) -> bool:
        """Whether a body of unknown length (chunked) went over MAX_CONTENT_LENGTH."""
        stream = self.stream
        return (
            isinstance(stream, LimitedStream)
            and stream.limit == self.max_content_length
            and stream.is_exhausted
        )

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
        spool = HashingSpool(storage().temp_dir(), limit, filename)
        self._spools.append(spool)
        return spool  # type: ignore[return-value]

    @property
    def _spools(self) -> list[HashingSpool]:
        return self.environ.setdefault("packyard.spools", [])  # type: ignore[no-any-return]

    def close(self) -> None:
        super().close()
        for spool in self._spools:
            spool.close()
