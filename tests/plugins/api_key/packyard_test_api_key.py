"""A third-party authentication scheme for Packyard's tests: an ``X-Api-Key`` header.

Installed by entry point (group ``packyard.plugins``), as any third party's plugin is.
It answers only when the app's ``TEST_API_KEYS`` maps keys to users
(``{"KEY": [USER_ID, "NAME"]}``), so it does nothing in an app not made for the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, has_request_context, request

from packyard import AuthResult, Identity, PresentedCredentials, hookimpl

HEADER = "X-Api-Key"


@hookimpl
def register_credential_headers(register: Callable[[str], None]) -> None:
    register(HEADER)  # so the response cache keys on it


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Any) -> AuthResult | None:
    keys = current_app.config.get("TEST_API_KEYS") or {}
    key = request.headers.get(HEADER) if has_request_context() else None
    if credentials is not None or not key or not keys:
        return None
    if key not in keys:
        return AuthResult.rejected("unknown API key")
    user_id, name = keys[key]
    identity = Identity(
        kind="personal_token", name=name, user_id=user_id, scopes=frozenset({"read_api"})
    )
    return AuthResult.ok(identity, identified_by=[HEADER])
