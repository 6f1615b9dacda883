"""The pull-through cache for admins: what was pulled from the upstream, and purges."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from app.domain.upstream.records import files_query, pages_query, purge, purge_file
from app.extensions import db
from app.models import UpstreamFile, UpstreamProject
from app.runtime import storage
from app.web.api import bp
from app.web.api.common import iso, paginate, require_admin
from app.web.auth import current_identity


@bp.get("/upstream/files")
def list_upstream_files() -> Response:
    require_admin()
    return paginate(files_query(request.args.get("name")), upstream_file_json)


@bp.delete("/upstream/files")
def purge_upstream_files() -> Response:
    """Every cached file and page, or those of ``?name=``."""
    require_admin()
    purged = purge(db.session, storage(), request.args.get("name"), current_identity())
    return jsonify(files=purged.files, pages=purged.pages, bytes=purged.bytes)


@bp.delete("/upstream/files/<int:upstream_file_id>")
def purge_upstream_file(upstream_file_id: int) -> tuple[str, int]:
    require_admin()
    purge_file(db.session, storage(), upstream_file_id, current_identity())
    return "", 204


@bp.get("/upstream/projects")
def list_upstream_projects() -> Response:
    require_admin()
    return paginate(pages_query(request.args.get("name")), upstream_project_json, whole_rows=True)


def upstream_file_json(row: UpstreamFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.normalized_name,
        "filename": row.filename,
        "sha256": row.sha256,
        "size": row.size,
        "stored": row.stored,
        "url": row.url,
        "requested_by": row.requested_by,
        "created_at": iso(row.created_at),
        "fetched_at": iso(row.stored_at),
        "last_used_at": iso(row.last_used_at),
        "hit_count": row.hit_count,
        "failures": row.failures,
        "last_error": row.last_error,
    }


def upstream_project_json(row: tuple[UpstreamProject, int, int]) -> dict[str, Any]:
    page, files, size = row
    return {
        "id": page.id,
        "name": page.normalized_name,
        "missing_upstream": page.digest is None,
        "fetched_at": iso(page.fetched_at),
        "last_used_at": iso(page.last_used_at),
        "failures": page.failures,
        "last_error": page.last_error,
        "stored_files": int(files),
        "stored_bytes": int(size),
    }
