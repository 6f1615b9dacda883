"""The public plugin API: what a Packyard plugin imports.

from packyard import hookimpl, AuthResult, Identity
"""

from app.domain.errors import Forbidden, InvalidInput, NotFound
from app.domain.identity import AuthResult, Identity, PresentedCredentials
from app.domain.storage import StorageBackend, StorageError, StorageWriter
from app.hookspecs import hookimpl
from app.web.auth import current_identity
from app.web.loaders import project_for

__all__ = [
    "AuthResult",
    "Forbidden",
    "Identity",
    "InvalidInput",
    "NotFound",
    "PresentedCredentials",
    "StorageBackend",
    "StorageError",
    "StorageWriter",
    "current_identity",
    "hookimpl",
    "project_for",
]
