"""GitLab's package-registry settings: projects.packages_enabled, a duplicate policy on
groups and projects, and package protection rules

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _duplicate_columns() -> list[sa.Column]:
    return [
        sa.Column("pypi_duplicates_allowed", sa.Boolean(), nullable=True),
        sa.Column("pypi_duplicate_exception_regex", sa.String(length=255), nullable=True),
    ]


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: a batch copy would lose 0006's lower() indexes.
    for table in ("groups", "projects"):
        for column in _duplicate_columns():
            op.add_column(table, column)
    op.add_column(
        "projects",
        sa.Column("packages_enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "package_protection_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("package_name_pattern", sa.String(length=255), nullable=False),
        sa.Column("package_type", sa.String(length=32), nullable=False),
        sa.Column("minimum_access_level_for_push", sa.String(length=16), nullable=True),
        sa.Column("minimum_access_level_for_delete", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_package_protection_rules_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_protection_rules")),
        sa.UniqueConstraint(
            "project_id",
            "package_type",
            "package_name_pattern",
            name="uq_package_protection_rules_pattern",
        ),
    )
    op.create_index(
        op.f("ix_package_protection_rules_project_id"), "package_protection_rules", ["project_id"]
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_package_protection_rules_project_id"), table_name="package_protection_rules"
    )
    op.drop_table("package_protection_rules")
    for table in ("groups", "projects"):
        for column in _duplicate_columns():
            op.drop_column(table, column.name)
    op.drop_column("projects", "packages_enabled")
