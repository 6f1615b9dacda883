"""cache_generation: a second counter, moved only by writes to who may do what

Revision ID: 0018
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None

GENERATION = sa.table("cache_generation", sa.column("id"), sa.column("value"))


def upgrade() -> None:
    op.bulk_insert(GENERATION, [{"id": 2, "value": 0}])


def downgrade() -> None:
    op.execute(GENERATION.delete().where(GENERATION.c.id == 2))
