"""The audit trail: every write adds one event in its own transaction, so an event is
kept exactly when its write is.

Events are scoped as GitLab scopes them: the *entity* is the user, group or project the
event belongs to (a package's project, a personal token's user), the *target* is the row
written.  Domain services call ``record`` before they commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput
from app.domain.identity import Identity
from app.models import AuditEvent, Group, Project, User
from app.models.audit import ENTITY_TYPES

# Who did it: the request's identity, a name (e.g. "system" for the CLI), or None.
Actor = Identity | str | None
SYSTEM = "system"


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: Group | Project | User | None,
    target_type: str,
    target_id: int | None = None,
    target_path: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; the caller's commit keeps it with the write.

    ``entity`` None: the event concerns the whole instance (e.g. the upstream cache)."""
    name, user_id = _actor(actor)
    event = AuditEvent(
        actor=name[:255],
        actor_user_id=user_id,
        action=action,
        entity_type=type(entity).__name__ if entity is not None else "Instance",
        entity_id=entity.id if entity is not None else None,
        entity_path=_entity_path(entity),
        target_type=target_type,
        target_id=target_id,
        target_path=target_path,
        details=details,
    )
    session.add(event)
    return event


def _entity_path(entity: Group | Project | User | None) -> str | None:
    if entity is None:
        return None
    return entity.username if isinstance(entity, User) else entity.full_path


def _actor(actor: Actor) -> tuple[str, int | None]:
    if isinstance(actor, Identity):
        return actor.name, actor.user_id
    return actor or SYSTEM, None


@dataclass(frozen=True)
class AuditFilter:
    """GitLab's audit event filters; ``None`` means no filter."""

    created_after: datetime | None = None
    created_before: datetime | None = None
    entity_type: str | None = None
    entity_id: int | None = None

    def __post_init__(self) -> None:
        if self.entity_type is not None and self.entity_type not in ENTITY_TYPES:
            raise InvalidInput(f"entity_type does not have a valid value: {self.entity_type}")
        if self.entity_id is not None and self.entity_type is None:
            raise InvalidInput("entity_id needs entity_type")


def events_query(where: AuditFilter) -> Select[tuple[AuditEvent]]:
    """Events matching ``where``, newest first (as GitLab lists them)."""
    query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if where.created_after is not None:
        query = query.where(AuditEvent.created_at >= where.created_after)
    if where.created_before is not None:
        query = query.where(AuditEvent.created_at <= where.created_before)
    if where.entity_type is not None:
        query = query.where(AuditEvent.entity_type == where.entity_type)
    if where.entity_id is not None:
        query = query.where(AuditEvent.entity_id == where.entity_id)
    return query
