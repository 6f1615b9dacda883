"""``packyard backup restore``: a backup into an empty instance, on any database.

The backup is checked whole first (every table's and file's sha256 against the
manifest), so a damaged one is refused before anything is written. The target's schema
is migrated to the backup's revision, the rows go in in one transaction (with a marker
row; files still being processed are marked to be sent again), then the files are
copied through the storage API, each verified, skipping those already there. An
interrupted restore is continued by running it again: the marker says the rows are this
backup's, and files already copied are kept. The marker goes last.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, text, update

from app.domain.backup.layout import (
    BackupInvalid,
    Manifest,
    decode,
    file_sha256,
    files_root,
    reflect,
    table_path,
)
from app.domain.progress import Throttle
from app.domain.storage import FileStorage, StorageBackend
from app.domain.storage_migration import copy_verified
from app.models.instance import InstanceSecret

# Rows an instance makes for itself (by migration or on first use): replaced, not counted
# when deciding whether the target is empty.
INSTANCE_TABLES = {"cache_generation", "instance_secrets"}
MARKER = "restore-in-progress"
BATCH = 500


class RestoreRefused(Exception):
    """The target is not one a backup may be restored into; the message says why."""


def verify_backup(root: Path, report: Callable[[str], None]) -> Manifest:
    """The manifest, once every table and file matches it; BackupInvalid otherwise."""
    manifest = Manifest.read(root)
    for table in manifest.tables:
        path = table_path(root, table.name)
        if not path.is_file() or file_sha256(path) != table.sha256:
            raise BackupInvalid(f"table {table.name}: {path} is missing or damaged")
    throttle = Throttle(report)
    for done, entry in enumerate(manifest.files, 1):
        path = files_root(root) / entry.key
        if not path.is_file() or file_sha256(path) != entry.sha256:
            raise BackupInvalid(f"file {entry.key}: missing from the backup or damaged")
        throttle(lambda done=done: f"verified {done}/{len(manifest.files)} files")
    return manifest


def restore_backup(
    engine: Engine,
    store: StorageBackend,
    root: Path,
    migrate: Callable[[str], None],
    report: Callable[[str], None],
) -> Manifest:
    """Restore ``root`` into the database behind ``engine`` and ``store``; ``migrate(rev)``
    brings the target's schema to a revision (Alembic, in the caller's app context)."""
    manifest = verify_backup(root, report)
    with engine.connect() as conn:
        resuming = _check_target(conn, manifest)
    if resuming:
        report("the rows were restored by an earlier run: continuing with the files")
    else:
        migrate(manifest.schema_revision)
        _load_rows(engine, root, manifest, report)
    _copy_files(store, root, manifest, report)
    with engine.begin() as conn:
        conn.execute(delete(InstanceSecret).where(InstanceSecret.name == MARKER))
    for problem in manifest.problems:
        report(f"not in the backup: {problem}")
    return manifest


def _check_target(conn: Connection, manifest: Manifest) -> bool:
    """True if an earlier run of this restore loaded the rows; raises unless empty."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        return False
    if revision != manifest.schema_revision:
        raise RestoreRefused(
            f"the target database is at schema revision {revision}, the backup at "
            f"{manifest.schema_revision}: restore into a new, empty database"
        )
    tables = _reflect(conn)
    if "instance_secrets" in tables:
        marker = conn.execute(
            select(InstanceSecret.value).where(InstanceSecret.name == MARKER)
        ).scalar()
        if marker == manifest.id:
            return True
    busy = [
        name
        for name, table in tables.items()
        if name not in INSTANCE_TABLES | {"alembic_version"}
        and conn.execute(select(func.count()).select_from(table)).scalar_one()
    ]
    if busy:
        raise RestoreRefused(
            f"the target instance is not empty (rows in {', '.join(sorted(busy))}): "
            "restore only into a new, empty database"
        )
    return False


def _reflect(conn: Connection) -> dict[str, Table]:
    return dict(reflect(conn).tables)


def _load_rows(engine: Engine, root: Path, manifest: Manifest, report: Callable[[str], None]):
    with engine.begin() as conn:
        tables = _reflect(conn)
        for name in INSTANCE_TABLES & tables.keys():
            conn.execute(delete(tables[name]))
        for dump in manifest.tables:
            if dump.name not in tables:
                raise RestoreRefused(f"the target has no table {dump.name}")
            _insert_rows(conn, tables[dump.name], table_path(root, dump.name))
            report(f"table {dump.name}: {dump.rows} rows restored")
        _reset_sequences(conn, [tables[d.name] for d in manifest.tables])
        _mark_unfinished_unsent(conn, tables)
        conn.execute(insert(InstanceSecret).values(name=MARKER, value=manifest.id))


def _mark_unfinished_unsent(conn: Connection, tables: dict[str, Table]) -> None:
    """Files still being processed when the backup was taken had their tasks in the
    source's broker, which no backup holds. Marked unsent as ``mark_unsent`` marks them
    (no ``enqueued_at``), they are sent by the restored instance's workers within seconds,
    not taken for lost after ``REDELIVER_AFTER``; and no worker here has started them."""
    files = tables["package_files"]
    conn.execute(
        update(files).where(files.c.state == "processing").values(enqueued_at=None, started_at=None)
    )


def _insert_rows(conn: Connection, table: Table, path: Path) -> None:
    batch: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            raw = json.loads(line)
            batch.append({k: decode(table.c[k], v) for k, v in raw.items() if k in table.c})
            if len(batch) >= BATCH:
                conn.execute(insert(table), batch)
                batch = []
    if batch:
        conn.execute(insert(table), batch)


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """PostgreSQL hands out ids from sequences, which explicit ids do not advance."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        for column in table.primary_key:
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"),
                {"t": table.name, "c": column.name},
            ).scalar()
            if sequence:
                conn.execute(
                    text(
                        f'SELECT setval(:s, coalesce((SELECT max("{column.name}") '
                        f'FROM "{table.name}"), 0) + 1, false)'
                    ),
                    {"s": sequence},
                )


def _copy_files(
    store: StorageBackend, root: Path, manifest: Manifest, report: Callable[[str], None]
) -> None:
    source = FileStorage(files_root(root))
    throttle = Throttle(report)
    copied = 0
    for done, entry in enumerate(manifest.files, 1):
        if not store.exists(entry.key):
            copy_verified(source, store, entry.key, entry.sha256)
            copied += 1
        throttle(lambda done=done: f"files: {done}/{len(manifest.files)}")
    report(f"files: {copied} copied, {len(manifest.files) - copied} already there")
