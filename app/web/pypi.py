"""GitLab-compatible PyPI endpoints: upload, simple indexes, files. Thin views."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Response, current_app, redirect, request, send_file
from sqlalchemy import select
from werkzeug.exceptions import NotAcceptable

from app.domain.errors import InvalidInput, NotFound
from app.domain.forwarding import upstream_location
from app.domain.indexes import (
    HTML_TYPE,
    JSON_TYPE,
    project_page,
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
    root_names,
    served_metadata_sha256,
)
from app.domain.limits import effective_upload_limit
from app.domain.names import normalize
from app.domain.uploads import UploadForm, accept_upload
from app.extensions import db
from app.models import Group, PackageFile
from app.runtime import storage
from app.web.auth import current_identity
from app.web.cache import cache_this_response, request_cache
from app.web.loaders import IndexScope, group_index_scope, project_for, project_index_scope
from app.web.uploads import HashingSpool
from workers.tasks.files import enqueue

bp = Blueprint("pypi", __name__)

PROJECT = "/api/v4/projects/<ref:project_ref>/packages/pypi"
GROUP = "/api/v4/groups/<ref:group_ref>/-/packages/pypi"
SIMPLE_INDEX_PATHS = "/packages/pypi/simple/"  # what ResponseCache may answer
FILES_FROM_DETAIL = "../../files/"
UPLOAD_FIELDS = ("sha256_digest", "md5_digest", "blake2_256_digest", "requires_python")
CONTENT_TYPES = {
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar.gz": "application/gzip",
}


@bp.post(PROJECT + "/", strict_slashes=False)  # twine does not follow redirects on POST
def upload(project_ref: str) -> tuple[str, int]:
    project, _access = project_for(project_ref, "write")
    limit = effective_upload_limit(db.session, project, current_app.config["MAX_UPLOAD_SIZE"])
    request.limit_uploads(limit)  # type: ignore[attr-defined]
    content = request.files.get("content")
    if content is None or not isinstance(content.stream, HashingSpool):
        raise InvalidInput("content is missing: send the file as the multipart field 'content'")
    form = request.form
    if not form.get("name") or not form.get("version"):
        raise InvalidInput("name and version are required")
    upload_form = UploadForm(
        name=form["name"],
        version=form["version"],
        filename=content.filename or "",
        fields={k: v for k, v in form.items() if not k.startswith(":")},
        **{k: form.get(k, "") for k in UPLOAD_FIELDS},
    )
    package_file = accept_upload(
        db.session,
        storage(),
        project,
        upload_form,
        content.stream.received(),
        uploader=current_identity().name,
        actor=current_identity(),
    )
    enqueue(package_file.id)
    return "201 Created\n", 201


@bp.get(PROJECT + "/simple/")
def project_root(project_ref: str) -> Response:
    return _root_response(project_index_scope(project_ref))


@bp.get(PROJECT + "/simple/<name>/")
def project_detail(project_ref: str, name: str) -> Response:
    return _detail_response(project_index_scope(project_ref), name)


@bp.get(PROJECT + "/files/<sha256>/<filename>/", strict_slashes=False)
def project_file(project_ref: str, sha256: str, filename: str) -> Response:
    return _file_response(project_index_scope(project_ref), sha256, filename)


@bp.get(GROUP + "/simple/")
def group_root(group_ref: str) -> Response:
    return _root_response(group_index_scope(group_ref))


@bp.get(GROUP + "/simple/<name>/")
def group_detail(group_ref: str, name: str) -> Response:
    return _detail_response(group_index_scope(group_ref), name)


@bp.get(GROUP + "/files/<sha256>/<filename>/", strict_slashes=False)
def group_file(group_ref: str, sha256: str, filename: str) -> Response:
    return _file_response(group_index_scope(group_ref), sha256, filename)


def _negotiated() -> str:
    best = request.accept_mimetypes.best_match(
        [  # on a tie (``*/*``, no Accept) the first wins: HTML, like PyPI
            "text/html",
            HTML_TYPE,
            JSON_TYPE,
            "application/vnd.pypi.simple.latest+json",
            "application/vnd.pypi.simple.latest+html",
        ],
        default=None,
    )
    if best is None:
        if request.headers.get("Accept"):
            raise NotAcceptable(f"Supported types: text/html, {HTML_TYPE}, {JSON_TYPE}")
        best = "text/html"
    return {
        "application/vnd.pypi.simple.latest+json": JSON_TYPE,
        "application/vnd.pypi.simple.latest+html": HTML_TYPE,
    }.get(best, best)


@dataclass(frozen=True)
class RenderedPage:
    body: bytes
    etag: str


def _rendered(body: str) -> RenderedPage:
    data = body.encode()
    return RenderedPage(data, hashlib.blake2b(data, digest_size=16).hexdigest())


def _index_response(page: RenderedPage, mimetype: str) -> Response:
    content_type = mimetype if mimetype == JSON_TYPE else f"{mimetype}; charset=utf-8"
    if request.if_none_match.contains_weak(page.etag):  # weak: gzip answers carry W/
        response = Response(status=304)
    else:
        response = Response(page.body, content_type=content_type)
        cache_this_response(current_identity().expires_at)
    response.set_etag(page.etag)
    response.vary.add("Accept")
    response.vary.add("Accept-Encoding")  # ResponseCache gzips repeats for clients that ask
    response.cache_control.no_cache = True  # always revalidate: cheap with the ETag
    return response


def _root_response(scope: IndexScope) -> Response:
    mimetype = _negotiated()

    def render() -> RenderedPage:
        names = root_names(db.session, scope.project_ids)
        if mimetype == JSON_TYPE:
            return _rendered(render_root_json(names))
        return _rendered(render_root_html(scope.title, names))

    key = ("root", scope.project_ids, scope.title, mimetype)
    return _index_response(request_cache().get(key, render), mimetype)


def _detail_response(scope: IndexScope, name: str) -> Response:
    normalized = normalize(name)
    if normalized != name:
        return redirect(f"../{normalized}/", code=301)  # type: ignore[return-value]
    mimetype = _negotiated()

    def render() -> RenderedPage | None:
        page = project_page(db.session, scope.project_ids, normalized, FILES_FROM_DETAIL)
        if page is None:
            return None
        if mimetype == JSON_TYPE:
            return _rendered(render_project_json(page))
        return _rendered(render_project_html(page))

    rendered = request_cache().get(("detail", scope.project_ids, normalized, mimetype), render)
    if rendered is None:
        return _forward_or_404(scope.forward_group_id, normalized)
    return _index_response(rendered, mimetype)


def _forward_or_404(group_id: int, normalized: str) -> Response:
    config = current_app.config
    group = db.session.get_one(Group, group_id)  # loaded only on a miss
    location = upstream_location(
        db.session, group, normalized, config["UPSTREAM_URL"], config["FORWARDING"]
    )
    if location is None:
        raise NotFound("404 Package Not Found")
    # 307, not 301/308: a later local upload of the name must win, so nothing may cache
    # the move; pip and uv follow 307 on GET (and HEAD stays HEAD), dropping credentials
    # on the way to another host.
    return redirect(location, code=307)  # type: ignore[return-value]


@dataclass(frozen=True)
class StoredFile:
    file_id: int
    filename: str
    storage_key: str
    sha256: str
    created_at: datetime
    metadata_sha256: str | None  # set only when PEP 658 metadata is served


def _file_response(scope: IndexScope, sha256: str, filename: str) -> Response:
    wants_metadata = filename.endswith(".metadata")
    real_name = filename.removesuffix(".metadata") if wants_metadata else filename
    key = ("file", scope.project_ids, sha256.lower(), real_name)
    stored = request_cache().get(key, lambda: _find_file(scope, sha256.lower(), real_name))
    if stored is None:
        raise NotFound("404 Package Not Found")
    if wants_metadata:
        return _metadata_response(stored, scope.public)
    return _send_stored(stored, scope.public)


def _find_file(scope: IndexScope, sha256: str, filename: str) -> StoredFile | None:
    package_file = db.session.execute(
        select(PackageFile)
        .where(
            PackageFile.project_id.in_(scope.project_ids),
            PackageFile.sha256 == sha256,
            PackageFile.filename == filename,
            PackageFile.state != "error",
        )
        .order_by(PackageFile.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if package_file is None:
        return None
    return StoredFile(
        file_id=package_file.id,
        filename=package_file.filename,
        storage_key=package_file.storage_key,
        sha256=package_file.sha256,
        created_at=package_file.created_at,
        metadata_sha256=served_metadata_sha256(package_file),
    )


def _send_stored(package_file: StoredFile, public: bool) -> Response:
    store = storage()
    path = store.local_path(package_file.storage_key)
    source = str(path) if path is not None else store.open(package_file.storage_key)
    suffix = next((s for s in CONTENT_TYPES if package_file.filename.endswith(s)), "")
    response = send_file(
        source,
        mimetype=CONTENT_TYPES.get(suffix, "application/octet-stream"),
        as_attachment=True,
        download_name=package_file.filename,
        etag=package_file.sha256,
        conditional=True,
        max_age=365 * 24 * 3600,
        last_modified=package_file.created_at,
    )
    response.cache_control.public = public
    response.cache_control.private = not public
    response.cache_control.immutable = True
    return response


def _metadata_response(stored: StoredFile, public: bool) -> Response:
    if stored.metadata_sha256 is None:
        raise NotFound("404 Metadata Not Found")
    metadata = request_cache().get(
        ("metadata", stored.file_id),
        lambda: db.session.execute(
            select(PackageFile.metadata_bytes).where(PackageFile.id == stored.file_id)
        ).scalar_one(),
    )
    response = Response(metadata, mimetype="application/octet-stream")
    response.set_etag(stored.metadata_sha256)
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.public = public
    response.cache_control.private = not public
    return response.make_conditional(request)
