"""cache_generation.access_value: a second counter, moved only by writes to who may do what

Revision ID: 0018
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In the one row the caches read: both counters cost a single primary-key read.
    op.add_column(
        "cache_generation",
        sa.Column("access_value", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("cache_generation", "access_value")
