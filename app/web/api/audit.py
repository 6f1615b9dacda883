"""The audit trail, read-only (GitLab's audit events API).

Instance events are for admins; a project's events for its maintainers; a group's for its
owners. Filters: ``created_after``, ``created_before`` (ISO 8601 or a date), and on the
instance list ``entity_type`` (User, Group, Project) with ``entity_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, jsonify, request

from app.domain.access import MAINTAINER, OWNER
from app.domain.accounts import parse_time
from app.domain.audit import AuditFilter, events_query
from app.domain.errors import Forbidden, NotFound
from app.extensions import db
from app.models import AuditEvent
from app.web.api import bp
from app.web.api.common import api_user, int_param, iso, paginate, require_admin
from app.web.loaders import group_for, project_for


@bp.get("/audit_events")
def list_audit_events() -> Response:
    require_admin()
    where = AuditFilter(
        **_time_filters(),
        entity_type=request.args.get("entity_type") or None,
        entity_id=int_param(request.args.to_dict(), "entity_id"),
    )
    return paginate(events_query(where), audit_event_json)


@bp.get("/audit_events/<int:event_id>")
def get_audit_event(event_id: int) -> Response:
    require_admin()
    event = db.session.get(AuditEvent, event_id)
    if event is None:
        raise NotFound("404 Audit Event Not Found")
    return jsonify(audit_event_json(event))


@bp.get("/projects/<ref:project_ref>/audit_events")
def list_project_audit_events(project_ref: str) -> Response:
    api_user()
    project, access = project_for(project_ref, "visible")
    if access.role < MAINTAINER:
        raise Forbidden("403 Forbidden: maintainer access is required")
    where = AuditFilter(**_time_filters(), entity_type="Project", entity_id=project.id)
    return paginate(events_query(where), audit_event_json)


@bp.get("/groups/<ref:group_ref>/audit_events")
def list_group_audit_events(group_ref: str) -> Response:
    api_user()
    group, access = group_for(group_ref, "visible")
    if access.role < OWNER:
        raise Forbidden("403 Forbidden: owner access is required")
    where = AuditFilter(**_time_filters(), entity_type="Group", entity_id=group.id)
    return paginate(events_query(where), audit_event_json)


def _time_filters() -> dict[str, datetime | None]:
    return {
        name: parse_time(request.args.get(name), name)
        for name in ("created_after", "created_before")
    }


def audit_event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "author_id": event.actor_user_id,
        "entity_id": event.entity_id,
        "entity_type": event.entity_type,
        "event_name": event.action,
        "details": {
            **(event.details or {}),
            "author_name": event.actor,
            "custom_message": event.action.replace("_", " "),
            "target_id": event.target_id,
            "target_type": event.target_type,
            "target_details": event.target_path,
            "entity_path": event.entity_path,
        },
        "created_at": iso(event.created_at),
    }
