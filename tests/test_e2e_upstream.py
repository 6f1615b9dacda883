"""The pull-through cache with real pip and uv, against a live ``packyard serve`` (two
uWSGI processes and the embedded worker) and a local upstream index in a child process
(tests/upstream.py) that logs every request, so the tests count what reached it."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.dists import make_sdist, make_wheel
from tests.services import BIN, LiveServer, free_port, packyard_env
from tests.upstream import LiveUpstream, UpstreamTree

pytestmark = pytest.mark.e2e
JSON = "application/vnd.pypi.simple.v1+json"
TTL = 2


class Mirror:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tree = UpstreamTree(tmp / "upstream")
        self._publish()
        self.upstream = LiveUpstream(self.tree.root, free_port())
        data = tmp / "packyard"
        data.mkdir()
        env = packyard_env(
            data, UPSTREAM_URL=self.upstream.url, UPSTREAM_TTL=str(TTL), UPSTREAM_TIMEOUT="1"
        )  # the instance keeps the default mode, redirect: the group says cache
        self.server = LiveServer(data, env)
        self.token = self.server.admin_token
        team = self.server.api("POST", "/groups", data={"path": "team"}).json()
        self.group_id = team["id"]
        self.settings(upstream_mode="cache")
        lib = self.server.api("POST", "/projects", data={"path": "lib", "namespace_id": team["id"]})
        self.project_id = lib.json()["id"]
        self.upload(make_wheel("acme-internal", "1.0"))

    def _publish(self) -> None:
        tree = self.tree
        tree.add("pub-app", make_wheel("pub-app", "1.0", requires_dist=("pub-lib>=1",)))
        tree.add("pub-lib", make_wheel("pub-lib", "1.0", requires_dist=("pub-base",)))
        tree.add("pub-lib", make_sdist("pub-lib", "1.0"))
        tree.add("pub-base", make_wheel("pub-base", "1.0", requires_python=">=3.8"),
                 requires_python=">=3.8")  # fmt: skip
        tree.add("pub-base", make_wheel("pub-base", "0.5"), yanked="too old")
        tree.add("acme-internal", make_wheel("acme-internal", "99.0"))
        tree.add("acme-gone", make_wheel("acme-gone", "99.0"))
        tree.add("acme-tools", make_wheel("acme-tools", "1.0"))
        tree.add("other-thing", make_wheel("other-thing", "1.0"))
        tree.add("pub-tampered", make_wheel("pub-tampered", "1.0"))
        tree.add("slow-big", make_wheel("slow-big", "1.0", payload=os.urandom(1024 * 1024)))
        tree.add("slow-meta", make_wheel("slow-meta", "1.0"))
        tree.add("pub-moving", make_wheel("pub-moving", "1.0"))

    def settings(self, **values: object) -> dict:
        response = self.server.api("PUT", f"/groups/{self.group_id}", json=values)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, dist: tuple[str, bytes]) -> None:
        filename, content = dist
        name, version = filename.split("-")[:2]
        response = requests.post(
            f"{self.server.url}/api/v4/projects/{self.project_id}/packages/pypi",
            files={"content": (filename, io.BytesIO(content))},
            data={"name": name, "version": version},
            auth=("__token__", self.token),
            timeout=30,
        )
        assert response.status_code == 201, response.text

    def index(self, path: str = "groups/team/-") -> str:
        host = self.server.url.removeprefix("http://")
        return f"http://__token__:{self.token}@{host}/api/v4/{path}/packages/pypi/simple/"

    def page(self, name: str) -> requests.Response:
        return requests.get(
            f"{self.server.url}/api/v4/groups/team/-/packages/pypi/simple/{name}/",
            headers={"Accept": JSON, "PRIVATE-TOKEN": self.token},
            timeout=30,
        )

    def upstream_asked(self, fragment: str) -> list[str]:
        return [line for line in self.upstream.requests() if fragment in line]

    def restart_upstream(self) -> None:
        self.upstream = LiveUpstream(self.tree.root, self.upstream.port)

    def stop(self) -> None:
        self.server.stop()
        self.upstream.stop()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    setup = Mirror(tmp_path_factory.mktemp("mirror"))
    try:
        yield setup
    finally:
        setup.stop()


def client_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1",
               UV_CACHE_DIR=str(tmp / "uv-cache"), NO_COLOR="1", UV_HTTP_RETRIES="0")  # fmt: skip
    return env


def install(tool: str, tmp: Path, index: str, *names: str, check: bool = True):
    """A fresh venv and a fresh client cache each time: everything comes from the index."""
    venv = tmp / f"venv-{tool}-{time.monotonic_ns()}"
    seed = ["--seed"] if tool == "pip" else []
    subprocess.run([str(BIN / "uv"), "venv", *seed, "--python", sys.executable, str(venv)],
                   env=client_env(tmp), check=True, capture_output=True)  # fmt: skip
    python = venv / "bin" / "python"
    if tool == "pip":
        args = [str(python), "-m", "pip", "install", "--no-cache-dir", "--retries", "0",
                "--timeout", "20", "--index-url", index, *names]  # fmt: skip
    else:
        args = [str(BIN / "uv"), "pip", "install", "--no-cache", "--python", str(python),
                "--index-url", index, *names]  # fmt: skip
    result = subprocess.run(args, env=client_env(tmp), capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, f"{tool} failed:\n{result.stdout}\n{result.stderr}"
    return result, python


def imported(python: Path, *modules: str) -> list[str]:
    code = "; ".join(f"import {m}; print({m}.VERSION)" for m in modules)
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()  # fmt: skip


def test_pip_and_uv_install_a_dependency_chain_through_a_cache_mode_group(mirror, tmp_path):
    for tool in ("pip", "uv"):
        _result, python = install(tool, tmp_path, mirror.index(), "pub-app")
        assert imported(python, "pub_app", "pub_lib", "pub_base") == ["1.0", "1.0", "1.0"]
    # Each file came from the upstream once; the second installer got it from the cache.
    for filename in ("pub_app-1.0-py3-none-any.whl", "pub_lib-1.0-py3-none-any.whl",
                     "pub_base-1.0-py3-none-any.whl"):  # fmt: skip
        assert len(mirror.upstream_asked(f"GET /files/{filename} ")) <= 1, filename
    assert not mirror.upstream_asked("pub_base-0.5")  # yanked: never chosen
    listed = mirror.server.api("GET", "/upstream/files?name=pub-app").json()
    assert listed[0]["stored"] and listed[0]["requested_by"] == "team"


def test_the_same_installs_work_with_the_upstream_down(mirror, tmp_path):
    install("pip", tmp_path, mirror.index(), "pub-app")  # everything fetched once
    mirror.upstream.stop()
    try:
        time.sleep(TTL)  # and every kept page is stale by now: served, refreshed in vain
        for tool in ("pip", "uv"):
            started = time.monotonic()
            _result, python = install(tool, tmp_path, mirror.index(), "pub-app")
            assert imported(python, "pub_app", "pub_lib", "pub_base") == ["1.0", "1.0", "1.0"]
            assert time.monotonic() - started < 60
        never, _ = install("pip", tmp_path, mirror.index(), "other-thing", check=False)
        assert never.returncode != 0  # never fetched: nothing to serve
        started = time.monotonic()
        assert mirror.page("other-thing").status_code == 502
        assert time.monotonic() - started < 3  # refused at once (a dead host: the timeout)
    finally:
        mirror.restart_upstream()


def test_a_tampered_upstream_file_is_refused_and_nothing_is_stored(mirror, tmp_path):
    filename = "pub_tampered-1.0-py3-none-any.whl"
    original = next(d for d in mirror.tree.projects["pub-tampered"] if d.filename == filename)
    mirror.tree.tamper(filename, bytes(b ^ 0xFF for b in original.content))
    for tool in ("pip", "uv"):
        result, _ = install(tool, tmp_path, mirror.index(), "pub-tampered", check=False)
        assert result.returncode != 0, tool
    (row,) = mirror.server.api("GET", "/upstream/files?name=pub-tampered").json()
    assert not row["stored"] and row["failures"] >= 2 and "verification" in row["last_error"]
    stored = mirror.tmp / "packyard" / "files" / "upstream"
    assert not [p for p in stored.rglob("*") if "tampered" in p.name]


def test_the_attack_a_name_the_instance_holds_never_comes_from_the_upstream(mirror, tmp_path):
    """The upstream publishes acme-internal 99.0; team/lib holds 1.0."""
    for index in (mirror.index(), mirror.index(f"projects/{mirror.project_id}")):
        for tool in ("pip", "uv"):
            _result, python = install(tool, tmp_path, index, "acme-internal")
            assert imported(python, "acme_internal") == ["1.0"]
        refused, _ = install("pip", tmp_path, index, "acme-internal==99.0", check=False)
        assert refused.returncode != 0
    page = mirror.page("acme-internal").json()
    assert [f["filename"] for f in page["files"]] == ["acme_internal-1.0-py3-none-any.whl"]
    assert not mirror.upstream_asked("acme-internal") and not mirror.upstream_asked("acme_internal")


def test_the_attack_on_a_name_once_held_and_deleted(mirror, tmp_path):
    mirror.upload(make_wheel("acme-gone", "1.0"))
    packages = mirror.server.api(
        "GET", f"/projects/{mirror.project_id}/packages?package_name=acme-gone"
    )
    for package in packages.json():
        mirror.server.api("DELETE", f"/projects/{mirror.project_id}/packages/{package['id']}")
    result, _ = install("pip", tmp_path, mirror.index(), "acme-gone", check=False)
    assert result.returncode != 0
    assert not mirror.upstream_asked("acme-gone") and not mirror.upstream_asked("acme_gone")


def test_deny_and_allow_lists(mirror, tmp_path):
    mirror.settings(upstream_deny=["acme-*"])
    try:
        denied, _ = install("uv", tmp_path, mirror.index(), "acme-tools", check=False)
        assert denied.returncode != 0 and not mirror.upstream_asked("acme-tools")
        mirror.settings(upstream_deny=None, upstream_allow="pub-*")
        outside, _ = install("pip", tmp_path, mirror.index(), "other-thing", check=False)
        assert outside.returncode != 0 and not mirror.upstream_asked("other-thing")
        _result, python = install("uv", tmp_path, mirror.index(), "pub-app")
        assert imported(python, "pub_app") == ["1.0"]
    finally:
        mirror.settings(upstream_deny=None, upstream_allow=None)


def only_file(mirror: Mirror, name: str) -> tuple[dict, str]:
    """The one file on the name's group-index page, and its absolute URL."""
    page = mirror.page(name)
    assert page.status_code == 200
    (entry,) = page.json()["files"]
    return entry, urljoin(page.url, entry["url"])


def twenty_at_once(mirror: Mirror, url: str) -> list[str]:
    """GET the URL from twenty threads at once; the sha256 of each answer."""

    def get(_: int) -> str:
        response = requests.get(url, headers={"PRIVATE-TOKEN": mirror.token}, timeout=120)
        assert response.status_code == 200, response.text
        return hashlib.sha256(response.content).hexdigest()

    with ThreadPoolExecutor(20) as pool:
        return list(pool.map(get, range(20)))


def test_twenty_concurrent_first_downloads_make_one_upstream_request(mirror):
    entry, url = only_file(mirror, "slow-big")
    assert twenty_at_once(mirror, url) == [entry["hashes"]["sha256"]] * 20
    assert len(mirror.upstream_asked(f"GET /files/{entry['filename']}")) == 1
    deadline = time.monotonic() + 10  # hits are written every second, by each web process
    while (row := mirror.server.api("GET", "/upstream/files?name=slow-big").json()[0])[
        "hit_count"
    ] < 19 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row["stored"] and row["hit_count"] == 19


def test_twenty_concurrent_first_metadata_requests_make_one_upstream_request(mirror):
    entry, url = only_file(mirror, "slow-meta")
    digests = twenty_at_once(mirror, url + ".metadata")
    assert digests == [entry["core-metadata"]["sha256"]] * 20
    assert len(mirror.upstream_asked(f"GET /files/{entry['filename']}.metadata")) == 1


def test_a_new_upstream_version_is_picked_up_after_the_ttl(mirror, tmp_path):
    assert mirror.page("pub-moving").json()["versions"] == ["1.0"]
    mirror.tree.add("pub-moving", make_wheel("pub-moving", "2.0"))
    deadline = time.monotonic() + TTL + 20
    while "2.0" not in mirror.page("pub-moving").json()["versions"]:
        assert time.monotonic() < deadline, "the refreshed page never showed 2.0"
        time.sleep(0.3)
    _result, python = install("uv", tmp_path, mirror.index(), "pub-moving")
    assert imported(python, "pub_moving") == ["2.0"]
