"""``packyard storage migrate``: every file copied to another storage (file:// to a real
S3 server), each verified, resumable after an interruption, corruption reported."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.domain.storage import FileStorage, StorageBackend, StorageWriter
from app.domain.storage_migration import migrate_storage, recorded_hashes
from app.extensions import db
from app.models import PackageFile
from app.runtime import storage
from plugins.storage_s3 import S3Storage
from tests.conftest import Registry
from tests.dists import make_wheel
from tests.s3server import S3Server

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def target_url(s3_server: S3Server) -> str:
    return s3_server.url(s3_server.bucket(f"move-{uuid.uuid4().hex[:12]}"), "files")


@pytest.fixture
def uploaded(registry: Registry) -> dict[str, bytes]:
    """Five files uploaded to file:// storage, by storage key."""
    project = registry.project(registry.group("team"), "lib")
    token = registry.token(registry.user("root", admin=True))
    registry.releases(project, token, "demo", ("1.0", "1.1"))
    registry.upload(project, *make_wheel("other", "2.0"), token=token)
    files = db.session.query(PackageFile).all()
    store = storage()
    return {f.storage_key: store.open(f.storage_key).read() for f in files}


def sha256(store: StorageBackend, key: str) -> str:
    with store.open(key) as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_every_file_is_copied_and_verified(registry, uploaded, target_url):
    target = S3Storage.from_url(target_url)
    progress = migrate_storage(storage(), target, recorded_hashes(db.session))
    assert progress.ok and progress.copied == len(uploaded) == 5
    assert sorted(target.keys()) == sorted(uploaded)
    for key, content in uploaded.items():
        assert sha256(target, key) == hashlib.sha256(content).hexdigest()


class Interrupting(StorageBackend):
    """A target that is interrupted (Ctrl-C) while writing its third file."""

    def __init__(self, target: StorageBackend) -> None:
        self.target, self.writes = target, 0

    def writer(self, key: str) -> StorageWriter:
        self.writes += 1
        writer = self.target.writer(key)
        if self.writes == 3:
            writer.write(b"half a file")
            writer.abort()
            raise KeyboardInterrupt
        return writer

    def exists(self, key: str) -> bool:
        return self.target.exists(key)

    def open(self, key: str):  # type: ignore[no-untyped-def]
        return self.target.open(key)

    def store(self, key: str, source: Path) -> None:
        raise AssertionError("migrate streams through writer()")

    def delete(self, key: str) -> None:
        self.target.delete(key)


def test_an_interrupted_migration_resumes_where_it_stopped(registry, uploaded, target_url):
    target = S3Storage.from_url(target_url)
    recorded = recorded_hashes(db.session)
    with pytest.raises(KeyboardInterrupt):
        migrate_storage(storage(), Interrupting(target), recorded)
    assert len(list(target.keys())) == 2  # two finished copies, nothing half-written
    progress = migrate_storage(storage(), target, recorded)
    assert progress.ok and (progress.skipped, progress.copied) == (2, 3)
    assert sorted(target.keys()) == sorted(uploaded)


def test_a_corrupted_file_is_reported_and_not_copied(registry, uploaded, tmp_path):
    key = next(iter(uploaded))
    local = storage().local_path(key)
    assert local is not None
    local.write_bytes(b"rotten" + uploaded[key][6:])
    target = FileStorage(tmp_path / "elsewhere")
    progress = migrate_storage(storage(), target, recorded_hashes(db.session))
    assert [k for k, _ in progress.failed] == [key]
    assert "recorded sha256" in progress.failed[0][1]
    assert sorted(target.keys()) == sorted(set(uploaded) - {key})


def test_the_command_shows_progress_and_fails_on_a_missing_file(
    registry, uploaded, target_url, database_url
):
    env = {
        "PACKYARD_DATA_DIR": registry.app.config["DATA_DIR"],
        "PACKYARD_DATABASE_URL": database_url,
        "PACKYARD_LOAD_ENTRYPOINT_PLUGINS": "false",
    }
    runner = CliRunner()
    result = runner.invoke(main, ["storage", "migrate", "--to", target_url], env=env)
    assert result.exit_code == 0, result.output
    assert "[5/5] copied 5" in result.output
    assert f"set PACKYARD_STORAGE_URL={target_url}" in result.output
    gone = next(iter(uploaded))
    storage().delete(gone)  # a row whose file is lost
    again = runner.invoke(main, ["storage", "migrate", "--to", target_url], env=env)
    assert again.exit_code == 1
    assert "already there 4" in again.output
    assert f"missing from the source (recorded, never copied): {gone}" in again.output
