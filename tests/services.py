"""Real services for the tests: PostgreSQL, Redis, and live Packyard processes.

A service that is not reachable skips its tests with the reason, or fails them when
``PACKYARD_REQUIRE_SERVICES=1`` (as in CI)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REQUIRE_SERVICES = os.environ.get("PACKYARD_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "PACKYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PACKYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent


def unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}, and PACKYARD_REQUIRE_SERVICES=1 makes that a failure")
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test session; dropped afterwards."""
    import sqlalchemy as sa

    admin_url = sa.make_url(POSTGRES_ADMIN_URL)
    if not _reachable(admin_url.host or "127.0.0.1", admin_url.port or 5432):
        unavailable(f"PostgreSQL is not reachable at {admin_url.host}:{admin_url.port}")
    name = f"packyard_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_url(db: int = 0) -> str:
    """A Redis URL on a database number of its own, flushed before use."""
    import redis

    url = REDIS_URL.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveProcess:
    """A child process in its own process group, stopped by PID."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class LiveServer:
    """``packyard serve`` on a loopback port, with its environment and admin token."""

    def __init__(
        self, data_dir: Path, env: dict[str, str], *, worker: bool = True, web_workers: int = 2
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        args = [str(BIN / "packyard"), "serve", "--port", str(self.port)]
        args += ["--workers", str(web_workers)]
        self.process = LiveProcess(
            [*args] if worker else [*args, "--no-worker"], env, data_dir / "serve.log"
        )
        try:
            self._wait_ready()
            self.admin_token = self._admin_token()
        except BaseException:
            self.process.stop()  # a server the test never got must not outlive it
            raise

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"packyard serve exited:\n{self.process.output()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            # Refused before the socket is bound; a timeout while the workers load the app.
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"packyard serve did not become ready:\n{self.process.output()}")

    def _admin_token(self) -> str:
        for line in self.process.output().splitlines():
            if line.strip().startswith("pyd-pat-"):
                return line.strip()
        # Not the first run (a shared database): mint one the documented way.
        result = subprocess.run(
            [str(BIN / "packyard"), "create-admin", "root"],
            env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout.strip().splitlines()[-1]

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {"PRIVATE-TOKEN": self.admin_token}
        return requests.request(method, f"{self.url}/api/v4{path}", headers=headers, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.process.stop()


def packyard_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a live Packyard: this venv first, config from ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACKYARD_", "PIP_", "UV_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PACKYARD_DATA_DIR"] = str(data_dir)
    env.update({f"PACKYARD_{k}": v for k, v in settings.items()})
    return env


PG_BIN = Path(os.environ.get("PACKYARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, that the test may stop and start again.

    ``initdb`` in a temporary directory (which also holds its unix socket), listening on
    127.0.0.1 on a free port. PostgreSQL refuses to run as root, so as root it runs as the
    ``postgres`` user. The shared server on 5432 is never touched.
    """

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            unavailable(f"PostgreSQL's initdb is not installed in {PG_BIN}")
        self._run_as = self._run_as_prefix()
        self.root = Path(tempfile.mkdtemp(prefix="packyard-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self._run_as:
            shutil.chown(self.root, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--no-sync")  # fmt: skip
        self.start()

    @staticmethod
    def _run_as_prefix() -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root, and there is no postgres user to run PostgreSQL as")
        return ["runuser", "-u", "postgres", "--"]

    def _pg(self, binary: str, *args: str) -> None:
        subprocess.run(
            [*self._run_as, str(PG_BIN / binary), *args],
            check=True, capture_output=True, cwd=self.root,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                 "-o", options, "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``: signals the postmaster by the PID in its data directory."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def connections(self, database: str) -> int:
        """Client connections to ``database`` (this query's own excluded)."""
        import sqlalchemy as sa

        admin = sa.create_engine(self.url(), poolclass=sa.NullPool)
        with admin.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"
            return int(conn.execute(sa.text(query), {"name": database}).scalar_one())

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server the test may stop (``.stop()``) and start (``.start()``)."""
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()
