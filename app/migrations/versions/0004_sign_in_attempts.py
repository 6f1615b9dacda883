"""sign_in_attempts: password sign-in throttling shared by every web process

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username_key", sa.String(length=64), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
    )
    with op.batch_alter_table("sign_in_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sign_in_attempts_username_key", ["username_key", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_sign_in_attempts_address_key", ["address_key", "created_at"], unique=False
        )
        batch_op.create_index("ix_sign_in_attempts_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("sign_in_attempts")
