"""Reserved names (admins): names once published, which are never forwarded upstream
until an admin releases them (app.domain.reserved_names)."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.domain.reserved_names import release, reserved_names_query
from app.extensions import db
from app.models import ReservedName
from app.web.api import bp
from app.web.api.common import iso, paginate, require_admin
from app.web.auth import current_identity


@bp.get("/reserved_names")
def list_reserved_names() -> Response:
    require_admin()
    return paginate(reserved_names_query(), reserved_name_json)


@bp.delete("/reserved_names/<name>")
def release_reserved_name(name: str) -> tuple[str, int]:
    admin = require_admin()
    release(db.session, name, current_identity(), admin)
    return "", 204


def reserved_name_json(reservation: ReservedName) -> dict[str, Any]:
    return {
        "name": reservation.name,
        "created_at": iso(reservation.created_at),
        "published": reservation.published,
    }
