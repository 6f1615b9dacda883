"""GitLab-compatible PyPI endpoints: upload, simple indexes, files. Thin views."""

from __future__ import annotations

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
from app.web.loaders import group_for, project_for, readable_project_ids_in
from app.web.uploads import HashingSpool
from workers.dispatch import send
from workers.tasks.files import process_file

bp = Blueprint("pypi", __name__)

PROJECT = "/api/v4/projects/<ref:project_ref>/packages/pypi"
GROUP = "/api/v4/groups/<ref:group_ref>/-/packages/pypi"
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
    send(process_file, package_file.id)
    return "201 Created\n", 201


@bp.get(PROJECT + "/simple/")
def project_root(project_ref: str) -> Response:
    project, _ = project_for(project_ref, "read")
    return _root_response(project.full_path, [project.id])


@bp.get(PROJECT + "/simple/<name>/")
def project_detail(project_ref: str, name: str) -> Response:
    project, _ = project_for(project_ref, "read")
    return _detail_response([project.id], name, project.group_id)


@bp.get(PROJECT + "/files/<sha256>/<filename>/", strict_slashes=False)
def project_file(project_ref: str, sha256: str, filename: str) -> Response:
    project, _ = project_for(project_ref, "read")
    return _file_response([project.id], sha256, filename, project.visibility == "public")


@bp.get(GROUP + "/simple/")
def group_root(group_ref: str) -> Response:
    group, _ = group_for(group_ref, "read")
    return _root_response(group.full_path, readable_project_ids_in(group))


@bp.get(GROUP + "/simple/<name>/")
def group_detail(group_ref: str, name: str) -> Response:
    group, _ = group_for(group_ref, "read")
    return _detail_response(readable_project_ids_in(group), name, group.id)


@bp.get(GROUP + "/files/<sha256>/<filename>/", strict_slashes=False)
def group_file(group_ref: str, sha256: str, filename: str) -> Response:
    group, _ = group_for(group_ref, "read")
    # Only what is public reaches an anonymous caller: shared caches may keep it.
    public = current_identity().is_anonymous
    return _file_response(readable_project_ids_in(group), sha256, filename, public)


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


def _index_response(html: str | None, json_body: str | None, mimetype: str) -> Response:
    body = json_body if mimetype == JSON_TYPE else html
    content_type = mimetype if mimetype == JSON_TYPE else f"{mimetype}; charset=utf-8"
    response = Response(body, content_type=content_type)
    response.vary.add("Accept")
    response.cache_control.no_cache = True  # always revalidate: cheap with the ETag
    response.add_etag()
    return response.make_conditional(request)


def _root_response(title: str, project_ids: list[int]) -> Response:
    mimetype = _negotiated()
    names = root_names(db.session, project_ids)
    if mimetype == JSON_TYPE:
        return _index_response(None, render_root_json(names), mimetype)
    return _index_response(render_root_html(title, names), None, mimetype)


def _detail_response(project_ids: list[int], name: str, group_id: int) -> Response:
    normalized = normalize(name)
    if normalized != name:
        return redirect(f"../{normalized}/", code=301)  # type: ignore[return-value]
    mimetype = _negotiated()
    page = project_page(db.session, project_ids, normalized, FILES_FROM_DETAIL)
    if page is None:
        return _forward_or_404(group_id, normalized)
    if mimetype == JSON_TYPE:
        return _index_response(None, render_project_json(page), mimetype)
    return _index_response(render_project_html(page), None, mimetype)


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


def _file_response(project_ids: list[int], sha256: str, filename: str, public: bool) -> Response:
    wants_metadata = filename.endswith(".metadata")
    real_name = filename.removesuffix(".metadata") if wants_metadata else filename
    query = (
        select(PackageFile)
        .where(
            PackageFile.project_id.in_(project_ids),
            PackageFile.sha256 == sha256.lower(),
            PackageFile.filename == real_name,
            PackageFile.state != "error",
        )
        .order_by(PackageFile.id.desc())
        .limit(1)
    )
    package_file = db.session.execute(query).scalar_one_or_none()
    if package_file is None:
        raise NotFound("404 Package Not Found")
    if wants_metadata:
        return _metadata_response(package_file, public)
    return _send_stored(package_file, public)


def _send_stored(package_file: PackageFile, public: bool) -> Response:
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


def _metadata_response(package_file: PackageFile, public: bool) -> Response:
    if served_metadata_sha256(package_file) is None:
        raise NotFound("404 Metadata Not Found")
    response = Response(package_file.metadata_bytes, mimetype="application/octet-stream")
    response.set_etag(package_file.metadata_sha256)
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.public = public
    response.cache_control.private = not public
    return response.make_conditional(request)
