"""Typed domain errors; app.web.errors maps them to HTTP answers in one place."""

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# A database that is down, restarting or out of connections: an outage to retry after,
# not a bug. (SQLAlchemy's OperationalError is the DBAPI's: disconnects, refused or timed
# out connections, a server shutting down, a locked SQLite file.)
DATABASE_OUTAGES = (OperationalError, PoolTimeout)


class PackyardError(Exception):
    """Base class. ``status`` is the HTTP status the web layer answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PackyardError):
    status = 400


class InvalidFilename(InvalidInput):
    pass


class DigestMismatch(InvalidInput):
    pass


class FileExists(InvalidInput):
    def __init__(self, filename: str) -> None:
        super().__init__(f"File already exists: {filename}")


class UploadTooLarge(PackyardError):
    status = 413


class Unauthenticated(PackyardError):
    """No or bad credentials: answered 401 with a Basic challenge."""

    status = 401


class Forbidden(PackyardError):
    status = 403


class NotFound(PackyardError):
    status = 404


class Conflict(PackyardError):
    status = 409


class QuotaExceeded(InvalidInput):
    """400 like PyPI's "Project size too large": the upload would go over a storage quota."""
