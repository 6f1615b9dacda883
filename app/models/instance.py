"""Values the whole instance shares, whatever process or host reads them."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class InstanceSecret(Base):
    """A secret generated once for the instance (the session signing key), so that web
    processes with data directories of their own agree on it."""

    __tablename__ = "instance_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
