"""Issue 18 with the real clients against a live ``packyard serve`` (embedded default: SQLite,
files on disk, embedded worker, two web processes): twine meets the Packages switch, the
duplicate policy and protection rules; pip installs what a replacement published while a
concurrent reader checks that no page ever links a hash to other bytes."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dists import make_wheel
from tests.services import BIN, LiveServer, packyard_env
from tests.test_e2e_clients import (
    JSON,
    Deployment,
    client_env,
    fresh_venv,
    production,  # noqa: F401  (a fixture)
    run,
    write,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = tmp_path_factory.mktemp("package-settings")
    live = LiveServer(data, packyard_env(data))
    try:
        yield Deployment(live, data)
    finally:
        live.stop()


def new_project(deployment: Deployment, path: str, **settings: object) -> tuple[int, str]:
    """A project in the deployment's group ``team``; returns its id and upload URL."""
    server = deployment.server
    group = server.api("GET", "/groups/team").json()
    created = server.api("POST", "/projects", data={"path": path, "namespace_id": group["id"]})
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    if settings:
        changed = server.api("PUT", f"/projects/{project_id}", json=settings)
        assert changed.status_code == 200, changed.text
    return project_id, f"{server.url}/api/v4/projects/{project_id}/packages/pypi"


def twine(url: str, files: list[Path], tmp: Path, password: str, username: str = "__token__"):
    """twine upload; the completed process (the caller checks its outcome)."""
    return subprocess.run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", url, "-u", username, "-p", password, *map(str, files)],
        env=client_env(tmp), capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def index_url(deployment: Deployment, path: str) -> str:
    host = deployment.server.url.removeprefix("http://")
    return f"http://__token__:{deployment.token}@{host}{path}"


def group_page(deployment: Deployment, name: str) -> requests.Response:
    return requests.get(
        f"{deployment.server.url}/api/v4/groups/team/-/packages/pypi/simple/{name}/",
        headers={"Accept": JSON, "PRIVATE-TOKEN": deployment.token},
        timeout=10,
    )


def test_a_disabled_project_refuses_twine_and_leaves_the_group_index(server, tmp_path):
    project_id, upload_url = new_project(server, "switched")
    first = write(tmp_path, make_wheel("switched-pkg", "1.0"))
    assert twine(upload_url, [first], tmp_path, server.token).returncode == 0
    assert group_page(server, "switched-pkg").status_code == 200

    server.server.api("PUT", f"/projects/{project_id}", json={"packages_enabled": False})
    second = write(tmp_path, make_wheel("switched-pkg", "2.0"))
    refused = twine(upload_url, [second], tmp_path, server.token)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "403" in output and "packages are disabled" in output, output
    assert group_page(server, "switched-pkg").status_code == 404  # at once: no stale cache
    root = requests.get(
        f"{server.server.url}/api/v4/groups/team/-/packages/pypi/simple/",
        headers={"PRIVATE-TOKEN": server.token},
        timeout=10,
    )
    assert "switched-pkg" not in root.text
    project_page = f"{server.server.url}/api/v4/projects/{project_id}/packages/pypi/simple/"
    assert requests.get(project_page, headers={"PRIVATE-TOKEN": server.token}).status_code == 404

    server.server.api("PUT", f"/projects/{project_id}", json={"packages_enabled": True})
    assert group_page(server, "switched-pkg").status_code == 200
    python = fresh_venv(tmp_path, "venv", seed=True)
    group_index = index_url(server, "/api/v4/groups/team/-/packages/pypi/simple/")
    run([str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url", group_index,
         "switched-pkg==1.0"], tmp_path)  # fmt: skip


class Reader(threading.Thread):
    """Fetches the page and then the file it links, in a loop, and records every answer
    whose bytes do not hash to what the page said."""

    def __init__(self, page_url: str, files_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.page_url, self.files_url, self.token = page_url, files_url, token
        self.stop = threading.Event()
        self.mismatches: list[str] = []
        self.seen: set[str] = set()
        self.rounds = 0

    def run(self) -> None:
        session = requests.Session()
        session.headers["PRIVATE-TOKEN"] = self.token
        while not self.stop.is_set():
            page = session.get(self.page_url, headers={"Accept": JSON}, timeout=30)
            if page.status_code != 200:
                self.mismatches.append(f"page {page.status_code}")
                continue
            listed = page.json()["files"][0]
            sha = listed["hashes"]["sha256"]
            got = session.get(f"{self.files_url}{sha}/{listed['filename']}", timeout=30)
            self.rounds += 1
            if got.status_code == 404:  # replaced between the two requests: never wrong bytes
                continue
            if got.status_code != 200 or hashlib.sha256(got.content).hexdigest() != sha:
                self.mismatches.append(f"{got.status_code} for {sha}")
            self.seen.add(sha)


@pytest.mark.parametrize("setup", ["server", "production"])
def test_an_allowed_reupload_replaces_the_file_for_every_reader_at_once(request, setup, tmp_path):
    """Also with PostgreSQL, and a separate ``packyard worker`` removing the old blobs."""
    server = request.getfixturevalue(setup)
    project_id, upload_url = new_project(server, "rebuilt", pypi_duplicates_allowed=True)
    builds = [make_wheel("rebuilt-pkg", "1.0", payload=f"build {n}".encode()) for n in range(4)]
    path = tmp_path / builds[0][0]
    path.write_bytes(builds[0][1])
    assert twine(upload_url, [path], tmp_path, server.token).returncode == 0
    base = f"{server.server.url}/api/v4/projects/{project_id}/packages/pypi"
    reader = Reader(f"{base}/simple/rebuilt-pkg/", f"{base}/files/", server.token)
    reader.start()
    try:
        for _, content in builds[1:]:
            path.write_bytes(content)
            uploaded = twine(upload_url, [path], tmp_path, server.token)
            assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    finally:
        reader.stop.set()
        reader.join(timeout=60)
    assert reader.mismatches == []
    assert reader.rounds > 3 and len(reader.seen) >= 2  # it did read across replacements

    newest = hashlib.sha256(builds[-1][1]).hexdigest()
    page = requests.get(f"{base}/simple/rebuilt-pkg/", headers={"Accept": JSON,
                        "PRIVATE-TOKEN": server.token}, timeout=10).json()  # fmt: skip
    assert [f["hashes"]["sha256"] for f in page["files"]] == [newest]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"rebuilt-pkg==1.0 --hash=sha256:{newest}\n")
    python = fresh_venv(tmp_path, "venv", seed=True)
    project_index = index_url(server, f"/api/v4/projects/{project_id}/packages/pypi/simple/")
    run([str(python), "-m", "pip", "install", "--no-cache-dir", "--require-hashes", "-r",
         str(requirements), "--index-url", project_index], tmp_path)  # fmt: skip
    installed = run([str(python), "-c", "import importlib.resources as r; "
                     "print(r.files('rebuilt_pkg').joinpath('payload.bin').read_text())"],
                    tmp_path)  # fmt: skip
    assert installed.stdout.strip() == "build 3"
    events = server.server.api("GET", f"/projects/{project_id}/audit_events").json()
    replaced = [e["details"].get("replaced_sha256") for e in events
                if e["event_name"] == "package_file_uploaded"]  # fmt: skip
    olds = [hashlib.sha256(content).hexdigest() for _, content in builds[:-1]]
    assert replaced == [*reversed(olds), None]  # newest first; the first upload replaced none


def test_refused_duplicates_with_an_exception_regex_allow_only_dev_versions(server, tmp_path):
    _, upload_url = new_project(server, "devbuilds", pypi_duplicates_allowed=False,
                                pypi_duplicate_exception_regex=r"\.dev\d+$")  # fmt: skip
    outcomes = {}
    for version in ("1.0", "1.1.dev1"):
        path = tmp_path / make_wheel("dev-builds", version)[0]
        path.write_bytes(make_wheel("dev-builds", version)[1])
        assert twine(upload_url, [path], tmp_path, server.token).returncode == 0
        path.write_bytes(make_wheel("dev-builds", version, payload=b"rebuilt")[1])
        again = twine(upload_url, [path], tmp_path, server.token)
        outcomes[version] = (again.returncode, "File already exists" in again.stdout + again.stderr)
    assert outcomes == {"1.0": (1, True), "1.1.dev1": (0, False)}


def test_a_protected_name_refuses_a_developer_and_a_deploy_token_not_a_maintainer(server, tmp_path):
    api = server.server.api
    project_id, upload_url = new_project(server, "guarded")
    tokens = {}
    for username, level in (("dev-e2e", 30), ("maint-e2e", 40)):
        user = api("POST", "/users", data={"username": username, "email": f"{username}@x.org",
                                           "password": "a-long-password"}).json()  # fmt: skip
        api("POST", f"/projects/{project_id}/members", data={"user_id": user["id"],
                                                             "access_level": level})  # fmt: skip
        token = api("POST", f"/users/{user['id']}/personal_access_tokens",
                    data={"name": "t", "scopes[]": ["api"]}).json()  # fmt: skip
        tokens[username] = token["token"]
    rule = api("POST", f"/projects/{project_id}/packages/protection/rules",
               json={"package_name_pattern": "acme-*", "package_type": "pypi",
                     "minimum_access_level_for_push": "maintainer"})  # fmt: skip
    assert rule.status_code == 201, rule.text
    wheel = write(tmp_path, make_wheel("acme-core", "1.0"))

    refused = twine(upload_url, [wheel], tmp_path, tokens["dev-e2e"])
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "403" in output, output
    assert f"protection rule {rule.json()['id']}" in output
    deploy = api("POST", f"/projects/{project_id}/deploy_tokens",
                 data={"name": "ci", "scopes[]": ["write_package_registry"]}).json()  # fmt: skip
    by_deploy = twine(upload_url, [wheel], tmp_path, deploy["token"], deploy["username"])
    assert by_deploy.returncode != 0 and "Package protected" in by_deploy.stdout + by_deploy.stderr
    free = write(tmp_path, make_wheel("free-pkg", "1.0"))
    assert twine(upload_url, [free], tmp_path, deploy["token"], deploy["username"]).returncode == 0
    accepted = twine(upload_url, [wheel], tmp_path, tokens["maint-e2e"])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
