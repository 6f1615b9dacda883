"""Errors on the pages answer HTML (the API's handlers answer text or JSON)."""

from __future__ import annotations

from flask import Response, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.domain.errors import PackyardError
from app.web.ui import bp
from app.web.ui.common import SignInRequired


def _wants_json() -> bool:
    return request.path.endswith(".json")


def _page(status: int, title: str, message: str) -> tuple[Response | str, int]:
    if _wants_json():
        return jsonify(message=f"{status} {title}"), status
    return render_template("error.html", status=status, title=title, message=message), status


@bp.errorhandler(SignInRequired)
def sign_in_required(_error: SignInRequired) -> Response | tuple[Response | str, int]:
    if _wants_json() or request.method != "GET":
        return _page(401, "Unauthorized", "Sign in to see this page.")
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("ui.sign_in", next=target))


@bp.errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> tuple[Response | str, int]:
    return _page(
        400,
        "The form has expired",
        f"{error.description} Go back, reload the page and try again.",
    )


@bp.errorhandler(PackyardError)
def domain_error(error: PackyardError) -> tuple[Response | str, int]:
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
    message = error.message.split(": ", 1)[-1] if ": " in error.message else ""
    if error.status == 404:
        message = "The page could not be found, or you may not see it."
    return _page(error.status, titles.get(error.status, "Bad request"), message)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[Response | str, int]:
    return _page(error.code or 500, error.name, error.description or "")
