"""Groups (nested), projects, and the memberships that grant roles on them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

VISIBILITIES = ("private", "internal", "public")


class UpstreamSettings:
    """Which names go to the upstream index, and how (``app.domain.upstream.policy``).

    ``upstream_mode`` None inherits (the parent group, then the instance); the allow and
    deny lists are fnmatch patterns on normalized names, and they add up along the chain."""

    upstream_mode: Mapped[str | None] = mapped_column(String(16))
    upstream_allow: Mapped[list[str] | None] = mapped_column(JSON)
    upstream_deny: Mapped[list[str] | None] = mapped_column(JSON)

    @property
    def forwarding(self) -> bool | None:
        """The older on/off setting, kept as a view of ``upstream_mode``."""
        return None if self.upstream_mode is None else self.upstream_mode != "off"

    @forwarding.setter
    def forwarding(self, value: bool | None) -> None:
        if value is None:
            self.upstream_mode = None
        elif value != self.forwarding:  # true keeps a cache mode: it forwards already
            self.upstream_mode = "redirect" if value else "off"


class DuplicateSettings:
    """Whether a filename may be uploaded again, replacing its file (``app.domain.duplicates``).

    Null inherits (the parent group, then the instance's default: refused); the exception
    regex inherits on its own."""

    pypi_duplicates_allowed: Mapped[bool | None] = mapped_column(Boolean)
    pypi_duplicate_exception_regex: Mapped[str | None] = mapped_column(String(255))


class RetentionSettings:
    """Which releases the workers remove (``app.domain.retention``); None inherits from the
    parent group, setting by setting."""

    retention_keep_n: Mapped[int | None] = mapped_column(Integer)
    retention_prerelease_days: Mapped[int | None] = mapped_column(Integer)


class Group(UpstreamSettings, DuplicateSettings, RetentionSettings, TimestampMixin, Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    full_path: Mapped[str] = mapped_column(String(1024), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    max_upload_size: Mapped[int | None] = mapped_column(BigInteger)
    storage_quota: Mapped[int | None] = mapped_column(BigInteger)

    parent: Mapped[Group | None] = relationship(remote_side=[id])


class Project(UpstreamSettings, DuplicateSettings, RetentionSettings, TimestampMixin, Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    full_path: Mapped[str] = mapped_column(String(1024), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    max_upload_size: Mapped[int | None] = mapped_column(BigInteger)
    storage_quota: Mapped[int | None] = mapped_column(BigInteger)
    # GitLab's Packages switch: off hides the project's packages and refuses uploads.
    packages_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    group: Mapped[Group] = relationship()


# A path is unique within its group whatever its case, as GitLab's are: a full path is the
# parent's (itself unique so) plus the path, so one index on it covers every level.
Index("uq_groups_lower_full_path", func.lower(Group.full_path), unique=True)
Index("uq_projects_lower_full_path", func.lower(Project.full_path), unique=True)


class Membership(TimestampMixin, Base):
    """A user's role on exactly one group or one project."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "group_id"),
        UniqueConstraint("user_id", "project_id"),
        CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    access_level: Mapped[int] = mapped_column(Integer)
