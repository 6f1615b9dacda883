"""The real clients against a live ``packyard serve`` on a loopback port.

Two set-ups: the embedded default (SQLite, files on disk, embedded worker), and the
production one (PostgreSQL, Redis broker, ``serve --no-worker`` plus a separate
``packyard worker`` process)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dists import make_sdist, make_wheel
from tests.services import (
    BIN,
    LiveProcess,
    LiveServer,
    packyard_env,
    postgres_database,
    redis_url,
)

pytestmark = pytest.mark.e2e
JSON = "application/vnd.pypi.simple.v1+json"


class Deployment:
    def __init__(self, server: LiveServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        group = server.api("POST", "/groups", data={"name": "Team", "path": "team"}).json()
        project = server.api(
            "POST", "/projects", data={"name": "Lib", "path": "lib", "namespace_id": group["id"]}
        ).json()
        self.project_id = project["id"]
        self.upload_url = f"{server.url}/api/v4/projects/team%2Flib/packages/pypi"
        self.index_path = f"/api/v4/projects/{self.project_id}/packages/pypi/simple/"
        self.token = server.admin_token

    def index_url(self, token: str | None = None) -> str:
        host = self.server.url.removeprefix("http://")
        return f"http://__token__:{token or self.token}@{host}{self.index_path}"

    def page(self, name: str) -> dict:
        response = requests.get(
            f"{self.server.url}{self.index_path}{name}/",
            headers={"Accept": JSON, "PRIVATE-TOKEN": self.token},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def wait_processed(self, name: str, filename: str, timeout: float = 60) -> dict:
        """Wait until the worker has read the file's metadata (it appears in the index)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = {f["filename"]: f for f in self.page(name)["files"]}
            if filename in files and files[filename]["core-metadata"]:
                return files[filename]
            time.sleep(0.2)
        raise AssertionError(f"{filename} was not processed within {timeout}s")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = tmp_path_factory.mktemp("embedded")
    server = LiveServer(data, packyard_env(data, ACCESS_LOG=str(data / "access.log")))
    try:
        yield Deployment(server, data)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = tmp_path_factory.mktemp("production")
    with postgres_database() as database_url:
        env = packyard_env(data, DATABASE_URL=database_url, BROKER_URL=redis_url(db=5))
        subprocess.run([str(BIN / "packyard"), "db", "upgrade"], env=env, check=True)
        worker = LiveProcess(
            [str(BIN / "packyard"), "worker", "--concurrency=2"], env, data / "worker.log"
        )
        server = LiveServer(data, env, worker=False)
        try:
            yield Deployment(server, data)
        finally:
            server.stop()
            worker.stop()


@pytest.fixture(params=["embedded", "production"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return request.getfixturevalue(request.param)


def client_env(tmp: Path) -> dict[str, str]:
    """No user or machine pip/uv configuration: only the index we pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_CACHE_DIR=str(tmp / "uv-cache"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1", NO_COLOR="1")  # fmt: skip
    return env


def run(args: list[str], tmp: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, env=client_env(tmp), capture_output=True, text=True, timeout=180, **kw
    )  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def write(tmp: Path, dist: tuple[str, bytes]) -> Path:
    path = tmp / dist[0]
    path.write_bytes(dist[1])
    return path


def fresh_venv(tmp: Path, name: str, *, seed: bool = False) -> Path:
    args = [str(BIN / "uv"), "venv", "--python", sys.executable, str(tmp / name)]
    run([*args, "--seed"] if seed else args, tmp)
    return tmp / name / "bin" / "python"


def test_twine_with_a_personal_token_then_pip_and_uv_install(deployment, tmp_path):
    wheel = write(tmp_path, make_wheel("Twine-Demo", "1.0", requires_python=">=3.8"))
    sdist = write(tmp_path, make_sdist("Twine-Demo", "1.0", requires_python=">=3.8"))
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", "__token__", "-p", deployment.token,
         str(wheel), str(sdist)], tmp_path)  # fmt: skip
    listed = deployment.wait_processed("twine-demo", wheel.name)
    assert listed["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()

    python = fresh_venv(tmp_path, "pip-venv", seed=True)
    run([str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url",
         deployment.index_url(), "twine-demo==1.0"], tmp_path)  # fmt: skip
    check = run([str(python), "-c", "import twine_demo; print(twine_demo.VERSION)"], tmp_path)
    assert check.stdout.strip() == "1.0"

    uv_python = fresh_venv(tmp_path, "uv-venv")
    run([str(BIN / "uv"), "pip", "install", "--python", str(uv_python), "--index-url",
         deployment.index_url(), "twine-demo==1.0"], tmp_path)  # fmt: skip
    check = run([str(uv_python), "-c", "import twine_demo; print(twine_demo.VERSION)"], tmp_path)
    assert check.stdout.strip() == "1.0"

    again = subprocess.run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", "__token__", "-p",
         deployment.token, str(wheel)],
        env=client_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode != 0
    assert "File already exists" in again.stdout + again.stderr


def test_twine_with_a_deploy_token(deployment, tmp_path):
    created = deployment.server.api(
        "POST",
        f"/projects/{deployment.project_id}/deploy_tokens",
        data={"name": "ci", "scopes[]": ["write_package_registry", "read_package_registry"]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    wheel = write(tmp_path, make_wheel("deploy-demo", "0.1"))
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", body["username"], "-p", body["token"],
         str(wheel)], tmp_path)  # fmt: skip
    deployment.wait_processed("deploy-demo", wheel.name)


def test_uv_publish(deployment, tmp_path):
    wheel = write(tmp_path, make_wheel("uv-demo", "2.0"))
    run([str(BIN / "uv"), "publish", "--publish-url", deployment.upload_url,
         "--username", "__token__", "--password", deployment.token, str(wheel)],
        tmp_path)  # fmt: skip
    deployment.wait_processed("uv-demo", wheel.name)


def test_curl_upload_with_only_content_name_and_version(deployment, tmp_path):
    wheel = write(tmp_path, make_wheel("curl-demo", "3.0"))
    result = run(["curl", "--silent", "--show-error", "--fail-with-body",
                  "--user", f"__token__:{deployment.token}",
                  "-F", f"content=@{wheel}", "-F", "name=curl-demo", "-F", "version=3.0",
                  deployment.upload_url], tmp_path)  # fmt: skip
    assert "201" in result.stdout
    deployment.wait_processed("curl-demo", wheel.name)
    python = fresh_venv(tmp_path, "curl-venv")
    run([str(BIN / "uv"), "pip", "install", "--python", str(python), "--index-url",
         deployment.index_url(), "curl-demo"], tmp_path)  # fmt: skip


def test_pip_download_with_require_hashes(deployment, tmp_path):
    wheel_dist = make_wheel("hashed-demo", "1.5")
    wheel = write(tmp_path, wheel_dist)
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", "__token__", "-p", deployment.token,
         str(wheel)], tmp_path)  # fmt: skip
    digest = hashlib.sha256(wheel_dist[1]).hexdigest()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"hashed-demo==1.5 --hash=sha256:{digest}\n")
    target = tmp_path / "downloads"
    run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
         "--require-hashes", "-r", str(requirements), "-d", str(target),
         "--index-url", deployment.index_url()], tmp_path)  # fmt: skip
    assert (target / wheel.name).read_bytes() == wheel_dist[1]
    requirements.write_text(f"hashed-demo==1.5 --hash=sha256:{'0' * 64}\n")
    refused = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
         "--require-hashes", "-r", str(requirements), "-d", str(tmp_path / "refused"),
         "--index-url", deployment.index_url()],
        env=client_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0 and "HASHES" in refused.stderr.upper()


def test_pip_retries_with_credentials_after_401(deployment, tmp_path):
    host = deployment.server.url.removeprefix("http://")
    anonymous = requests.get(f"{deployment.server.url}{deployment.index_path}", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="Packyard"'
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine {host.split(':')[0]} login __token__ password {deployment.token}\n")
    netrc.chmod(0o600)
    wheel = write(tmp_path, make_wheel("netrc-demo", "1.0"))
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", "__token__", "-p", deployment.token,
         str(wheel)], tmp_path)  # fmt: skip
    env = {**client_env(tmp_path), "NETRC": str(netrc), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "-d",
         str(tmp_path / "dl"), "--index-url", f"{deployment.server.url}{deployment.index_path}",
         "netrc-demo"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_group_index_resolution_fetches_metadata_not_wheels(embedded, tmp_path):
    """PEP 658: the resolver reads candidates' metadata and downloads only what it installs."""
    deployment = embedded
    dists = [
        make_wheel("app-pkg", "1.0", requires_dist=("lib-pkg<2",)),
        make_wheel("app-pkg", "2.0", requires_dist=("lib-pkg>=9",)),  # unsatisfiable
        make_wheel("lib-pkg", "1.0"),
        make_wheel("lib-pkg", "2.0"),
    ]
    paths = [write(tmp_path, dist) for dist in dists]
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", deployment.upload_url, "-u", "__token__", "-p", deployment.token,
         *map(str, paths)], tmp_path)  # fmt: skip
    for path in paths:
        deployment.wait_processed(path.name.split("-")[0].replace("_", "-"), path.name)
    host = deployment.server.url.removeprefix("http://")
    group_index = (
        f"http://__token__:{deployment.token}@{host}/api/v4/groups/team/-/packages/pypi/simple/"
    )
    log = deployment.tmp / "access.log"
    for installer in ("pip", "uv"):
        offset = log.stat().st_size
        if installer == "pip":
            python = fresh_venv(tmp_path, "pep658-pip", seed=True)
            run([str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url", group_index,
                 "app-pkg"], tmp_path)  # fmt: skip
        else:
            python = fresh_venv(tmp_path, "pep658-uv")
            run([str(BIN / "uv"), "pip", "install", "--no-cache", "--python", str(python),
                 "--index-url", group_index, "app-pkg"], tmp_path)  # fmt: skip
        check = run(
            [str(python), "-c", "import app_pkg, lib_pkg; print(app_pkg.VERSION, lib_pkg.VERSION)"],
            tmp_path,
        )
        assert check.stdout.split() == ["1.0", "1.0"]
        with log.open() as fh:
            fh.seek(offset)
            requests_seen = [line for line in fh if "/files/" in line]
        wheels = [line for line in requests_seen if ".whl " in line or ".whl HTTP" in line]
        metadata = [line for line in requests_seen if ".whl.metadata" in line]
        assert any("app_pkg-2.0-py3-none-any.whl.metadata" in line for line in metadata), installer
        assert not any("app_pkg-2.0-py3-none-any.whl " in line for line in wheels), installer
        assert not any("lib_pkg-2.0" in line for line in wheels), installer
        assert sum("app_pkg-1.0-py3-none-any.whl " in line for line in wheels) == 1, installer
