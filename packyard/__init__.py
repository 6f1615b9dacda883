"""The public plugin API: what a Packyard plugin imports.

from packyard import hookimpl, AuthResult, Identity
"""

from app.domain.identity import AuthResult, Identity, PresentedCredentials
from app.domain.sign_in import SessionStamp
from app.domain.storage import StorageBackend, StorageError, StorageWriter
from app.hookspecs import hookimpl

__all__ = [
    "AuthResult",
    "Identity",
    "PresentedCredentials",
    "SessionStamp",
    "StorageBackend",
    "StorageError",
    "StorageWriter",
    "hookimpl",
]
