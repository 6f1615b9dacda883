"""usernames, emails and group and project paths unique whatever their case

Revision ID: 0006
Revises: 0010

Rows that already collide (``alice`` and ``ALICE``) are not renamed: a username or a
path is what people type and what their configuration names, and no rule could pick the
right one to change. The upgrade stops instead, naming every colliding row, and changes
nothing; rename or remove all but one of each, then upgrade again.
"""

import sqlalchemy as sa
from alembic import op

from app.migrations import MigrationRefused

revision = "0006"
down_revision = "0010"
branch_labels = None
depends_on = None

# index name, table, column
INDEXES = (
    ("uq_users_lower_username", "users", "username"),
    ("uq_users_lower_email", "users", "email"),
    ("uq_groups_lower_full_path", "groups", "full_path"),
    ("uq_projects_lower_full_path", "projects", "full_path"),
)


def upgrade() -> None:
    problems = [problem for _, table, column in INDEXES for problem in _collisions(table, column)]
    if problems:
        raise MigrationRefused(
            "These rows differ only in letter case, and usernames, emails and paths must "
            "now be unique whatever their case:\n  "
            + "\n  ".join(problems)
            + "\nRename or remove all but one of each, then run `packyard db upgrade` again."
        )
    for name, table, column in INDEXES:
        op.create_index(name, table, [sa.text(f"lower({column})")], unique=True)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)


def _collisions(table: str, column: str) -> list[str]:
    """One line per set of rows whose ``column`` is equal ignoring case."""
    rows = sa.table(table, sa.column("id"), sa.column(column))
    value = rows.c[column]
    clashing = (
        sa.select(sa.func.lower(value))
        .where(value.is_not(None))
        .group_by(sa.func.lower(value))
        .having(sa.func.count() > 1)
    )
    found = op.get_bind().execute(
        sa.select(rows.c.id, value)
        .where(sa.func.lower(value).in_(clashing))
        .order_by(sa.func.lower(value), rows.c.id)
    )
    groups: dict[str, list[str]] = {}
    for row_id, text in found:
        groups.setdefault(text.lower(), []).append(f"id {row_id} {text!r}")
    return [f"{table}.{column}: {', '.join(names)}" for names in groups.values()]
