"""What the page views share: the visitor, the namespace a URL names, page arguments.

Pages apply the same access rules as the API (``app.domain.access``).  Where the API
answers 401 to an anonymous caller, a page sends the visitor to sign in (as GitLab
does); a signed-in visitor gets 404 for what they may not see and 403 for what they
see but may not read.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, current_app, redirect, request, url_for

from app.domain.access import Access, group_access, project_access
from app.domain.errors import Forbidden, NotFound, PackyardError
from app.domain.identity import ANONYMOUS, Identity
from app.domain.namespaces import group_at, project_at
from app.extensions import db
from app.models import Group, Project, User
from app.web.auth import current_identity


class SignInRequired(Exception):
    """The page needs a signed-in visitor; the blueprint redirects to the sign-in form."""


def viewer() -> Identity:
    """The visitor, or anonymous when the request's credentials are refused."""
    try:
        return current_identity()
    except PackyardError:
        return ANONYMOUS


def signed_in_user() -> User:
    """The user of a browser session (account pages take no tokens)."""
    identity = current_identity()
    user = db.session.get(User, identity.user_id) if identity.kind == "session" else None
    if user is None:
        raise SignInRequired()
    return user


def admin_user() -> User:
    user = signed_in_user()
    if not user.is_admin:
        raise NotFound("404 Not Found")  # the admin area does not exist for others
    return user


def page_arg() -> int:
    try:
        return max(int(request.args.get("page", 1)), 1)
    except ValueError:
        return 1


def search_arg() -> str:
    return request.args.get("search", "").strip()


def load_group(full_path: str) -> tuple[Group | None, Access]:
    group = group_at(db.session, full_path)
    if group is None:
        return None, Access()
    return group, group_access(db.session, current_identity(), group)


def load_project(full_path: str, permission: str = "read") -> tuple[Project, Access]:
    """The project at ``full_path`` if the visitor has ``permission`` on it."""
    identity = current_identity()
    project = project_at(db.session, full_path)
    access = project_access(db.session, identity, project) if project else Access()
    if project is None or not access.visible:
        raise hidden(identity, "Project")
    if not getattr(access, permission):
        raise Forbidden("403 Forbidden: you may see this project but not its packages")
    return project, access


def canonical_redirect(full_path: str) -> Response | None:
    """Paths are found whatever their case; a page sends the visitor on to the path as it
    is spelled (as GitLab does), keeping the rest of the URL."""
    if request.view_args is None or request.view_args.get("full_path") == full_path:
        return None
    target = url_for(str(request.endpoint), **{**request.view_args, "full_path": full_path})
    query = request.query_string.decode("latin-1")
    return redirect(f"{target}?{query}" if query else target, code=301)


def hidden(identity: Identity, what: str) -> Exception:
    """What a visitor gets for something missing or not visible to them."""
    if identity.is_anonymous:
        return SignInRequired()
    return NotFound(f"404 {what} Not Found")


def safe_next(target: str | None) -> str:
    """A local path to return to after signing in; anything else goes home."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def external_url(path: str) -> str:
    """An absolute URL: ``PACKYARD_BASE_URL`` if set, else the request's own host."""
    base = current_app.config.get("BASE_URL") or request.host_url
    return str(base).rstrip("/") + "/" + path.lstrip("/")
