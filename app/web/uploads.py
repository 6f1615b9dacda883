"""Streaming multipart uploads: a file part goes straight into a storage writer while
every digest is computed, and a part over the size limit is refused (413) at the byte
that crosses it. With ``file://`` the writer is a temporary file beside the files; with
object storage the bytes go to the bucket as they arrive. Nothing is published until the
upload is accepted, and an upload that is not (refused, failed, interrupted) is aborted
when the request closes.

A file whose first bytes are not what its name says (a ".whl" that is no zip) is refused
(400) as soon as they arrive.  A text field over its limit (MAX_FORM_MEMORY_SIZE) is a
400: 413 is for the file alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from app.config import request_size_limit
from app.domain.archives import SIGNATURE_SIZE, check_signature
from app.domain.errors import InvalidInput
from app.domain.hashing import MultiDigest
from app.domain.storage import StorageWriter
from app.domain.uploads import ReceivedFile, new_storage_key
from app.runtime import storage


class FileTooLarge(RequestEntityTooLarge):
    """The file part is over its limit (any other 413 of the form parser is a text field's)."""


class HashingSink:
    """Where the form parser writes a file part: hashed, counted, passed to a writer."""

    def __init__(self, writer: StorageWriter | None, limit: int, filename: str | None) -> None:
        self.writer = writer  # None: a part that cannot be a distribution, only hashed
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
        if self.writer is not None:
            self.writer.write(data)
        return len(data)

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

    def seek(self, offset: int, whence: int = 0) -> int:
        # The parser rewinds a finished part; nothing reads it back.
        return 0

    def received(self) -> ReceivedFile | None:
        """The complete part, still unpublished, for the domain to validate and commit."""
        if self.writer is None:
            return None
        return ReceivedFile(self.writer, self.digest, self.head)

    def close(self) -> None:
        """Discard the part unless it was committed."""
        if self.writer is not None:
            self.writer.abort()


class StreamingRequest(Request):
    """Flask request whose file parts stream into storage; ``upload_limit`` is per request."""

    upload_limit: int | None = None
    upload_project_id: int | None = None
    check_file: Callable[[str], None] | None = None

    def prepare_upload(
        self, limit: int, project_id: int, check_file: Callable[[str], None] | None = None
    ) -> None:
        """Set the per-file limit, the project, and a check of each file part's filename
        (raising refuses the upload before a byte of that part is read), before the body
        is read.  The whole-request cap (Flask's MAX_CONTENT_LENGTH, sized from the
        instance limit) follows the limit, so that a project or group may allow larger
        files than the instance."""
        self.upload_limit = limit
        self.upload_project_id = project_id
        self.check_file = check_file
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
            raise FileTooLarge(f"File too large: the limit is {limit} bytes")
        if self.check_file is not None and filename:
            self.check_file(filename)
        key = None
        if self.upload_project_id is not None:
            key = new_storage_key(self.upload_project_id, filename or "")
        sink = HashingSink(storage().writer(key) if key else None, limit, filename)
        self._sinks.append(sink)
        return sink  # type: ignore[return-value]

    @property
    def _sinks(self) -> list[HashingSink]:
        return self.environ.setdefault("packyard.upload_sinks", [])  # type: ignore[no-any-return]

    def close(self) -> None:
        super().close()
        for sink in self._sinks:
            sink.close()
