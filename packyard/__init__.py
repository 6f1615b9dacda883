"""The public plugin API: what a Packyard plugin imports.

from packyard import hookimpl, AuthResult, Identity
"""

from app.domain.identity import AuthResult, Identity, PresentedCredentials
from app.domain.storage import StorageBackend
from app.hookspecs import hookimpl

__all__ = ["AuthResult", "Identity", "PresentedCredentials", "StorageBackend", "hookimpl"]
