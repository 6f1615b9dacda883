"""Counters that move whenever an index page or an access decision may change
(``app.caching.generation``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

GENERATION_ROW = 1


class CacheGeneration(Base):
    __tablename__ = "cache_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)  # any page or decision
    access_value: Mapped[int] = mapped_column(BigInteger, default=0)  # who may do what
