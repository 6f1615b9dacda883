"""The Packyard Flask application factory. Wiring only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import load_config
from app.domain.generation import GenerationReader  # (also registers the write hooks)
from app.domain.storage import backend_for_url
from app.extensions import db, init_database
from app.plugin_manager import get_plugin_manager, storage_factories
from app.web import register_web
from app.web.cache import ProcessCache, ResponseCache
from app.web.pypi import SIMPLE_INDEX_PATHS
from app.web.uploads import SpoolingRequest
from workers.celery_app import make_celery


def create_app(config: Mapping[str, Any] | None = None, plugins: Iterable[object] = ()) -> Flask:
    app = Flask(__name__)
    app.request_class = SpoolingRequest
    load_config(app, config)
    init_database(app)
    pm = get_plugin_manager(app.config["LOAD_ENTRYPOINT_PLUGINS"], extra_plugins=plugins)
    app.extensions["packyard.plugins"] = pm
    with app.app_context():  # the engine is the app's
        cache = app.extensions["packyard.cache"] = ProcessCache(GenerationReader(db.engine))
    app.extensions["packyard.storage"] = backend_for_url(
        app.config["STORAGE_URL"], storage_factories(pm)
    )
    app.wsgi_app = ResponseCache(app.wsgi_app, cache, SIMPLE_INDEX_PATHS)  # type: ignore[method-assign]
    if app.config["PROXY_COUNT"]:
        count = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count, x_prefix=count
        )
    make_celery(app)
    register_web(app)
    return app
