"""Pages to create groups, subgroups and projects, edit their settings, delete them, and
manage their deploy tokens and (projects) package protection rules.  Thin: the domain
functions are the API's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.domain.access import DEPLOY_TOKEN_SCOPES, OWNER, Access, group_access
from app.domain.accounts import create_deploy_token, deploy_tokens_query, revoke_deploy_token
from app.domain.errors import InvalidInput, NotFound, PackyardError
from app.domain.namespaces import add_member, create_group, create_project, group_at
from app.domain.protection import (
    LEVELS,
    create_rule,
    delete_rule,
    find_rule,
    rules_query,
    update_rule,
)
from app.domain.removal import check_may_delete, delete_group, delete_project
from app.domain.settings import update_settings
from app.domain.tokens import is_expired
from app.extensions import db
from app.models import DeployToken, Group, PackageProtectionRule, Project
from app.models.namespaces import VISIBILITIES
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import signed_in_user
from app.web.ui.members import crumbs, load_target, require_manage
from workers.tasks.cleanup import remove_stored_files

SETTINGS = {"group": "/<namespace:full_path>/-/group_settings",
            "project": "/<namespace:full_path>/-/project_settings"}  # fmt: skip
TOKENS = {"group": "/<namespace:full_path>/-/group_deploy_tokens",
          "project": "/<namespace:full_path>/-/project_deploy_tokens"}  # fmt: skip


# --- creating --------------------------------------------------------------------------


@bp.route("/-/groups/new", methods=["GET", "POST"])
def new_group() -> ResponseReturnValue:
    """A top-level group (its creator becomes its owner) or, with ``parent``, a subgroup."""
    user = signed_in_user()
    parent = _parent_group(request.values.get("parent", ""))
    if request.method == "GET":
        return _new_page("group", parent)
    form, identity = request.form, current_identity()
    name, path = form.get("name", "").strip(), form.get("path", "").strip()
    try:
        group = create_group(
            db.session, name, path, parent, form.get("visibility", "private"),
            description=form.get("description"), actor=identity,
        )  # fmt: skip
    except PackyardError as exc:
        db.session.rollback()
        return _new_page("group", parent, exc)
    if not user.is_admin and parent is None:
        add_member(db.session, user, OWNER, group=group, actor=identity)
    flash(f"Created the group {group.full_path}.")
    return redirect(url_for("ui.group", full_path=group.full_path), code=303)


@bp.route("/-/projects/new", methods=["GET", "POST"])
def new_project() -> ResponseReturnValue:
    signed_in_user()
    group = _parent_group(request.values.get("namespace", ""), required=True)
    assert group is not None
    if request.method == "GET":
        return _new_page("project", group)
    form = request.form
    name, path = form.get("name", "").strip(), form.get("path", "").strip()
    try:
        project = create_project(
            db.session, name, path, group, form.get("visibility", "private"),
            description=form.get("description"), actor=current_identity(),
        )  # fmt: skip
    except PackyardError as exc:
        db.session.rollback()
        return _new_page("project", group, exc)
    flash(f"Created the project {project.full_path}.")
    return redirect(url_for("ui.packages", full_path=project.full_path), code=303)


def _new_page(
    kind: str, parent: Group | None, error: PackyardError | None = None
) -> ResponseReturnValue:
    page = render_template(
        "manage/new.html", kind=kind, parent=parent, visibilities=VISIBILITIES,
        form=request.form if error else {}, error=error.message if error else None,
    )  # fmt: skip
    return (page, error.status) if error else page


def _parent_group(full_path: str, *, required: bool = False) -> Group | None:
    """The group a new group or project goes in; the visitor must maintain it."""
    if not full_path:
        if required:
            raise NotFound("404 Group Not Found")
        return None
    group = group_at(db.session, full_path)
    access = group_access(db.session, current_identity(), group) if group else Access()
    if group is None or not access.visible:
        raise NotFound("404 Group Not Found")
    require_manage(access)
    return group


# --- settings and deletion -------------------------------------------------------------


def _settings_views(kind: str) -> None:
    def show(full_path: str) -> ResponseReturnValue:
        return _settings_page(kind, full_path)

    def save(full_path: str) -> ResponseReturnValue:
        target, access = _managed(kind, full_path)
        identity = current_identity()
        params = _settings_form(target, identity.is_admin)
        try:
            update_settings(db.session, target, params, identity, role=access.role)
        except PackyardError as exc:
            db.session.rollback()
            return _settings_page(kind, full_path, exc.message, exc.status)
        flash("Saved the settings.")
        return redirect(url_for(f"ui.{kind}_settings", full_path=target.full_path), code=303)

    def remove(full_path: str) -> ResponseReturnValue:
        target, access = _managed(kind, full_path)
        identity = current_identity()
        try:
            check_may_delete(access, kind)
            if request.form.get("confirm", "").strip() != target.full_path:
                raise InvalidInput(f"Type {target.full_path} to confirm the deletion.")
            if isinstance(target, Group):
                deletions = delete_group(db.session, target, identity)
            else:
                deletions = delete_project(db.session, target, identity)
        except PackyardError as exc:
            db.session.rollback()
            return _settings_page(kind, full_path, exc.message, exc.status)
        remove_stored_files(deletions)
        flash(f"Deleted the {kind} {full_path}; its files are being removed.")
        parent = target.full_path.rpartition("/")[0]
        return redirect(url_for("ui.group", full_path=parent) if parent else "/", code=303)

    bp.add_url_rule(SETTINGS[kind], f"{kind}_settings", show, methods=["GET"])
    bp.add_url_rule(SETTINGS[kind], f"{kind}_settings_save", save, methods=["POST"])
    bp.add_url_rule(SETTINGS[kind] + "/delete", f"{kind}_delete", remove, methods=["POST"])


def _managed(kind: str, full_path: str) -> tuple[Group | Project, Access]:
    target, access = load_target(kind, full_path)
    require_manage(access)
    return target, access


def _settings_form(target: Group | Project, admin: bool) -> dict[str, Any]:
    """The fields the form shows; limits only for admins (an empty field inherits)."""
    form = request.form
    params: dict[str, Any] = {
        "name": form.get("name", target.name),
        "description": form.get("description", target.description),
        "visibility": form.get("visibility", target.visibility),
    }
    params["upstream_mode"] = form.get("upstream_mode", "")
    for name in ("pypi_duplicates_allowed", "pypi_duplicate_exception_regex"):
        current = getattr(target, name)
        params[name] = form.get(name, "" if current is None else str(current).lower())
    if isinstance(target, Project):
        params["packages_enabled"] = form.get("packages_enabled", str(target.packages_enabled))
    for name in ("retention_keep_n", "retention_prerelease_days"):
        params[name] = form.get(name, "").strip()
    if admin:
        params["max_upload_size"] = form.get("max_upload_size", "").strip()
        params["storage_quota"] = form.get("storage_quota", "").strip()
    return params


def _settings_page(
    kind: str, full_path: str, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    target, access = _managed(kind, full_path)
    rules = db.session.execute(rules_query(target)).scalars() if kind == "project" else []
    return render_template(
        "manage/settings.html", kind=kind, target=target, access=access, groups=crumbs(target),
        visibilities=VISIBILITIES, error=error, is_owner=access.role >= OWNER,
        rules=list(rules), levels=list(LEVELS),
    ), status  # fmt: skip


# --- package protection rules (project settings) ---------------------------------------

RULES = SETTINGS["project"] + "/protection_rules"


@bp.post(RULES)
def create_protection_rule(full_path: str) -> ResponseReturnValue:
    project, _access = _managed("project", full_path)
    return _save_rule(
        project, lambda: create_rule(db.session, project, _rule_form(), current_identity())
    )


@bp.post(RULES + "/<int:rule_id>")
def update_protection_rule(full_path: str, rule_id: int) -> ResponseReturnValue:
    project, rule = _managed_rule(full_path, rule_id)
    return _save_rule(
        project, lambda: update_rule(db.session, project, rule, _rule_form(), current_identity())
    )


@bp.post(RULES + "/<int:rule_id>/delete")
def delete_protection_rule(full_path: str, rule_id: int) -> ResponseReturnValue:
    project, rule = _managed_rule(full_path, rule_id)
    return _save_rule(project, lambda: delete_rule(db.session, project, rule, current_identity()))


def _managed_rule(full_path: str, rule_id: int) -> tuple[Project, PackageProtectionRule]:
    project, _access = _managed("project", full_path)
    assert isinstance(project, Project)
    rule = find_rule(db.session, project, rule_id)
    if rule is None:
        raise NotFound("404 Package Protection Rule Not Found")
    return project, rule


def _rule_form() -> dict[str, Any]:
    """The rule's fields as the API takes them; the type is always pypi."""
    form = request.form
    fields = ("package_name_pattern", "minimum_access_level_for_push",
              "minimum_access_level_for_delete")  # fmt: skip
    return {"package_type": "pypi", **{name: form[name] for name in fields if name in form}}


def _save_rule(project: Group | Project, change: Callable[[], object]) -> ResponseReturnValue:
    try:
        change()
    except PackyardError as exc:
        db.session.rollback()
        return _settings_page("project", project.full_path, exc.message, exc.status)
    flash("Saved the package protection rules.")
    return redirect(url_for("ui.project_settings", full_path=project.full_path), code=303)


# --- deploy tokens ---------------------------------------------------------------------


def _token_views(kind: str) -> None:
    def show(full_path: str) -> ResponseReturnValue:
        return _tokens_page(kind, full_path)

    def create(full_path: str) -> ResponseReturnValue:
        target, _access = _managed(kind, full_path)
        form = request.form
        where = {kind: target}
        try:
            _token, secret = create_deploy_token(
                db.session, form.get("name", "").strip(), form.getlist("scopes"),
                username=form.get("username", "").strip() or None,
                expires_at=form.get("expires_at") or None, actor=current_identity(), **where,  # type: ignore[arg-type]
            )  # fmt: skip
        except PackyardError as exc:
            db.session.rollback()
            return _tokens_page(kind, full_path, error=exc.message, status=exc.status)
        return _tokens_page(kind, full_path, new_token=(_token.username, secret), status=201)

    def revoke(full_path: str, token_id: int) -> ResponseReturnValue:
        target, _access = _managed(kind, full_path)
        token = db.session.get(DeployToken, token_id)
        owner_id = (token.group_id if kind == "group" else token.project_id) if token else None
        if token is None or owner_id != target.id:
            raise NotFound("404 Deploy Token Not Found")
        revoke_deploy_token(db.session, token, current_identity())
        flash(f"Revoked the deploy token {token.name!r} ({token.username}).")
        return redirect(url_for(f"ui.{kind}_deploy_tokens", full_path=target.full_path), code=303)

    bp.add_url_rule(TOKENS[kind], f"{kind}_deploy_tokens", show, methods=["GET"])
    bp.add_url_rule(TOKENS[kind], f"{kind}_deploy_token_create", create, methods=["POST"])
    bp.add_url_rule(f"{TOKENS[kind]}/<int:token_id>/revoke", f"{kind}_deploy_token_revoke",
                    revoke, methods=["POST"])  # fmt: skip


def _tokens_page(
    kind: str, full_path: str, *, new_token: tuple[str, str] | None = None,
    error: str | None = None, status: int = 200,
) -> ResponseReturnValue:  # fmt: skip
    target, access = _managed(kind, full_path)
    where = {kind: target}
    query = deploy_tokens_query(**where).order_by(None).order_by(DeployToken.id.desc())  # type: ignore[arg-type]
    tokens = [(t, _token_state(t)) for t in db.session.execute(query).scalars()]
    return render_template(
        "manage/deploy_tokens.html", kind=kind, target=target, access=access,
        groups=crumbs(target), tokens=tokens, scopes=sorted(DEPLOY_TOKEN_SCOPES),
        new_token=new_token, error=error, form=request.form if error else {},
    ), status  # fmt: skip


def _token_state(token: DeployToken) -> str:
    if token.revoked:
        return "revoked"
    return "expired" if is_expired(token.expires_at) else "active"


for _kind in ("group", "project"):
    _settings_views(_kind)
    _token_views(_kind)
