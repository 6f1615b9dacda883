"""Helpers shared by the REST views: the calling user, JSON input, pagination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, func, select

from app.domain.access import WRITE, granted
from app.domain.errors import Forbidden, InvalidInput, Unauthenticated
from app.domain.identity import Identity
from app.domain.tokens import as_utc
from app.extensions import db
from app.models import User
from app.web.auth import current_identity

MAX_PER_PAGE = 100
MAX_INT = 2**31 - 1  # ids and pages: the database's INTEGER
NUL_REFUSED = "NUL characters are not allowed"


View = Callable[..., ResponseReturnValue]


def on_both(verb: str, suffix: str) -> Callable[[View], View]:
    """Route a view for groups (``group_ref``) and for projects (``project_ref``)."""

    def register(view: View) -> View:
        from app.web.api import bp  # the blueprint imports this module

        route = getattr(bp, verb)
        route(f"/groups/<ref:group_ref>{suffix}", endpoint=f"group_{view.__name__}")(view)
        route(f"/projects/<ref:project_ref>{suffix}", endpoint=f"project_{view.__name__}")(view)
        return view

    return register


def api_user(write: bool = False) -> tuple[Identity, User]:
    """The user behind the request; the admin API is not for deploy or job tokens."""
    identity = current_identity()
    if identity.is_anonymous:
        raise Unauthenticated("401 Unauthorized")
    if identity.user_id is None or identity.kind == "job_token":
        raise Forbidden("403 Forbidden: this API needs a personal access token")
    if write and WRITE not in granted(identity):
        raise Forbidden("403 Forbidden: insufficient scope, the api scope is required")
    user = db.session.get(User, identity.user_id)
    if user is None:
        raise Unauthenticated("401 Unauthorized")
    return identity, user


def require_admin() -> User:
    _, user = api_user(write=request.method != "GET")
    if not user.is_admin:
        raise Forbidden("403 Forbidden: admin access is required")
    return user


def body() -> dict[str, Any]:
    """Parameters from a JSON body, a form, or the query string, as GitLab accepts."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise InvalidInput("the request body is not a JSON object")
        return {**request.args.to_dict(), **{k: _as_form(k, v) for k, v in data.items()}}
    values: dict[str, Any] = request.args.to_dict()
    for key in request.form:
        items = request.form.getlist(key)
        values[key.removesuffix("[]")] = items if key.endswith("[]") or len(items) > 1 else items[0]
    return values


def _as_form(name: str, value: Any) -> Any:
    """A JSON value as a form field would carry it (a string, a list of strings, or null), so
    that views see one kind of input; objects and nested lists are refused."""
    if (isinstance(value, str) and "\x00" in value) or "\x00" in name:
        raise InvalidInput(NUL_REFUSED)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(
        item is not None and not isinstance(item, list | dict) for item in value
    ):
        return [_as_form(name, item) for item in value]
    raise InvalidInput(f"{name} is invalid")


def reject_nul_bytes() -> None:
    """Refuse NUL characters in the path, the query or a form: PostgreSQL text cannot hold
    them. (``body()`` applies the same rule to JSON.)"""
    values = [request.path, *request.args.keys(), *request.args.values()]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += [*request.form.keys(), *request.form.values()]
    if any("\x00" in value for value in values):
        raise InvalidInput(NUL_REFUSED)


def required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise InvalidInput(f"{name} is missing")
    return value


def int_param(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} is invalid") from None
    if abs(number) > MAX_INT:
        raise InvalidInput(f"{name} is out of range")
    return number


def as_bool(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def iso(moment: datetime | None) -> str | None:
    moment = as_utc(moment)
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def paginate(
    query: Select[Any], serialize: Callable[[Any], dict[str, Any]], whole_rows: bool = False
) -> Response:
    """GitLab offset pagination: page/per_page, X-* headers and a Link header.

    ``serialize`` gets each row's first column, or the whole row with ``whole_rows``."""
    page, per_page = _page_params()
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    result = db.session.execute(query.limit(per_page).offset((page - 1) * per_page))
    rows = result.all() if whole_rows else result.scalars()
    return _paged(jsonify([serialize(row) for row in rows]), page, per_page, total)


def paginate_list(items: Sequence[Any], serialize: Callable[[Any], dict[str, Any]]) -> Response:
    """``paginate`` for a list already in memory."""
    page, per_page = _page_params()
    shown = items[(page - 1) * per_page : page * per_page]
    return _paged(jsonify([serialize(item) for item in shown]), page, per_page, len(items))


def _page_params() -> tuple[int, int]:
    page = max(int_param(request.args.to_dict(), "page", 1) or 1, 1)
    per_page = int_param(request.args.to_dict(), "per_page", 20) or 20
    return page, min(max(per_page, 1), MAX_PER_PAGE)


def _paged(response: Response, page: int, per_page: int, total: int) -> Response:
    pages = max((total + per_page - 1) // per_page, 1)
    response.headers.update(
        {
            "X-Total": str(total),
            "X-Total-Pages": str(pages),
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
    )
    links = {"first": 1, "last": pages}
    if page < pages:
        links["next"] = page + 1
    if page > 1:
        links["prev"] = page - 1
    response.headers["Link"] = ", ".join(
        f'<{_page_url(number, per_page)}>; rel="{rel}"' for rel, number in links.items()
    )
    return response


def _page_url(page: int, per_page: int) -> str:
    args = {**request.args.to_dict(), "page": page, "per_page": per_page}
    return f"{request.base_url}?{urlencode(args)}"
