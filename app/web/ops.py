"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from app.extensions import db
from app.metrics.exposition import CONTENT_TYPE, InstanceCollector, scrape
from app.runtime import storage
from workers.monitoring import queue_depths

bp = Blueprint("ops", __name__)


@bp.get("/-/health")
def health() -> Response:
    return jsonify(status="ok")


@bp.get("/-/ready")
def ready() -> tuple[Response, int]:
    failures = {}
    checks = {"database": _check_database, "broker": _check_broker, "storage": storage().check}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    if failures:
        return jsonify(status="unavailable", failing=failures), 503
    return jsonify(status="ok"), 200


def _check_database() -> None:
    db.session.execute(text("SELECT 1"))


def _check_broker() -> None:
    celery = current_app.extensions["celery"]
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


@bp.get("/-/metrics")
def metrics() -> Response:
    token = current_app.config["METRICS_TOKEN"]
    if token and not _bearer_matches(token):
        return Response(
            "a metrics token is needed\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    depths = queue_depths(current_app.extensions["celery"])
    body = scrape(InstanceCollector(db.session, depths))
    return Response(body, content_type=CONTENT_TYPE)


def _bearer_matches(token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token)
