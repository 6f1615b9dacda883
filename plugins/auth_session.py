"""Browser sessions: the signed session cookie of the web pages.

The cookie authenticates only requests handled by the web pages' blueprint, never the
REST API or the PyPI endpoints: those stay token-only, so a page on another site cannot
make a signed-in browser upload or delete (their POSTs are exempt from CSRF checks).
A request that presents a token is left to the token plugins.
"""

from flask import has_request_context, request
from flask import session as cookie
from sqlalchemy.orm import Session

from app.domain.sign_in import session_user, start_session
from app.extensions import db
from app.models import User
from packyard import AuthResult, Identity, PresentedCredentials, hookimpl

COOKIE_KEY = "packyard.auth"
SESSION_BLUEPRINTS = frozenset({"ui"})


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    if credentials is not None or not has_request_context():
        return None
    if request.blueprint not in SESSION_BLUEPRINTS or COOKIE_KEY not in cookie:
        return None
    user = session_user(session, cookie.get(COOKIE_KEY))
    if user is None:
        return None  # signed out or stale: the visitor is anonymous
    return AuthResult.ok(
        Identity(kind="session", name=user.username, user_id=user.id, is_admin=user.is_admin)
    )


def start_browser_session(user: User) -> None:
    """Sign the browser in as ``user``: a fresh session (and CSRF token) holding the
    user's session stamp, which signing out everywhere invalidates."""
    stamp = start_session(db.session, user)
    cookie.clear()
    cookie[COOKIE_KEY] = stamp.as_cookie()
    cookie.permanent = True
