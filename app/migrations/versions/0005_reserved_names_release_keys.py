"""reserved names; one release per PEP 440 version

Names ever published are reserved (never forwarded upstream): every name held now is.
``packages.canonical_version`` becomes the release key (``packaging.utils.
canonicalize_version`` with trailing zeros stripped), so that 6.0 and 6.0.0 are one
release; releases of one project that were PEP 440-equal are merged into the oldest,
which keeps its spelling, takes the others' files, and stays yanked if any was.

Revision ID: 0005
Revises: 0009
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

revision = "0005"
down_revision = "0009"
branch_labels = None
depends_on = None

packages = sa.table(
    "packages",
    sa.column("id", sa.Integer),
    sa.column("project_id", sa.Integer),
    sa.column("normalized_name", sa.String),
    sa.column("version", sa.String),
    sa.column("canonical_version", sa.String),
    sa.column("yanked", sa.Boolean),
    sa.column("yanked_reason", sa.Text),
)
package_files = sa.table(
    "package_files", sa.column("id", sa.Integer), sa.column("package_id", sa.Integer)
)


def upgrade() -> None:
    op.create_table(
        "reserved_names",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reserved_names")),
    )
    op.create_index("ix_packages_normalized_name", "packages", ["normalized_name"])
    _merge_equal_releases(op.get_bind())
    op.execute(
        "INSERT INTO reserved_names (name, created_at)"
        " SELECT normalized_name, MIN(created_at) FROM packages GROUP BY normalized_name"
    )


def downgrade() -> None:
    connection = op.get_bind()
    for row in connection.execute(sa.select(packages.c.id, packages.c.version)):
        connection.execute(
            packages.update()
            .where(packages.c.id == row.id)
            .values(canonical_version=_old_key(row.version))
        )
    op.drop_index("ix_packages_normalized_name", table_name="packages")
    op.drop_table("reserved_names")


def _release_key(version: str, fallback: str) -> str:
    try:
        return canonicalize_version(Version(version), strip_trailing_zero=True)
    except InvalidVersion:
        return fallback


def _old_key(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def _merge_equal_releases(connection: sa.Connection) -> None:
    """Fold every release into the oldest of its (project, name, release key), then give
    each survivor its key: no two survivors share one, so the unique constraint holds."""
    keepers: dict[tuple[int, str, str], Any] = {}
    yanked: dict[int, tuple[bool, str | None]] = {}
    new_keys: list[tuple[int, str]] = []
    rows = connection.execute(sa.select(packages).order_by(packages.c.id)).all()
    for row in rows:
        key = _release_key(row.version, row.canonical_version)
        keeper = keepers.setdefault((row.project_id, row.normalized_name, key), row)
        if keeper is row:
            yanked[row.id] = (bool(row.yanked), row.yanked_reason)
            if row.canonical_version != key:
                new_keys.append((row.id, key))
            continue
        connection.execute(
            package_files.update()
            .where(package_files.c.package_id == row.id)
            .values(package_id=keeper.id)
        )
        connection.execute(packages.delete().where(packages.c.id == row.id))
        if row.yanked and not yanked[keeper.id][0]:  # a yank was a warning: keep it
            yanked[keeper.id] = (True, row.yanked_reason)
            connection.execute(
                packages.update()
                .where(packages.c.id == keeper.id)
                .values(yanked=True, yanked_reason=row.yanked_reason)
            )
    for package_id, key in new_keys:
        connection.execute(
            packages.update().where(packages.c.id == package_id).values(canonical_version=key)
        )
