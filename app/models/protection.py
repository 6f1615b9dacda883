"""Package protection rules: who may push or delete the packages whose names match."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class PackageProtectionRule(TimestampMixin, Base):
    """GitLab's ``Packages::Protection::Rule``: a name pattern (``*`` wildcards) and the
    least role that may push, or delete, what matches (null: that action is not guarded)."""

    __tablename__ = "package_protection_rules"
    __table_args__ = (
        UniqueConstraint(
            "project_id",
            "package_type",
            "package_name_pattern",
            name="uq_package_protection_rules_pattern",  # the convention's is over 63 characters
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    package_name_pattern: Mapped[str] = mapped_column(String(255))
    package_type: Mapped[str] = mapped_column(String(32), default="pypi")
    minimum_access_level_for_push: Mapped[str | None] = mapped_column(String(16))
    minimum_access_level_for_delete: Mapped[str | None] = mapped_column(String(16))
