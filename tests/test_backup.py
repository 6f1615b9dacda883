"""``packyard backup create|restore``: a backup taken while uploads go on, restored from
SQLite into a fresh PostgreSQL instance and installed from with pip; refusals of a
non-empty target and of a damaged backup; an interrupted restore continued."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from flask import Flask

from app import create_app
from app.domain.backup.create import BackupRefused, create_backup
from app.domain.backup.layout import BackupInvalid, Manifest, files_root, table_path
from app.domain.backup.restore import RestoreRefused, restore_backup
from app.domain.processing import claim_unsent
from app.extensions import db
from app.migrations import upgrade
from app.models import Package, PackageFile, User
from app.models.base import utcnow
from app.runtime import storage
from tests.conftest import Registry
from tests.dists import make_wheel
from tests.services import BIN, LiveServer, packyard_env, postgres_database
from tests.test_e2e_clients import Deployment, fresh_venv, run
from tests.test_storage_migrate import Interrupting


@pytest.fixture
def uploaded(registry: Registry) -> dict[str, bytes]:
    """Four files in two releases, plus a nested group; content by filename."""
    parent = registry.group("team")
    project = registry.project(registry.group("sub", parent=parent), "lib")
    token = registry.token(registry.user("root", admin=True))
    return registry.releases(project, token, "demo", ("1.0", "1.1"))


@pytest.fixture
def backup(uploaded: dict[str, bytes], tmp_path: Path) -> Path:
    path = tmp_path / "backup"
    manifest = create_backup(db.engine, storage(), path, lambda _: None)
    assert not manifest.problems and len(manifest.files) == len(uploaded)
    return path


@pytest.fixture
def target(tmp_path: Path) -> Flask:
    """A new instance on a SQLite database no migration has touched."""
    data = tmp_path / "target"
    return create_app(
        {"DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{data}/t.db",
         "LOAD_ENTRYPOINT_PLUGINS": False}
    )  # fmt: skip


def restore_into(target: Flask, backup: Path, store: object = None) -> Manifest:
    with target.app_context():
        return restore_backup(db.engine, store or storage(), backup, upgrade, lambda _: None)


def test_rows_and_files_come_back_the_same(uploaded, backup, target):
    source_files = {f.filename: (f.sha256, f.created_at) for f in db.session.query(PackageFile)}
    restore_into(target, backup)
    with target.app_context():
        files = db.session.query(PackageFile).all()
        assert {f.filename: (f.sha256, f.created_at.replace(tzinfo=None)) for f in files} == {
            name: (sha, created.replace(tzinfo=None))
            for name, (sha, created) in source_files.items()
        }
        for row in files:
            with storage().open(row.storage_key) as fh:
                assert fh.read() == uploaded[row.filename]
        assert all(f.metadata_bytes for f in files if f.filename.endswith(".whl"))
        assert db.session.query(Package).count() == 2


def test_files_being_processed_at_the_backup_are_sent_at_once_after_a_restore(
    uploaded, tmp_path, target
):
    """Their tasks were in the source's broker, not in the backup. Left as they were, the
    restored workers took them for lost only after ``REDELIVER_AFTER`` (60 s)."""
    busy = db.session.query(PackageFile).order_by(PackageFile.id).first()
    busy.state, busy.enqueued_at, busy.started_at = "processing", utcnow(), utcnow()
    db.session.commit()
    create_backup(db.engine, storage(), tmp_path / "busy", lambda _: None)
    restore_into(target, tmp_path / "busy")
    with target.app_context():
        assert claim_unsent(db.session) == [busy.id]  # what the sweeper sends every 2 s


def _naive(files: dict) -> dict:
    """SQLite gives datetimes back without their (UTC) zone."""
    return {name: (sha, at.replace(tzinfo=None)) for name, (sha, at) in files.items()}


def test_a_non_empty_target_is_refused(backup, target):
    with target.app_context():
        upgrade()
        db.session.add(User(username="someone", email="s@example.com", is_admin=False))
        db.session.commit()
    with pytest.raises(RestoreRefused, match=r"not empty.*users"):
        restore_into(target, backup)


def test_a_backup_into_a_non_empty_directory_is_refused(backup):
    with pytest.raises(BackupRefused, match="not empty"):
        create_backup(db.engine, storage(), backup, lambda _: None)


@pytest.mark.parametrize("damage", ["file", "table", "manifest"])
def test_a_damaged_backup_is_refused_before_anything_is_written(backup, target, damage):
    manifest = Manifest.read(backup)
    if damage == "file":
        path = files_root(backup) / manifest.files[0].key
        path.write_bytes(path.read_bytes()[:-1] + b"!")
    elif damage == "table":
        path = table_path(backup, "package_files")
        path.write_text(path.read_text().replace('"1.0"', '"6.6"', 1))
    else:
        (backup / "manifest.json").write_text("{")
    with pytest.raises(BackupInvalid, match="damaged"):
        restore_into(target, backup)
    with target.app_context():
        assert not db.inspect(db.engine).get_table_names()  # nothing written


def test_an_interrupted_restore_continues_when_run_again(uploaded, backup, target):
    with target.app_context(), pytest.raises(KeyboardInterrupt):
        restore_backup(db.engine, Interrupting(storage()), backup, upgrade, lambda _: None)
    lines: list[str] = []
    with target.app_context():
        restore_backup(db.engine, storage(), backup, upgrade, lines.append)
        assert any("continuing with the files" in line for line in lines)
        assert "2 copied, 2 already there" in lines[-1]
        assert sorted(f.filename for f in db.session.query(PackageFile)) == sorted(uploaded)
    with pytest.raises(RestoreRefused, match="not empty"):  # done: the marker is gone
        restore_into(target, backup)


# --- the whole story, with real processes ------------------------------------------------


def _upload_until(deployment: Deployment, stop: threading.Event, done: dict[str, bytes]):
    version = 0
    while not stop.is_set() or version < 4:
        filename, content = make_wheel("busy-pkg", f"1.{version}")
        response = requests.post(
            deployment.upload_url,
            auth=("__token__", deployment.token),
            data={":action": "file_upload", "name": "busy-pkg", "version": f"1.{version}"},
            files={"content": (filename, content)},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        done[filename] = content
        version += 1


@pytest.mark.e2e
def test_a_backup_taken_during_uploads_restores_into_postgresql_for_pip(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    server = LiveServer(source, packyard_env(source))
    uploaded: dict[str, bytes] = {}
    try:
        deployment = Deployment(server, source)
        stop = threading.Event()
        uploader = threading.Thread(target=_upload_until, args=(deployment, stop, uploaded))
        uploader.start()
        while len(uploaded) < 2 and uploader.is_alive():
            time.sleep(0.1)
        before = set(uploaded)
        created = subprocess.run(
            [str(BIN / "packyard"), "backup", "create", str(tmp_path / "backup")],
            env=server.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        stop.set()
        uploader.join()
    finally:
        server.stop()
    assert created.returncode == 0, created.stdout + created.stderr
    rows = [json.loads(line) for line in table_path(tmp_path / "backup", "package_files").open()]
    backed_up = {row["filename"]: row for row in rows}
    assert before <= backed_up.keys() <= uploaded.keys()
    assert len(Manifest.read(tmp_path / "backup").files) == len(rows)  # a file for every row

    target = tmp_path / "target"
    target.mkdir()
    with postgres_database() as url:
        env = packyard_env(target, DATABASE_URL=url)
        restored = subprocess.run(
            [str(BIN / "packyard"), "backup", "restore", str(tmp_path / "backup")],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "files: " in restored.stdout and "restored backup" in restored.stdout
        again = subprocess.run(
            [str(BIN / "packyard"), "backup", "restore", str(tmp_path / "backup")],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert again.returncode == 1 and "not empty" in again.stderr
        server = LiveServer(target, env)
        try:
            _pip_installs_from(Restored(server, target), backed_up, uploaded)
        finally:
            server.stop()


class Restored(Deployment):
    """The restored instance's project: found, not created."""

    def __init__(self, server: LiveServer, tmp: Path) -> None:
        self.server, self.tmp, self.token = server, tmp, server.admin_token
        project = server.api("GET", "/projects/team%2Flib").json()
        self.index_path = f"/api/v4/projects/{project['id']}/packages/pypi/simple/"


def _pip_installs_from(deployment: Deployment, backed_up: dict, uploaded: dict) -> None:
    tmp = deployment.tmp
    for filename in backed_up:
        listed = deployment.wait_processed("busy-pkg", filename)
        assert listed["hashes"]["sha256"] == hashlib.sha256(uploaded[filename]).hexdigest()
    python = fresh_venv(tmp, "venv", seed=True)
    newest = max(backed_up, key=lambda name: int(name.split("-")[1].split(".")[1]))
    version = newest.split("-")[1]
    run([str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url",
         deployment.index_url(), f"busy-pkg=={version}"], tmp)  # fmt: skip
    check = run([str(python), "-c", "import busy_pkg; print(busy_pkg.VERSION)"], tmp)
    assert check.stdout.strip() == version
