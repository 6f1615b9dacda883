"""Trusted publishing (contract section 9) against a local issuer on a loopback port:
the exchange's checks, each refusal's error, the minted token's reach and lifetime, and
the publishers API. The real clients (twine, curl, uv) are in test_e2e_trusted_publishing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.domain import trusted_publishing
from app.domain.access import DEVELOPER, MAINTAINER
from app.extensions import db
from app.models import AuditEvent, UsedOidcToken
from tests.conftest import basic
from tests.oidc_issuer import GITHUB_CLAIMS, GITLAB_CLAIMS, LocalIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    local = LocalIssuer()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def setup(app, registry, issuer):
    """Two private projects, team/lib (GitLab publisher) and team/other (GitHub one)."""
    app.config["OIDC_ISSUERS"] = f"https://gitlab.invalid, {issuer.url}"
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    group = registry.group("team")
    lib, other = registry.project(group, "lib"), registry.project(group, "other")
    for project, claims in ((lib, GITLAB_CLAIMS), (other, GITHUB_CLAIMS)):
        claims = {k: v for k, v in claims.items() if k != "sub"}
        answer = registry.client.post(
            f"/api/v4/projects/{project.id}/trusted_publishers",
            json={"issuer": issuer.url, "claims": claims},
            headers={"PRIVATE-TOKEN": token},
        )
        assert answer.status_code == 201, answer.json
    return {"lib": lib, "other": other, "admin_token": token}


def exchange(client, jwt_token):
    return client.post("/_/oidc/mint-token", json={"token": jwt_token})


def refusal(answer) -> str:
    assert answer.status_code == 422, answer.json
    body = answer.json
    assert body["message"].startswith("Token request failed")
    assert len(body["errors"]) == 1 and body["errors"][0]["description"]
    return body["errors"][0]["code"]  # type: ignore[no-any-return]


def test_audience_is_answered_when_issuers_are_trusted(app, client):
    assert client.get("/_/oidc/audience").status_code == 404  # nothing trusted: off
    assert refusal(exchange(client, "x.y.z")) == "not-enabled"
    app.config.update(OIDC_ISSUERS="https://gitlab.example.com", OIDC_AUDIENCE="registry.corp")
    assert client.get("/_/oidc/audience").json == {"audience": "registry.corp"}


def test_matching_token_uploads_to_its_project_only(setup, registry, issuer, wheel):
    answer = exchange(registry.client, issuer.sign(GITLAB_CLAIMS))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["success"] is True and body["token"].startswith("pyd-oidc-")
    assert body["expires"].endswith("Z")

    filename, content = wheel
    assert registry.upload(setup["lib"], filename, content, token=body["token"]).status_code == 201
    refused = registry.upload(setup["other"], filename, content, token=body["token"])
    assert refused.status_code == 404  # another private project: not even visible
    index = "/api/v4/projects/{}/packages/pypi/simple/demo-pkg/"
    own_index = registry.client.get(index.format(setup["lib"].id), headers=basic(body["token"]))
    assert own_index.status_code == 200
    other_index = registry.client.get(index.format(setup["other"].id), headers=basic(body["token"]))
    assert other_index.status_code == 404
    # Not a user: the REST API that needs one is closed to it.
    assert registry.client.get("/api/v4/user", headers=basic(body["token"])).status_code == 403

    events = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "trusted_publisher_token_minted")
    ).scalars()
    assert [(e.entity_path, e.actor.startswith("trusted publisher")) for e in events] == [
        ("team/lib", True)
    ]


def test_github_token_reaches_the_other_project(setup, registry, issuer, wheel):
    token = exchange(registry.client, issuer.sign(GITHUB_CLAIMS)).json["token"]
    filename, content = wheel
    assert registry.upload(setup["other"], filename, content, token=token).status_code == 201
    assert registry.upload(setup["lib"], filename, content, token=token).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "expired-token"),
        ({"aud": "pypi"}, "invalid-audience"),
        ({"iss": "https://evil.example.com"}, "untrusted-issuer"),
        ({"nbf": int(time.time()) + 3600}, "token-not-yet-valid"),
        ({"jti": None}, "missing-claim"),
        ({"ref": "feature"}, "invalid-publisher"),  # claims that match no publisher
    ],
)
def test_refusals_say_which_check_failed(setup, registry, issuer, overrides, code):
    assert refusal(exchange(registry.client, issuer.sign(GITLAB_CLAIMS, **overrides))) == code


def test_malformed_payloads_are_refused(setup, registry):
    assert refusal(registry.client.post("/_/oidc/mint-token", json={})) == "invalid-payload"
    assert refusal(registry.client.post("/_/oidc/mint-token", data="x")) == "invalid-payload"
    assert refusal(exchange(registry.client, "not-a-jwt")) == "invalid-token"


def test_a_forged_signature_is_refused(setup, registry, issuer):
    header, payload, _ = issuer.sign(GITLAB_CLAIMS).split(".")
    _, _, signature = issuer.sign(GITHUB_CLAIMS).split(".")
    forged = f"{header}.{payload}.{signature}"
    assert refusal(exchange(registry.client, forged)) == "invalid-signature"


def test_replayed_jti_is_refused(setup, registry, issuer):
    token = issuer.sign(GITLAB_CLAIMS)
    assert exchange(registry.client, token).status_code == 200
    assert refusal(exchange(registry.client, token)) == "replayed-token"
    # A refused token is not remembered: only exchanged ones are.
    failed = issuer.sign(GITLAB_CLAIMS, ref="feature", jti="once")
    assert refusal(exchange(registry.client, failed)) == "invalid-publisher"
    assert exchange(registry.client, issuer.sign(GITLAB_CLAIMS, jti="once")).status_code == 200


def test_expired_jtis_are_pruned(setup, registry, issuer):
    exchange(registry.client, issuer.sign(GITLAB_CLAIMS, exp=int(time.time()) - 30))
    exchange(registry.client, issuer.sign(GITLAB_CLAIMS))  # prunes the first (past leeway)
    rows = db.session.execute(select(UsedOidcToken)).scalars().all()
    assert len(rows) == 2  # both within the leeway still
    exchange(registry.client, issuer.sign(GITLAB_CLAIMS, exp=int(time.time()) - 61))  # refused
    assert len(db.session.execute(select(UsedOidcToken)).scalars().all()) == 2
    db.session.execute(
        UsedOidcToken.__table__.update().values(
            expires_at=UsedOidcToken.expires_at - timedelta(hours=1)
        )
    )
    db.session.commit()
    exchange(registry.client, issuer.sign(GITLAB_CLAIMS))
    assert len(db.session.execute(select(UsedOidcToken)).scalars().all()) == 1


def test_unknown_key_refetches_the_jwks_once(setup, registry, issuer, monkeypatch):
    monkeypatch.setattr(trusted_publishing, "MIN_REFETCH_SECONDS", 0)
    assert exchange(registry.client, issuer.sign(GITLAB_CLAIMS)).status_code == 200
    fetched = issuer.jwks_requests
    assert exchange(registry.client, issuer.sign(GITLAB_CLAIMS)).status_code == 200
    assert issuer.jwks_requests == fetched  # cached

    ghost, rotated = f"ghost-{uuid.uuid4().hex}", f"rotated-{uuid.uuid4().hex}"  # new kids
    issuer.add_key(ghost, publish=False)
    assert refusal(exchange(registry.client, issuer.sign(GITLAB_CLAIMS, kid=ghost))) == (
        "unknown-key"
    )
    assert issuer.jwks_requests == fetched + 1  # looked once, then refused

    issuer.add_key(rotated)  # the issuer rotates: a token with the new key works
    assert exchange(registry.client, issuer.sign(GITLAB_CLAIMS, kid=rotated)).status_code == 200
    assert issuer.jwks_requests == fetched + 2


def test_unknown_keys_do_not_flood_the_issuer(setup, registry, issuer):
    exchange(registry.client, issuer.sign(GITLAB_CLAIMS))
    fetched = issuer.jwks_requests
    ghost = f"ghost-{uuid.uuid4().hex}"
    issuer.add_key(ghost, publish=False)
    for _ in range(3):
        token = issuer.sign(GITLAB_CLAIMS, kid=ghost)
        assert refusal(exchange(registry.client, token)) == "unknown-key"
    assert issuer.jwks_requests <= fetched + 1


def test_minted_token_stops_working_after_expiry(setup, registry, issuer, wheel, monkeypatch):
    monkeypatch.setattr(trusted_publishing, "TOKEN_TTL", timedelta(seconds=1))
    token = exchange(registry.client, issuer.sign(GITLAB_CLAIMS)).json["token"]
    filename, content = wheel
    index = f"/api/v4/projects/{setup['lib'].id}/packages/pypi/simple/"
    assert registry.client.get(index, headers=basic(token)).status_code == 200
    time.sleep(1.2)
    late = registry.upload(setup["lib"], filename, content, token=token)
    assert late.status_code == 401
    assert late.get_data(as_text=True) == "401 Unauthorized\n"  # like any refused token
    assert registry.client.get(index, headers=basic(token)).status_code == 401


def test_burned_token_stops_working(setup, registry, issuer):
    token = exchange(registry.client, issuer.sign(GITLAB_CLAIMS)).json["token"]
    index = f"/api/v4/projects/{setup['lib'].id}/packages/pypi/simple/"
    assert registry.client.get(index, headers=basic(token)).status_code == 200
    burned = registry.client.post("/_/oidc/burn-token", json={"token": token})
    assert burned.status_code == 202
    assert registry.client.get(index, headers=basic(token)).status_code == 401


def test_publishers_api_for_maintainers(setup, registry, issuer):
    lib = setup["lib"]
    path = f"/api/v4/projects/{lib.id}/trusted_publishers"
    admin = {"PRIVATE-TOKEN": setup["admin_token"]}
    listed = registry.client.get(path, headers=admin).json
    assert [(p["issuer"], p["claims"]["project_path"]) for p in listed] == [
        (issuer.url, "team/lib")
    ]

    developer, maintainer = registry.user("dev"), registry.user("maint")
    registry.member(developer, DEVELOPER, project=lib)
    registry.member(maintainer, MAINTAINER, project=lib)
    as_dev = {"PRIVATE-TOKEN": registry.token(developer)}
    as_maint = {"PRIVATE-TOKEN": registry.token(maintainer)}
    assert registry.client.get(path, headers=as_dev).status_code == 403
    claims = {"project_path": "team/lib", "ref": "release"}
    assert (
        registry.client.post(
            path, json={"issuer": issuer.url, "claims": claims}, headers=as_dev
        ).status_code
        == 403
    )

    bad = [
        ({"issuer": "https://untrusted.example.com", "claims": claims}, "trusted issuer"),
        ({"issuer": issuer.url, "claims": {"ref": "main"}}, "names the repository"),
        ({"issuer": issuer.url, "claims": []}, "claims must be an object"),
        ({"issuer": issuer.url, "claims": {"project_path": 3}}, "non-empty string"),
    ]
    for payload, message in bad:
        answer = registry.client.post(path, json=payload, headers=as_maint)
        assert answer.status_code == 400 and message in answer.json["message"], answer.json

    created = registry.client.post(
        path, json={"issuer": issuer.url + "/", "claims": claims}, headers=as_maint
    )
    assert created.status_code == 201
    assert created.json["issuer"] == issuer.url and created.json["claims"] == claims
    release = issuer.sign(GITLAB_CLAIMS, ref="release")
    assert exchange(registry.client, release).status_code == 200

    other = f"/api/v4/projects/{setup['other'].id}/trusted_publishers"
    gone = registry.client.delete(f"{other}/{created.json['id']}", headers=admin)
    assert gone.status_code == 404  # not that project's publisher
    assert (
        registry.client.delete(f"{path}/{created.json['id']}", headers=as_maint).status_code == 204
    )
    assert refusal(exchange(registry.client, issuer.sign(GITLAB_CLAIMS, ref="release"))) == (
        "invalid-publisher"
    )

    actions = db.session.execute(
        select(AuditEvent.action, AuditEvent.actor, AuditEvent.entity_path).where(
            AuditEvent.target_type == "TrustedPublisher"
        )
    ).all()
    assert [a for a in actions if a[0] != "trusted_publisher_token_minted"] == [
        ("trusted_publisher_added", "root", "team/lib"),
        ("trusted_publisher_added", "root", "team/other"),
        ("trusted_publisher_added", "maint", "team/lib"),
        ("trusted_publisher_removed", "maint", "team/lib"),
    ]


def test_ci_tokens_cannot_manage_publishers(setup, registry, issuer):
    token = exchange(registry.client, issuer.sign(GITLAB_CLAIMS)).json["token"]
    path = f"/api/v4/projects/{setup['lib'].id}/trusted_publishers"
    answer = registry.client.get(path, headers=basic(token))
    assert answer.status_code == 403


def test_project_page_lists_publishers_to_maintainers(setup, registry, app):
    from tests.test_ui import sign_in

    developer, maintainer = registry.user("dev"), registry.user("maint")
    registry.member(developer, DEVELOPER, project=setup["lib"])
    registry.member(maintainer, MAINTAINER, project=setup["lib"])
    page = "/team/lib/-/packages"
    as_maintainer, as_developer = app.test_client(), app.test_client()
    sign_in(as_maintainer, "maint")
    sign_in(as_developer, "dev")
    shown = as_maintainer.get(page).get_data(as_text=True)
    assert "Trusted publishers" in shown
    assert "<code>project_path</code> = <code>team/lib</code>" in shown
    assert "Trusted publishers" not in as_developer.get(page).get_data(as_text=True)
    other = as_maintainer.get("/team/other/-/packages")
    assert other.status_code == 404  # not a member of team/other


def test_an_unreachable_issuer_is_reported(setup, registry, issuer, app):
    from tests.services import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app.config["OIDC_ISSUERS"] = f"{issuer.url} {closed}"
    token = issuer.sign(GITLAB_CLAIMS, iss=closed)
    assert refusal(exchange(registry.client, token)) == "issuer-unreachable"
