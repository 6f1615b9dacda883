"""Webhooks of projects and groups, the events queued for them, and each delivery attempt."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

EVENT_STATES = ("pending", "delivered", "failed")  # failed: every retry was used up


class WebHook(TimestampMixin, Base):
    """A receiver URL of one project or one group (a group's hears every project below)."""

    __tablename__ = "web_hooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    token: Mapped[str | None] = mapped_column(String(255))  # the HMAC secret; never shown
    package_events: Mapped[bool] = mapped_column(Boolean, default=True)
    enable_ssl_verification: Mapped[bool] = mapped_column(Boolean, default=True)


class WebHookEvent(TimestampMixin, Base):
    """One event for one hook: the exact body sent (and resent), and how it went."""

    __tablename__ = "web_hook_events"
    __table_args__ = (Index("ix_web_hook_events_hook_id_id", "hook_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_id: Mapped[int] = mapped_column(ForeignKey("web_hooks.id", ondelete="CASCADE"))
    event_name: Mapped[str] = mapped_column(String(64))  # e.g. package_published
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    hook: Mapped[WebHook] = relationship()
    deliveries: Mapped[list[WebHookDelivery]] = relationship(
        order_by="WebHookDelivery.id", viewonly=True
    )


class WebHookDelivery(TimestampMixin, Base):
    """One POST of an event: the delivery log."""

    __tablename__ = "web_hook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("web_hook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))  # succeeded or failed
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float)  # seconds
    error: Mapped[str | None] = mapped_column(Text)
