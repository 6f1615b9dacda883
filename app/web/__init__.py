"""HTTP layer: registers blueprints and the error handlers on the app."""

from __future__ import annotations

from flask import Blueprint, Flask


def register_web(app: Flask) -> None:
    from app.web import api, ops, pypi, ui
    from app.web.errors import register_error_handlers
    from app.web.routing import IdConverter, RefConverter

    app.url_map.converters["ref"] = RefConverter
    app.url_map.converters["int"] = IdConverter
    app.register_blueprint(pypi.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    plugin_blueprints = _register_plugin_blueprints(app)
    # The web pages; CSRF checks every other blueprint's POSTs: these take tokens only.
    ui.init_app(app, token_blueprints=(pypi.bp, api.bp, ops.bp, *plugin_blueprints))
    register_error_handlers(app)


def _register_plugin_blueprints(app: Flask) -> list[Blueprint]:
    """The plugins' routes (hook ``register_blueprints``): token-only, like the API."""
    blueprints: list[Blueprint] = []

    def register(blueprint: Blueprint) -> None:
        app.register_blueprint(blueprint)
        blueprints.append(blueprint)

    app.extensions["packyard.plugins"].hook.register_blueprints(register=register)
    return blueprints
