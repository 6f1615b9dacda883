"""Webhooks: receivers that hear about a project's packages (a group's hear every project
below it).

An event is a row per hook, written in the transaction of the change it reports (or in
one of its own just after it), with the exact body to send; the workers deliver it after
the commit.  Each POST is logged as a delivery (status, response code, duration, error);
a failed one is retried with exponential backoff, and any event can be sent again.
Delivery is at least once: receivers deduplicate on ``X-Packyard-Event-Id``.

The body is signed: ``X-Packyard-Signature-256: sha256=<hex HMAC-SHA256 of the body,
keyed with the hook's token>`` (GitHub's scheme; GitLab's ``X-Gitlab-Token`` would send the
secret itself).  Hook URLs may point anywhere, loopback included: which hosts the workers
may reach is the operator's egress policy, not Packyard's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.domain.access import group_chain_ids
from app.domain.audit import Actor, actor_name, record
from app.domain.errors import InvalidInput
from app.domain.identity import Identity
from app.domain.packages import PACKAGE_TYPE, package_status, parse_bool
from app.models import Group, Package, PackageFile, Project, WebHook, WebHookDelivery, WebHookEvent

PACKAGE_ACTIONS = ("published", "processed", "failed", "yanked", "deleted")
EVENT_HEADER = "Package Hook"  # X-Packyard-Event, as GitLab names its events
MAX_URL = 2048
MAX_TOKEN = 255
MAX_ERROR = 1000

Owner = Group | Project


@dataclass(frozen=True)
class HookParams:
    """A hook's fields as given to the API or the form; None means "leave as it is"."""

    url: str | None = None
    token: str | None = None
    package_events: bool | None = None
    enable_ssl_verification: bool | None = None


def parse_hook_params(params: Mapping[str, Any], *, creating: bool) -> HookParams:
    url = params.get("url")
    if url is not None or creating:
        url = _check_url(url)
    token = params.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise InvalidInput(f"token is invalid: a string of at most {MAX_TOKEN} characters")
    return HookParams(
        url=url,
        token=token,
        package_events=_flag(params, "package_events"),
        enable_ssl_verification=_flag(params, "enable_ssl_verification"),
    )


def _flag(params: Mapping[str, Any], name: str) -> bool | None:
    value = params.get(name)
    return None if value is None or value == "" else parse_bool(value, name)


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url is missing")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidInput(f"url is invalid: an http(s) URL of at most {MAX_URL} characters")
    return url


def hooks_query(owner: Owner) -> Select[tuple[WebHook]]:
    column = WebHook.group_id if isinstance(owner, Group) else WebHook.project_id
    return select(WebHook).where(column == owner.id).order_by(WebHook.id)


def find_hook(session: Session, owner: Owner, hook_id: int) -> WebHook | None:
    hook = session.get(WebHook, hook_id)
    owner_id = hook and (hook.group_id if isinstance(owner, Group) else hook.project_id)
    return hook if hook is not None and owner_id == owner.id else None


def find_event(session: Session, hook: WebHook, event_id: int) -> WebHookEvent | None:
    event = session.get(WebHookEvent, event_id)
    return event if event is not None and event.hook_id == hook.id else None


def create_hook(session: Session, owner: Owner, params: HookParams, actor: Actor) -> WebHook:
    where = {"group_id": owner.id} if isinstance(owner, Group) else {"project_id": owner.id}
    hook = WebHook(url=params.url, token=params.token or None, package_events=True,
                   enable_ssl_verification=True, **where)  # fmt: skip
    _apply(hook, params)
    session.add(hook)
    session.flush()
    record(session, actor, "web_hook_created", owner, "WebHook", hook.id, hook.url)
    session.commit()
    return hook


def update_hook(session: Session, hook: WebHook, owner: Owner, params: HookParams,
                actor: Actor) -> WebHook:  # fmt: skip
    _apply(hook, params)
    record(session, actor, "web_hook_updated", owner, "WebHook", hook.id, hook.url)
    session.commit()
    return hook


def _apply(hook: WebHook, params: HookParams) -> None:
    if params.url is not None:
        hook.url = params.url
    if params.token is not None:  # an empty token removes the secret: bodies go unsigned
        hook.token = params.token or None
    for name in ("package_events", "enable_ssl_verification"):
        if getattr(params, name) is not None:
            setattr(hook, name, getattr(params, name))


def delete_hook(session: Session, hook: WebHook, owner: Owner, actor: Actor) -> None:
    record(session, actor, "web_hook_deleted", owner, "WebHook", hook.id, hook.url)
    session.delete(hook)
    session.commit()


def events_query(hook: WebHook) -> Select[tuple[WebHookEvent]]:
    """The hook's events, newest first."""
    return (
        select(WebHookEvent).where(WebHookEvent.hook_id == hook.id).order_by(WebHookEvent.id.desc())
    )


# --- events ------------------------------------------------------------------------------


def queue_package_event(
    session: Session, package: Package, action: str, actor: Actor,
    package_file: PackageFile | None = None, base_url: str = "",
) -> list[int]:  # fmt: skip
    """Add an event for every hook that hears the package's project; returns their ids.

    Flushed, not committed: the caller's commit keeps the events with its change, and it
    sends them (``workers.tasks.hooks.send_events``) once committed.  No hook, no write.
    """
    project = package.project
    hooks = _listening_hooks(session, project)
    if not hooks:
        return []
    payload = package_payload(package, action, actor, package_file, base_url)
    events = [WebHookEvent(hook_id=hook.id, event_name=payload["event_name"], payload=payload,
                           state="pending", attempts=0) for hook in hooks]  # fmt: skip
    session.add_all(events)
    session.flush()
    return [event.id for event in events]


def _listening_hooks(session: Session, project: Project) -> list[WebHook]:
    query = _listening(project.id, group_chain_ids(session, project.group_id))
    return list(session.execute(query.order_by(WebHook.id)).scalars())


def any_listening_hook(session: Session, project_id: int, group_ids: list[int]) -> bool:
    """Whether a hook hears this project's packages: the upload's check, by ids known
    before its commit, so that without hooks nothing of the upload is read back."""
    query = _listening(project_id, group_ids).with_only_columns(WebHook.id).limit(1)
    return session.execute(query).first() is not None


def _listening(project_id: int, group_ids: list[int]) -> Select[tuple[WebHook]]:
    return select(WebHook).where(
        WebHook.package_events.is_(True),
        (WebHook.project_id == project_id) | WebHook.group_id.in_(group_ids),
    )


def package_payload(
    package: Package, action: str, actor: Actor, package_file: PackageFile | None, base_url: str
) -> dict[str, Any]:
    """GitLab's webhook shape (``object_kind``, ``event_name``, ``user``, ``project``,
    ``object_attributes``), with the package as the packages API shows it."""
    if action not in PACKAGE_ACTIONS:
        raise ValueError(f"unknown package action {action!r}")
    project = package.project
    files = [package_file] if package_file is not None else list(package.files)
    return {
        "object_kind": "package",
        "event_name": f"package_{action}",
        "action": action,
        "created_at": _now(),
        "user": _user(actor),
        "project": {
            "id": project.id,
            "name": project.name,
            "path_with_namespace": project.full_path,
            "web_url": f"{base_url}/{project.full_path}",
        },
        "object_attributes": {
            "id": package.id,
            "name": package.name,
            "version": package.version,
            "package_type": PACKAGE_TYPE,
            "status": package_status(package) if action != "deleted" else "deleted",
            "yanked": package.yanked,
            "yanked_reason": package.yanked_reason,
            "created_at": _iso(package.created_at),
            "web_url": f"{base_url}/{project.full_path}/-/packages/{package.id}",
        },
        "package_files": [_file(f) for f in files],
    }


def _user(actor: Actor) -> dict[str, Any]:
    if isinstance(actor, Identity):
        return {"id": actor.user_id, "name": actor_name(actor), "username": actor.name}
    return {"id": None, "name": actor or "system", "username": None}


def _file(package_file: PackageFile) -> dict[str, Any]:
    return {
        "id": package_file.id,
        "file_name": package_file.filename,
        "size": package_file.size,
        "file_sha256": package_file.sha256,
        "status": package_file.state,
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _now() -> str | None:
    return _iso(datetime.now(UTC))


# --- delivery ----------------------------------------------------------------------------


def signature(body: bytes, token: str) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def event_body(event: WebHookEvent) -> bytes:
    return json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()


def deliver(session: Session, event_id: int, timeout: float, *, last_try: bool) -> bool | None:
    """POST the event once and log the attempt; returns whether the receiver took it
    (a 2xx), or None when there is nothing to send (the event or its hook is gone)."""
    event = session.get(WebHookEvent, event_id)
    if event is None or event.state == "delivered":
        return None
    post = _request(event.hook, event)
    session.commit()  # no transaction stays open while the receiver takes its time
    started = time.monotonic()
    status, error = post.send(timeout)
    succeeded = status is not None and 200 <= status < 300
    event = session.get(WebHookEvent, event_id)
    if event is None:  # deleted with its hook meanwhile: nothing to log it against
        return None
    session.add(WebHookDelivery(
        event_id=event.id, status="succeeded" if succeeded else "failed", response_status=status,
        duration=round(time.monotonic() - started, 3), error=error,
    ))  # fmt: skip
    event.attempts += 1
    event.state = "delivered" if succeeded else ("failed" if last_try else "pending")
    session.commit()
    return succeeded


@dataclass(frozen=True)
class _Post:
    """One delivery attempt's request, read from the rows before the POST."""

    url: str
    body: bytes
    headers: dict[str, str]
    verify: bool

    def send(self, timeout: float) -> tuple[int | None, str | None]:
        try:
            response = requests.post(
                self.url, data=self.body, headers=self.headers, timeout=timeout,
                verify=self.verify, allow_redirects=False,
            )  # fmt: skip
            response.close()
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        ok = 200 <= response.status_code < 300
        error = None if ok else f"HTTP {response.status_code} {response.reason}"[:MAX_ERROR]
        return response.status_code, error


def _request(hook: WebHook, event: WebHookEvent) -> _Post:
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Packyard-Hook",
        "X-Packyard-Event": EVENT_HEADER,
        "X-Packyard-Event-Id": str(event.id),
    }
    if hook.token:
        headers["X-Packyard-Signature-256"] = signature(body, hook.token)
    return _Post(hook.url, body, headers, hook.enable_ssl_verification)


def unsent_events(session: Session, older_than: timedelta, limit: int = 500) -> list[int]:
    """Pending events never tried, older than ``older_than``: the broker could not take
    them (or their task was lost)."""
    cutoff = datetime.now(UTC) - older_than
    query = select(WebHookEvent.id).where(
        WebHookEvent.state == "pending", WebHookEvent.attempts == 0,
        WebHookEvent.created_at < cutoff,
    )  # fmt: skip
    return list(session.execute(query.order_by(WebHookEvent.id).limit(limit)).scalars())


def resend(session: Session, event: WebHookEvent) -> None:
    """Make the event pending again; the caller sends it once committed."""
    event.state = "pending"
    session.commit()
