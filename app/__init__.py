"""The Packyard Flask application factory. Wiring only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import caching
from app.config import load_config
from app.domain.storage import backend_for_url
from app.extensions import init_database
from app.logs import RequestIds
from app.metrics.wsgi import RequestMetrics
from app.plugin_manager import credential_headers, get_plugin_manager, storage_factories
from app.web import register_web
from app.web.auth import CREDENTIAL_HEADERS
from app.web.pypi import SIMPLE_INDEX_PATHS
from app.web.uploads import StreamingRequest
from workers.celery_app import make_celery


def create_app(config: Mapping[str, Any] | None = None, plugins: Iterable[object] = ()) -> Flask:
    app = Flask(__name__)
    app.request_class = StreamingRequest
    load_config(app, config)
    init_database(app)
    pm = get_plugin_manager(app.config["LOAD_ENTRYPOINT_PLUGINS"], extra_plugins=plugins)
    app.extensions["packyard.plugins"] = pm
    app.extensions["packyard.storage"] = backend_for_url(
        app.config["STORAGE_URL"], storage_factories(pm)
    )
    caching.init_app(app, SIMPLE_INDEX_PATHS, (*CREDENTIAL_HEADERS, *credential_headers(pm)))
    if app.config["PROXY_COUNT"]:
        count = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count, x_prefix=count
        )
    # Outermost: the response cache's answers and ProxyFix'd requests are counted too.
    app.wsgi_app = RequestMetrics(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = RequestIds(app.wsgi_app)  # type: ignore[method-assign]
    make_celery(app)
    register_web(app)
    return app
