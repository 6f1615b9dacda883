"""Reserved names: every name ever published in the instance, never forwarded upstream.

Deleting the last release of a name does not free it: the next ``pip install`` of the name
through a Packyard index would otherwise be sent to the upstream index, where anyone may
have published it (dependency confusion, as GitLab documents for its forwarding). A name
is reserved in the transaction that creates its first release (and the migration that
added reservations reserved every name then held), so reservations cover every name a
project holds; only an admin releases one, and only once no project holds the name.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, undefer

from app.domain.audit import Actor, record
from app.domain.errors import Conflict, NotFound
from app.domain.names import normalize
from app.domain.sql import insert_or_skip
from app.models import Package, Project, ReservedName, User

RELEASED = "reserved_name_released"


def reserve(session: Session, normalized: str) -> None:
    """Reserve the name in the caller's transaction (a no-op if it is reserved)."""
    if session.get(ReservedName, normalized) is not None:
        return
    # A concurrent upload of the name may reserve it first: then this inserts nothing.
    session.execute(insert_or_skip(session, ReservedName).values(name=normalized))


def is_reserved(session: Session, normalized: str) -> bool:
    return session.get(ReservedName, normalized) is not None


def reserved_names_query() -> Select[tuple[ReservedName]]:
    """Every reservation by name, with whether a project holds the name now."""
    return select(ReservedName).options(undefer(ReservedName.published)).order_by(ReservedName.name)


def release(session: Session, name: str, actor: Actor, admin: User) -> None:
    """Let the name be forwarded upstream again; audited as the admin's own event."""
    normalized = normalize(name)
    reservation = session.get(ReservedName, normalized)
    if reservation is None:
        raise NotFound("404 Reserved Name Not Found")
    holders = _projects_holding(session, normalized)
    if holders:
        raise Conflict(
            f"{normalized} is still published in {', '.join(holders)}: delete its packages"
            " before releasing the name"
        )
    session.delete(reservation)
    record(session, actor, RELEASED, admin, "ReservedName", None, normalized)
    session.commit()


def _projects_holding(session: Session, normalized: str) -> list[str]:
    return list(
        session.execute(
            select(Project.full_path)
            .join(Package, Package.project_id == Project.id)
            .where(Package.normalized_name == normalized)
            .distinct()
            .order_by(Project.full_path)
            .limit(5)
        ).scalars()
    )
