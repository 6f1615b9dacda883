"""Members pages of groups and projects: list (with inherited members), add by username,
change a role, remove.  ``app.domain.members`` and ``add_member`` apply the same rules as
the API: nobody grants or touches a role above their own."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from app.domain.access import ROLE_NAMES, Access, group_access, project_access
from app.domain.accounts import find_user
from app.domain.errors import Forbidden, InvalidInput, NotFound, PackyardError
from app.domain.members import all_members, change_role, find_membership, leave, remove_member
from app.domain.namespaces import add_member, group_chain
from app.extensions import db
from app.models import Group, Membership, Project
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import hidden, load_group, load_project, signed_in_user

PAGES = {"group": "/<namespace:full_path>/-/group_members",
         "project": "/<namespace:full_path>/-/project_members"}  # fmt: skip


@bp.app_template_global("has_endpoint")
def has_endpoint(endpoint: str) -> bool:
    """Whether a page exists, so shared templates link only to pages that do."""
    return endpoint in current_app.view_functions


MANAGE_PAGES = (("deploy_tokens", "Deploy tokens"), ("hooks", "Webhooks"), ("settings", "Settings"))


@bp.app_template_global("manage_links")
def manage_links(kind: str, access: Access) -> list[tuple[str, str]]:
    """The maintainer pages of a group or project that exist, for a visitor who manages it."""
    if not access.manage:
        return []
    endpoints = ((f"ui.{kind}_{page}", label) for page, label in MANAGE_PAGES)
    return [(endpoint, label) for endpoint, label in endpoints if has_endpoint(endpoint)]


def load_target(kind: str, full_path: str) -> tuple[Group | Project, Access]:
    """The group or project a management page names, if the visitor may see it."""
    if kind == "project":
        return load_project(full_path, "visible")
    group, access = load_group(full_path)
    if group is None or not access.visible:
        raise hidden(current_identity(), "Group")
    return group, access


def require_manage(access: Access) -> None:
    if not access.manage:
        raise Forbidden("403 Forbidden: maintainers manage this")


def crumbs(target: Group | Project) -> list[Group]:
    """The groups above (and for a group, not including) ``target``, outermost first."""
    if isinstance(target, Project):
        return list(reversed(group_chain(db.session, target.group)))
    return list(reversed(group_chain(db.session, target)[1:]))


def _page(
    kind: str, full_path: str, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    target, access = load_target(kind, full_path)
    roles = {level: name for level, name in ROLE_NAMES.items() if level <= access.role}
    page = render_template(
        "manage/members.html",
        kind=kind,
        target=target,
        access=access,
        groups=crumbs(target),
        members=all_members(db.session, target),
        own=_own_membership(target),
        roles=roles,
        all_roles=ROLE_NAMES,
        error=error,
    )
    return page, status


def _members_view(kind: str) -> None:
    def show(full_path: str) -> ResponseReturnValue:
        return _page(kind, full_path)

    def add(full_path: str) -> ResponseReturnValue:
        target, access = load_target(kind, full_path)
        require_manage(access)
        username = request.form.get("username", "").strip()
        try:
            user = find_user(db.session, username) if username else None
            if user is None:
                raise InvalidInput(f"No user is called {username!r}.")
            level = _level(request.form.get("access_level"))
            where = {kind: target}
            add_member(db.session, user, level, actor=current_identity(),
                       granter_role=access.role, **where)  # type: ignore[arg-type]  # fmt: skip
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash(f"Added {user.username} as {ROLE_NAMES[level]}.")
        return _back(kind, target)

    def update(full_path: str, user_id: int) -> ResponseReturnValue:
        target, access = load_target(kind, full_path)
        require_manage(access)
        try:
            membership = find_membership(db.session, target, user_id)
            level = _level(request.form.get("access_level"))
            change_role(db.session, target, membership, level, granter_role=access.role,
                        actor=current_identity())  # fmt: skip
        except NotFound:
            raise
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash(f"Changed the role to {ROLE_NAMES[level]}.")
        return _back(kind, target)

    def remove(full_path: str, user_id: int) -> ResponseReturnValue:
        target, access = load_target(kind, full_path)
        require_manage(access)
        try:
            membership = find_membership(db.session, target, user_id)
            remove_member(db.session, target, membership, granter_role=access.role,
                          actor=current_identity())  # fmt: skip
        except NotFound:
            raise
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash("Removed the member.")
        return _back(kind, target)

    def leave_target(full_path: str) -> ResponseReturnValue:
        user = signed_in_user()
        target, _access = load_target(kind, full_path)
        try:
            membership = find_membership(db.session, target, user.id)
            leave(db.session, target, membership, current_identity())
        except PackyardError as exc:
            db.session.rollback()
            return _page(kind, full_path, exc.message, exc.status)
        flash(f"You left {target.full_path}.")
        # It may be hidden from its former member now: home is always there.
        return redirect(url_for("ui.home"), code=303)

    path = PAGES[kind]
    bp.add_url_rule(path, f"{kind}_members", show, methods=["GET"])
    bp.add_url_rule(path, f"{kind}_member_add", add, methods=["POST"])
    bp.add_url_rule(f"{path}/<int:user_id>", f"{kind}_member_update", update, methods=["POST"])
    bp.add_url_rule(
        f"{path}/<int:user_id>/remove", f"{kind}_member_remove", remove, methods=["POST"]
    )
    bp.add_url_rule(f"{path}/leave", f"{kind}_leave", leave_target, methods=["POST"])


def _own_membership(target: Group | Project) -> Membership | None:
    """The visitor's direct membership here, which they may leave."""
    user_id = current_identity().user_id
    if user_id is None:
        return None
    try:
        return find_membership(db.session, target, user_id)
    except NotFound:
        return None


def _level(value: str | None) -> int:
    try:
        level = int(value or "")
    except ValueError:
        raise InvalidInput("Choose a role.") from None
    if level not in ROLE_NAMES:
        raise InvalidInput("Choose a role.")
    return level


def _back(kind: str, target: Group | Project) -> ResponseReturnValue:
    return redirect(url_for(f"ui.{kind}_members", full_path=target.full_path), code=303)


_members_view("group")
_members_view("project")


def user_page(username: str) -> str | None:
    """A user's profile (their API ``web_url``) for signed-in visitors: who they are and
    the groups and projects the visitor can see them in."""
    user = find_user(db.session, username)
    if user is None:
        return None
    identity = current_identity()
    rows = db.session.execute(select(Membership).where(Membership.user_id == user.id)).scalars()
    places: list[tuple[Group | Project, str]] = []
    for membership in rows:
        place = (db.session.get(Group, membership.group_id) if membership.group_id
                 else db.session.get(Project, membership.project_id))  # fmt: skip
        if place is None:
            continue
        check = group_access if isinstance(place, Group) else project_access
        if check(db.session, identity, place).visible:  # type: ignore[arg-type]
            places.append((place, ROLE_NAMES.get(membership.access_level, "")))
    places.sort(key=lambda item: item[0].full_path)
    return render_template("account/user.html", user=user, places=places)
