"""Users and the tokens they authenticate with. Secrets are stored as sha256 hashes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

ACTIVE, BLOCKED = "active", "blocked"


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # GitLab's states: "active" or "blocked" (a blocked user neither signs in nor uses tokens).
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    # Changed to end every web session of the user (sign-out); see app.domain.sign_in.
    session_nonce: Mapped[str | None] = mapped_column(String(32))

    @property
    def is_blocked(self) -> bool:
        return self.state == BLOCKED


# Usernames and emails are unique whatever their case, as GitLab's are.
Index("uq_users_lower_username", func.lower(User.username), unique=True)
Index("uq_users_lower_email", func.lower(User.email), unique=True)


class TokenMixin:
    """Columns every kind of token shares."""

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(255), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]


class PersonalAccessToken(TokenMixin, TimestampMixin, Base):
    __tablename__ = "personal_access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()


class DeployToken(TokenMixin, TimestampMixin, Base):
    """A token bound to one project or one group (and its subgroups)."""

    __tablename__ = "deploy_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )


class JobToken(TokenMixin, TimestampMixin, Base):
    """A short-lived CI token: one project, acting for the user who minted it."""

    __tablename__ = "job_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))

    user: Mapped[User] = relationship()
