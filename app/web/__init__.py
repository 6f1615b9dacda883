"""HTTP layer: registers blueprints and the error handlers on the app."""

from __future__ import annotations

from flask import Flask


def register_web(app: Flask) -> None:
    from app.web import api, ops, pypi
    from app.web.errors import register_error_handlers
    from app.web.routing import RefConverter

    app.url_map.converters["ref"] = RefConverter
    app.register_blueprint(pypi.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    register_error_handlers(app)
