"""The sign-in a browser session carries, kept in the pages' signed session cookie.

It counts only on requests to the web pages, never on the REST API or the PyPI
endpoints: those stay token-only, so a page on another site cannot make a signed-in
browser upload or delete (their POSTs are exempt from CSRF checks).  Authentication
plugins receive it as ``authenticate(signed_in=...)`` and decide whether it still holds.
"""

from __future__ import annotations

from flask import request, session

from app.domain.sign_in import SessionStamp, start_session
from app.extensions import db
from app.models import User
from app.web.ui import bp

SIGNED_IN = "packyard.auth"  # the cookie's key: browsers signed in before stay signed in


def signed_in() -> SessionStamp | None:
    """The sign-in this request's browser session presents, on the web pages only."""
    if request.blueprint != bp.name:
        return None
    return SessionStamp.from_cookie(session.get(SIGNED_IN))


def start_browser_session(user: User) -> None:
    """Sign the browser in as ``user``: a fresh session (and CSRF token) holding the
    user's session stamp, which signing out everywhere invalidates.  Plugins that sign
    people in (single sign-on) call it as ``packyard.start_browser_session``."""
    remember_sign_in(start_session(db.session, user))


def remember_sign_in(stamp: SessionStamp) -> None:
    session.clear()  # a fresh session (and CSRF token) for the signed-in user
    session[SIGNED_IN] = stamp.as_cookie()
    session.permanent = True


def forget_sign_in() -> None:
    session.clear()
