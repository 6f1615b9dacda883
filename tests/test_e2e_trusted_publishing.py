"""Trusted publishing with the real clients against a live ``packyard serve``: a GitLab
CI-shaped token exchanged with curl and used by twine, and ``uv publish
--trusted-publishing always`` running the whole GitHub Actions flow against the local
issuer (uv asks for the audience and the token over HTTPS, hence the TLS front)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dists import make_wheel
from tests.oidc_issuer import GITHUB_CLAIMS, GITLAB_CLAIMS, LocalIssuer
from tests.services import BIN, LiveServer, packyard_env
from tests.test_e2e_clients import client_env, run, write
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.e2e
JSON = "application/vnd.pypi.simple.v1+json"


class Site:
    def __init__(self, server: LiveServer, issuer: LocalIssuer, tmp: Path) -> None:
        self.server, self.issuer = server, issuer
        self.proxy = TlsProxy(server.port, tmp)
        group = server.api("POST", "/groups", data={"name": "Team", "path": "team"}).json()
        self.projects = {}
        for path in ("lib", "other"):
            project = server.api(
                "POST", "/projects", data={"name": path, "path": path, "namespace_id": group["id"]}
            ).json()
            self.projects[path] = project["id"]
        self.publish(
            "lib", {k: v for k, v in GITLAB_CLAIMS.items() if k in ("project_path", "ref")}
        )
        self.publish("lib", {k: v for k, v in GITHUB_CLAIMS.items() if k != "sub"})
        self.publish("other", {"project_path": "team/other"})

    def publish(self, project: str, claims: dict[str, str]) -> None:
        answer = self.server.api(
            "POST",
            f"/projects/{self.projects[project]}/trusted_publishers",
            json={"issuer": self.issuer.url, "claims": claims},
        )
        assert answer.status_code == 201, answer.text

    def upload_url(self, project: str, base: str | None = None) -> str:
        return f"{base or self.server.url}/api/v4/projects/team%2F{project}/packages/pypi"

    def files(self, project: str, name: str) -> list[str]:
        response = requests.get(
            f"{self.server.url}/api/v4/projects/{self.projects[project]}/packages/pypi/simple/{name}/",
            headers={"Accept": JSON, "PRIVATE-TOKEN": self.server.admin_token},
            timeout=10,
        )
        return [f["filename"] for f in response.json()["files"]] if response.ok else []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("trusted-publishing")
    issuer = LocalIssuer()
    server = LiveServer(data, packyard_env(data, OIDC_ISSUERS=issuer.url), worker=False)
    try:
        yield Site(server, issuer, data)
    finally:
        server.stop()
        issuer.stop()


def twine(url: str, token: str, wheel: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", url, "-u", "__token__", "-p", token, str(wheel)],
        env=client_env(tmp), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_gitlab_token_exchanged_with_curl_then_twine_uploads(site, tmp_path):
    audience = json.loads(
        run(["curl", "-sSf", f"{site.server.url}/_/oidc/audience"], tmp_path).stdout
    )
    assert audience == {"audience": "packyard"}
    id_token = site.issuer.sign(GITLAB_CLAIMS, aud=audience["audience"])
    minted = run(
        ["curl", "-sSf", "-X", "POST", "-H", "Content-Type: application/json",
         "--data", json.dumps({"token": id_token}), f"{site.server.url}/_/oidc/mint-token"],
        tmp_path,
    )  # fmt: skip
    token = json.loads(minted.stdout)["token"]

    wheel = write(tmp_path, make_wheel("ci-demo", "1.0"))
    uploaded = twine(site.upload_url("lib"), token, wheel, tmp_path)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert wheel.name in site.files("lib", "ci-demo")

    elsewhere = twine(site.upload_url("other"), token, wheel, tmp_path)
    assert elsewhere.returncode != 0
    assert "404" in elsewhere.stdout + elsewhere.stderr
    assert site.files("other", "ci-demo") == []

    replayed = requests.post(
        f"{site.server.url}/_/oidc/mint-token", json={"token": id_token}, timeout=10
    )
    assert replayed.status_code == 422
    assert replayed.json()["errors"][0]["code"] == "replayed-token"


def test_uv_publish_with_trusted_publishing_from_github_actions(site, tmp_path):
    wheel = write(tmp_path, make_wheel("actions-demo", "2.0"))
    env = client_env(tmp_path)
    env.update(
        GITHUB_ACTIONS="true",
        ACTIONS_ID_TOKEN_REQUEST_URL=site.issuer.actions_request_url,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN=site.issuer.request_token,
        SSL_CERT_FILE=str(site.proxy.cert),
    )
    published = subprocess.run(
        [str(BIN / "uv"), "publish", "--trusted-publishing", "always",
         "--publish-url", site.upload_url("lib", site.proxy.url), str(wheel)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    assert wheel.name in site.files("lib", "actions-demo")

    # A workflow of another repository matches no publisher: uv reports the refusal.
    site.issuer.actions_claims = {**GITHUB_CLAIMS, "repository": "octo/fork"}
    other = write(tmp_path, make_wheel("actions-demo", "2.1"))
    refused = subprocess.run(
        [str(BIN / "uv"), "publish", "--trusted-publishing", "always",
         "--publish-url", site.upload_url("lib", site.proxy.url), str(other)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    site.issuer.actions_claims = dict(GITHUB_CLAIMS)
    assert refused.returncode != 0
    assert "invalid-publisher" in refused.stderr
    assert other.name not in site.files("lib", "actions-demo")
