"""Trusted publishing (contract section 9): a CI job exchanges the identity token its
platform signed for a short-lived upload token, PyPI's way, with no stored secret.

The issuer must be one the admin trusts (``PACKYARD_OIDC_ISSUERS``); its keys come from
its discovery document and JWKS, cached and refetched once when a token names a key we
do not know. The token's claims must match every claim of a project's trusted publisher.
Each token id (``jti``) is exchanged once: the ``used_oidc_tokens`` table's unique
constraint refuses a replay whichever web process sees it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.audit import Actor, record
from app.domain.errors import InvalidInput
from app.domain.tokens import clear_prefix, hash_token, mint
from app.models import Project, PublisherToken, TrustedPublisher, UsedOidcToken

OIDC_PREFIX = "pyd-oidc-"
TOKEN_TTL = timedelta(minutes=15)
# Clock skew tolerated on exp, nbf and iat between the CI platform and us.
LEEWAY_SECONDS = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
# A claim that names the repository or project: without one, a publisher would match
# every pipeline of the issuer.
IDENTIFYING_CLAIMS = frozenset(
    {"project_path", "project_id", "repository", "repository_id", "sub", "job_workflow_ref"}
)
MAX_CLAIMS = 20
KEYS_TTL_SECONDS = 3600
# An unknown kid refetches the JWKS, but not more often than this (a flood of tokens
# naming made-up keys must not turn into a flood of requests to the issuer).
MIN_REFETCH_SECONDS = 10
FETCH_TIMEOUT_SECONDS = 10


class TokenRefused(Exception):
    """An identity token refused at the exchange; ``code`` says which check failed."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def trusted_issuers(setting: str | Iterable[str] | None) -> list[str]:
    """``PACKYARD_OIDC_ISSUERS``: URLs separated by commas or spaces."""
    if setting is None:
        return []
    items = setting.replace(",", " ").split() if isinstance(setting, str) else setting
    return [item.strip().rstrip("/") for item in items if item.strip()]


# --- the issuers' keys ---------------------------------------------------------------


@dataclass
class _IssuerKeys:
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = 0.0


class KeyCache:
    """Each issuer's signing keys by ``kid``, per process."""

    def __init__(self) -> None:
        self._issuers: dict[str, _IssuerKeys] = {}
        self._lock = threading.Lock()

    def key(self, issuer: str, kid: str | None) -> Any:
        with self._lock:
            entry = self._issuers.setdefault(issuer, _IssuerKeys())
            stale = time.monotonic() - entry.fetched_at > KEYS_TTL_SECONDS
            unknown = kid not in entry.keys
            may_refetch = time.monotonic() - entry.fetched_at > MIN_REFETCH_SECONDS
            if stale or (unknown and may_refetch):
                entry.keys, entry.fetched_at = _fetch_keys(issuer), time.monotonic()
            if kid not in entry.keys:
                raise TokenRefused("unknown-key", f"the issuer has no signing key {kid!r}")
            return entry.keys[kid]


def _fetch_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            return json.load(response)
    except (OSError, ValueError) as error:
        raise TokenRefused("issuer-unreachable", f"could not read {url}: {error}") from None


def _fetch_keys(issuer: str) -> dict[str, Any]:
    discovery = _fetch_json(f"{issuer}/.well-known/openid-configuration")
    if not isinstance(discovery, dict) or discovery.get("issuer", "").rstrip("/") != issuer:
        raise TokenRefused("issuer-unreachable", "the discovery document names another issuer")
    import jwt  # on first use: PyJWT and cryptography add 10 MiB to each process

    keys = jwt.PyJWKSet.from_dict(_fetch_json(discovery["jwks_uri"]))
    return {key.key_id: key for key in keys.keys if key.key_id}


# --- verification --------------------------------------------------------------------


def verify(token: str, issuers: list[str], audience: str, keys: KeyCache) -> dict[str, Any]:
    """The verified claims of ``token``, or TokenRefused naming the failed check."""
    import jwt  # on first use, as in _fetch_keys

    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise TokenRefused("invalid-token", f"malformed token: {error}") from None
    issuer = str(unverified.get("iss", "")).rstrip("/")
    if issuer not in issuers:
        raise TokenRefused("untrusted-issuer", f"issuer {issuer!r} is not trusted here")
    key = keys.key(issuer, header.get("kid"))
    try:
        return jwt.decode(  # type: ignore[no-any-return]
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=unverified["iss"],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired-token", "the token has expired") from None
    except jwt.InvalidAudienceError:
        wrong = f"the token's audience is not {audience!r}"
        raise TokenRefused("invalid-audience", wrong) from None
    except jwt.ImmatureSignatureError:
        early = "the token is not valid yet (nbf or iat)"
        raise TokenRefused("token-not-yet-valid", early) from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenRefused("missing-claim", str(error)) from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("invalid-signature", "the token's signature does not verify") from None
    except jwt.PyJWTError as error:
        raise TokenRefused("invalid-token", str(error)) from None


def matching_publishers(
    session: Session, issuer: str, claims: dict[str, Any]
) -> list[TrustedPublisher]:
    publishers = session.execute(
        select(TrustedPublisher).where(TrustedPublisher.issuer == issuer.rstrip("/"))
    ).scalars()
    return [p for p in publishers if _matches(p.claims, claims)]


def _matches(required: dict[str, str], claims: dict[str, Any]) -> bool:
    return bool(required) and all(
        name in claims and str(claims[name]) == value for name, value in required.items()
    )


# --- the exchange --------------------------------------------------------------------


@dataclass(frozen=True)
class MintedToken:
    secret: str
    expires_at: datetime
    project_ids: list[int]


def exchange(
    session: Session, token: object, issuers: list[str], audience: str, keys: KeyCache
) -> MintedToken:
    """Verify an identity token and mint the upload token its publishers allow."""
    if not isinstance(token, str) or not token:
        raise TokenRefused("invalid-payload", 'the body must be {"token": "<JWT>"}')
    claims = verify(token, issuers, audience, keys)
    publishers = matching_publishers(session, claims["iss"], claims)
    if not publishers:
        raise TokenRefused(
            "invalid-publisher", "no trusted publisher of any project matches the token's claims"
        )
    _consume(session, claims)
    project_ids = sorted({p.project_id for p in publishers})
    secret = mint(OIDC_PREFIX)
    expires_at = datetime.now(UTC) + TOKEN_TTL
    subject = f"{claims.get('sub', '?')} ({claims['iss']})"[:255]
    session.add(
        PublisherToken(
            project_ids=project_ids,
            subject=subject,
            expires_at=expires_at,
            token_hash=hash_token(secret),
            token_prefix=clear_prefix(secret),
        )
    )
    for publisher in publishers:
        project = session.get(Project, publisher.project_id)
        record(session, f"trusted publisher {subject}", "trusted_publisher_token_minted",
               project, "TrustedPublisher", publisher.id, project.full_path if project else None,
               {"expires_at": expires_at.isoformat()})  # fmt: skip
    session.commit()
    return MintedToken(secret, expires_at, project_ids)


def _consume(session: Session, claims: dict[str, Any]) -> None:
    """Remember the token's id until it expires; a second exchange is a replay."""
    now = datetime.now(UTC)
    session.execute(delete(UsedOidcToken).where(UsedOidcToken.expires_at < now))
    key = hashlib.sha256(f"{claims['iss']}\n{claims['jti']}".encode()).hexdigest()
    expires_at = datetime.fromtimestamp(int(claims["exp"]) + LEEWAY_SECONDS, UTC)
    try:
        with session.begin_nested():
            session.add(UsedOidcToken(jti=key, expires_at=expires_at))
    except IntegrityError:
        raise TokenRefused("replayed-token", "this token was already exchanged") from None


def burn(session: Session, secret: object) -> None:
    """Revoke a minted token early (``/_/oidc/burn-token``, as uv calls after uploading)."""
    if not isinstance(secret, str) or not secret.startswith(OIDC_PREFIX):
        return
    token = session.execute(
        select(PublisherToken).where(PublisherToken.token_hash == hash_token(secret))
    ).scalar_one_or_none()
    if token is not None and not token.revoked:
        token.revoked = True
        session.commit()


# --- publishers ----------------------------------------------------------------------


def add_publisher(
    session: Session,
    project: Project,
    issuer: object,
    claims: object,
    issuers: list[str],
    actor: Actor,
) -> TrustedPublisher:
    issuer = str(issuer or "").strip().rstrip("/")
    if issuer not in issuers:
        trusted = ", ".join(issuers) or "none are configured (PACKYARD_OIDC_ISSUERS)"
        raise InvalidInput(f"issuer is not a trusted issuer; trusted issuers: {trusted}")
    publisher = TrustedPublisher(project_id=project.id, issuer=issuer, claims=_claims(claims))
    session.add(publisher)
    session.flush()
    record(session, actor, "trusted_publisher_added", project, "TrustedPublisher", publisher.id,
           project.full_path, {"issuer": issuer, "claims": publisher.claims})  # fmt: skip
    session.commit()
    return publisher


def _claims(claims: object) -> dict[str, str]:
    if not isinstance(claims, dict) or not claims:
        raise InvalidInput("claims must be an object of claim name to required value")
    if len(claims) > MAX_CLAIMS:
        raise InvalidInput(f"claims may name at most {MAX_CLAIMS} claims")
    for name, value in claims.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise InvalidInput("claims: each claim name is a non-empty string")
        if not isinstance(value, str) or not value or len(value) > 255 or "\x00" in value:
            raise InvalidInput(f"claims: {name} must be a non-empty string")
    if not IDENTIFYING_CLAIMS & set(claims):
        wanted = ", ".join(sorted(IDENTIFYING_CLAIMS))
        raise InvalidInput(f"claims must include one that names the repository: {wanted}")
    return {str(name): str(value) for name, value in claims.items()}


def remove_publisher(
    session: Session, project: Project, publisher: TrustedPublisher, actor: Actor
) -> None:
    record(session, actor, "trusted_publisher_removed", project, "TrustedPublisher",
           publisher.id, project.full_path,
           {"issuer": publisher.issuer, "claims": publisher.claims})  # fmt: skip
    session.delete(publisher)
    session.commit()


def project_publishers(session: Session, project: Project) -> list[TrustedPublisher]:
    return list(
        session.execute(
            select(TrustedPublisher)
            .where(TrustedPublisher.project_id == project.id)
            .order_by(TrustedPublisher.id)
        ).scalars()
    )
