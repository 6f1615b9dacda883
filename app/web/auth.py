"""Request -> presented credentials -> the plugins' ``authenticate`` chain -> identity."""

from __future__ import annotations

import base64
import binascii

from flask import request

from app.caching.process import request_cache
from app.domain.errors import Unauthenticated
from app.domain.identity import Identity, PresentedCredentials
from app.domain.tokens import is_expired
from app.extensions import db
from app.runtime import plugin_manager

REALM = 'Basic realm="Packyard"'
_IDENTITY = "packyard.identity"


def presented_credentials() -> PresentedCredentials | None:
    """Parse the credentials of the current request, once, whatever header carried them."""
    if token := request.headers.get("PRIVATE-TOKEN"):
        return PresentedCredentials(token.strip(), "private-token")
    if token := request.headers.get("JOB-TOKEN"):
        return PresentedCredentials(token.strip(), "job-token", "gitlab-ci-token")
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return PresentedCredentials(value.strip(), "bearer")
    if scheme.lower() == "basic":
        return _basic(value.strip())
    if header:
        raise Unauthenticated("401 Unauthorized: unsupported Authorization scheme")
    return None


def _basic(value: str) -> PresentedCredentials:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("401 Unauthorized: malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not password:
        raise Unauthenticated("401 Unauthorized: a token is required as the password")
    return PresentedCredentials(password, "basic", username)


def current_identity() -> Identity:
    """The caller of this request; raises Unauthenticated for bad credentials."""
    # Cached per request (not on ``g``: an app context may outlive one request).
    cached = request.environ.get(_IDENTITY)
    if cached is None:
        cached = request.environ[_IDENTITY] = _authenticate_cached(presented_credentials())
    return cached  # type: ignore[no-any-return]


def _authenticate_cached(credentials: PresentedCredentials | None) -> Identity:
    """Tokens are looked up once per cache generation (a revocation moves it) and
    until they expire; requests without credentials may carry a session cookie, so
    they are always asked of the plugins."""
    if credentials is None:
        return authenticate(None)
    identity = request_cache().get(("identity", credentials), lambda: authenticate(credentials))
    if is_expired(identity.expires_at):
        raise Unauthenticated("401 Unauthorized: token expired")
    return identity


def authenticate(credentials: PresentedCredentials | None) -> Identity:
    result = plugin_manager().hook.authenticate(credentials=credentials, session=db.session)
    if result is None or result.identity is None:
        reason = result.reason if result is not None else "unrecognised credentials"
        raise Unauthenticated(f"401 Unauthorized: {reason}")
    return result.identity  # type: ignore[no-any-return]
