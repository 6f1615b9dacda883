"""index package_files.processed_at: the sweeper reads the processing front from it

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_package_files_processed_at", "package_files", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_package_files_processed_at", table_name="package_files")
