"""Moving every stored file to another storage (``packyard storage migrate``).

Safe while the registry serves: the source is only read, and each file is written to
the target through a writer, so it appears there whole or not at all. Each copy is
hashed on the way and read back from the target; a package file's hash must also be
the one recorded at upload. Resumable: keys never change their bytes, so a key the
target already has is a finished copy and is skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.storage import StorageBackend, StorageError
from app.models import PackageFile

CHUNK = 1024 * 1024


class CopyFailed(Exception):
    """This file could not be copied faithfully; the others go on."""


@dataclass
class MigrationProgress:
    total: int
    copied: int = 0
    skipped: int = 0  # already at the target
    vanished: int = 0  # deleted from the source while the migration ran
    copied_bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # recorded, but not in the source

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.vanished + len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def recorded_hashes(session: Session) -> dict[str, str]:
    """The sha256 recorded at upload, by storage key."""
    rows = session.execute(select(PackageFile.storage_key, PackageFile.sha256))
    return {key: sha256 for key, sha256 in rows}


def migrate_storage(
    source: StorageBackend,
    target: StorageBackend,
    recorded: dict[str, str],
    report: Callable[[MigrationProgress], None] = lambda _: None,
    report_every: float = 2.0,
) -> MigrationProgress:
    """Copy every key of ``source`` that ``target`` lacks; ``report`` sees the progress
    every ``report_every`` seconds and once at the end."""
    keys = sorted(source.keys())
    progress = MigrationProgress(total=len(keys))
    progress.missing = sorted(set(recorded) - set(keys))
    last_report = time.monotonic()
    for key in keys:
        _migrate_one(source, target, key, recorded.get(key), progress)
        if time.monotonic() - last_report >= report_every:
            report(progress)
            last_report = time.monotonic()
    report(progress)
    return progress


def _migrate_one(
    source: StorageBackend,
    target: StorageBackend,
    key: str,
    expected: str | None,
    progress: MigrationProgress,
) -> None:
    try:
        if target.exists(key):
            progress.skipped += 1
            return
        progress.copied_bytes += copy_verified(source, target, key, expected)
        progress.copied += 1
    except FileNotFoundError:
        progress.vanished += 1  # deleted (with its row) since the listing
    except (CopyFailed, StorageError, OSError) as exc:
        progress.failed.append((key, str(exc)))


def copy_verified(
    source: StorageBackend, target: StorageBackend, key: str, expected: str | None
) -> int:
    """Copy one file, then read it back from the target; returns its size."""
    digest = hashlib.sha256()
    size = 0
    with source.open(key) as src, target.writer(key) as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        if expected is not None and digest.hexdigest() != expected:
            raise CopyFailed("the source file does not match its recorded sha256: not copied")
    if stored_sha256(target, key) != digest.hexdigest():
        target.delete(key)
        raise CopyFailed("the copy read back differs from the source: removed, run again")
    return size


def stored_sha256(store: StorageBackend, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(key) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(progress: MigrationProgress) -> str:
    """One progress line."""
    return (
        f"[{progress.done}/{progress.total}] copied {progress.copied} "
        f"({progress.copied_bytes / 2**20:.1f} MiB), already there {progress.skipped}, "
        f"deleted meanwhile {progress.vanished}, failed {len(progress.failed)}"
    )


def problems(progress: MigrationProgress) -> Iterable[str]:
    """What the operator must look at, one line each."""
    for key, reason in progress.failed:
        yield f"failed: {key}: {reason}"
    for key in progress.missing:
        yield f"missing from the source (recorded, never copied): {key}"
