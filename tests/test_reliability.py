"""Nothing a user uploaded is lost, whatever dies: the sweeper and redelivery.

The end-to-end tests run a private Redis server (so it can be stopped), PostgreSQL,
``packyard serve --no-worker`` and separate ``packyard worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from app.domain.processing import claim_stalled
from app.extensions import db
from app.models import PackageFile
from app.models.base import utcnow
from tests.dists import make_wheel
from tests.services import (
    BIN,
    LiveProcess,
    LiveServer,
    free_port,
    packyard_env,
    postgres_database,
    unavailable,
)


def _queued_files(registry, count: int) -> list[PackageFile]:
    """``count`` uploads whose tasks went nowhere (no worker consumes the memory broker)."""
    admin = registry.user("root", admin=True)
    project = registry.project(registry.group("team"), "lib")
    registry.app.extensions["celery"].conf.task_always_eager = False
    registry.app.config["BROKER_URL"] = "memory://"
    registry.app.extensions["celery"].conf.broker_url = "memory://"
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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    redis = PrivateRedis(tmp_path)
    with postgres_database() as database_url:
        env = packyard_env(
            tmp_path, DATABASE_URL=database_url, BROKER_URL=redis.url,
            REDELIVER_AFTER="3", SWEEP_INTERVAL="1", VISIBILITY_TIMEOUT="10",
        )  # fmt: skip
        subprocess.run([str(BIN / "packyard"), "db", "upgrade"], env=env, check=True)
        server = LiveServer(tmp_path, env, worker=False)
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
    server: LiveServer, project: dict, name: str, timeout: float
) -> float:
    start = time.monotonic()
    url = f"{server.url}/api/v4/projects/{project['id']}/packages/pypi/simple/{name}/"
    while time.monotonic() - start < timeout:
        page = requests.get(
            url, headers={"Accept": "application/vnd.pypi.simple.v1+json",
                          "PRIVATE-TOKEN": server.admin_token}, timeout=10,
        )  # fmt: skip
        if page.ok and all(f["core-metadata"] for f in page.json()["files"]):
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{name} was not processed within {timeout}s")


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
def test_an_upload_accepted_while_redis_is_down_is_processed_when_it_is_back(stack):
    stack["start_worker"]("steady")
    time.sleep(3)
    stack["redis"].stop()
    upload(stack["server"], stack["project"], "patient")  # still 201: the row is the truth
    time.sleep(1)
    stack["redis"].start()
    waited = wait_listed_with_metadata(stack["server"], stack["project"], "patient", 120)
    assert waited < 120
