"""The on-disk form of a backup, shared by ``create`` and ``restore``.

::

    PATH/manifest.json          written last: a backup without it is unfinished
    PATH/tables/<table>.jsonl   one row per line, in primary-key order
    PATH/files/<storage key>    every package (and cached upstream) file the rows name

Rows are portable between databases: datetimes are ISO 8601 strings (UTC), binary values
base64; ``decode`` turns them back by the type of the column they go into, so a backup of
SQLite restores into PostgreSQL and back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, LargeBinary, MetaData
from sqlalchemy.exc import SAWarning
from sqlalchemy.types import Date, DateTime

FORMAT = "packyard-backup/1"
MANIFEST = "manifest.json"


class BackupInvalid(Exception):
    """The backup is unfinished, damaged or of another format; the message says which."""


@dataclass
class TableDump:
    name: str
    rows: int
    sha256: str


@dataclass
class FileEntry:
    key: str
    sha256: str
    size: int


@dataclass
class Manifest:
    id: str
    created_at: str
    packyard_version: str
    schema_revision: str
    source_dialect: str
    tables: list[TableDump] = field(default_factory=list)  # in dependency order
    files: list[FileEntry] = field(default_factory=list)
    # Files named by rows that could not be copied (deleted meanwhile, or damaged).
    problems: list[str] = field(default_factory=list)
    format: str = FORMAT

    def write(self, root: Path) -> None:
        text = json.dumps(asdict(self), indent=1)
        (root / MANIFEST).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def read(cls, root: Path) -> Manifest:
        try:
            raw = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupInvalid(f"{root} has no {MANIFEST}: not a backup, or unfinished") from None
        except ValueError as exc:
            raise BackupInvalid(f"{root / MANIFEST} is damaged: {exc}") from None
        if raw.get("format") != FORMAT:
            raise BackupInvalid(f"{root} is not a {FORMAT} backup")
        raw["tables"] = [TableDump(**t) for t in raw["tables"]]
        raw["files"] = [FileEntry(**f) for f in raw["files"]]
        return cls(**raw)


def reflect(conn: Connection) -> MetaData:
    """The tables as the database has them (which may be an older schema than the models)."""
    metadata = MetaData()
    with warnings.catch_warnings():
        # Expression indexes (lower(name)) cannot be reflected; only columns are needed.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        metadata.reflect(conn)
    return metadata


def table_path(root: Path, table: str) -> Path:
    return root / "tables" / f"{table}.jsonl"


def files_root(root: Path) -> Path:
    return root / "files"


def encode(row: dict[str, Any]) -> str:
    return json.dumps(row, default=_encode_value, separators=(",", ":"), ensure_ascii=False)


def _encode_value(value: object) -> object:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot back up a {type(value).__name__}")


def decode(column: Column[Any], value: Any) -> Any:
    """A value read from a dump, as the column it is restored into takes it."""
    if value is None:
        return None
    if isinstance(column.type, DateTime):
        return datetime.fromisoformat(value)
    if isinstance(column.type, Date):
        return date.fromisoformat(value)
    if isinstance(column.type, LargeBinary):
        return base64.b64decode(value)
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
