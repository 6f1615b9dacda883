"""GitLab-compatible PyPI endpoints: upload, simple indexes, files. Thin views."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    request,
    send_file,
    stream_with_context,
)
from sqlalchemy import select
from werkzeug.exceptions import NotAcceptable

from app.caching.process import request_cache
from app.caching.responses import (
    GZIP_LEVEL,
    GZIP_MIN_BYTES,
    accepts_gzip,
    cache_this_response,
)
from app.domain.access import group_chain_ids
from app.domain.audit import actor_name
from app.domain.counters import BatchCounter, Store
from app.domain.downloads import store_downloads
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
from app.domain.packages import check_packages_enabled
from app.domain.protection import caller_level, check_push_not_protected
from app.domain.storage import StorageBackend
from app.domain.uploads import UploadForm, accept_upload
from app.domain.upstream.client import Upstream
from app.domain.upstream.download import Streaming, obtain_file
from app.domain.upstream.files import CachedFile, find_file, metadata_of, record_file
from app.domain.upstream.hits import FLUSH_EVERY as HITS_FLUSH_EVERY
from app.domain.upstream.hits import store_hits
from app.domain.upstream.index import kept_page, load_page
from app.domain.upstream.pages import as_project_page
from app.domain.upstream.policy import CACHE, REDIRECT, UpstreamPolicy, mode_for_name, policy_for
from app.extensions import db
from app.metrics import UPLOADED_BYTES, UPLOADED_FILES, file_kind
from app.models import Group, PackageFile, Project
from app.runtime import storage
from app.web.auth import current_caller, current_identity
from app.web.loaders import IndexScope, group_index_scope, project_for, project_index_scope
from app.web.uploads import HashingSink
from workers.dispatch import send
from workers.tasks.files import announce_upload
from workers.tasks.upstream import refresh_upstream_page

bp = Blueprint("pypi", __name__)
HITS = "packyard.upstream_hits"  # app.extensions: this process's counters
DOWNLOADS = "packyard.downloads"

PROJECT = "/api/v4/projects/<ref:project_ref>/packages/pypi"
GROUP = "/api/v4/groups/<ref:group_ref>/-/packages/pypi"
SIMPLE_INDEX_PATHS = "/packages/pypi/simple/"  # what ResponseCache may answer
FILES_FROM_DETAIL = "../../files/"
UPLOAD_FIELDS = ("sha256_digest", "md5_digest", "blake2_256_digest", "requires_python")
SIGNED_URL_SECONDS = 300  # PACKYARD_STORAGE_REDIRECT: how long a download link works
CONTENT_TYPES = {
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar.gz": "application/gzip",
}


@bp.post(PROJECT + "/", strict_slashes=False)  # twine does not follow redirects on POST
def upload(project_ref: str) -> tuple[str, int]:
    project, access = project_for(project_ref, "write")
    check_packages_enabled(project)  # before the body is read
    limit = effective_upload_limit(db.session, project, current_app.config["MAX_UPLOAD_SIZE"])
    identity = current_identity()
    level = caller_level(identity, access)
    request.prepare_upload(  # type: ignore[attr-defined]
        limit,
        project.id,
        lambda filename: check_push_not_protected(db.session, project, filename, level),
    )
    content = request.files.get("content")
    stream = content.stream if content is not None else None
    received = stream.received() if isinstance(stream, HashingSink) else None
    if content is None or received is None:
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
    # Known before the commit below expires them: the webhook check needs no query.
    project_id, group_ids = project.id, group_chain_ids(db.session, project.group_id)
    accepted = accept_upload(
        db.session,
        storage(),
        project,
        upload_form,
        received,
        uploader=actor_name(identity),
        actor=identity,
    )
    announce_upload(accepted, project_id, group_ids, identity)  # committed: it never raises
    kind = file_kind(upload_form.filename)
    UPLOADED_FILES.labels(kind).inc()
    UPLOADED_BYTES.labels(kind).inc(received.digest.size)
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


def _index_response(
    page: RenderedPage, mimetype: str, fresh_until: datetime | None = None
) -> Response:
    """ResponseCache may answer repeats until the caller's token expires, or ``fresh_until``
    (a kept upstream page's TTL); a write moves the generation and drops them sooner."""
    content_type = mimetype if mimetype == JSON_TYPE else f"{mimetype}; charset=utf-8"
    if request.if_none_match.contains_weak(page.etag):  # weak: gzip answers carry W/
        response = Response(status=304)
    else:
        response = Response(page.body, content_type=content_type)
        cache_this_response(current_caller(), fresh_until)
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
        return _upstream_or_404(scope, normalized, mimetype)
    return _index_response(rendered, mimetype)


def _upstream_policy(scope: IndexScope) -> UpstreamPolicy:
    instance_mode = current_app.config["UPSTREAM_MODE"]

    def compute() -> UpstreamPolicy:
        group = db.session.get_one(Group, scope.forward_group_id)
        project_id = scope.forward_project_id
        project = db.session.get(Project, project_id) if project_id is not None else None
        return policy_for(db.session, group, project, instance_mode)

    key = ("upstream-policy", scope.forward_group_id, scope.forward_project_id, instance_mode)
    return request_cache().get(key, compute)


def _mode_for_name(policy: UpstreamPolicy, normalized: str) -> str:
    """Exact per generation: publishing a name, or changing a group's or project's
    settings, is a watched write that moves it."""
    key = ("upstream-mode", policy, normalized)
    return request_cache().get(key, lambda: mode_for_name(db.session, policy, normalized))


def _upstream_or_404(scope: IndexScope, normalized: str, mimetype: str) -> Response:
    """A name this index does not hold: the upstream's, as the mode says, or 404."""
    upstream_url = current_app.config["UPSTREAM_URL"]
    mode = _mode_for_name(_upstream_policy(scope), normalized)
    if mode == REDIRECT and upstream_url:
        # 307, not 301/308: a later local upload of the name must win, so nothing may cache
        # the move; pip and uv follow 307 on GET (and HEAD stays HEAD), dropping credentials
        # on the way to another host.
        return redirect(upstream_location(upstream_url, normalized), code=307)  # type: ignore[arg-type,return-value]
    if mode == CACHE and upstream_url:
        return _cached_page_response(normalized, mimetype)
    raise NotFound("404 Package Not Found")


def _cached_page_response(normalized: str, mimetype: str) -> Response:
    """The upstream's page as the cache keeps it, rendered as local pages are."""
    config = current_app.config
    state, refresh_due = kept_page(
        db.session, Upstream.from_config(config), normalized, config["UPSTREAM_TTL"]
    )
    if state.digest is None:
        raise NotFound("404 Package Not Found")  # the upstream has no such name

    def render() -> RenderedPage:
        page = load_page(db.session, state.id)
        assert page is not None  # a digest is kept with its page
        project_page = as_project_page(page, FILES_FROM_DETAIL)
        if mimetype == JSON_TYPE:
            return _rendered(render_project_json(project_page))
        return _rendered(render_project_html(project_page))

    # Keyed by content, so right whatever the generation. Repeats are answered by
    # ResponseCache until the page is stale: a page changes only when refreshed after that
    # (or purged, which moves the generation).
    rendered = request_cache().get(("upstream-page", state.digest, mimetype), render)
    if refresh_due:  # after rendering: the rendering is keyed by the kept page's digest
        send(refresh_upstream_page, normalized)  # the kept page is served meanwhile
    fresh_until = state.fetched_at + timedelta(seconds=config["UPSTREAM_TTL"])
    return _index_response(rendered, mimetype, fresh_until)


@dataclass(frozen=True)
class StoredFile:
    file_id: int
    filename: str
    storage_key: str
    sha256: str
    created_at: datetime
    size: int
    metadata_sha256: str | None  # set only when PEP 658 metadata is served


def _file_response(scope: IndexScope, sha256: str, filename: str) -> Response:
    wants_metadata = filename.endswith(".metadata")
    real_name = filename.removesuffix(".metadata") if wants_metadata else filename
    key = ("file", scope.project_ids, sha256.lower(), real_name)
    stored = request_cache().get(key, lambda: _find_file(scope, sha256.lower(), real_name))
    if stored is None:
        return _upstream_file_response(scope, sha256.lower(), real_name, wants_metadata)
    if wants_metadata:
        return _metadata_response(stored, scope.public)
    if request.method == "GET":  # counted in memory; a thread writes them in batches
        every = current_app.config["DOWNLOAD_FLUSH_INTERVAL"]
        _counter(DOWNLOADS, store_downloads, every).add(stored.file_id)
    return _send_stored(
        stored.storage_key,
        stored.filename,
        stored.sha256,
        stored.size,
        stored.created_at,
        scope.public,
    )


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
        size=package_file.size,
        metadata_sha256=served_metadata_sha256(package_file),
    )


def _send_stored(
    storage_key: str,
    filename: str,
    sha256: str,
    size: int | None,
    last_modified: datetime | None,
    public: bool,
) -> Response:
    store = storage()
    if current_app.config["STORAGE_REDIRECT"] and request.method == "GET":
        redirected = _redirect_to_signed_url(store, storage_key, filename, sha256)
        if redirected is not None:
            return redirected
    path = store.local_path(storage_key)
    try:
        source = str(path) if path is not None else store.open(storage_key)
        response = send_file(
            source,
            mimetype=_content_type(filename),
            as_attachment=True,
            download_name=filename,
            etag=sha256,
            conditional=path is not None,
            max_age=365 * 24 * 3600,
            last_modified=last_modified,
        )
    except FileNotFoundError:
        # Replaced (or deleted) since this request found its row: the blob's removal
        # won the race. The link is gone, as it is for the next request.
        raise NotFound("404 Package Not Found") from None
    if path is None and size is not None:  # a stream: its length and ranges come from the row
        response.content_length = size
        response.make_conditional(request, accept_ranges=True, complete_length=size)
    _cache_forever(response, public)
    return response


def _content_type(filename: str) -> str:
    suffix = next((s for s in CONTENT_TYPES if filename.endswith(s)), "")
    return CONTENT_TYPES.get(suffix, "application/octet-stream")


def _cache_forever(response: Response, public: bool) -> None:
    # No Expires (send_file adds one): with max-age, HTTP/1.1 caches ignore it (RFC 9111).
    response.headers.pop("Expires", None)
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.public = public
    response.cache_control.private = not public
    response.cache_control.immutable = True


def _redirect_to_signed_url(
    store: StorageBackend, storage_key: str, filename: str, sha256: str
) -> Response | None:
    """307 to a URL the storage signed, short-lived, so it must not be cached; a client
    that has the file (``If-None-Match``) still gets 304 here."""
    if sha256 in request.if_none_match:
        response = Response(status=304)
        response.set_etag(sha256)
        return response
    url = store.presigned_url(storage_key, filename, SIGNED_URL_SECONDS)
    if url is None:
        return None
    response = redirect(url, code=307)
    response.cache_control.no_store = True
    return response  # type: ignore[return-value]


def _metadata_response(stored: StoredFile, public: bool) -> Response:
    if stored.metadata_sha256 is None:
        raise NotFound("404 Metadata Not Found")
    metadata = request_cache().get(
        ("metadata", stored.file_id),
        lambda: db.session.execute(
            select(PackageFile.metadata_bytes).where(PackageFile.id == stored.file_id)
        ).scalar_one(),
    )
    return _metadata_bytes_response(metadata, stored.metadata_sha256, public)


def _metadata_bytes_response(metadata: bytes, sha256: str, public: bool) -> Response:
    """Gzipped for clients that accept it (pip and uv): core metadata is text, a third of
    its size once compressed, and every resolver fetches it for each candidate."""
    if len(metadata) >= GZIP_MIN_BYTES and accepts_gzip(request.headers.get("Accept-Encoding", "")):
        compressed = request_cache().get(
            ("metadata-gzip", sha256), lambda: gzip.compress(metadata, GZIP_LEVEL, mtime=0)
        )
        response = Response(compressed, mimetype="application/octet-stream")
        response.content_encoding = "gzip"
        response.set_etag(sha256, weak=True)  # the bytes differ from the plain answer's
    else:
        response = Response(metadata, mimetype="application/octet-stream")
        response.set_etag(sha256)
    response.vary.add("Accept-Encoding")
    response.cache_control.max_age = 365 * 24 * 3600
    response.cache_control.public = public
    response.cache_control.private = not public
    return response.make_conditional(request)


def _upstream_file_response(
    scope: IndexScope, sha256: str, filename: str, wants_metadata: bool
) -> Response:
    """A file this index does not hold, from the pull-through cache when the index's mode
    is ``cache`` and the rules let its name go upstream."""
    policy = _upstream_policy(scope)
    found = _find_upstream_file(sha256, filename) if policy.mode == CACHE else None
    if found is None or _mode_for_name(policy, found.normalized_name) != CACHE:
        raise NotFound("404 Package Not Found")
    upstream = Upstream.from_config(current_app.config)
    if wants_metadata:
        metadata = _upstream_metadata(upstream, found, scope.title)
        return _metadata_bytes_response(metadata, found.metadata_sha256 or "", scope.public)
    if request.method == "HEAD" and not found.stored:
        return _file_headers(Response(), found, found.size, scope.public)  # no download
    cached = record_file(db.session, found, scope.title, commit=False)  # with the lease
    obtained = obtain_file(db.session, storage(), upstream, cached)
    if isinstance(obtained, Streaming):
        body = Response(stream_with_context(obtained.chunks))
        return _file_headers(body, cached, obtained.length, scope.public)
    assert obtained.id is not None and obtained.storage_key is not None  # stored
    response = _send_stored(
        obtained.storage_key,
        obtained.filename,
        obtained.sha256,
        obtained.size,
        obtained.stored_at,
        scope.public,
    )
    # Written by a thread, in batches: no wait here.
    _counter(HITS, store_hits, HITS_FLUSH_EVERY).add(obtained.id)
    return response


def _find_upstream_file(sha256: str, filename: str) -> CachedFile | None:
    """A stored file is kept in the process cache: it changes only when purged or expired,
    which moves the generation."""
    cache = request_cache()
    key = ("upstream-file", sha256, filename)
    found: CachedFile | None = cache.peek(key)
    if found is None:
        generation = cache.generation
        found = find_file(db.session, sha256, filename)
        if found is not None and found.stored:
            cache.put(key, found, generation)
    return found


def _upstream_metadata(upstream: Upstream, found: CachedFile, requested_by: str) -> bytes:
    """Keyed by its own sha256 in the process cache: right whatever the generation."""
    cache, key = request_cache(), ("upstream-metadata", found.metadata_sha256)
    metadata: bytes | None = cache.peek(key)
    if metadata is None:
        generation = cache.generation
        metadata = metadata_of(db.session, upstream, found, requested_by)
        cache.put(key, metadata, generation)
    return metadata


def _counter(name: str, store: Store, every: float) -> BatchCounter:
    """This process's counter ``name`` (in app.extensions), written by its own thread."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    counter: BatchCounter | None = app.extensions.get(name)
    if counter is None:

        def write(counter: BatchCounter) -> None:
            with app.app_context():
                try:
                    counter.flush(db.session)
                finally:
                    db.session.remove()

        counter = app.extensions.setdefault(name, BatchCounter(store, write, every, name))
    return counter


def _file_headers(
    response: Response, cached: CachedFile, length: int | None, public: bool
) -> Response:
    """What ``send_file`` would say of the file, for an answer streamed as it arrives."""
    response.mimetype = _content_type(cached.filename)
    if length is not None:
        response.content_length = length  # a cut stream is then a short read, not an end
    response.headers.set("Content-Disposition", "attachment", filename=cached.filename)
    response.set_etag(cached.sha256)
    _cache_forever(response, public)
    return response
