"""Several hosts, no shared disk: nginx round-robin in front of two ``packyard serve
--no-worker`` processes and two ``packyard worker`` processes, each with an empty data
directory of its own, sharing only PostgreSQL, a private Redis and an S3 bucket."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.dists import make_sdist, make_wheel
from tests.s3server import S3Server, credentials_env
from tests.services import (
    BIN,
    LiveProcess,
    LiveServer,
    free_port,
    packyard_env,
    postgres_database,
    unavailable,
)
from tests.test_reliability import PrivateRedis

pytestmark = pytest.mark.e2e
JSON = "application/vnd.pypi.simple.v1+json"
PROJECT_FILES = "/api/v4/projects/team%2Flib/packages/pypi"
GROUP_INDEX = "/api/v4/groups/team/-/packages/pypi/simple"


class Proxy:
    """Debian's nginx, round-robin over the web processes, streaming request bodies."""

    def __init__(self, workdir: Path, backends: list[str]) -> None:
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
        if binary is None:
            unavailable("nginx is not installed (make test installs it: apt-get install nginx)")
        workdir.mkdir()
        (workdir / "temp").mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "access.log"
        servers = "".join(f"    server {b.removeprefix('http://')};\n" for b in backends)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {workdir}/nginx.pid;\n"
            f"error_log {workdir}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            "http {\n"
            f"  client_body_temp_path {workdir}/temp;\n  proxy_temp_path {workdir}/temp;\n"
            f"  fastcgi_temp_path {workdir}/temp;\n  uwsgi_temp_path {workdir}/temp;\n"
            f"  scgi_temp_path {workdir}/temp;\n"
            "  log_format upstream '$request_method $uri $status $upstream_addr';\n"
            f"  access_log {self.log} upstream;\n"
            f"  upstream packyard {{\n{servers}  }}\n"
            f"  server {{\n    listen 127.0.0.1:{self.port};\n    client_max_body_size 100m;\n"
            "    proxy_request_buffering off;\n    proxy_http_version 1.1;\n"
            "    location / {\n      proxy_pass http://packyard;\n"
            "      proxy_set_header Host $http_host;\n"
            "      proxy_set_header X-Forwarded-For $remote_addr;\n"
            "      proxy_set_header X-Forwarded-Proto $scheme;\n    }\n  }\n}\n"
        )
        args = [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
        self.process = LiveProcess(args, dict(os.environ), workdir / "nginx.out")
        deadline = time.monotonic() + 10
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{self.process.output()}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def upstreams(self) -> set[str]:
        """The web processes that answered through the proxy so far."""
        return {line.split()[-1] for line in self.log.read_text().splitlines()}

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Cluster:
    proxy: Proxy
    webs: list[LiveServer]
    workers: dict[str, LiveProcess]
    token: str
    tmp: Path

    def headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token}

    def index(self, base: str, path: str = GROUP_INDEX) -> str:
        return f"http://__token__:{self.token}@{base.removeprefix('http://')}{path}/"

    def files(self, base: str, name: str) -> dict[str, dict]:
        page = requests.get(
            f"{base}{GROUP_INDEX}/{name}/", headers={"Accept": JSON, **self.headers()}, timeout=10
        )
        page.raise_for_status()
        return {f["filename"]: f for f in page.json()["files"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scale-out")
    s3 = S3Server(tmp / "s3")
    redis = PrivateRedis(tmp)
    started: list = [s3, redis]
    try:
        with postgres_database() as database_url:
            shared = dict(
                DATABASE_URL=database_url, BROKER_URL=redis.url,
                STORAGE_URL=s3.url(s3.bucket("packages"), "files"), PROXY_COUNT="1",
                REDELIVER_AFTER="3", SWEEP_INTERVAL="1", VISIBILITY_TIMEOUT="10",
            )  # fmt: skip

            def env(name: str) -> dict[str, str]:
                (tmp / name).mkdir()
                return {**packyard_env(tmp / name, **shared), **credentials_env()}

            upgrade = [str(BIN / "packyard"), "db", "upgrade"]
            subprocess.run(upgrade, env=env("migrate"), check=True, capture_output=True)
            workers = {}  # started first: they boot while the web processes do
            for name in ("worker1", "worker2"):
                args = [str(BIN / "packyard"), "worker", "--concurrency=2", "-n", f"{name}@%h"]
                workers[name] = LiveProcess(args, env(name), tmp / f"{name}.log")
                started.append(workers[name])
            webs = []
            for name in ("web1", "web2"):
                webs.append(LiveServer(tmp / name, env(name), worker=False, web_workers=1))
                started.append(webs[-1])
            proxy = Proxy(tmp / "nginx", [web.url for web in webs])
            started.append(proxy)
            admin = webs[0]
            group = admin.api("POST", "/groups", data={"path": "team"}).json()
            admin.api("POST", "/projects", data={"path": "lib", "namespace_id": group["id"]})
            yield Cluster(proxy, webs, workers, admin.admin_token, tmp)
            for process in reversed(started[2:]):  # Packyard's, before its database goes
                process.stop()
    finally:
        for process in reversed(started):
            process.stop()


def run(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_CACHE_DIR=str(tmp / "uv-cache"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1")  # fmt: skip
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def wait_processed(cluster: Cluster, name: str, filenames: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = cluster.files(cluster.proxy.url, name)
        if all(f in files and files[f]["core-metadata"] for f in filenames):
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: not all processed within {timeout}s")


def test_twine_uploads_through_the_proxy_and_pip_and_uv_install_from_every_host(cluster, tmp_path):
    dists = [make_wheel("scaled", "1.0"), make_sdist("scaled", "1.0")]
    paths = []
    for filename, content in dists:
        paths.append(tmp_path / filename)
        paths[-1].write_bytes(content)
    run([str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{cluster.proxy.url}{PROJECT_FILES}", "-u", "__token__",
         "-p", cluster.token, *map(str, paths)], tmp_path)  # fmt: skip
    # The group index is current on both web processes at once, before any processing.
    for web in cluster.webs:
        assert set(cluster.files(web.url, "scaled")) == {p.name for p in paths}
    wait_processed(cluster, "scaled", [paths[0].name], 60)  # (an sdist shows no metadata)

    bases = [cluster.proxy.url, *(web.url for web in cluster.webs)]
    for number, base in enumerate(bases):
        pip_target, uv_target = tmp_path / f"pip-{number}", tmp_path / f"uv-{number}"
        run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
             "--target", str(pip_target), "--index-url", cluster.index(base),
             "scaled==1.0"], tmp_path)  # fmt: skip
        run([str(BIN / "uv"), "pip", "install", "--no-deps", "--target", str(uv_target),
             "--index-url", cluster.index(base), "scaled==1.0"], tmp_path)  # fmt: skip
        for target in (pip_target, uv_target):
            assert "VERSION = '1.0'" in (target / "scaled" / "__init__.py").read_text()
    assert cluster.proxy.upstreams() == {web.url.removeprefix("http://") for web in cluster.webs}


def upload(cluster: Cluster, number: int) -> tuple[str, str] | None:
    """One upload through the proxy; (filename, sha256) when it was acknowledged."""
    filename, content = make_wheel(f"batch-{number}", "1.0")
    try:
        response = requests.post(
            f"{cluster.proxy.url}{PROJECT_FILES}", files={"content": (filename, content)},
            data={"name": f"batch-{number}", "version": "1.0"}, headers=cluster.headers(),
            timeout=60,
        )  # fmt: skip
    except requests.RequestException:
        return None
    return (filename, hashlib.sha256(content).hexdigest()) if response.status_code == 201 else None


def test_a_worker_killed_in_a_batch_of_100_uploads_loses_no_acknowledged_file(cluster):
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = list(pool.map(lambda n: upload(cluster, n), range(40)))
        cluster.workers["worker1"].stop(signal.SIGKILL)  # mid-batch, holding tasks
        rest = list(pool.map(lambda n: upload(cluster, n), range(40, 100)))
    acknowledged = [result for result in first + rest if result is not None]
    assert len(acknowledged) == 100  # the web side never depended on the worker
    deadline = time.monotonic() + 120
    pending = {filename for filename, _ in acknowledged}
    while pending and time.monotonic() < deadline:
        for filename in list(pending):
            name = filename.split("-1.0")[0].replace("_", "-")
            if cluster.files(cluster.proxy.url, name)[filename]["core-metadata"]:
                pending.discard(filename)
        time.sleep(0.5)
    assert not pending, f"never processed: {sorted(pending)[:10]}"
    for filename, sha256 in acknowledged:
        download = requests.get(
            f"{cluster.proxy.url}{PROJECT_FILES}/files/{sha256}/{filename}",
            headers=cluster.headers(),
            timeout=30,
        )
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == sha256


def test_no_process_kept_anything_in_its_data_directory(cluster):
    """After every upload, processing and download above: the data directories are as
    empty as they started (but for the log the test itself writes there)."""
    for name in ("web1", "web2", "worker1", "worker2"):
        # metrics/: each process's live Prometheus values (PROMETHEUS_MULTIPROC_DIR), the
        # ended ones' deleted at the next start: scratch space, not state another host needs.
        kept = [
            p.name for p in (cluster.tmp / name).rglob("*")
            if p.name != "serve.log" and "metrics" not in p.relative_to(cluster.tmp / name).parts
        ]  # fmt: skip
        assert kept == [], f"{name} keeps {kept}"
