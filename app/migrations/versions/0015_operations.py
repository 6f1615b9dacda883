"""webhooks of projects and groups, their events and delivery log; download statistics;
retention policies of groups and projects, protected releases

Revision ID: 0015
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_hooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=True),
        sa.Column("package_events", sa.Boolean(), nullable=False),
        sa.Column("enable_ssl_verification", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_web_hooks_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_web_hooks_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_hooks")),
    )  # fmt: skip
    op.create_index(op.f("ix_web_hooks_project_id"), "web_hooks", ["project_id"])
    op.create_index(op.f("ix_web_hooks_group_id"), "web_hooks", ["group_id"])
    op.create_table(
        "web_hook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hook_id", sa.Integer(), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hook_id"], ["web_hooks.id"], name=op.f("fk_web_hook_events_hook_id_web_hooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_hook_events")),
    )  # fmt: skip
    op.create_index("ix_web_hook_events_hook_id_id", "web_hook_events", ["hook_id", "id"])
    op.create_index(op.f("ix_web_hook_events_state"), "web_hook_events", ["state"])
    op.create_table(
        "web_hook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["web_hook_events.id"],
            name=op.f("fk_web_hook_deliveries_event_id_web_hook_events"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_hook_deliveries")),
    )  # fmt: skip
    op.create_index(op.f("ix_web_hook_deliveries_event_id"), "web_hook_deliveries", ["event_id"])
    # Plain ADD COLUMN (no batch copy): SQLite supports it, and 0006's lower() indexes stay.
    for table in ("packages", "package_files"):
        op.add_column(
            table, sa.Column("download_count", sa.Integer(), nullable=False, server_default="0")
        )
        op.add_column(table, sa.Column("last_downloaded_at", sa.DateTime(timezone=True)))
    op.add_column(
        "packages", sa.Column("protected", sa.Boolean(), nullable=False, server_default="0")
    )
    for table in ("groups", "projects"):
        op.add_column(table, sa.Column("retention_keep_n", sa.Integer()))
        op.add_column(table, sa.Column("retention_prerelease_days", sa.Integer()))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0013 does. A batch copy recreates the table:
    # dropping the old groups table cascaded (ON DELETE CASCADE) into every project and
    # package, and the copy lost 0006's lower() indexes.
    for table in ("groups", "projects"):
        op.drop_column(table, "retention_prerelease_days")
        op.drop_column(table, "retention_keep_n")
    op.drop_column("packages", "protected")
    for table in ("packages", "package_files"):
        op.drop_column(table, "last_downloaded_at")
        op.drop_column(table, "download_count")
    op.drop_table("web_hook_deliveries")
    op.drop_table("web_hook_events")
    op.drop_table("web_hooks")
