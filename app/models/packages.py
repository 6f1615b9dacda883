"""Packages (a name and version in a project) and the files uploaded for them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    exists,
    false,
)
from sqlalchemy.orm import Mapped, column_property, deferred, mapped_column, relationship

from app.models.base import Base, TimestampMixin, utcnow

if TYPE_CHECKING:
    from app.models.namespaces import Project

FILE_STATES = ("processing", "default", "error")
SUMMARY_MAX = 512  # PyPI's limit for the Summary field


class Package(TimestampMixin, Base):
    __tablename__ = "packages"
    __table_args__ = (
        # One release per PEP 440 version: canonical_version is names.release_key.
        UniqueConstraint("project_id", "normalized_name", "canonical_version"),
        Index("ix_packages_normalized_name", "normalized_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    normalized_name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255))
    canonical_version: Mapped[str] = mapped_column(String(255))
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text)
    # Never removed by a retention policy (app.domain.retention).
    protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Download statistics (app.domain.downloads), written in batches.
    download_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_downloaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    files: Mapped[list[PackageFile]] = relationship(
        back_populates="package", order_by="PackageFile.id", passive_deletes=True
    )
    project: Mapped[Project] = relationship()


class PackageFile(TimestampMixin, Base):
    __tablename__ = "package_files"
    __table_args__ = (
        UniqueConstraint("project_id", "filename"),
        Index("ix_package_files_sha256", "sha256"),
        Index("ix_package_files_state", "state"),
        Index("ix_package_files_processed_at", "processed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(
        ForeignKey("packages.id", ondelete="CASCADE"), index=True
    )
    # Denormalised from the package so the database enforces one filename per project.
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    blake2_256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(1024))
    requires_python: Mapped[str | None] = mapped_column(String(255))
    uploaded_by: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="processing")
    error_reason: Mapped[str | None] = mapped_column(Text)
    # A failure a retry may fix (storage or database out), not a file the worker rejected.
    retryable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last attempt
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a processing task was last sent; the sweeper resends stale ones.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    core_metadata: Mapped[dict | None] = deferred(mapped_column(JSON))
    # Copied out of core_metadata so the web pages list and search it without reading that.
    summary: Mapped[str | None] = mapped_column(String(SUMMARY_MAX))
    metadata_sha256: Mapped[str | None] = mapped_column(String(64))
    metadata_bytes: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    download_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_downloaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    package: Mapped[Package] = relationship(back_populates="files")


class ReservedName(TimestampMixin, Base):
    """A (normalized) name once published in the instance: never forwarded upstream, even
    after its last release is deleted, until an admin releases it (domain.reserved_names)."""

    __tablename__ = "reserved_names"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Whether any project holds a release of it now; loaded only where asked for.
    published: Mapped[bool] = column_property(
        exists().where(Package.normalized_name == name), deferred=True
    )
