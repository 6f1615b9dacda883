"""The servers under test, each loaded with the same corpus and described the same way.

Every registry target has three indexes: ``small`` (the 100 projects), ``large`` (the
2,000 projects) and ``misc`` (real packages, twine, visibility and big uploads), plus, where
the server has one, a group-like index over all three (a Packyard group; a devpi index
whose ``bases`` are the three).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from upload_memory import descendants

from harness.corpus import Corpus, Dist
from harness.processes import Process, clean_env, cmdline, free_port, wait_http

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
DEVPI_LAYOUT = 1  # bump when the indexes the harness creates in devpi change
PACKYARD_LAYOUT = 1  # the same for Packyard's groups, projects and users
FIVE = "five-versions"
TWO_HUNDRED = "two-hundred-versions"


@dataclass(frozen=True)
class Page:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadEndpoint:
    url: str
    auth: tuple[str, str] | None


@dataclass(frozen=True)
class Paths:
    bin: Path  # the Packyard venv's bin
    peers_bin: Path  # bench/.venv-peers/bin
    src: Path  # the Packyard source tree that is served
    work: Path  # this run's scratch directory


class Target:
    key = ""
    label = ""
    registry = True  # a package index (not a ceiling)
    twine = False  # twine uploads to it though it is no registry (see PackyardServices)

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.dir = paths.work / self.key
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.processes: list[Process] = []

    def start(self) -> None:
        raise NotImplementedError

    def load(self, corpus: Corpus) -> None:
        """Put the corpus into the server (not measured)."""

    def settle(self, timeout: float) -> int:
        """Wait for background work caused by uploads; returns what is left after timeout."""
        return 0

    def pages(self) -> dict[str, Page]:
        raise NotImplementedError

    def upload_endpoint(self) -> UploadEndpoint:
        raise NotImplementedError

    def visibility_page(self, name: str) -> Page:
        """The page where a new upload of ``name`` must appear (the group index if any)."""
        raise NotImplementedError

    def misc_simple(self) -> tuple[int, str]:
        """(port, path) of the index that pip and uv resolve against."""
        raise NotImplementedError

    def web_pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def version(self) -> str:
        return ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


# --- uploading ------------------------------------------------------------------------


def legacy_fields(dist: Dist, data: bytes | Path) -> dict[str, str]:
    """twine's legacy-protocol form fields for ``dist`` (its bytes, or a file to hash)."""
    wheel = dist.kind == "wheel"
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    if isinstance(data, Path):
        with data.open("rb") as fh:
            while chunk := fh.read(2**20):
                sha256.update(chunk)
                md5.update(chunk)
    else:
        sha256.update(data)
        md5.update(data)
    return {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": dist.name,
        "version": dist.version,
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "sha256_digest": sha256.hexdigest(),
        "md5_digest": md5.hexdigest(),
    }


def send_dist(
    session: requests.Session, endpoint: UploadEndpoint, root: Path, dist: Dist
) -> requests.Response:
    """One upload as twine sends it; the answer, whatever it is."""
    data = dist.full_path(root).read_bytes()
    return session.post(
        endpoint.url,
        data=legacy_fields(dist, data),
        files={"content": (dist.filename, data, "application/octet-stream")},
        auth=endpoint.auth,
        timeout=120,
    )


def post_dist(session: requests.Session, endpoint: UploadEndpoint, root: Path, dist: Dist) -> None:
    response = send_dist(session, endpoint, root, dist)
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"upload of {dist.filename} to {endpoint.url}: "
            f"{response.status_code} {response.text[:300]}"
        )


def post_all(endpoint: UploadEndpoint, root: Path, dists: list[Dist], threads: int) -> None:
    def worker(chunk: list[Dist]) -> None:
        with requests.Session() as session:
            for dist in chunk:
                post_dist(session, endpoint, root, dist)

    chunks = [dists[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, chunks))


# --- Packyard ---------------------------------------------------------------------------


class Packyard(Target):
    key = "packyard"
    label = "Packyard"

    def __init__(self, paths: Paths, cache: Path | None) -> None:
        super().__init__(paths)
        self.cache = cache  # None: always load afresh
        self.data = self.dir / "data"
        self.from_cache = False
        self.upload_s = self.processing_wait_s = 0.0

    def start(self) -> None:
        self.point_at(free_port())

    def point_at(self, port: int) -> None:
        """Describe pages and endpoints on ``port`` (``bench/servers.py`` serves elsewhere)."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return clean_env(
            PATH=f"{self.paths.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(self.paths.src),
            PACKYARD_DATA_DIR=str(self.data),
            # Names missing here must not be sent to pypi.org: traffic stays on loopback.
            PACKYARD_FORWARDING="false",
            **self.services(),
        )

    def _launch(self) -> None:
        env = self.env()
        self.data.mkdir(exist_ok=True)
        serve = [str(self.paths.bin / "packyard"), "serve", "--port", str(self.port)]
        log = self.dir / f"serve-{len(self.processes)}.log"
        self.processes = [Process(serve, env, log, cwd=self.data)]
        wait_http(self.processes[0], f"{self.url}/-/ready")

    def services(self) -> dict[str, str]:
        """Environment naming the database and broker (none: the embedded defaults)."""
        return {}

    def load(self, corpus: Corpus) -> None:
        """Upload the corpus over HTTP and wait for the worker to process it. In quick mode
        the loaded data directory is kept, keyed by the corpus and the schema migrations,
        and later runs start from a copy of it."""
        cached = self._cache_dir(corpus)
        if cached is not None and (cached / "ids.json").exists():
            self._restore(cached)
            return
        self._launch()
        self.admin_token = self._admin_token()
        self._create_namespaces()
        started = time.monotonic()
        post_all(self.upload_to("small"), corpus.root, corpus.index_100, 6)
        post_all(self.upload_to("large"), corpus.root, corpus.files("large"), 6)
        post_all(self.upload_to("misc"), corpus.root, corpus.files("real"), 2)
        self.upload_s = time.monotonic() - started
        left = self.settle(timeout=600)
        self.processing_wait_s = time.monotonic() - started - self.upload_s
        if cached is not None and not left:
            self._save(cached)

    def _save(self, cached: Path) -> None:
        self.processes.pop().stop()  # a consistent copy of SQLite needs a stopped server
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.data, partial / "data")
        ids = {"admin_token": self.admin_token, "reader_token": self.reader_token,
               "group_id": self.group_id, "project_ids": self.project_ids}  # fmt: skip
        (partial / "ids.json").write_text(json.dumps(ids))
        partial.rename(cached)
        self._launch()

    def _restore(self, cached: Path) -> None:
        shutil.copytree(cached / "data", self.data)
        ids = json.loads((cached / "ids.json").read_text())
        self.admin_token, self.reader_token = ids["admin_token"], ids["reader_token"]
        self.group_id, self.project_ids = ids["group_id"], ids["project_ids"]
        self.from_cache = True
        self._launch()

    def _cache_dir(self, corpus: Corpus) -> Path | None:
        if self.cache is None:
            return None
        digest = hashlib.sha256(f"packyard-layout-{PACKYARD_LAYOUT}".encode())
        for dist in corpus.index_100 + corpus.files("large", "real"):
            digest.update(dist.sha256.encode())
        migrations = self.paths.src / "app" / "migrations"
        for path in sorted(migrations.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(migrations).as_posix().encode())
                digest.update(path.read_bytes())
        return self.cache / f"packyard-{digest.hexdigest()[:16]}"

    def _admin_token(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.processes[0].output().splitlines():
                if line.strip().startswith("pyd-pat-"):
                    return line.strip()
            time.sleep(0.1)
        raise RuntimeError("packyard serve printed no admin token")

    def api(self, method: str, endpoint: str, **json: object) -> dict[str, object]:
        response = requests.request(
            method,
            f"{self.url}/api/v4{endpoint}",
            json=json,
            headers={"PRIVATE-TOKEN": self.admin_token},
            timeout=30,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {endpoint}: {response.status_code} {response.text[:300]}")
        return response.json()  # type: ignore[no-any-return]

    def _create_namespaces(self) -> None:
        group = self.api("POST", "/groups", name="Bench", path="bench", visibility="public")
        self.group_id = group["id"]
        self.project_ids = {
            name: self.api(
                "POST",
                "/projects",
                name=name,
                path=name,
                namespace_id=self.group_id,
                visibility="public",
            )["id"]
            for name in ("small", "large", "misc")
        }
        # A reporter's read-only token: what a CI job or a developer's pip sends.
        user = self.api(
            "POST",
            "/users",
            username="reader",
            email="reader@example.com",
            password="bench-reader-password",
        )
        token = self.api(
            "POST", f"/users/{user['id']}/personal_access_tokens", name="bench", scopes=["read_api"]
        )
        self.reader_token = str(token["token"])
        self.api("POST", f"/groups/{self.group_id}/members", user_id=user["id"], access_level=20)

    def _project(self, name: str) -> str:
        return f"{self.url}/api/v4/projects/{self.project_ids[name]}/packages/pypi"

    def _group(self) -> str:
        return f"{self.url}/api/v4/groups/{self.group_id}/-/packages/pypi"

    def upload_to(self, index: str) -> UploadEndpoint:
        return UploadEndpoint(self._project(index), ("__token__", self.admin_token))

    def upload_endpoint(self) -> UploadEndpoint:
        return self.upload_to("misc")

    def processing(self) -> int:
        text = requests.get(f"{self.url}/-/metrics", timeout=30).text
        match = re.search(r'^packyard_package_files\{state="processing"\} (\d+)', text, re.M)
        return int(match.group(1)) if match else 0

    def settle(self, timeout: float) -> int:
        """Until the worker has processed every upload (or ``timeout``): files left."""
        deadline = time.monotonic() + timeout
        while (left := self.processing()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def pages(self) -> dict[str, Page]:
        token = {"PRIVATE-TOKEN": self.reader_token}
        small, group = f"{self._project('small')}/simple", f"{self._group()}/simple"
        return {
            "p5": Page(f"{small}/{FIVE}/"),
            "p5_token": Page(f"{small}/{FIVE}/", token),
            "p200": Page(f"{small}/{TWO_HUNDRED}/"),
            "root100": Page(f"{small}/"),
            "root2000": Page(f"{self._project('large')}/simple/"),
            "group_p5": Page(f"{group}/{FIVE}/"),
            "group_p5_token": Page(f"{group}/{FIVE}/", token),
            "group_root": Page(f"{group}/"),
        }

    def visibility_page(self, name: str) -> Page:
        return Page(f"{self._group()}/simple/{name}/", {"Accept": JSON_TYPE})

    def misc_simple(self) -> tuple[int, str]:
        return self.port, f"/api/v4/projects/{self.project_ids['misc']}/packages/pypi/simple/"

    def save_pages(self, path: Path) -> None:
        """The page URLs (paths) and headers, for ``bench/profile_packyard.py``."""
        pages = {k: {"path": urlsplit(p.url).path, "headers": p.headers}
                 for k, p in self.pages().items()}  # fmt: skip
        path.write_text(json.dumps(pages, indent=2))

    def web_pids(self) -> list[int]:
        """The uWSGI processes (master and workers) under ``packyard serve``: not Celery."""
        pids = descendants(self.processes[0].pid)
        return [pid for pid in pids if "celery" not in cmdline(pid)]

    def version(self) -> str:
        return git_version(self.paths.src)


def git_version(src: Path) -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "app", "workers", "plugins")
    return f"{head}{' + uncommitted changes' if dirty else ''} ({src})"


class PackyardServices(Packyard):
    """``packyard serve`` on PostgreSQL and Redis (a new database, a Redis database number
    of its own), for the uploads only: it holds no corpus, so it serves no pages."""

    key = "packyard_pg"
    label = "Packyard (PostgreSQL + Redis)"
    registry = False  # no pages, dry runs or big uploads
    twine = True
    REDIS_DB = 12  # flushed at start; the tests take theirs from 0 up

    def __init__(self, paths: Paths) -> None:
        super().__init__(paths, None)
        self._database: Any = None

    def services(self) -> dict[str, str]:
        return {"PACKYARD_DATABASE_URL": self.database_url, "PACKYARD_BROKER_URL": self.broker}

    def load(self, corpus: Corpus) -> None:
        from tests.services import postgres_database, redis_url

        self._database = postgres_database()
        self.database_url = self._database.__enter__()
        self.broker = redis_url(self.REDIS_DB)
        upgrade = [str(self.paths.bin / "packyard"), "db", "upgrade"]
        subprocess.run(upgrade, env=self.env(), check=True, capture_output=True)
        self._launch()
        self.admin_token = self._admin_token()
        self._create_namespaces()

    def pages(self) -> dict[str, Page]:
        return {}

    def stop(self) -> None:
        super().stop()
        if self._database is not None:
            self._database.__exit__(None, None, None)


class NullUpload(Target):
    """twine's ceiling: a server that reads each upload and answers 200 at once, so that
    twine's own time (start-up, reading and hashing each file, its HTTP client) shows."""

    key = "null"
    label = "no-op server (twine alone)"
    registry = False
    twine = True

    def start(self) -> None:
        self.port = free_port()
        script = Path(__file__).resolve().with_name("null_upload.py")
        args = [str(self.paths.bin / "python"), str(script), str(self.port)]
        self.processes.append(Process(args, clean_env(), self.dir / "serve.log", cwd=self.dir))
        wait_http(self.processes[0], f"http://127.0.0.1:{self.port}/")

    def pages(self) -> dict[str, Page]:
        return {}

    def upload_endpoint(self) -> UploadEndpoint:
        return UploadEndpoint(f"http://127.0.0.1:{self.port}/", None)

    def version(self) -> str:
        return "http.server (bench/harness/null_upload.py)"


# --- pypiserver -------------------------------------------------------------------------


class PypiServer(Target):
    """pypiserver 2.x, one process per index (it serves one package directory)."""

    key = "pypiserver"
    label = "pypiserver"
    INDEXES = ("small", "large", "misc")

    def start(self) -> None:
        self.ports = {name: free_port() for name in self.INDEXES}
        for name in self.INDEXES:
            (self.dir / name).mkdir()

    def _launch(self) -> None:
        for name in self.INDEXES:
            args = [
                str(self.paths.peers_bin / "pypi-server"),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[name]),
                "-a",
                ".",
                "-P",
                ".",  # no authentication: anyone may read and upload
                "--disable-fallback",  # a missing name is a 404, not a redirect to pypi.org
                str(self.dir / name),
            ]
            log = self.dir / f"{name}.log"
            self.processes.append(Process(args, clean_env(), log, cwd=self.dir))
        for name, process in zip(self.INDEXES, self.processes, strict=True):
            wait_http(process, f"{self._url(name)}/simple/")

    def load(self, corpus: Corpus) -> None:
        """Files are copied into its directories (its documented way), then it starts."""
        for name, dists in (
            ("small", corpus.index_100),
            ("large", corpus.files("large")),
            ("misc", corpus.files("real")),
        ):
            for dist in dists:
                shutil.copyfile(dist.full_path(corpus.root), self.dir / name / dist.filename)
        self._launch()

    def _url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def pages(self) -> dict[str, Page]:
        small = f"{self._url('small')}/simple"
        return {
            "p5": Page(f"{small}/{FIVE}/"),
            "p200": Page(f"{small}/{TWO_HUNDRED}/"),
            "root100": Page(f"{small}/"),
            "root2000": Page(f"{self._url('large')}/simple/"),
        }

    def upload_endpoint(self) -> UploadEndpoint:
        return UploadEndpoint(f"{self._url('misc')}/", ("bench", "bench"))

    def visibility_page(self, name: str) -> Page:
        return Page(f"{self._url('misc')}/simple/{name}/")

    def misc_simple(self) -> tuple[int, str]:
        return self.ports["misc"], "/simple/"

    def web_pids(self) -> list[int]:
        return [self.processes[self.INDEXES.index("misc")].pid]

    def version(self) -> str:
        return peer_version(self.paths.peers_bin, "pypiserver") + " (waitress, cached-dir)"


def peer_version(peers_bin: Path, distribution: str) -> str:
    result = subprocess.run(
        [
            str(peers_bin / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


# --- devpi ------------------------------------------------------------------------------


class Devpi(Target):
    """devpi-server 6.x: a user ``bench`` with stage indexes and an inheriting ``group``."""

    key = "devpi"
    label = "devpi"
    INDEXES = ("small", "large", "misc")

    def __init__(self, paths: Paths, cache: Path | None) -> None:
        super().__init__(paths)
        self.cache = cache  # loaded server directories, by corpus and devpi version
        self.serverdir = self.dir / "server"
        self.from_cache = False

    def start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _launch(self) -> None:
        args = [str(self.paths.peers_bin / "devpi-server"), "--serverdir", str(self.serverdir),
                "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        log = self.dir / f"server-{len(self.processes)}.log"
        self.processes.append(Process(args, clean_env(), log, cwd=self.dir))
        wait_http(self.processes[-1], f"{self.url}/+api")
        self._login()

    def _login(self) -> None:
        login = requests.post(
            f"{self.url}/+login", json={"user": "bench", "password": "bench"}, timeout=30
        )
        login.raise_for_status()
        # Uploads authenticate with the login token: with the plain password every request
        # pays a deliberately slow password hash (about 0.4 s), which is not what we measure.
        self.auth = ("bench", login.json()["result"]["password"])

    def load(self, corpus: Corpus) -> None:
        """Upload the corpus once; later runs start from a copy of the loaded directory."""
        files = corpus.index_100 + corpus.files("large", "real")
        key = hashlib.sha256(
            f"{self.version()}|{DEVPI_LAYOUT}|{[d.sha256 for d in files]}".encode()
        ).hexdigest()[:16]
        cached = self.cache / f"devpi-{key}" if self.cache else None
        if cached is not None and cached.is_dir():
            shutil.copytree(cached, self.serverdir)
            self.from_cache = True
            self._launch()
            return
        subprocess.run(
            [str(self.paths.peers_bin / "devpi-init"), "--serverdir", str(self.serverdir),
             "--root-passwd", "root", "--no-root-pypi"],
            env=clean_env(), check=True, capture_output=True,
        )  # fmt: skip
        self._launch_and_create()
        post_all(self.upload_to("small"), corpus.root, corpus.index_100, 4)
        post_all(self.upload_to("large"), corpus.root, corpus.files("large"), 4)
        post_all(self.upload_to("misc"), corpus.root, corpus.files("real"), 2)
        if cached is None:
            return
        self.processes.pop().stop()  # a consistent copy needs a stopped server
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.serverdir, partial)
        partial.rename(cached)
        self._launch()

    def _launch_and_create(self) -> None:
        self.processes.append(Process(
            [str(self.paths.peers_bin / "devpi-server"), "--serverdir", str(self.serverdir),
             "--host", "127.0.0.1", "--port", str(self.port)],
            clean_env(), self.dir / "server-load.log", cwd=self.dir,
        ))  # fmt: skip
        wait_http(self.processes[-1], f"{self.url}/+api")
        put = requests.put(
            f"{self.url}/bench",
            json={"password": "bench", "email": "bench@example.com"},
            timeout=30,
        )
        put.raise_for_status()
        self._login()
        for name in self.INDEXES:
            self._index(name, [])
        self._index("group", [f"bench/{name}" for name in self.INDEXES])

    def _index(self, name: str, bases: list[str]) -> None:
        response = requests.put(
            f"{self.url}/bench/{name}",
            json={"type": "stage", "bases": bases, "volatile": True},
            auth=self.auth,
            timeout=30,
        )
        response.raise_for_status()

    def upload_to(self, index: str) -> UploadEndpoint:
        return UploadEndpoint(f"{self.url}/bench/{index}/", self.auth)

    def upload_endpoint(self) -> UploadEndpoint:
        return self.upload_to("misc")

    def pages(self) -> dict[str, Page]:
        small, group = f"{self.url}/bench/small/+simple", f"{self.url}/bench/group/+simple"
        return {
            "p5": Page(f"{small}/{FIVE}/"),
            "p200": Page(f"{small}/{TWO_HUNDRED}/"),
            "root100": Page(f"{small}/"),
            "root2000": Page(f"{self.url}/bench/large/+simple/"),
            "group_p5": Page(f"{group}/{FIVE}/"),
            "group_root": Page(f"{group}/"),
        }

    def visibility_page(self, name: str) -> Page:
        return Page(f"{self.url}/bench/group/+simple/{name}/")

    def misc_simple(self) -> tuple[int, str]:
        return self.port, "/bench/misc/+simple/"

    def version(self) -> str:
        return peer_version(self.paths.peers_bin, "devpi-server") + " (waitress, 50 threads)"


# --- ceilings ---------------------------------------------------------------------------


class Nginx(Target):
    """Debian's nginx serving Packyard's own pages, saved as static files: the ceiling."""

    key = "nginx"
    label = "nginx (static)"
    registry = False

    def __init__(self, paths: Paths, saved_pages: dict[str, bytes]) -> None:
        super().__init__(paths)
        self.saved_pages = saved_pages

    def start(self) -> None:
        self.port = free_port()
        root = self.dir / "root"
        for key, body in self.saved_pages.items():
            (root / key).mkdir(parents=True)
            (root / key / "index.html").write_bytes(body)
        (self.dir / "temp").mkdir()
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"{user}worker_processes auto;\ndaemon off;\npid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            "http {\n  access_log off;\n  default_type text/html;\n  sendfile on;\n"
            f"  client_body_temp_path {self.dir}/temp;\n  proxy_temp_path {self.dir}/temp;\n"
            f"  fastcgi_temp_path {self.dir}/temp;\n  uwsgi_temp_path {self.dir}/temp;\n"
            f"  scgi_temp_path {self.dir}/temp;\n"
            f"  server {{ listen 127.0.0.1:{self.port}; root {root}; }}\n}}\n"
        )
        args = ["nginx", "-p", str(self.dir), "-c", str(conf)]
        self.processes.append(Process(args, clean_env(), self.dir / "nginx.out", cwd=self.dir))
        wait_http(self.processes[0], f"http://127.0.0.1:{self.port}/p5/")

    def pages(self) -> dict[str, Page]:
        return {key: Page(f"http://127.0.0.1:{self.port}/{key}/") for key in self.saved_pages}

    def version(self) -> str:
        result = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return result.stderr.strip().removeprefix("nginx version: ")


class TrivialRoute(Target):
    """One Flask route returning saved pages' bytes, on Packyard's uWSGI settings."""

    key = "trivial"
    label = "Flask trivial route"
    registry = False

    def __init__(self, paths: Paths, saved_pages: dict[str, bytes]) -> None:
        super().__init__(paths)
        self.saved_pages = saved_pages

    def start(self) -> None:
        self.port = free_port()
        pages = self.dir / "pages"
        pages.mkdir(exist_ok=True)
        for key, body in self.saved_pages.items():
            (pages / f"{key}.html").write_bytes(body)
        script = Path(__file__).resolve().parents[1] / "trivial_app.py"
        args = [
            str(self.paths.bin / "python"),
            str(script),
            "--port",
            str(self.port),
            "--pages",
            str(pages),
        ]
        env = clean_env(PYTHONPATH=str(self.paths.src))
        self.processes.append(Process(args, env, self.dir / "serve.log", cwd=self.dir))
        wait_http(self.processes[0], f"http://127.0.0.1:{self.port}/p5/")

    def pages(self) -> dict[str, Page]:
        return {key: Page(f"http://127.0.0.1:{self.port}/{key}/") for key in self.saved_pages}

    def version(self) -> str:
        output = self.processes[0].output() if self.processes else ""
        match = re.search(r"trivial: (.*)", output)
        return match.group(1) if match else ""
