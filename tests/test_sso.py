"""Single sign-on in headless Chromium against a real OpenID provider process
(``oidc-provider-mock``): the authorization-code flow with PKCE, first-sign-in account
creation (a unique username, no silent merge by email), the group claim mapped to
memberships at each sign-in (audited), a forged callback refused, and sign-out."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.services import LiveProcess, LiveServer, free_port, packyard_env
from tests.test_browser import CHROMIUM_ARGS, PASSWORD, TIMEOUT, browser  # noqa: F401

pytestmark = pytest.mark.e2e
SUBJECT = "0f3a-alice"


class Provider:
    """oidc-provider-mock on a loopback port, with one predefined user."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        claims = {"sub": SUBJECT, "preferred_username": "alice", "email": "dana@example.com",
                  "groups": ["eng"]}  # fmt: skip
        self.process = LiveProcess(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(self.port),
             "--require-nonce", "true", "--user-claims", json.dumps(claims)],
            {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}, data / "provider.log",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.process.stop()
        raise RuntimeError(f"the OpenID provider did not start:\n{self.process.output()}")

    def set_claims(self, **claims: object) -> None:
        base = {"preferred_username": "alice", "email": "dana@example.com"}
        answer = requests.put(f"{self.url}/users/{SUBJECT}", json={**base, **claims}, timeout=5)
        assert answer.status_code == 204, answer.text


class Site:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.provider = Provider(data)
        env = packyard_env(
            data,
            OIDC_SIGNIN_ISSUER=self.provider.url,
            OIDC_SIGNIN_CLIENT_ID="packyard",
            OIDC_SIGNIN_CLIENT_SECRET="s3cret",
            OIDC_SIGNIN_LABEL="Sign in with Example ID",
            OIDC_SIGNIN_GROUPS_CLAIM="groups",
            OIDC_SIGNIN_GROUP_MAP=json.dumps({"eng": "acme:developer", "leads": "acme:maintainer"}),
        )
        self.server = LiveServer(data, env, worker=False)
        self.url = self.server.url
        self.group_id = self.api("POST", "/groups", data={"name": "Acme", "path": "acme"})["id"]
        # Taken names: the new account gets "alice-2", and dana (same email) stays dana's.
        self.api("POST", "/users", data={"username": "alice", "password": PASSWORD})
        self.api("POST", "/users", data={"username": "dana", "email": "dana@example.com",
                                         "password": PASSWORD})  # fmt: skip

    def api(self, method: str, path: str, **kwargs: object) -> object:
        answer = self.server.api(method, path, **kwargs)
        assert answer.ok, answer.text
        return answer.json()

    def members(self) -> dict[str, int]:
        """Roles in the acme group, read from the server's database."""
        with sqlite3.connect(self.data / "packyard.db") as conn:
            rows = conn.execute(
                "SELECT u.username, m.access_level FROM memberships m"
                " JOIN users u ON u.id = m.user_id WHERE m.group_id = ?", (self.group_id,)
            ).fetchall()  # fmt: skip
        return dict(rows)

    def user_emails(self) -> dict[str, str | None]:
        with sqlite3.connect(self.data / "packyard.db") as conn:
            return dict(conn.execute("SELECT username, email FROM users").fetchall())

    def stop(self) -> None:
        self.server.stop()
        self.provider.process.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    live = Site(tmp_path_factory.mktemp("sso"))
    try:
        yield live
    finally:
        live.stop()


def sso_sign_in(page, site: Site) -> None:
    page.goto(f"{site.url}/users/sign_in?next=/-/profile/personal_access_tokens")
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url(f"{site.provider.url}/**")
    # PKCE, state and nonce go with every request (the callback checks them).
    for parameter in ("code_challenge_method=S256", "code_challenge=", "state=", "nonce="):
        assert parameter in page.url
    page.get_by_role("button", name=SUBJECT).click()
    page.wait_for_url(f"{site.url}/-/profile/personal_access_tokens")


def test_first_sign_in_creates_a_linked_user_with_mapped_groups(browser, site):  # noqa: F811
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    sso_sign_in(page, site)
    assert "alice-2" in page.locator("header").inner_text()
    emails = site.user_emails()
    # Not merged into dana, whose address it is; emails are unique, so the new account has none.
    assert (emails["alice-2"], emails["dana"]) == (None, "dana@example.com")
    assert site.members().get("alice-2") == 30  # "eng" -> developer

    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{site.url}/-/profile/personal_access_tokens")
    assert "/users/sign_in" in page.url  # the session ended

    site.provider.set_claims(groups=["eng", "leads"])
    sso_sign_in(page, site)  # the same account: linked by issuer and sub, not by name
    assert "alice-2" in page.locator("header").inner_text()
    assert site.members().get("alice-2") == 40  # "leads" -> maintainer, the higher
    site.provider.set_claims(groups=[])
    page.get_by_role("button", name="Sign out").click()
    sso_sign_in(page, site)
    assert "alice-2" not in site.members()

    events = site.api("GET", "/audit_events?entity_type=Group&per_page=100")
    sso_events = [e["event_name"] for e in events  # type: ignore[union-attr]
                  if e["details"]["author_name"] == "single sign-on"]  # fmt: skip
    assert sorted(sso_events) == ["member_added", "member_removed", "member_updated"]
    context.close()


def test_forged_callback_is_refused(browser, site):  # noqa: F811
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(f"{site.url}/users/auth/oidc/callback?code=stolen&state=forged")
    page.wait_for_url(f"{site.url}/users/sign_in")
    assert "Single sign-on failed" in page.content()
    page.goto(f"{site.url}/-/profile/personal_access_tokens")
    assert "/users/sign_in" in page.url
    context.close()


def test_password_form_can_be_turned_off(tmp_path):
    from app import create_app

    app = create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False,
                      "OIDC_SIGNIN_ISSUER": "https://id.example.com",
                      "OIDC_SIGNIN_CLIENT_ID": "packyard", "OIDC_SIGNIN_ONLY": "true",
                      "WTF_CSRF_ENABLED": False})  # fmt: skip
    with app.app_context():
        from app.migrations import upgrade

        upgrade()
    client = app.test_client()
    page = client.get("/users/sign_in?next=/x").get_data(as_text=True)
    assert 'href="/users/auth/oidc?next=/x"' in page
    assert 'name="password"' not in page
    refused = client.post("/users/sign_in", data={"username": "a", "password": "b"})
    assert refused.status_code == 403
    assert "Password sign-in is turned off" in refused.get_data(as_text=True)
