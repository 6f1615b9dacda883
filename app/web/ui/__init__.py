"""The web pages: package browser, sign-in and tokens, the admin dashboard.

Server-rendered (Jinja, ``app/templates``); they work without JavaScript.  Forms are
protected by Flask-WTF's CSRFProtect, which checks every POST of the app except those of
the token-authenticated blueprints named in ``init_app``.  The session cookie
authenticates only this blueprint's requests (``sessions.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Blueprint, Flask, Request, Response, current_app, g, has_request_context, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from itsdangerous import URLSafeTimedSerializer
from werkzeug.routing import BaseConverter

from app.domain.instance import instance_secret
from app.domain.names import APP_TOP_LEVEL_ROUTES
from app.extensions import db

bp = Blueprint("ui", __name__)
csrf = CSRFProtect()

# Pages send no data elsewhere and run only their own scripts; descriptions are
# sanitised already, this is the second line of defence.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


_APP_ROUTES = "|".join(re.escape(word) for word in sorted(APP_TOP_LEVEL_ROUTES))


class NamespaceConverter(BaseConverter):
    """A group or project full path in a page URL.

    No segment is ``-`` (it starts a sub-page, ``/team/lib/-/packages``), and the first
    is none of the words the app's own URLs start with, so these routes never shadow
    ``/api/...``, ``/users/...``, ``/static/...`` or ``/-/...``.
    """

    regex = rf"(?!(?:{_APP_ROUTES})(?:/|$))[^/]+(?:/(?!-(?:/|$))[^/]+)*"
    part_isolating = False


class SessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, marked ``Secure`` on HTTPS requests too.

    ``SESSION_COOKIE_SECURE`` forces it; behind a proxy, ``PACKYARD_PROXY_COUNT`` makes
    ``X-Forwarded-Proto`` count."""

    def get_cookie_secure(self, app: Flask) -> bool:
        forced = bool(app.config["SESSION_COOKIE_SECURE"])
        return forced or (has_request_context() and request.is_secure)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # Without PACKYARD_SECRET_KEY, every process reads the key generated once into the
        # database they share, so a cookie from one web process is good at every other.
        if not app.secret_key:
            app.config["SECRET_KEY"] = instance_secret(db.session, "session_key")
        return super().get_signing_serializer(app)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # The REST and PyPI endpoints take tokens only: skip the cookie on their hot path.
        if request.path.startswith("/api/"):
            return self.null_session_class()
        return super().open_session(app, request)


def init_app(app: Flask, token_blueprints: Iterable[Blueprint]) -> None:
    """Register the pages; ``token_blueprints`` take tokens, not cookies: no CSRF check."""
    from app.web.ui import (  # noqa: F401
        account,
        browse,
        dashboard,
        errors,
        filters,
        hooks,
        manage,
        members,
        package_actions,
        retention,
        users,
    )

    app.session_interface = SessionInterface()
    app.before_request(_forget_csrf_token)
    csrf.init_app(app)
    for blueprint in token_blueprints:
        csrf.exempt(blueprint)
    app.url_map.converters["namespace"] = NamespaceConverter
    app.register_blueprint(bp)


def _forget_csrf_token() -> None:
    # Flask-WTF caches the token on ``g``, and an app context may outlive one request (the
    # test client reuses an outer one): never hand one visitor's token to another.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # Pages differ per visitor: never kept by shared caches.
    response.headers.setdefault("Cache-Control", "private, no-cache")
    return response
