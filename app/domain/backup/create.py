"""``packyard backup create``: a consistent copy of the database and files, taken while
the registry serves.

Every table is read in one snapshot (a REPEATABLE READ, read-only transaction on
PostgreSQL; one read transaction on SQLite, whose WAL lets writers go on), so the rows
agree with each other. The files those rows name are then copied through the storage
API (any backend) and checked against the sha256 recorded for them. Files are never
changed once stored, so copying after the snapshot is safe; one deleted in between (its
row deleted after the snapshot) is reported, not fatal.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, select

from app.domain.backup.layout import (
    FileEntry,
    Manifest,
    TableDump,
    encode,
    file_sha256,
    files_root,
    reflect,
    table_path,
)
from app.domain.progress import Throttle
from app.domain.storage import FileStorage, StorageBackend, StorageError
from app.domain.storage_migration import CopyFailed, copy_verified
from app.models import PackageFile, UpstreamFile

SKIPPED_TABLES = {"alembic_version"}  # recorded as the manifest's schema_revision
BATCH = 1000  # rows fetched at a time


class BackupRefused(Exception):
    """The backup cannot be taken; the message says why."""


def create_backup(
    engine: Engine, store: StorageBackend, root: Path, report: Callable[[str], None]
) -> Manifest:
    """Write a backup of the database behind ``engine`` and the files in ``store``."""
    if root.exists() and any(root.iterdir()):
        raise BackupRefused(f"{root} is not empty: give a new directory")
    (root / "tables").mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC).isoformat(),
        packyard_version=version("packyard"),
        schema_revision="",
        source_dialect=engine.dialect.name,
    )
    with engine.connect() as conn:
        _begin_snapshot(conn)
        manifest.schema_revision = MigrationContext.configure(conn).get_current_revision() or ""
        for table in _tables(conn):
            manifest.tables.append(_dump_table(conn, table, root))
            report(f"table {table.name}: {manifest.tables[-1].rows} rows")
        referenced = _referenced_files(conn)
        conn.rollback()
    _copy_files(store, root, referenced, manifest, report)
    manifest.write(root)  # last: its presence marks the backup complete
    return manifest


def _begin_snapshot(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif conn.dialect.name == "sqlite":
        # pysqlite opens transactions only for writes; this one pins the first read's view.
        conn.exec_driver_sql("BEGIN")


def _tables(conn: Connection) -> list[Table]:
    return [t for t in reflect(conn).sorted_tables if t.name not in SKIPPED_TABLES]


def _dump_table(conn: Connection, table: Table, root: Path) -> TableDump:
    path = table_path(root, table.name)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in _rows_in_insert_order(conn, table):
            out.write(encode(row) + "\n")
            count += 1
    return TableDump(table.name, count, file_sha256(path))


def _rows_in_insert_order(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    """Rows by primary key, and a row referring to its own table after the row it names
    (nested groups), so that every foreign key holds as they are inserted."""
    query = select(table).order_by(*table.primary_key)
    self_refs = [fk for fk in table.foreign_keys if fk.column.table is table]
    if not self_refs:  # streamed (a server-side cursor on PostgreSQL): any size
        for row in conn.execute(query.execution_options(yield_per=BATCH)).mappings():
            yield dict(row)
        return
    rows = [dict(r) for r in conn.execute(query).mappings()]
    pending, done = rows, set()
    while pending:
        ready = [r for r in pending if all(_met(r, fk, done) for fk in self_refs)]
        if not ready:  # a cycle: the database would not have accepted it either
            ready = pending
        for row in ready:
            done.add(tuple(row[c.name] for c in table.primary_key))
            yield row
        pending = [r for r in pending if r not in ready]


def _met(row: dict[str, Any], fk: Any, done: set[tuple[Any, ...]]) -> bool:
    value = row[fk.parent.name]
    return value is None or (value,) in done


def _referenced_files(conn: Connection) -> dict[str, str]:
    """sha256 by storage key, of every file a row says is stored."""
    package_files = conn.execute(select(PackageFile.storage_key, PackageFile.sha256))
    upstream = conn.execute(
        select(UpstreamFile.storage_key, UpstreamFile.sha256).where(UpstreamFile.stored)
    )
    return {key: sha for key, sha in [*package_files, *upstream] if key}


def _copy_files(
    store: StorageBackend,
    root: Path,
    referenced: dict[str, str],
    manifest: Manifest,
    report: Callable[[str], None],
) -> None:
    target = FileStorage(files_root(root))
    throttle = Throttle(report)
    for done, (key, sha256) in enumerate(sorted(referenced.items()), 1):
        try:
            size = copy_verified(store, target, key, sha256)
        except FileNotFoundError:
            manifest.problems.append(f"{key}: not in storage (deleted since the snapshot?)")
        except (CopyFailed, StorageError, OSError) as exc:
            manifest.problems.append(f"{key}: {exc}")
        else:
            manifest.files.append(FileEntry(key, sha256, size))
        throttle(lambda done=done: f"files: {done}/{len(referenced)} copied")
    throttle(lambda: f"files: {len(manifest.files)}/{len(referenced)} copied", force=True)
    (files_root(root) / ".tmp").rmdir()
