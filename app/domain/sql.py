"""SQL that both databases speak, each in its own dialect's construct."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_or_skip(session: Session, model: type[Any], *conflict: str) -> Any:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` into ``model``'s table (add
    ``.values``): one statement in the caller's transaction where a savepoint would take
    two, and on SQLite, outside a transaction, a savepoint's release commits on its own."""
    insert = _INSERTS[session.get_bind().dialect.name](model)
    return insert.on_conflict_do_nothing(index_elements=list(conflict) or None)
