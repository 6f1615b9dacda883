"""What the pull-through cache keeps of the upstream index: pages by name, files by hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column

from app.models.base import Base, TimestampMixin


class UpstreamProject(TimestampMixin, Base):
    """The upstream's page for one name, parsed (``app.domain.upstream.pages``).

    ``page`` is None when the upstream answered 404: kept briefly too, so that a name the
    upstream lacks is not asked for on every request."""

    __tablename__ = "upstream_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    normalized_name: Mapped[str] = mapped_column(String(255), unique=True)
    page: Mapped[dict | None] = deferred(mapped_column(JSON))  # read only to render
    digest: Mapped[str | None] = mapped_column(String(64))  # of ``page``: changes with it
    # The upstream's validators, sent back on refresh (If-None-Match, If-Modified-Since).
    etag: Mapped[str | None] = mapped_column(String(255))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when a refresh task is sent, so that one is in flight at a time.
    refresh_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class UpstreamFile(TimestampMixin, Base):
    """One upstream file, recorded when first asked for (``created_at``), stored once its
    sha256 matched the upstream page's (``stored_at``).

    ``fetch_started_at``/``fetch_owner`` are a lease: the request that sets them (with a
    conditional UPDATE) downloads the file, refreshing ``fetch_started_at`` as it goes;
    others wait for it, across processes, or take over a lease left to go stale.  The
    ``metadata_fetch_*`` pair is the same for its core metadata (``upstream.leases``)."""

    __tablename__ = "upstream_files"
    __table_args__ = (
        UniqueConstraint("sha256", "filename"),
        Index("ix_upstream_files_normalized_name", "normalized_name"),
        Index("ix_upstream_files_last_used_at", "last_used_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    normalized_name: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(1024))
    stored: Mapped[bool] = mapped_column(Boolean, default=False)
    stored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # PEP 658: the upstream's hash of the core metadata, and the verified bytes once fetched.
    metadata_sha256: Mapped[str | None] = mapped_column(String(64))
    metadata_bytes: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    requested_by: Mapped[str | None] = mapped_column(String(1024))  # the index that first asked
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hit_count: Mapped[int] = mapped_column(Integer, default=0)  # answers from storage
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    fetch_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fetch_owner: Mapped[str | None] = mapped_column(String(32))
    metadata_fetch_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_fetch_owner: Mapped[str | None] = mapped_column(String(32))
