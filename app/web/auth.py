"""Request -> presented credentials -> the plugins' ``authenticate`` chain -> identity."""

from __future__ import annotations

import base64
import binascii
import logging

from flask import request

from app.caching.process import access_cache
from app.domain.errors import Unauthenticated
from app.domain.identity import AuthResult, Identity, PresentedCredentials
from app.domain.tokens import is_expired
from app.extensions import db
from app.runtime import plugin_manager
from app.web.ui.sessions import signed_in

log = logging.getLogger(__name__)

REALM = 'Basic realm="Packyard"'
# Every refused token gets this one answer: unknown, revoked and expired look alike, so
# a caller learns nothing about a secret that does not work. The reason is logged.
REFUSED = "401 Unauthorized"
# What presented_credentials reads: the response cache keys on these (and on the headers
# plugins register), so that no cached page answers another caller.
CREDENTIAL_HEADERS = ("Authorization", "PRIVATE-TOKEN", "JOB-TOKEN")
_CALLER = "packyard.caller"


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
    identity = current_caller().identity
    assert identity is not None  # only accepted answers are kept
    return identity


def current_caller() -> AuthResult:
    """Authentication's answer for this request: the identity, and what identified it."""
    # Cached per request (not on ``g``: an app context may outlive one request).
    cached = request.environ.get(_CALLER)
    if cached is None:
        cached = request.environ[_CALLER] = _authenticate_cached(presented_credentials())
    return cached  # type: ignore[no-any-return]


def _authenticate_cached(credentials: PresentedCredentials | None) -> AuthResult:
    """Tokens are looked up once per cache generation (a revocation moves it) and until
    they expire, when the credentials alone identified the caller; requests without
    credentials may carry a session cookie, so they are always asked of the plugins."""
    if credentials is None:
        return _ask_plugins(None)
    cache = access_cache()
    key = ("identity", credentials)
    caller: AuthResult | None = cache.peek(key)
    if caller is None:
        generation = cache.generation
        caller = _ask_plugins(credentials)
        if caller.identified_by == frozenset():  # other headers would belong in the key
            cache.put(key, caller, generation)
    assert caller.identity is not None
    if is_expired(caller.identity.expires_at):
        log.info("refused %s credentials: token expired", credentials.source)
        raise Unauthenticated(REFUSED)
    return caller


def authenticate(credentials: PresentedCredentials | None) -> Identity:
    """The identity ``credentials`` prove; raises Unauthenticated if they prove none."""
    identity = _ask_plugins(credentials).identity
    assert identity is not None
    return identity


def _ask_plugins(credentials: PresentedCredentials | None) -> AuthResult:
    """The plugins' accepting answer for ``credentials``; raises Unauthenticated otherwise."""
    result = plugin_manager().hook.authenticate(
        credentials=credentials, session=db.session, signed_in=signed_in()
    )
    if result is None or result.identity is None:
        reason = result.reason if result is not None else "no plugin claimed them"
        log.info("refused %s credentials: %s", credentials.source if credentials else "no", reason)
        raise Unauthenticated(REFUSED)
    return result  # type: ignore[no-any-return]
