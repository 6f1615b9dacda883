"""Webhooks of projects and groups, their events and deliveries (GitLab's hook shapes).

Maintainers manage hooks (``manage``); a hook's token is write-only, as in GitLab.
Resending an event queues it for the workers: the answer is 202 with the event.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from app.domain.errors import NotFound
from app.domain.webhooks import (
    Owner,
    create_hook,
    delete_hook,
    events_query,
    find_event,
    find_hook,
    hooks_query,
    parse_hook_params,
    resend,
    update_hook,
)
from app.extensions import db
from app.models import WebHook, WebHookDelivery, WebHookEvent
from app.web.api.common import body, iso, on_both, paginate
from app.web.auth import current_identity
from app.web.loaders import group_for, project_for
from workers.tasks.hooks import send_events

HOOK = "/hooks/<int:hook_id>"


def _owner(group_ref: str, project_ref: str) -> Owner:
    if group_ref:
        return group_for(group_ref, "manage")[0]
    return project_for(project_ref, "manage")[0]


def _hook(group_ref: str, project_ref: str, hook_id: int) -> tuple[Owner, WebHook]:
    owner = _owner(group_ref, project_ref)
    hook = find_hook(db.session, owner, hook_id)
    if hook is None:
        raise NotFound("404 Hook Not Found")
    return owner, hook


@on_both("get", "/hooks")
def list_hooks(group_ref: str = "", project_ref: str = "") -> Response:
    return paginate(hooks_query(_owner(group_ref, project_ref)), hook_json)


@on_both("post", "/hooks")
def add_hook(group_ref: str = "", project_ref: str = "") -> tuple[Response, int]:
    owner = _owner(group_ref, project_ref)
    params = parse_hook_params(body(), creating=True)
    return jsonify(hook_json(create_hook(db.session, owner, params, current_identity()))), 201


@on_both("get", HOOK)
def get_hook(hook_id: int, group_ref: str = "", project_ref: str = "") -> Response:
    return jsonify(hook_json(_hook(group_ref, project_ref, hook_id)[1]))


@on_both("put", HOOK)
def edit_hook(hook_id: int, group_ref: str = "", project_ref: str = "") -> Response:
    owner, hook = _hook(group_ref, project_ref, hook_id)
    params = parse_hook_params(body(), creating=False)
    return jsonify(hook_json(update_hook(db.session, hook, owner, params, current_identity())))


@on_both("delete", HOOK)
def remove_hook(hook_id: int, group_ref: str = "", project_ref: str = "") -> tuple[str, int]:
    owner, hook = _hook(group_ref, project_ref, hook_id)
    delete_hook(db.session, hook, owner, current_identity())
    return "", 204


@on_both("get", HOOK + "/events")
def list_hook_events(hook_id: int, group_ref: str = "", project_ref: str = "") -> Response:
    return paginate(events_query(_hook(group_ref, project_ref, hook_id)[1]), event_json)


@on_both("post", HOOK + "/events/<int:event_id>/resend")
def resend_hook_event(
    hook_id: int, event_id: int, group_ref: str = "", project_ref: str = ""
) -> tuple[Response, int]:
    _owner_of_hook, hook = _hook(group_ref, project_ref, hook_id)
    event = find_event(db.session, hook, event_id)
    if event is None:
        raise NotFound("404 Hook Event Not Found")
    resend(db.session, event)
    send_events([event.id])
    return jsonify(event_json(event)), 202


def hook_json(hook: WebHook) -> dict[str, Any]:
    owner = {"group_id": hook.group_id} if hook.group_id else {"project_id": hook.project_id}
    return {
        "id": hook.id,
        "url": hook.url,
        **owner,
        "created_at": iso(hook.created_at),
        "package_events": hook.package_events,
        "enable_ssl_verification": hook.enable_ssl_verification,
        "token_set": bool(hook.token),
        # GitLab's other event switches: Packyard has no such events.
        "push_events": False,
        "tag_push_events": False,
        "merge_requests_events": False,
    }


def event_json(event: WebHookEvent) -> dict[str, Any]:
    last = event.deliveries[-1] if event.deliveries else None
    return {
        "id": event.id,
        "hook_id": event.hook_id,
        "trigger": event.event_name,
        "state": event.state,
        "attempts": event.attempts,
        "created_at": iso(event.created_at),
        "request_data": event.payload,
        "response_status": last.response_status if last else None,
        "execution_duration": last.duration if last else None,
        "deliveries": [delivery_json(d) for d in event.deliveries],
    }


def delivery_json(delivery: WebHookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "status": delivery.status,
        "response_status": delivery.response_status,
        "execution_duration": delivery.duration,
        "error": delivery.error,
        "created_at": iso(delivery.created_at),
    }
