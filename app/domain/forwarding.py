"""Package forwarding: send a client to the upstream index for a name Packyard lacks.

Forwarding is decided per group (``None`` inherits from the parent group, then the
instance).  A name that any project of the instance holds, or ever held, is never
forwarded, whether or not the caller may read that project: otherwise a public package
with a private package's name could be installed in its place (dependency confusion).
Reservations (app.domain.reserved_names) cover both; the live packages are asked too,
so that a row written around the upload path (a restore, a test) cannot open a name.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput
from app.domain.names import normalize, validate_name
from app.domain.namespaces import group_chain
from app.domain.reserved_names import is_reserved
from app.models import Group, Package


def forwarding_enabled(session: Session, group: Group, instance_default: bool) -> bool:
    """The nearest setting up the group chain, else the instance's."""
    for row in group_chain(session, group):
        if row.forwarding is not None:
            return row.forwarding
    return instance_default


def exists_locally(session: Session, normalized: str) -> bool:
    """Whether any project of the instance has a package of this (normalized) name."""
    query = select(Package.id).where(Package.normalized_name == normalized).limit(1)
    return session.execute(query).first() is not None


def upstream_location(
    session: Session, group: Group, name: str, upstream_url: str, instance_default: bool
) -> str | None:
    """The upstream page for ``name``, absent from the index the caller reads; None for 404."""
    try:
        normalized = normalize(validate_name(name))
    except InvalidInput:
        return None  # not a distribution name: nothing upstream could serve
    if not upstream_url or not forwarding_enabled(session, group, instance_default):
        return None
    if is_reserved(session, normalized) or exists_locally(session, normalized):
        return None
    return f"{upstream_url.rstrip('/')}/{quote(normalized)}/"
