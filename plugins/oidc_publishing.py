"""Trusted publishing from CI (contract section 9), PyPI's protocol, as a plugin.

Routes: ``GET /_/oidc/audience``, ``POST /_/oidc/mint-token``, ``POST /_/oidc/burn-token``
and the publishers of a project under ``/api/v4/projects/:id/trusted_publishers``.
The tokens it mints (``pyd-oidc-...``) are authenticated by the hook below.

Settings: ``PACKYARD_OIDC_ISSUERS`` (the issuers CI tokens may come from, separated by
commas or spaces) and ``PACKYARD_OIDC_AUDIENCE`` (the ``aud`` they must carry; by
default ``packyard``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template_string, request
from sqlalchemy.orm import Session

from app.domain import trusted_publishing as tp
from app.domain.tokens import as_utc, find_live_token
from app.extensions import db
from app.models import PublisherToken, TrustedPublisher
from packyard import (
    AuthResult,
    Forbidden,
    Identity,
    NotFound,
    PresentedCredentials,
    current_identity,
    hookimpl,
    project_for,
)

DEFAULT_AUDIENCE = "packyard"
exchange_bp = Blueprint("oidc_publishing", __name__, url_prefix="/_/oidc")
api_bp = Blueprint("oidc_publishers_api", __name__, url_prefix="/api/v4")


@hookimpl
def authenticate(credentials: PresentedCredentials | None, session: Session) -> AuthResult | None:
    if credentials is None or not credentials.secret.startswith(tp.OIDC_PREFIX):
        return None
    token, reason = find_live_token(session, PublisherToken, credentials.secret)
    if token is None:
        return AuthResult.rejected(reason or "invalid token")
    return AuthResult.ok(
        Identity(
            kind="trusted_publisher",
            name=f"trusted publisher {token.subject}"[:255],
            project_ids=frozenset(token.project_ids),
            expires_at=as_utc(token.expires_at),
        )
    )


@hookimpl
def register_blueprints(register: Any) -> None:
    register(exchange_bp)
    register(api_bp)


PAGE_SECTION = """
<section class="trusted-publishers">
<h2>Trusted publishers</h2>
{% if publishers %}
<p class="muted">CI jobs whose identity token carries these claims may publish here
without a stored secret, for 15 minutes per token.</p>
<div class="scroll"><table>
  <thead><tr><th>Issuer</th><th>Claims</th></tr></thead>
  <tbody>{% for p in publishers %}
  <tr><td><code>{{ p.issuer }}</code></td>
    <td>{% for name, value in p.claims|dictsort %}<code>{{ name }}</code> = <code>{{ value
      }}</code>{% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>
  {% endfor %}</tbody>
</table></div>
{% else %}
<p class="muted">None: CI jobs publish with a token. Add one with
<code>POST /api/v4/projects/{{ project.id }}/trusted_publishers</code>.</p>
{% endif %}
</section>
"""


@hookimpl
def project_page_sections(project: Any, access: Any, session: Session) -> str | None:
    """Maintainers see who may publish to the project (the claims describe their CI)."""
    if not access.manage:
        return None
    publishers = tp.project_publishers(session, project)
    return render_template_string(PAGE_SECTION, project=project, publishers=publishers)


def _issuers() -> list[str]:
    return tp.trusted_issuers(current_app.config.get("OIDC_ISSUERS"))


def _audience() -> str:
    return str(current_app.config.get("OIDC_AUDIENCE") or DEFAULT_AUDIENCE)


def _keys() -> tp.KeyCache:
    return current_app.extensions.setdefault("packyard.oidc_keys", tp.KeyCache())  # type: ignore[no-any-return]


# --- the exchange (PyPI's endpoints) -------------------------------------------------


@exchange_bp.get("/audience")
def audience() -> Response | tuple[Response, int]:
    if not _issuers():
        return jsonify({"message": "trusted publishing is not enabled on this server"}), 404
    return jsonify({"audience": _audience()})


@exchange_bp.post("/mint-token")
def mint_token() -> Response | tuple[Response, int]:
    try:
        if not _issuers():
            raise tp.TokenRefused("not-enabled", "trusted publishing is not enabled")
        payload = request.get_json(silent=True)
        token = payload.get("token") if isinstance(payload, dict) else None
        minted = tp.exchange(db.session, token, _issuers(), _audience(), _keys())
    except tp.TokenRefused as refused:
        db.session.rollback()
        return _refused(refused), 422
    expires = minted.expires_at.isoformat().replace("+00:00", "Z")
    return jsonify({"success": True, "token": minted.secret, "expires": expires})


def _refused(refused: tp.TokenRefused) -> Response:
    """PyPI's error shape: clients print ``errors``; ``message`` is the contract's."""
    message = f"Token request failed: {refused.description}"
    errors = [{"code": refused.code, "description": refused.description}]
    return jsonify({"message": message, "errors": errors})


@exchange_bp.post("/burn-token")
def burn_token() -> tuple[Response, int]:
    payload = request.get_json(silent=True)
    tp.burn(db.session, payload.get("token") if isinstance(payload, dict) else None)
    return jsonify({"success": True}), 202  # whatever the token, as PyPI does


# --- a project's trusted publishers --------------------------------------------------

PUBLISHERS = "/projects/<ref:project_ref>/trusted_publishers"


def _maintained(project_ref: str) -> Any:
    """The project, for a maintainer signed in or using a personal token (not CI tokens)."""
    if current_identity().kind not in ("personal_token", "session"):
        project_for(project_ref, "visible")
        raise Forbidden("403 Forbidden: this API needs a personal access token")
    project, _ = project_for(project_ref, "manage")
    return project


def _publisher_json(publisher: TrustedPublisher) -> dict[str, Any]:
    created = as_utc(publisher.created_at)
    return {
        "id": publisher.id,
        "project_id": publisher.project_id,
        "issuer": publisher.issuer,
        "claims": publisher.claims,
        "created_at": created.isoformat().replace("+00:00", "Z") if created else None,
    }


@api_bp.get(PUBLISHERS)
def list_publishers(project_ref: str) -> Response:
    project = _maintained(project_ref)
    return jsonify([_publisher_json(p) for p in tp.project_publishers(db.session, project)])


@api_bp.post(PUBLISHERS)
def post_publisher(project_ref: str) -> tuple[Response, int]:
    project = _maintained(project_ref)
    params = request.get_json(silent=True)
    if not isinstance(params, dict):
        params = {}
    publisher = tp.add_publisher(
        db.session, project, params.get("issuer"), params.get("claims"), _issuers(),
        actor=current_identity(),
    )  # fmt: skip
    return jsonify(_publisher_json(publisher)), 201


@api_bp.delete(f"{PUBLISHERS}/<int:publisher_id>")
def delete_publisher(project_ref: str, publisher_id: int) -> tuple[str, int]:
    project = _maintained(project_ref)
    publisher = db.session.get(TrustedPublisher, publisher_id)
    if publisher is None or publisher.project_id != project.id:
        raise NotFound("404 Trusted publisher Not Found")
    tp.remove_publisher(db.session, project, publisher, actor=current_identity())
    return "", 204
