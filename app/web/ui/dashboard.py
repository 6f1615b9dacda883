"""The admins' dashboard of background processing, the JSON it polls, and retries."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import (
    Response,
    current_app,
    flash,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from app.domain.dashboard import (
    FAILED_LIMIT,
    FileActivity,
    delete_failed_file,
    recent_activity,
    retry_file,
    state_counts,
    throughput,
)
from app.domain.errors import InvalidInput
from app.domain.upstream.records import cache_totals, recent_failures, recent_files
from app.extensions import db
from app.models.packages import FILE_STATES
from app.web.auth import current_identity
from app.web.ui import bp
from app.web.ui.common import admin_user
from workers.monitoring import queue_depths, workers_online
from workers.tasks.cleanup import remove_stored_files
from workers.tasks.files import enqueue

SECTIONS = ("workers", "queues", "counts", "chart", "upstream", "recent", "failed")


def _snapshot() -> dict[str, Any]:
    """Everything the dashboard shows, read now."""
    celery = current_app.extensions["celery"]
    state = request.args.get("state")
    return {
        "generated_at": datetime.now().astimezone(),
        "workers": workers_online(celery, current_app.config),
        "queues": queue_depths(celery),
        "counts": state_counts(db.session),
        "buckets": throughput(db.session),
        "state": state if state in FILE_STATES else None,
        "recent": recent_activity(db.session, state=state if state in FILE_STATES else None),
        "failed": recent_activity(db.session, limit=FAILED_LIMIT, state="error"),
        "upstream": cache_totals(db.session),
        "upstream_recent": recent_files(db.session),
        "upstream_failed": recent_failures(db.session),
    }


@bp.get("/-/dashboard")
def dashboard() -> str:
    admin_user()
    data = _snapshot()
    return render_template(
        "dashboard/index.html",
        snapshot=data,
        generated_at=data["generated_at"],
        state=data["state"],
    )


@bp.get("/-/dashboard/data.json")
def dashboard_data() -> Response:
    """The same data as JSON, with each section's HTML for the page's live refresh."""
    admin_user()
    data = _snapshot()
    sections = {
        name: str(get_template_attribute("dashboard/sections.html", name)(data))
        for name in SECTIONS
    }
    report = data["workers"]
    return jsonify(
        generated_at=data["generated_at"].isoformat(),
        workers={**asdict(report), "workers": [asdict(w) for w in report.workers]},
        queues=data["queues"],
        counts=data["counts"],
        throughput=[
            {"start": b.start.isoformat(), "done": b.done, "failed": b.failed}
            for b in data["buckets"]
        ],
        recent=[_activity_json(a) for a in data["recent"]],
        failed=[_activity_json(a) for a in data["failed"]],
        upstream={**asdict(data["upstream"]), "hit_ratio": data["upstream"].hit_ratio},
        html=sections,
    )


def _activity_json(activity: FileActivity) -> dict[str, Any]:
    row = asdict(activity)
    row["duration"] = activity.duration
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = value.isoformat()
    return row


@bp.post("/-/dashboard/files/<int:file_id>/retry")
def retry(file_id: int) -> Response:
    admin_user()
    try:
        package_file = retry_file(db.session, file_id, current_identity())
    except InvalidInput as exc:
        flash(exc.message, "error")
    else:
        enqueue(package_file.id)  # after the commit, as uploads do
        flash(f"Retrying {package_file.filename}.")
    return redirect(url_for("ui.dashboard") + "#failed", code=303)


@bp.post("/-/dashboard/files/<int:file_id>/delete")
def delete_failed(file_id: int) -> Response:
    admin_user()
    try:
        remove_stored_files(delete_failed_file(db.session, file_id, current_identity()))
    except InvalidInput as exc:
        flash(exc.message, "error")
    else:
        flash("Deleted the failed file.")
    return redirect(url_for("ui.dashboard") + "#failed", code=303)
