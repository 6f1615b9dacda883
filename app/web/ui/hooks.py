"""Webhook pages of groups and projects: list, add, edit, delete, recent events, resend.
Thin: the domain functions are the API's; every form is a CSRF-checked POST."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.domain.errors import NotFound, PackyardError
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
from app.models import WebHook
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.members import crumbs, load_target, require_manage
from workers.tasks.hooks import send_events

HOOKS = {"group": "/<namespace:full_path>/-/group_hooks",
         "project": "/<namespace:full_path>/-/project_hooks"}  # fmt: skip
RECENT_EVENTS = 10


def _managed(kind: str, full_path: str) -> Owner:
    target, access = load_target(kind, full_path)
    require_manage(access)
    return target


def _hook(kind: str, full_path: str, hook_id: int) -> tuple[Owner, WebHook]:
    owner = _managed(kind, full_path)
    hook = find_hook(db.session, owner, hook_id)
    if hook is None:
        raise NotFound("404 Hook Not Found")
    return owner, hook


def _form() -> dict[str, str]:
    # An unchecked box sends nothing: the form always says what it means.
    return {"url": request.form.get("url", ""), "token": request.form.get("token", ""),
            "package_events": "true" if request.form.get("package_events") else "false",
            "enable_ssl_verification": "true" if request.form.get("enable_ssl_verification")
            else "false"}  # fmt: skip


def _views(kind: str) -> None:
    def back(owner: Owner) -> ResponseReturnValue:
        return redirect(url_for(f"ui.{kind}_hooks", full_path=owner.full_path), code=303)

    def show(full_path: str) -> ResponseReturnValue:
        return _page(kind, full_path)

    def add(full_path: str) -> ResponseReturnValue:
        owner = _managed(kind, full_path)
        try:
            params = parse_hook_params(_form(), creating=True)
            create_hook(db.session, owner, params, current_identity())
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash("Added the webhook.")
        return back(owner)

    def edit(full_path: str, hook_id: int) -> ResponseReturnValue:
        owner, hook = _hook(kind, full_path, hook_id)
        form = _form()
        if not form["token"]:
            del form["token"]  # an empty field keeps the secret (it is never shown)
        try:
            update_hook(db.session, hook, owner, parse_hook_params(form, creating=False),
                        current_identity())  # fmt: skip
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash("Saved the webhook.")
        return back(owner)

    def remove(full_path: str, hook_id: int) -> ResponseReturnValue:
        owner, hook = _hook(kind, full_path, hook_id)
        delete_hook(db.session, hook, owner, current_identity())
        flash("Deleted the webhook.")
        return back(owner)

    def resend_event(full_path: str, hook_id: int, event_id: int) -> ResponseReturnValue:
        owner, hook = _hook(kind, full_path, hook_id)
        event = find_event(db.session, hook, event_id)
        if event is None:
            raise NotFound("404 Hook Event Not Found")
        resend(db.session, event)
        send_events([event.id])
        flash(f"Event {event.id} is being sent again.")
        return back(owner)

    one = HOOKS[kind] + "/<int:hook_id>"
    bp.add_url_rule(HOOKS[kind], f"{kind}_hooks", show, methods=["GET"])
    bp.add_url_rule(HOOKS[kind], f"{kind}_hook_add", add, methods=["POST"])
    bp.add_url_rule(one, f"{kind}_hook_edit", edit, methods=["POST"])
    bp.add_url_rule(one + "/delete", f"{kind}_hook_delete", remove, methods=["POST"])
    bp.add_url_rule(one + "/events/<int:event_id>/resend", f"{kind}_hook_resend", resend_event,
                    methods=["POST"])  # fmt: skip


def _page(kind: str, full_path: str, error: str | None = None,
          status: int = 200) -> ResponseReturnValue:  # fmt: skip
    target, access = load_target(kind, full_path)
    require_manage(access)
    hooks = [
        (hook, db.session.execute(events_query(hook).limit(RECENT_EVENTS)).scalars().all())
        for hook in db.session.execute(hooks_query(target)).scalars()
    ]
    return render_template(
        "manage/hooks.html", kind=kind, target=target, access=access, groups=crumbs(target),
        hooks=hooks, error=error, form=request.form if error else {},
    ), status  # fmt: skip


for _kind in ("group", "project"):
    _views(_kind)
