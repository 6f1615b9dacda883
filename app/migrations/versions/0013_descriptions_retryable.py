"""groups/projects.description (GitLab's field); package_files.retryable: whether a
failure may pass on a retry (a transient outage) or cannot (a corrupt or invalid file)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column needs no batch mode, even on SQLite (and keeps 0006's lower() indexes).
    op.add_column("groups", sa.Column("description", sa.Text(), nullable=True))
    op.add_column("projects", sa.Column("description", sa.Text(), nullable=True))
    # Every failure so far was a file the worker rejected: none would pass on a retry.
    op.add_column(
        "package_files",
        sa.Column("retryable", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy would lose 0006's lower() indexes.
    op.drop_column("package_files", "retryable")
    op.drop_column("projects", "description")
    op.drop_column("groups", "description")
