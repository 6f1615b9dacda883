"""The audit trail: one row per write, with who did it and to what."""

from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin

ENTITY_TYPES = ("User", "Group", "Project", "Instance")  # Instance: no entity_id


class AuditEvent(TimestampMixin, Base):
    """``entity`` is where the event belongs, as GitLab scopes audit events (the project of
    a package, the user owning a token); ``target`` is the row that was written."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The identity's display name is kept even if the user is deleted later.
    actor: Mapped[str] = mapped_column(String(255))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))  # e.g. "package_file_uploaded"
    entity_type: Mapped[str] = mapped_column(String(16))  # one of ENTITY_TYPES
    entity_id: Mapped[int | None] = mapped_column(Integer)
    entity_path: Mapped[str | None] = mapped_column(String(1024))
    target_type: Mapped[str] = mapped_column(String(32))  # "Package", "DeployToken"...
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_path: Mapped[str | None] = mapped_column(String(1024))  # human-readable target
    details: Mapped[dict | None] = mapped_column(JSON)
