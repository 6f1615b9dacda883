"""Password sign-in attempts that count against their username and client address."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class SignInAttempt(TimestampMixin, Base):
    """One failed attempt, or one whose password is being checked; a successful attempt
    is deleted.  The keys are hashes: a mistyped password in the username field is not
    kept in clear."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_username_key", "username_key", "created_at"),
        Index("ix_sign_in_attempts_address_key", "address_key", "created_at"),
        Index("ix_sign_in_attempts_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username_key: Mapped[str] = mapped_column(String(64))
    address_key: Mapped[str] = mapped_column(String(64))
