"""``packyard check``: do the rows and the stored files agree?

Three kinds of damage, each naming its file: a row whose file is missing from storage,
a stored file no row names (an orphan), and a file whose bytes no longer hash to the
sha256 recorded for them. ``repair`` fixes what can be fixed and says what cannot:

- an orphan is deleted, if still without a row after a grace period (an upload stores
  its file just before it commits its row);
- a package file that is missing or damaged is marked ``error`` (so the indexes and
  downloads leave it out, never serving bad bytes); its bytes are lost: the operator
  restores them from a backup, or deletes the file and uploads it again;
- a cached upstream file that is missing or damaged is dropped from storage and marked
  not stored, so the next request fetches it from the upstream again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from app.domain.progress import Throttle
from app.domain.storage import StorageBackend
from app.domain.storage_migration import stored_sha256
from app.models import PackageFile, UpstreamFile

MISSING, ORPHAN, MISMATCH = "missing", "orphan", "hash mismatch"
LOST_BYTES = "its bytes are lost: restore them from a backup, or delete it and upload it again"


@dataclass
class Finding:
    kind: str
    key: str
    name: str  # what an operator recognises: the filename, or the key of an orphan
    row: PackageFile | UpstreamFile | None = None
    repaired: str | None = None
    unrepairable: str | None = None

    def describe(self) -> str:
        where = "" if self.name == self.key else f" (storage key {self.key})"
        return f"{self.kind}: {self.name}{where}"


def check_storage(
    session: Session, store: StorageBackend, report: Callable[[str], None]
) -> list[Finding]:
    """Every disagreement between the rows and the storage, hashing every stored file."""
    listed = set(store.keys())  # before the rows: a file uploaded meanwhile has its row
    rows: list[PackageFile | UpstreamFile] = [
        *session.execute(select(PackageFile).order_by(PackageFile.id)).scalars(),
        *session.execute(
            select(UpstreamFile).where(UpstreamFile.stored).order_by(UpstreamFile.id)
        ).scalars(),
    ]
    findings = []
    throttle = Throttle(report)
    for done, row in enumerate(rows, 1):
        finding = _check_row(store, row)
        if finding:
            findings.append(finding)
        throttle(lambda done=done: f"checked {done}/{len(rows)} files")
    report(f"checked {len(rows)} files")
    return findings + [Finding(ORPHAN, key, key) for key in sorted(listed - _named(session))]


def _check_row(store: StorageBackend, row: PackageFile | UpstreamFile) -> Finding | None:
    key = str(row.storage_key)
    try:
        actual = stored_sha256(store, key)
    except FileNotFoundError:
        return Finding(MISSING, key, row.filename, row)
    if actual != row.sha256:
        return Finding(MISMATCH, key, row.filename, row)
    return None


def _named(session: Session) -> set[str]:
    """Every storage key a row names, or will name (an upstream file being fetched)."""
    package = session.execute(select(PackageFile.storage_key)).scalars()
    upstream = session.execute(
        select(UpstreamFile.storage_key).where(UpstreamFile.storage_key.is_not(None))
    ).scalars()
    return {*package, *upstream}


def repair(session: Session, store: StorageBackend, findings: list[Finding], grace: float) -> None:
    """Fix what can be fixed; each finding says what was done (``repaired``) or why not
    (``unrepairable``)."""
    session.rollback()  # end the check's long read: look at the rows as they are now
    for finding in findings:
        if finding.row is not None and not _still_there(session, finding.row):
            finding.repaired = "nothing to do: its row was deleted meanwhile"
        elif isinstance(finding.row, PackageFile):
            _fail_package_file(finding.row, finding)
        elif isinstance(finding.row, UpstreamFile):
            _forget_upstream_file(store, finding.row, finding)
    session.commit()
    orphans = [f for f in findings if f.kind == ORPHAN]
    if orphans:
        time.sleep(grace)
        _remove_orphans(session, store, orphans)


def _still_there(session: Session, row: PackageFile | UpstreamFile) -> bool:
    """Whether the row survived the check (a file deleted meanwhile is missing from storage
    because its row went first)."""
    try:
        session.refresh(row)
    except InvalidRequestError:
        return False
    return True


def _fail_package_file(row: PackageFile, finding: Finding) -> None:
    if row.state != "error":
        row.state = "error"
        row.error_reason = f"packyard check: {finding.kind} in storage"
        finding.repaired = "marked failed: left out of the indexes and downloads"
    finding.unrepairable = LOST_BYTES


def _forget_upstream_file(store: StorageBackend, row: UpstreamFile, finding: Finding) -> None:
    store.delete(finding.key)
    row.stored, row.stored_at = False, None
    finding.repaired = "dropped: the next request fetches it from the upstream again"


def _remove_orphans(session: Session, store: StorageBackend, orphans: list[Finding]) -> None:
    session.rollback()  # a fresh look at the rows
    keys = [f.key for f in orphans]
    named = set(
        session.execute(
            select(PackageFile.storage_key).where(PackageFile.storage_key.in_(keys))
        ).scalars()
    ) | set(
        session.execute(
            select(UpstreamFile.storage_key).where(UpstreamFile.storage_key.in_(keys))
        ).scalars()
    )
    for finding in orphans:
        if finding.key in named:
            finding.repaired = "kept: a row names it now (an upload that was in flight)"
            continue
        store.delete(finding.key)
        finding.repaired = "removed from storage"
