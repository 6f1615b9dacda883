"""One place that turns domain errors into HTTP answers.

PyPI endpoints answer plain text (twine shows it, and the reason phrase);
the REST API answers GitLab's ``{"message": ...}``.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.domain.errors import DATABASE_OUTAGES, PackyardError
from app.web.auth import REALM

RETRY_AFTER_SECONDS = 5  # a restarting database is usually back by then


def _wants_json() -> bool:
    path = request.path
    return path.startswith("/api/") and "/packages/pypi" not in path


def error_response(status: int, message: str) -> Response:
    if _wants_json():
        response = jsonify(message=message)
    else:
        response = Response(message + "\n", mimetype="text/plain")
    response.status_code = status
    # twine prints the reason phrase: make it carry the reason (as PyPI does).
    phrase = " ".join(message.encode("ascii", "replace").decode().split())[:200]
    phrase = phrase.removeprefix(f"{status} ")  # "403 Forbidden: why" -> "Forbidden: why"
    if (status in (400, 413) and phrase) or (status == 403 and ":" in phrase):
        response.status = f"{status} {phrase}"
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(PackyardError)
    def packyard_error(error: PackyardError) -> Response:
        return error_response(error.status, error.message)

    def database_unavailable(error: Exception) -> Response:
        reason = getattr(error, "orig", None) or error
        app.logger.warning("database unavailable (%s %s): %s", request.method, request.path, reason)
        response = error_response(503, "The database is unavailable; try again shortly")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, database_unavailable)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_UPLOAD_SIZE"]
        description = (
            error.description if error.description and "limit" in error.description else None
        )
        return error_response(413, description or f"File too large: the limit is {limit} bytes")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        message = f"{code} {error.name}"
        response = error_response(code, message)
        if code == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response
