"""When the S3 server goes away: during an upload (a clean 503, nothing kept, the retry
works), during processing (the worker retries, nothing is lost), and in ``/-/ready``."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.extensions import db
from app.models import PackageFile
from plugins.storage_s3 import PART_SIZE
from tests.conftest import Registry, basic
from tests.dists import make_wheel
from tests.s3server import S3Server, credentials_env
from tests.services import BIN, LiveProcess, LiveServer, packyard_env

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(tmp_path: Path, sqlite_template: Path, s3: S3Server) -> Iterator[Flask]:
    shutil.copy(sqlite_template, tmp_path / "packyard.db")
    app = create_app({
        "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": f"sqlite:///{tmp_path}/packyard.db",
        "STORAGE_URL": s3.url(s3.bucket("files")), "LOAD_ENTRYPOINT_PLUGINS": False,
    })  # fmt: skip
    app.extensions["celery"].conf.task_always_eager = True
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


class Body(io.BytesIO):
    """A request body read 64 KiB at a time that calls ``when`` once ``after`` bytes
    have been read."""

    def __init__(self, data: bytes, after: int, when: Callable[[], None]) -> None:
        super().__init__(data)
        self.after, self.when = after, when

    def readinto(self, buffer: Any) -> int:
        if self.tell() >= self.after and self.when is not None:
            self.when()
            self.when = None  # type: ignore[assignment]
        view = memoryview(buffer)[: 64 * 1024]
        return super().readinto(view)

    def read(self, size: int | None = -1) -> bytes:
        buffer = bytearray(64 * 1024 if size is None or size < 0 else min(size, 64 * 1024))
        return bytes(buffer[: self.readinto(buffer)])


def multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in {"name": "demo-pkg", "version": "1.0"}.items()
    )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    body = fields + head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_s3_stopped_during_an_upload_is_a_clean_503_and_the_retry_works(app, s3):
    registry = Registry(app, app.test_client())
    project = registry.project(registry.group("team"), "lib")
    token = registry.token(registry.user("root", admin=True))
    filename, content = make_wheel("demo-pkg", "1.0", payload=os.urandom(2 * PART_SIZE))
    body, content_type = multipart(filename, content)
    url = f"/api/v4/projects/{project.id}/packages/pypi"
    # Killed once the first part is in the bucket, while the rest is still arriving.
    stream = Body(body, PART_SIZE + MIB, s3.stop)
    response = registry.client.post(
        url, input_stream=stream, content_type=content_type, content_length=len(body),
        headers=basic(token),
    )  # fmt: skip
    assert response.status_code == 503, response.text
    assert response.mimetype == "text/plain" and "S3" in response.text
    assert db.session.query(PackageFile).count() == 0
    # A small file fails at the end, after its row was written: the row goes too.
    small = make_wheel("demo-pkg", "1.0")
    assert registry.upload(project, *small, token=token).status_code == 503
    assert db.session.query(PackageFile).count() == 0
    s3.start()
    assert s3.objects("files") == []
    retried = registry.client.post(url, data=body, content_type=content_type, headers=basic(token))
    assert retried.status_code == 201, retried.text
    sha = hashlib.sha256(content).hexdigest()
    download = registry.client.get(f"{url}/files/{sha}/{filename}", headers=basic(token))
    assert download.status_code == 200 and hashlib.sha256(download.data).hexdigest() == sha


def test_ready_names_storage_while_s3_is_down(app, s3):
    client = app.test_client()
    assert client.get("/-/ready").status_code == 200
    s3.stop()
    down = client.get("/-/ready")
    assert down.status_code == 503
    assert list(down.json["failing"]) == ["storage"]
    assert "S3" in down.json["failing"]["storage"]
    s3.start()
    assert client.get("/-/ready").status_code == 200


@pytest.mark.e2e
def test_s3_stopped_during_processing_is_retried_and_nothing_is_lost(tmp_path, s3):
    (tmp_path / "data").mkdir()
    env = {
        **packyard_env(tmp_path / "data", STORAGE_URL=s3.url(s3.bucket("files"))),
        **credentials_env(),
    }
    server = LiveServer(tmp_path / "data", env, worker=False)
    worker = None
    try:
        group = server.api("POST", "/groups", data={"path": "team"}).json()
        project = server.api("POST", "/projects", data={"path": "lib", "namespace_id": group["id"]})
        filename, content = make_wheel("patient", "1.0")
        upload = requests.post(
            f"{server.url}/api/v4/projects/{project.json()['id']}/packages/pypi",
            files={"content": (filename, content)}, data={"name": "patient", "version": "1.0"},
            headers={"PRIVATE-TOKEN": server.admin_token}, timeout=30,
        )  # fmt: skip
        assert upload.status_code == 201, upload.text
        s3.stop()
        worker = LiveProcess([str(BIN / "packyard"), "worker", "--concurrency=1"], env,
                             tmp_path / "worker.log")  # fmt: skip
        database = sa.create_engine(f"sqlite:///{tmp_path}/data/packyard.db")
        wait_for(lambda: file_row(database)["attempts"] >= 1, 60, worker)
        time.sleep(6)  # longer than boto3's own retries: this attempt fails
        s3.start()
        wait_for(lambda: file_row(database)["state"] == "default", 90, worker)
        assert file_row(database)["attempts"] >= 2
        database.dispose()
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def file_row(database: sa.Engine) -> dict:
    with database.connect() as conn:
        row = conn.execute(sa.text("SELECT state, attempts FROM package_files")).one()
    return dict(row._mapping)


def wait_for(condition: Callable[[], bool], timeout: float, worker: LiveProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s; worker log:\n{worker.output()[-3000:]}")
