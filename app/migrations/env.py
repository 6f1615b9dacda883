"""Alembic environment: migrates the database of the Packyard app in context."""

from alembic import context
from flask import current_app

from app.extensions import db

config = context.config
target_metadata = db.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with db.engine.connect() as connection:
        _run(connection)
        connection.commit()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=current_app.config["DATABASE_URL"], target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
