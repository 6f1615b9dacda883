"""The public plugin API: what a Packyard plugin imports.

from packyard import hookimpl, AuthResult, Identity
"""

from app.domain.errors import Forbidden, InvalidInput, NotFound
from app.domain.identity import AuthResult, Identity, PresentedCredentials, SignInChoice
from app.domain.sign_in import SessionStamp
from app.domain.storage import StorageBackend, StorageError, StorageWriter
from app.hookspecs import hookimpl
from app.models import User
from app.web.auth import current_identity
from app.web.loaders import project_for


def start_browser_session(user: User) -> None:
    """Sign the current browser in as ``user`` (the web pages' session cookie)."""
    from app.web.ui.sessions import start_browser_session as start  # the pages own it

    start(user)


__all__ = [
    "AuthResult",
    "Forbidden",
    "Identity",
    "InvalidInput",
    "NotFound",
    "PresentedCredentials",
    "SessionStamp",
    "SignInChoice",
    "StorageBackend",
    "StorageError",
    "StorageWriter",
    "current_identity",
    "hookimpl",
    "project_for",
    "start_browser_session",
]
