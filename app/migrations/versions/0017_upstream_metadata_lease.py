"""upstream_files: a lease on fetching a file's core metadata, apart from its download's

Revision ID: 0017
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: SQLite (3.35+) adds and drops columns in place,
    # and a batch copy would lose the expression indexes of 0006 (lower(full_path)).
    op.add_column(
        "upstream_files",
        sa.Column("metadata_fetch_started_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "upstream_files", sa.Column("metadata_fetch_owner", sa.String(length=32), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("upstream_files", "metadata_fetch_owner")
    op.drop_column("upstream_files", "metadata_fetch_started_at")
