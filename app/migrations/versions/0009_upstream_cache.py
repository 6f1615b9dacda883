"""upstream modes per group and project, and the pull-through cache's pages and files

Revision ID: 0009
Revises: 0006

``groups.forwarding`` becomes ``upstream_mode`` (true: redirect, false: off).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None

SETTINGS = ("upstream_mode", "upstream_allow", "upstream_deny")


def _setting_columns() -> list[sa.Column]:
    return [
        sa.Column("upstream_mode", sa.String(length=16), nullable=True),
        sa.Column("upstream_allow", sa.JSON(), nullable=True),
        sa.Column("upstream_deny", sa.JSON(), nullable=True),
    ]


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: SQLite (3.35+) adds and drops columns in place,
    # and a batch copy would lose the expression indexes of 0006 (lower(full_path)).
    for table in ("groups", "projects"):
        for column in _setting_columns():
            op.add_column(table, column)
    op.execute(
        "UPDATE groups SET upstream_mode = CASE WHEN forwarding THEN 'redirect' ELSE 'off' END"
        " WHERE forwarding IS NOT NULL"
    )
    op.execute("ALTER TABLE groups DROP COLUMN forwarding")
    _create_upstream_projects()
    _create_upstream_files()


def _create_upstream_projects() -> None:
    op.create_table(
        "upstream_projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("normalized_name", sa.String(length=255), nullable=False),
        sa.Column("page", sa.JSON(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("last_modified", sa.String(length=64), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_projects")),
        sa.UniqueConstraint("normalized_name", name=op.f("uq_upstream_projects_normalized_name")),
    )
    op.create_index(
        op.f("ix_upstream_projects_last_used_at"), "upstream_projects", ["last_used_at"]
    )


def _create_upstream_files() -> None:
    op.create_table(
        "upstream_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("normalized_name", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.String(length=1024), nullable=True),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata_sha256", sa.String(length=64), nullable=True),
        sa.Column("metadata_bytes", sa.LargeBinary(), nullable=True),
        sa.Column("requested_by", sa.String(length=1024), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hit_count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("fetch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetch_owner", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_files")),
        sa.UniqueConstraint("sha256", "filename", name=op.f("uq_upstream_files_sha256_filename")),
    )
    op.create_index("ix_upstream_files_normalized_name", "upstream_files", ["normalized_name"])
    op.create_index("ix_upstream_files_last_used_at", "upstream_files", ["last_used_at"])


def downgrade() -> None:
    op.drop_table("upstream_files")
    op.drop_table("upstream_projects")
    op.add_column("groups", sa.Column("forwarding", sa.Boolean(), nullable=True))
    op.execute(
        "UPDATE groups SET forwarding = (upstream_mode <> 'off') WHERE upstream_mode IS NOT NULL"
    )
    for table in ("groups", "projects"):
        for name in SETTINGS:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
