"""Nothing a user uploaded is lost, whatever dies: the sweeper, redelivery, outages.

The end-to-end tests run a private Redis server and a private PostgreSQL cluster (so they
can be stopped), ``packyard serve --no-worker`` and separate ``packyard worker`` processes."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app import create_app
from app.caching.generation import GenerationReader
from app.config import CONNECT_TIMEOUT, database_uri
from app.domain.audit import SYSTEM
from app.domain.processing import claim_stalled, claim_unsent, mark_unsent
from app.domain.webhooks import HookParams, create_hook
from app.extensions import db
from app.migrations import upgrade
from app.models import PackageFile
from app.models.base import utcnow
from tests.conftest import Registry
from tests.dists import make_wheel
from tests.services import (
    BIN,
    LiveProcess,
    LiveServer,
    PrivatePostgres,
    free_port,
    packyard_env,
    postgres_database,
    unavailable,
)
from workers.sweeper import send_unsent, sweep_once


def _use_broker(registry, url: str) -> None:
    celery = registry.app.extensions["celery"]
    celery.conf.task_always_eager = False
    registry.app.config["BROKER_URL"] = celery.conf.broker_url = url


def _queued_files(registry, count: int, broker: str = "memory://") -> list[PackageFile]:
    """``count`` uploads whose tasks went nowhere (no worker consumes the memory broker)."""
    admin = registry.user("root", admin=True)
    project = registry.project(registry.group("team"), "lib")
    _use_broker(registry, broker)
    token = registry.token(admin)
    for index in range(count):
        response = registry.upload(project, *make_wheel(f"p{index}", "1.0"), token=token)
        assert response.status_code == 201
    return list(db.session.execute(select(PackageFile).order_by(PackageFile.id)).scalars())


def _sent(row: PackageFile, minutes_ago: float) -> None:
    row.enqueued_at = utcnow() - timedelta(minutes=minutes_ago)


def test_claim_stalled_takes_old_processing_files_once(registry):
    (row,) = _queued_files(registry, 1)
    assert row.state == "processing" and row.enqueued_at is not None
    assert claim_stalled(db.session, timedelta(seconds=60)) == []  # just sent
    _sent(row, 5)
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == [row.id]
    assert claim_stalled(db.session, timedelta(seconds=60)) == []  # claimed: not twice
    row.state = "default"
    _sent(row, 5)
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == []  # settled files stay


def test_a_backlog_the_workers_are_working_through_is_not_resent(registry):
    settled, *backlog = _queued_files(registry, 4)
    _sent(settled, 6)
    settled.state, settled.processed_at = "default", utcnow()  # progress: the front moves
    for row in backlog:
        _sent(row, 5)  # sent after the front: still queued behind it
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == []


def test_a_file_the_workers_have_passed_is_resent(registry):
    lost, settled, queued = _queued_files(registry, 3)
    _sent(lost, 6)
    _sent(queued, 5)
    _sent(settled, 5.5)  # sent after the lost one, before the queued one, and done
    settled.state, settled.processed_at = "default", utcnow()
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == [lost.id]


def test_a_file_a_worker_is_still_on_is_not_resent(registry):
    (busy,) = _queued_files(registry, 1)
    _sent(busy, 5)
    busy.started_at = utcnow() - timedelta(seconds=10)
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == []
    busy.started_at = utcnow() - timedelta(minutes=4)  # started long ago, then nothing
    db.session.commit()
    assert claim_stalled(db.session, timedelta(seconds=60)) == [busy.id]


def _nothing_listens() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_an_upload_the_broker_could_not_take_is_marked_unsent(registry):
    (row,) = _queued_files(registry, 1, broker=_nothing_listens())  # still 201
    assert row.state == "processing" and row.enqueued_at is None
    assert claim_stalled(db.session, timedelta(seconds=60)) == [row.id]  # at once, not in 60 s


def test_unsent_files_are_claimed_once_and_nothing_else_is(registry):
    unsent, sent = _queued_files(registry, 2)
    mark_unsent(db.session, [unsent.id])
    assert claim_unsent(db.session) == [unsent.id]
    assert claim_unsent(db.session) == []  # claimed: sent once, not by every sweeper
    assert sent.enqueued_at is not None


def test_a_sweep_that_cannot_send_leaves_the_file_unsent(registry):
    (row,) = _queued_files(registry, 1, broker=_nothing_listens())
    _sent(row, 5)  # and it looks lost
    db.session.commit()
    for sweep in (sweep_once, send_unsent):
        assert sweep(registry.app) == []
        db.session.expire_all()
        assert row.enqueued_at is None  # not taken for sent: the next look sends it


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may stop."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.port = free_port()
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
        self.workdir = workdir
        self.process: LiveProcess | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = LiveProcess(self.args, dict(os.environ), self.workdir / "redis.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True)
            if ping.stdout.strip() == b"PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process:
            self.process.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """Hung, not down: connections are accepted, and nothing answers."""
        assert self.process
        os.kill(self.process.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process
        os.kill(self.process.proc.pid, signal.SIGCONT)


FAST_SWEEPER = {"REDELIVER_AFTER": "3", "SWEEP_INTERVAL": "1", "VISIBILITY_TIMEOUT": "10"}


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict]:
    """Redis, PostgreSQL and ``serve --no-worker``; settings by indirect parametrization."""
    settings = getattr(request, "param", FAST_SWEEPER)
    redis = PrivateRedis(tmp_path)
    with postgres_database() as database_url:
        migrate(database_url, tmp_path / "migrate")
        env = packyard_env(tmp_path, DATABASE_URL=database_url, BROKER_URL=redis.url, **settings)
        server = LiveServer(tmp_path, env, worker=False, web_workers=1)
        group = server.api("POST", "/groups", data={"path": "team"}).json()
        project = server.api("POST", "/projects", data={"path": "lib", "namespace_id": group["id"]})
        workers: list[LiveProcess] = []

        def start_worker(name: str) -> LiveProcess:
            worker = LiveProcess(
                [str(BIN / "packyard"), "worker", "--concurrency=1", "-n", f"{name}@%h"],
                env, tmp_path / f"{name}.log",
            )  # fmt: skip
            workers.append(worker)
            return worker

        try:
            yield {"server": server, "project": project.json(), "redis": redis,
                   "start_worker": start_worker, "tmp": tmp_path}  # fmt: skip
        finally:
            for worker in workers:
                worker.stop(signal.SIGKILL)
            server.stop()
            redis.stop()


def upload(server: LiveServer, project: dict, name: str) -> str:
    filename, content = make_wheel(name, "1.0")
    response = requests.post(
        f"{server.url}/api/v4/projects/{project['id']}/packages/pypi",
        files={"content": (filename, content)},
        data={"name": name, "version": "1.0"},
        headers={"PRIVATE-TOKEN": server.admin_token},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return filename


def wait_listed_with_metadata(
    server: LiveServer, project: dict, name: str, timeout: float, logs: Path | None = None
) -> float:
    """Seconds until every file of ``name`` has its core metadata; on a timeout the error
    shows the last page and the end of each log in ``logs``, to say which part stalled."""
    start = time.monotonic()
    url = f"{server.url}/api/v4/projects/{project['id']}/packages/pypi/simple/{name}/"
    page = None
    while time.monotonic() - start < timeout:
        page = requests.get(
            url, headers={"Accept": "application/vnd.pypi.simple.v1+json",
                          "PRIVATE-TOKEN": server.admin_token}, timeout=10,
        )  # fmt: skip
        if page.ok and all(f["core-metadata"] for f in page.json()["files"]):
            return time.monotonic() - start
        time.sleep(0.25)
    last = f"{page.status_code} {page.text[:500]}" if page is not None else "no answer"
    raise AssertionError(f"{name} was not processed within {timeout}s; last page: {last}"
                         f"{log_tails(logs) if logs else ''}")  # fmt: skip


def log_tails(directory: Path, lines: int = 40) -> str:
    tails = []
    for log in sorted(directory.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"\n--- {log.name} ---\n" + "\n".join(text))
    return "".join(tails)


@pytest.mark.e2e
def test_a_worker_killed_holding_the_task_does_not_lose_the_file(stack):
    first = stack["start_worker"]("doomed")
    time.sleep(4)  # let it connect and wait on the queue
    os.killpg(first.proc.pid, signal.SIGSTOP)  # frozen: it receives the task but cannot run it
    upload(stack["server"], stack["project"], "survivor")
    time.sleep(1)
    first.stop(signal.SIGKILL)  # dies holding the message
    stack["start_worker"]("rescuer")
    waited = wait_listed_with_metadata(stack["server"], stack["project"], "survivor", 120)
    assert waited < 120


@pytest.mark.e2e
@pytest.mark.parametrize("outage", ["down", "hung"])
@pytest.mark.parametrize("stack", [{}], indirect=True, ids=["sweeper-defaults"])
def test_an_upload_accepted_while_redis_is_out_is_processed_soon_after_it_is_back(stack, outage):
    """With the sweeper's defaults (a lost task is resent after 60 s), a task that could not
    be sent at all is sent as soon as the broker is back: processed within 15 s. A broker
    that hangs rather than refuses holds the upload only a few seconds."""
    server, project, redis = stack["server"], stack["project"], stack["redis"]
    stack["start_worker"]("steady")
    upload(server, project, "early")
    wait_listed_with_metadata(server, project, "early", 60)  # the worker is up and consumes
    redis.stop() if outage == "down" else redis.freeze()
    started = time.monotonic()
    upload(server, project, "patient")  # still 201: the row is the truth
    assert time.monotonic() - started < 10  # sending gives up
    time.sleep(10)  # long enough for the worker to back off between reconnections
    redis.start() if outage == "down" else redis.thaw()
    assert wait_listed_with_metadata(server, project, "patient", 15, stack["tmp"]) < 15


# --- the database down or restarting -------------------------------------------------------


def _app_on(database_url: str, data_dir: Path) -> Flask:
    config = {"DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    return create_app({**config, "LOAD_ENTRYPOINT_PLUGINS": False})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v4/projects/team%2Flib/packages/pypi/simple/", "text"),  # ResponseCache's
        ("GET", "/api/v4/projects/1/packages/pypi/simple/lib/", "text"),
        ("POST", "/api/v4/projects/1/packages/pypi", "text"),
        ("GET", "/api/v4/projects", "json"),
    ],
)
def test_requests_answer_503_with_retry_after_while_the_database_is_unreachable(
    tmp_path: Path, method: str, path: str, body: str
) -> None:
    nothing_listens = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/packyard"
    client = _app_on(nothing_listens, tmp_path).test_client()
    response = client.open(path, method=method, headers={"PRIVATE-TOKEN": "pyd-pat-x"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    message = response.json["message"] if body == "json" else response.text
    assert "database is unavailable" in message


def test_connecting_to_postgresql_times_out_unless_the_url_says_otherwise() -> None:
    assert database_uri("postgresql+psycopg://u@db/p") == (
        f"postgresql+psycopg://u@db/p?connect_timeout={CONNECT_TIMEOUT}"
    )
    assert database_uri("postgresql://u@db/p?connect_timeout=9") == (
        "postgresql://u@db/p?connect_timeout=9"
    )
    assert database_uri("sqlite:///var/packyard.db") == "sqlite:///var/packyard.db"


def test_a_request_whose_connection_died_still_ends(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    """Ending the session rolls back its transaction, which fails on a connection the
    server closed; the request must still end (not raise after its answer was made)."""
    app = _app_on(private_postgres.url(), tmp_path)
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))  # a transaction, open on a connection
        private_postgres.stop("fast")
        private_postgres.start()
    with app.app_context():
        assert db.session.execute(sa.text("SELECT 1")).scalar() == 1


def test_the_generation_reader_survives_a_restart_and_says_when_the_database_is_down(
    private_postgres: PrivatePostgres,
) -> None:
    engine = sa.create_engine(private_postgres.url(), pool_pre_ping=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE cache_generation (id int PRIMARY KEY, value bigint,"
                             " access_value bigint)"))  # fmt: skip
        conn.execute(sa.text("INSERT INTO cache_generation VALUES (1, 7, 3)"))
    reader = GenerationReader(engine)
    try:
        assert reader.read() == (7, 3)
        private_postgres.stop("fast")
        for _ in range(2):  # on its dead connection, then on a new one
            with pytest.raises(sa.exc.OperationalError):  # SQLAlchemy's, as a pooled read's
                reader.read()
        private_postgres.start()
        assert reader.read() == (7, 3)
    finally:
        reader.close()
        engine.dispose()


def migrate(database_url: str, data_dir: Path) -> None:
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
                      "LOAD_ENTRYPOINT_PLUGINS": False})  # fmt: skip
    with app.app_context():
        upgrade()
        db.engine.dispose()


@dataclass(frozen=True)
class Outcome:
    kind: str  # "upload" or "read"
    started: float  # time.monotonic()
    seconds: float
    status: int | str  # the HTTP status, or the exception's name
    retry_after: str | None
    name: str


class Load:
    """Clients running in threads until stopped, every request's outcome recorded."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self, kind: str, request: Callable[[], tuple[requests.Response, str]],
            every: float) -> None:  # fmt: skip
        def loop() -> None:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response, name = request()
                    status, retry_after = response.status_code, response.headers.get("Retry-After")
                except requests.RequestException as exc:
                    status, retry_after, name = type(exc).__name__, None, ""
                seconds = time.monotonic() - started
                self.outcomes.append(Outcome(kind, started, seconds, status, retry_after, name))
                self._stop.wait(max(0.0, every - seconds))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.mark.e2e
def test_a_postgresql_restart_answers_every_request_quickly_and_loses_nothing(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    """Two uploaders (5/s each) and two readers while PostgreSQL restarts (fast shutdown,
    back 2 s later): every request answers within 5 s (503 with Retry-After while the
    database is down), reads answer 200 again within 5 s, every 201 is kept, and the
    processes hold no more connections afterwards than before."""
    pg = private_postgres
    redis = PrivateRedis(tmp_path)
    database_url = pg.create_database("packyard")
    migrate(database_url, tmp_path / "migrate")  # in this process: faster than a CLI run
    env = packyard_env(tmp_path, DATABASE_URL=database_url, BROKER_URL=redis.url)
    server = LiveServer(tmp_path, env, worker=False, web_workers=1)  # the same web process
    worker = LiveProcess([str(BIN / "packyard"), "worker", "--concurrency=1"], env,
                         tmp_path / "worker.log")  # fmt: skip
    try:
        group = server.api("POST", "/groups", data={"path": "team"}).json()
        project = server.api("POST", "/projects", data={"path": "lib", "namespace_id": group["id"]})
        base = f"{server.url}/api/v4/projects/{project.json()['id']}/packages/pypi"
        headers = {"PRIVATE-TOKEN": server.admin_token}
        upload(server, project.json(), "first")
        numbers = itertools.count()

        def send_upload() -> tuple[requests.Response, str]:
            name = f"p{next(numbers)}"
            filename, content = make_wheel(name, "1.0")
            response = requests.post(base, files={"content": (filename, content)},
                                     data={"name": name, "version": "1.0"}, headers=headers,
                                     timeout=10)  # fmt: skip
            return response, filename

        def read(path: str) -> Callable[[], tuple[requests.Response, str]]:
            return lambda: (
                requests.get(f"{base}/simple/{path}", headers=headers, timeout=10),
                path,
            )

        load = Load()
        for _ in range(2):
            load.run("upload", send_upload, every=0.2)
        load.run("read", read(""), every=0.05)
        load.run("read", read("first/"), every=0.05)
        connections_before = 0
        for _ in range(3):  # the pools grow to the load's concurrency, then stay
            time.sleep(1)
            connections_before = max(connections_before, pg.connections("packyard"))
        down = time.monotonic()
        pg.stop("fast")
        time.sleep(2)
        pg.start()
        back = time.monotonic()
        time.sleep(6)
        load.stop()
        time.sleep(1)
        connections_after = pg.connections("packyard")

        outcomes = load.outcomes
        slow = [o for o in outcomes if o.seconds > 5]
        assert not slow, f"requests that took over 5 s: {slow[:5]}"
        unexpected = [o for o in outcomes if o.status not in (200, 201, 503)]
        assert not unexpected, f"answers other than 200, 201 and 503: {unexpected[:5]}"
        assert all(o.retry_after for o in outcomes if o.status == 503), "503 without Retry-After"
        assert any(o.status == 503 for o in outcomes if down <= o.started <= back)
        recovered = [o.started + o.seconds - back for o in outcomes
                     if o.kind == "read" and o.status == 200 and o.started > back]  # fmt: skip
        assert recovered and min(recovered) < 5, "no read answered 200 within 5 s"
        assert any(o.status == 201 for o in outcomes if o.started > back)
        # The restart ended every earlier connection. Those opened since serve the same
        # load as before; a web process's pool and generation reader keep one for each
        # thread that ever ran at once, so a new peak of concurrency may add a few.
        assert connections_after <= connections_before + 4, (connections_before, connections_after)

        acknowledged = {o.name for o in outcomes if o.status == 201}
        engine = sa.create_engine(database_url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            query = "SELECT filename, storage_key FROM package_files"
            kept = {name: key for name, key in conn.execute(sa.text(query))}
        assert acknowledged <= kept.keys(), f"lost: {acknowledged - kept.keys()}"
        assert all((tmp_path / "files" / kept[name]).is_file() for name in acknowledged)
    finally:
        worker.stop(signal.SIGKILL)
        server.stop()
        redis.stop()


@pytest.mark.parametrize("hook", [False, True], ids=["no-hook", "hook"])
def test_an_upload_committed_just_before_the_database_goes_down_answers_201(
    tmp_path: Path, private_postgres: PrivatePostgres, hook: bool
) -> None:
    """PostgreSQL stops the moment the upload's commit has returned: the announcements that
    follow (whether a webhook listens, the ``published`` event) fail and are logged, and
    the client hears 201, not an error that a retry would turn into ``File already
    exists``."""
    database_url = private_postgres.create_database("packyard")
    migrate(database_url, tmp_path / "migrate")
    app = _app_on(database_url, tmp_path)
    with app.app_context():
        registry = Registry(app, app.test_client())
        admin = registry.user("root", admin=True)
        project = registry.project(registry.group("team"), "lib")
        if hook:
            create_hook(db.session, project, HookParams(url="http://127.0.0.1:9/"), SYSTEM)
        token, project_id = registry.token(admin), project.id
        _use_broker(registry, "memory://")  # sent, never run
        recorded: list[str] = []

        def note(_conn, _cursor, statement: str, *_args) -> None:
            recorded.append(statement)

        def stop_after_the_upload(_session) -> None:
            if any(s.startswith("INSERT INTO package_files") for s in recorded):
                recorded.clear()
                private_postgres.stop("fast")

        event.listen(db.engine, "before_cursor_execute", note)
        event.listen(Session, "after_commit", stop_after_the_upload)
        try:
            response = registry.upload(str(project_id), *make_wheel("late", "1.0"), token=token)
        finally:
            event.remove(Session, "after_commit", stop_after_the_upload)
            event.remove(db.engine, "before_cursor_execute", note)
            private_postgres.start()
    assert response.status_code == 201, response.text
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        files = conn.execute(sa.text("SELECT filename FROM package_files")).scalars().all()
    engine.dispose()
    assert files == ["late-1.0-py3-none-any.whl"]


def test_a_worker_whose_process_group_is_told_to_stop_exits_in_seconds(tmp_path):
    """``kill -TERM -PGID`` (supervisord's ``stopasgroup``, a terminal's Ctrl-C) reaches
    the pool's children too, unless they have a group of their own. A child that dies of
    it while holding the pool's queue lock (an idle one waits for work holding it) left
    the main process's shutdown waiting on that lock until it was killed (2 stops of 5
    of the metrics test's worker). The pool children have groups of their own; a group
    stop then takes a warm shutdown's few seconds."""
    env = packyard_env(tmp_path)
    subprocess.run([str(BIN / "packyard"), "db", "upgrade"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    worker = LiveProcess([str(BIN / "packyard"), "worker", "--concurrency=2"], env,
                         tmp_path / "worker.log")  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ready" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(worker.proc.pid)
        assert len(children) == 2, children
        assert all(os.getpgid(pid) != worker.proc.pid for pid in children)
        started = time.monotonic()
        os.killpg(worker.proc.pid, signal.SIGTERM)
        worker.proc.wait(15)
        assert time.monotonic() - started < 10
    finally:
        worker.stop(signal.SIGKILL)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
