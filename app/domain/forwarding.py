"""Package forwarding: send a client to the upstream index for a name Packyard lacks.

Whether a name may go upstream at all is decided in ``app.domain.upstream.policy``.  A
name that any project of the instance holds, or ever held, is never forwarded, whether
or not the caller may read that project: otherwise a public package with a private
package's name could be installed in its place (dependency confusion).  Reservations
(app.domain.reserved_names) cover both; the live packages are asked too, so that a row
written around the upload path (a restore, a test) cannot open a name.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.reserved_names import is_reserved
from app.models import Package


def exists_locally(session: Session, normalized: str) -> bool:
    """Whether any project of the instance has, or ever had, a package of this
    (normalized) name, until an admin releases it."""
    if is_reserved(session, normalized):
        return True
    query = select(Package.id).where(Package.normalized_name == normalized).limit(1)
    return session.execute(query).first() is not None


def upstream_location(upstream_url: str, normalized: str) -> str:
    """Where ``redirect`` mode sends a client for a name that may go upstream (the caller
    has an ``upstream_url``: with none, the name is a 404)."""
    return f"{upstream_url.rstrip('/')}/{quote(normalized)}/"
