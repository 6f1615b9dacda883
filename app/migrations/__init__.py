"""Schema migrations (Alembic): ``packyard db upgrade`` applies them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


class MigrationRefused(RuntimeError):
    """A migration found data it cannot convert safely; its message says what to fix."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def upgrade(revision: str = "head") -> None:
    """Apply migrations to the current app's database (call inside an app context)."""
    command.upgrade(alembic_config(), revision)
