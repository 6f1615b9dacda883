"""Single sign-on to the web pages with any OpenID Connect provider, as a plugin.

The authorization-code flow with PKCE (S256), through Authlib: ``/users/auth/oidc``
sends the browser to the provider with a fresh ``state``, ``nonce`` and code challenge
(kept in the session cookie); ``/users/auth/oidc/callback`` checks the state, redeems
the code with its verifier, verifies the ID token (signature, issuer, audience, expiry,
nonce), then signs the linked user in (app.domain.single_sign_on).

Settings (``PACKYARD_`` prefix): ``OIDC_SIGNIN_ISSUER``, ``OIDC_SIGNIN_CLIENT_ID``,
``OIDC_SIGNIN_CLIENT_SECRET``, ``OIDC_SIGNIN_SCOPES`` (default ``openid profile email``),
``OIDC_SIGNIN_LABEL``, ``OIDC_SIGNIN_ONLY`` (true: no password sign-in),
``OIDC_SIGNIN_GROUPS_CLAIM`` and ``OIDC_SIGNIN_GROUP_MAP``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, current_app, flash, redirect, request, session, url_for
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from app.domain import single_sign_on as sso
from app.domain.errors import PackyardError
from app.extensions import db
from app.web.ui.common import safe_next
from packyard import SignInChoice, hookimpl, start_browser_session

log = logging.getLogger(__name__)
bp = Blueprint("oidc_sign_in", __name__, url_prefix="/users/auth/oidc")
NEXT_KEY = "packyard.sso_next"
CLIENT = "packyard_sso"


@bp.record_once
def _check_settings(state: Any) -> None:
    """A malformed group map stops the app at start, not at someone's sign-in."""
    sso.parse_group_map(state.app.config.get("OIDC_SIGNIN_GROUP_MAP"))


def _enabled(app: Flask) -> bool:
    return all(app.config.get(k) for k in ("OIDC_SIGNIN_ISSUER", "OIDC_SIGNIN_CLIENT_ID"))


@hookimpl
def register_blueprints(register: Any) -> None:
    register(bp)


@hookimpl
def sign_in_choices(next_url: str) -> SignInChoice | None:
    if not _enabled(current_app):
        return None
    label = current_app.config.get("OIDC_SIGNIN_LABEL") or "Sign in with single sign-on"
    only = str(current_app.config.get("OIDC_SIGNIN_ONLY", "")).lower() in ("1", "true", "yes")
    return SignInChoice(str(label), url_for("oidc_sign_in.start", next=next_url), only)


def _client() -> Any:
    """The Authlib client for this app, registered on first use."""
    # Authlib (and the cryptography it loads) only where sign-in runs: 10 MiB less in
    # every process that never signs anyone in.
    from authlib.integrations.flask_client import OAuth

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    oauth = app.extensions.get("packyard.sso_oauth")
    if oauth is None:
        oauth = app.extensions["packyard.sso_oauth"] = OAuth(app)
        issuer = str(app.config["OIDC_SIGNIN_ISSUER"]).rstrip("/")
        oauth.register(
            CLIENT,
            client_id=app.config["OIDC_SIGNIN_CLIENT_ID"],
            client_secret=app.config.get("OIDC_SIGNIN_CLIENT_SECRET") or None,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": app.config.get("OIDC_SIGNIN_SCOPES") or "openid profile email",
                "code_challenge_method": "S256",
            },
        )
    return oauth.create_client(CLIENT)


@bp.get("")
def start() -> Response:
    if not _enabled(current_app):
        raise NotFound()
    session[NEXT_KEY] = safe_next(request.args.get("next"))
    callback = url_for("oidc_sign_in.callback", _external=True)
    return _client().authorize_redirect(callback)  # type: ignore[no-any-return]


@bp.get("/callback")
def callback() -> Response:
    if not _enabled(current_app):
        raise NotFound()
    from authlib.integrations.base_client import OAuthError  # on first use, as in _client

    target = safe_next(session.get(NEXT_KEY))
    try:
        if "error" in request.args:  # the provider refused, or the visitor cancelled
            raise OAuthError(request.args["error"], request.args.get("error_description"))
        token = _client().authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        user = sso.user_for_sign_in(db.session, str(claims.get("iss", "")), claims)
    except (OAuthError, PackyardError) as error:
        db.session.rollback()
        log.warning("single sign-on refused: %s", error)
        flash(f"Single sign-on failed: {error}")
        return redirect(url_for("ui.sign_in"), code=303)
    groups_claim = current_app.config.get("OIDC_SIGNIN_GROUPS_CLAIM")
    mapping = sso.parse_group_map(current_app.config.get("OIDC_SIGNIN_GROUP_MAP"))
    if groups_claim:
        sso.apply_group_claim(db.session, user, claims.get(groups_claim), mapping)
    start_browser_session(user)
    return redirect(target, code=303)
