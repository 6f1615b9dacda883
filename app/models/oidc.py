"""OpenID Connect: trusted publishing (publishers, minted tokens, used token ids) and
the single sign-on accounts linked to users."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.accounts import TokenMixin
from app.models.base import Base, TimestampMixin


class TrustedPublisher(TimestampMixin, Base):
    """A CI identity allowed to publish to a project: an issuer and the claims its tokens
    must carry (claim name -> required value)."""

    __tablename__ = "trusted_publishers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(String(255))
    claims: Mapped[dict] = mapped_column(JSON)


class PublisherToken(TokenMixin, TimestampMixin, Base):
    """A short-lived upload token minted from a CI identity token; it reaches the
    projects listed in ``project_ids`` and nothing else."""

    __tablename__ = "publisher_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_ids: Mapped[list] = mapped_column(JSON)
    # Who asked, for uploads and audit events: "<issuer> <sub>".
    subject: Mapped[str] = mapped_column(String(255))


class UsedOidcToken(Base):
    """The ``jti`` of every exchanged identity token until it expires: a replay is refused
    by the unique constraint, whichever web process sees it."""

    __tablename__ = "used_oidc_tokens"
    __table_args__ = (Index("ix_used_oidc_tokens_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExternalIdentity(TimestampMixin, Base):
    """A user's account at an OpenID provider (single sign-on): issuer and subject, the
    only link between them. Never inferred from an email address."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
