"""Stored files whose rows are gone: the worker removes them, and the sweeper catches up."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class StorageDeletion(TimestampMixin, Base):
    """A storage key to delete, written in the same transaction that deletes its file's row,
    so a file is never left behind: a lost task is made up for by the sweeper."""

    __tablename__ = "storage_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(1024))
