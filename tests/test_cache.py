"""Cached index pages and identities are never stale, across processes too."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, request_started
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.caching import generation
from app.caching.generation import GenerationReader, current_generation
from app.caching.process import ProcessCache
from app.caching.responses import ResponseCache, cache_this_response
from app.domain.identity import ANONYMOUS, AuthResult
from app.extensions import db
from app.models import PackageFile, PersonalAccessToken
from tests.conftest import Registry, _migrated_app, basic
from tests.dists import make_wheel

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def second_process(database_url: str, tmp_path: Path, app: Flask) -> Flask:
    """Another app on the same database and files, as a second web process would be."""
    other = _migrated_app(tmp_path / "other", database_url)
    other.config["STORAGE_URL"] = app.config["STORAGE_URL"]
    other.extensions["packyard.storage"] = app.extensions["packyard.storage"]
    return other


def test_a_write_through_one_process_is_seen_by_another_at_once(registry, database_url, tmp_path):
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    project = registry.project(registry.group("team", "public"), "lib", "public")
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/demo/"
    group_url = "/api/v4/groups/team/-/packages/pypi/simple/demo/"
    assert registry.upload(project, *make_wheel("demo", "1.0"), token=token).status_code == 201
    other = second_process(database_url, tmp_path, registry.app).test_client()
    assert len(other.get(url, headers=JSON).json["files"]) == 1  # now cached there
    assert len(other.get(group_url, headers=JSON).json["files"]) == 1
    assert registry.upload(project, *make_wheel("demo", "2.0"), token=token).status_code == 201
    assert len(other.get(url, headers=JSON).json["files"]) == 2
    assert len(other.get(group_url, headers=JSON).json["files"]) == 2


def test_a_revoked_token_stops_working_in_every_process(registry, database_url, tmp_path):
    user = registry.user("dev")
    project = registry.project(registry.group("team"), "lib")
    registry.member(user, 30, project=project)
    token = registry.token(user)
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    other = second_process(database_url, tmp_path, registry.app).test_client()
    assert other.get(url, headers=basic(token)).status_code == 200  # identity cached there
    row = db.session.query(PersonalAccessToken).filter_by(user_id=user.id).one()
    row.revoked = True
    db.session.commit()
    assert other.get(url, headers=basic(token)).status_code == 401


def test_a_visibility_change_is_applied_at_once(registry):
    project = registry.project(registry.group("team", "public"), "lib", "public")
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    assert registry.client.get(url).status_code == 200
    project.visibility = "private"
    db.session.commit()
    assert registry.client.get(url).status_code == 401


def test_writes_move_the_generation_but_reads_do_not(registry):
    start = current_generation(db.engine)
    project = registry.project(registry.group("team"), "lib")
    moved = current_generation(db.engine)
    assert moved > start
    registry.client.get(f"/api/v4/projects/{project.id}/packages/pypi/simple/")
    assert current_generation(db.engine) == moved


def test_uploads_and_processing_move_only_the_data_generation(registry):
    """Pages change with every upload; who may do what does not, so cached identities and
    scopes outlive it. A write to an access table moves both counters."""
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    project = registry.project(registry.group("team"), "lib")
    before = current_generation(db.engine)
    assert registry.upload(project, *make_wheel("demo", "1.0"), token=token).status_code == 201
    assert db.session.query(PackageFile).one().state == "default"  # processed (eager tasks)
    after = current_generation(db.engine)
    assert after.data > before.data and after.access == before.access
    project.visibility = "internal"
    db.session.commit()
    moved = current_generation(db.engine)
    assert moved.data == after.data + 1 and moved.access == after.access + 1


def test_a_second_upload_finds_its_token_and_scope_in_the_cache(registry):
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    project = registry.project(registry.group("team"), "lib")
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    assert registry.upload(project, *make_wheel("demo", "1.0"), token=token).status_code == 201
    assert registry.client.get(url, headers=basic(token)).status_code == 200
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert registry.upload(project, *make_wheel("demo", "2.0"), token=token).status_code == 201
        assert registry.client.get(url, headers=basic(token)).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "personal_access_tokens" in s], statements


def test_the_held_connection_reads_every_commit_at_once(registry):
    reader = GenerationReader(db.engine)
    first = reader.read()
    assert first == current_generation(db.engine)
    registry.group("team")  # committed through the session's own pooled connection
    assert reader.read() == current_generation(db.engine) > first
    reader.close()


def test_a_broken_held_connection_falls_back_and_reconnects(registry):
    reader = GenerationReader(db.engine)
    reader.read()
    reader._held[0].close()  # the server went away, say
    registry.group("team")
    assert reader.read() == current_generation(db.engine)  # pooled fallback, no error
    assert reader.read() == current_generation(db.engine)  # a fresh held connection
    assert len(reader._held) == 1  # the broken one is forgotten
    reader.close()


def test_concurrent_reads_get_connections_of_their_own_that_outlive_threads(registry):
    reader = GenerationReader(db.engine)
    app = registry.app
    values: list[int] = []
    both_reading = threading.Barrier(2)

    def read_in_thread(at_once: bool) -> None:
        with app.app_context():
            if at_once:  # both threads hold a connection at the same time, as requests do
                connection = reader._checkout()
                both_reading.wait()
                reader._idle.put(connection)
            values.append(reader.read())

    def run(*at_once: bool) -> None:
        threads = [threading.Thread(target=read_in_thread, args=(flag,)) for flag in at_once]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run(True, True)
    assert len(reader._held) == 2
    # Those threads are gone, as a server's idle threads go; new threads reuse the connections.
    run(False)
    run(False)
    assert len(reader._held) == 2
    assert values == [current_generation(db.engine)] * 4
    assert not any(_closed(connection) for connection in reader._held)
    reader.close()


def test_held_connections_are_closed_when_the_engine_is_disposed(registry):
    reader = GenerationReader(db.engine)
    reader.read()
    [connection] = reader._held
    db.engine.dispose()
    assert reader._held == []
    assert _closed(connection)
    assert reader.read() == current_generation(db.engine)  # reconnects after a dispose


def _closed(connection: Any) -> bool:
    try:
        connection.cursor().execute("SELECT 1")
    except Exception:  # each DB-API raises its own "closed" error
        return True
    return False


def test_a_rolled_back_savepoint_does_not_swallow_the_bump(registry):
    group = registry.group("team")
    start = current_generation(db.engine)
    try:
        with db.session.begin_nested():
            group.name = "renamed"
            db.session.flush()
            raise RuntimeError("undo")
    except RuntimeError:
        pass
    group.name = "kept"
    db.session.commit()
    assert current_generation(db.engine) > start


def test_conditional_get_answers_304_from_the_cache(registry: Registry):
    project = registry.project(registry.group("team", "public"), "lib", "public")
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    first = registry.client.get(url)
    again = registry.client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_a_repeated_index_request_is_answered_without_entering_flask(registry: Registry):
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    project = registry.project(registry.group("team", "public"), "lib", "public")
    assert registry.upload(project, *make_wheel("demo", "1.0"), token=token).status_code == 201
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/demo/"
    dispatched: list[str] = []
    with request_started.connected_to(lambda _app, **_kw: dispatched.append("x"), registry.app):
        first, again = registry.client.get(url), registry.client.get(url)
        assert len(dispatched) == 1  # the repeat never reached Flask
        assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
        assert again.headers["Content-Type"] == "text/html; charset=utf-8"
        as_json = registry.client.get(url, headers=JSON)  # another Accept: another entry
        assert as_json.json["name"] == "demo" and len(dispatched) == 2
        for _ in range(2):  # with a cookie or as HEAD: always Flask's answer
            registry.client.head(url)
            registry.client.set_cookie("session", "x")
            registry.client.get(url)
            registry.client.delete_cookie("session")
        assert len(dispatched) == 6
        assert registry.upload(project, *make_wheel("demo", "2.0"), token=token).status_code == 201
        dispatched.clear()
        assert b"demo-2.0" in registry.client.get(url).data  # the write dropped the entry
        assert len(dispatched) == 1


def test_cached_responses_are_never_shared_between_callers(registry: Registry):
    dev, stranger = registry.user("dev"), registry.user("stranger")
    project = registry.project(registry.group("team"), "lib")
    registry.member(dev, 30, project=project)
    dev_token, stranger_token = registry.token(dev), registry.token(stranger)
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    for _ in range(2):
        assert registry.client.get(url, headers={"PRIVATE-TOKEN": dev_token}).status_code == 200
        assert registry.client.get(url).status_code == 401
        stranger = registry.client.get(url, headers={"PRIVATE-TOKEN": stranger_token})
        assert stranger.status_code == 404
        assert registry.client.get(url, headers=basic(stranger_token)).status_code == 404
        assert registry.client.get(url, headers=basic(dev_token)).status_code == 200


def test_a_cached_response_ends_when_its_token_expires(registry: Registry):
    dev = registry.user("dev")
    project = registry.project(registry.group("team"), "lib")
    registry.member(dev, 30, project=project)
    token = registry.token(dev)
    row = db.session.query(PersonalAccessToken).filter_by(user_id=dev.id).one()
    row.expires_at = datetime.now(UTC) + timedelta(seconds=1)
    db.session.commit()
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    assert registry.client.get(url, headers=basic(token)).status_code == 200
    assert registry.client.get(url, headers=basic(token)).status_code == 200  # cached
    time.sleep(1.1)
    expired = registry.client.get(url, headers=basic(token))
    assert (expired.status_code, expired.text) == (401, "401 Unauthorized\n")  # no reason given


def test_an_answered_response_stays_recent_in_the_lru(registry: Registry):
    cache = ProcessCache(GenerationReader(db.engine), max_entries=2)
    cache.sync({})
    cache.put("a", 1, cache.generation)
    cache.put("b", 2, cache.generation)
    assert cache.peek("a") == 1  # used: "b" is now the oldest
    cache.put("c", 3, cache.generation)
    assert cache.peek("a") == 1 and cache.peek("b") is None


def _page_over_a_kibibyte(registry: Registry) -> str:
    """A public project's page of five releases (big enough to be gzipped): its URL."""
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    project = registry.project(registry.group("team", "public"), "lib", "public")
    for version in ("1.0", "1.1", "1.2", "1.3", "1.4"):
        wheel = make_wheel("demo", version)
        assert registry.upload(project, *wheel, token=token).status_code == 201
    return f"/api/v4/projects/{project.id}/packages/pypi/simple/demo/"


def test_repeats_are_gzipped_for_clients_that_accept_it(registry: Registry):
    url = _page_over_a_kibibyte(registry)
    gzip_ok = {"Accept-Encoding": "gzip, deflate"}
    first = registry.client.get(url)  # made by Flask, for a client that takes no gzip
    assert "Content-Encoding" not in first.headers
    assert "Accept-Encoding" in first.headers["Vary"] and len(first.data) >= 1024
    again = registry.client.get(url, headers=gzip_ok)
    assert again.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(again.data) == first.data
    assert int(again.headers["Content-Length"]) == len(again.data) < len(first.data) / 2
    assert again.headers["ETag"] == f"W/{first.headers['ETag']}"
    assert "Accept-Encoding" in again.headers["Vary"]
    for etag in (again.headers["ETag"], first.headers["ETag"]):  # weak comparison
        revalidated = registry.client.get(url, headers={**gzip_ok, "If-None-Match": etag})
        assert (
            revalidated.status_code == 304 and revalidated.headers["ETag"] == again.headers["ETag"]
        )
    for refused in ({}, {"Accept-Encoding": "gzip;q=0"}, {"Accept-Encoding": "br"}):
        plain = registry.client.get(url, headers=refused)
        assert "Content-Encoding" not in plain.headers and plain.data == first.data
        assert plain.headers["ETag"] == first.headers["ETag"]


def test_the_first_answer_is_gzipped_too(registry: Registry):
    """Not only repeats: a cold install fetches each page once."""
    url = _page_over_a_kibibyte(registry)
    dispatched: list[str] = []
    with request_started.connected_to(lambda _app, **_kw: dispatched.append("x"), registry.app):
        first = registry.client.get(url, headers={**JSON, "Accept-Encoding": "gzip"})
        plain = registry.client.get(url, headers=JSON)  # the kept answer, not recoded
    assert len(dispatched) == 1  # the first was Flask's, and kept
    assert first.headers["Content-Encoding"] == "gzip"
    assert int(first.headers["Content-Length"]) == len(first.data)
    assert gzip.decompress(first.data) == plain.data and len(plain.data) >= 1024
    assert "Content-Encoding" not in plain.headers
    assert first.headers["ETag"] == f"W/{plain.headers['ETag']}"
    assert first.headers["Vary"] == plain.headers["Vary"] == "Accept, Accept-Encoding"
    assert first.headers["Content-Type"] == plain.headers["Content-Type"]


def test_a_page_that_cannot_be_kept_is_gzipped_all_the_same(registry: Registry):
    """A plugin that did not say what identified its caller: never kept, still gzipped."""
    page, rendered = b"<a href='x'>x</a>\n" * 200, []
    tiny = Flask("tiny")

    @tiny.get("/p/simple/")
    def index() -> Response:
        rendered.append(page)
        cache_this_response(AuthResult.ok(ANONYMOUS))  # identified_by: not said
        return Response(page, content_type="text/html")

    cache = ProcessCache(GenerationReader(db.engine))
    tiny.wsgi_app = ResponseCache(tiny.wsgi_app, cache, "/simple/", ())  # type: ignore[method-assign]
    client = tiny.test_client()
    for _ in range(2):
        answer = client.get("/p/simple/", headers={"Accept-Encoding": "gzip"})
        assert answer.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(answer.data) == page
    assert client.get("/p/simple/").data == page
    assert len(rendered) == 3  # none was kept


def test_small_pages_are_not_gzipped(registry: Registry):
    project = registry.project(registry.group("team", "public"), "lib", "public")
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/"
    first, again = (registry.client.get(url, headers={"Accept-Encoding": "gzip"}) for _ in range(2))
    assert len(again.data) < 1024 and "Content-Encoding" not in again.headers
    assert again.data == first.data


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(registry):
    reader = GenerationReader(db.engine)
    reader.read()
    [parents] = reader._held
    reader._pid = -1  # as if this process were a child forked after that read
    assert reader.read() == current_generation(db.engine)
    assert parents not in reader._held and len(reader._held) == 1
    assert not _closed(parents)  # closing it would end the parent's session
    parents.close()
    reader.close()


def test_the_write_listeners_are_attached_by_the_factory_to_its_sessions_only(registry):
    for identifier, listener in generation._LISTENERS:
        assert event.contains(db.session, identifier, listener)
        assert not event.contains(Session, identifier, listener)  # not every Session class


def test_the_response_key_holds_every_credential_header():
    headers = ["Authorization", "X-Api-Key", "Content-Type"]
    responses = ResponseCache(None, None, "/simple/", headers)
    request = {"REQUEST_METHOD": "GET", "PATH_INFO": "/p/simple/"}
    variants = [{}, {"HTTP_X_API_KEY": "a"}, {"HTTP_X_API_KEY": "b"}, {"HTTP_AUTHORIZATION": "a"}]
    variants.append({"CONTENT_TYPE": "a"})  # WSGI keeps it without HTTP_
    assert len({responses._key({**request, **variant}) for variant in variants}) == 5
    assert responses._key({**request, "HTTP_X_OTHER": "a"}) == responses._key(request)
