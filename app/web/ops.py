"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import PackageFile
from app.runtime import storage

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
    counts = db.session.execute(
        select(
            PackageFile.state, func.count(), func.coalesce(func.sum(PackageFile.size), 0)
        ).group_by(PackageFile.state)
    ).all()
    lines = [
        "# HELP packyard_package_files Package files by processing state.",
        "# TYPE packyard_package_files gauge",
        *(f'packyard_package_files{{state="{state}"}} {count}' for state, count, _ in counts),
        "# HELP packyard_package_bytes Stored bytes by processing state.",
        "# TYPE packyard_package_bytes gauge",
        *(f'packyard_package_bytes{{state="{state}"}} {size}' for state, _, size in counts),
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
