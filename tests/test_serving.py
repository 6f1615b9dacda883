"""``packyard serve``'s server: the chunked-input adapter, and the server itself, live."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import io
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from click.testing import CliRunner
from flask import Flask, request
from werkzeug.test import EnvironBuilder

from app import cli, create_app, serving
from app.extensions import db
from app.serving import (
    ChunkedInput,
    chunked_input,
    dated,
    default_processes,
    drain_unread_body,
    serve_command,
    uwsgi_options,
)
from tests.conftest import Registry
from tests.dists import make_wheel
from tests.services import BIN, LiveProcess, LiveServer, free_port, packyard_env


def _reader(chunks: list[bytes]):
    pending = iter([*chunks, b""])
    return lambda: next(pending)


def test_chunked_input_reads_across_chunks_in_any_size():
    stream = io.BufferedReader(ChunkedInput(_reader([b"abc", b"defgh", b"i"])), buffer_size=2)
    assert stream.read(4) == b"abcd"
    assert stream.read(1) == b"e"
    assert stream.read() == b"fghi"
    assert stream.read() == b""


def _echo_upload_app() -> Flask:
    app = Flask("echo")

    @app.post("/")
    def echo() -> str:
        content = request.files["content"]
        return f"{request.form['name']} {content.filename} {len(content.read())}"

    return app


def _multipart(boundary: str, name: str, filename: str, data: bytes) -> bytes:
    """twine's legacy form: the fields, then the file as ``content``."""
    version = filename.split("-")[1]
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version}
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode()


def test_a_chunked_upload_reaches_the_view_whole():
    body = _multipart("b0undary", "demo", "demo-1.0.whl", bytes(range(256)) * 1000)
    environ = EnvironBuilder(method="POST", headers={"Transfer-Encoding": "chunked"}).get_environ()
    environ["CONTENT_TYPE"] = "multipart/form-data; boundary=b0undary"
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO()  # what uWSGI passes: nothing
    chunks = [body[i : i + 7000] for i in range(0, len(body), 7000)]
    app = _echo_upload_app()
    started: list[tuple[str, list[tuple[str, str]]]] = []
    answer = chunked_input(app.wsgi_app, _reader(chunks))(
        environ, lambda status, headers, exc_info=None: started.append((status, headers))
    )
    assert b"".join(answer) == b"demo demo-1.0.whl 256000"
    [(status, headers)] = started
    assert status == "200 OK" and headers[-1] == ("Connection", "close")


def test_a_body_with_a_length_is_left_alone():
    environ = EnvironBuilder(method="POST", data=b"plain").get_environ()
    original = environ["wsgi.input"]
    seen = {}

    def app(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        start_response("204 No Content", [])
        return []

    chunked_input(app, _reader([b"never read"]))(environ, lambda s, h: None)
    assert seen["input"] is original


class _Gone(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise OSError("the client went away")


def _refuse(environ, start_response):
    start_response("401 Unauthorized", [("Content-Length", "0")])
    return []


@pytest.mark.parametrize(
    ("body", "seconds", "left"),
    [(b"x" * 300_000, 30, 0), (b"x" * 300_000, 0, 300_000), (b"", 30, 0)],
    ids=["read-to-its-end", "out-of-time", "no-body"],
)
def test_an_unread_body_is_read_while_there_is_time(body, seconds, left):
    environ = EnvironBuilder(method="POST", data=body).get_environ()
    answer = drain_unread_body(_refuse, seconds)(environ, lambda s, h: None)
    assert list(answer) == []
    assert len(environ["wsgi.input"].read()) == left


def test_a_client_gone_while_its_body_is_read_still_gets_the_answer_returned():
    environ = EnvironBuilder(method="POST", data=b"x" * 10).get_environ()
    environ["wsgi.input"] = io.BufferedReader(_Gone())
    assert list(drain_unread_body(_refuse)(environ, lambda s, h: None)) == []


def _headers_sent(headers: list[tuple[str, str]]) -> dict[str, str]:
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b""]

    sent: list[tuple[str, str]] = []
    dated(app)({}, lambda status, headers, exc_info=None: sent.extend(headers))
    return dict(sent)


def test_a_date_is_added_to_a_copy_and_never_over_the_apps_own():
    shared = [("Content-Type", "text/plain")]
    added = email.utils.parsedate_to_datetime(_headers_sent(shared)["Date"])
    assert abs((datetime.now(UTC) - added).total_seconds()) < 5
    assert shared == [("Content-Type", "text/plain")]  # the response cache's list, untouched
    own = "Tue, 01 Dec 2026 00:00:00 GMT"
    assert _headers_sent([("Date", own)])["Date"] == own


def _option(options: list[str], name: str) -> str:
    return options[options.index(name) + 1]


@pytest.mark.parametrize(
    ("access_log", "expected"),
    [(None, None), ("-", "stdio"), ("/var/log/packyard.log", "file:/var/log/packyard.log")],
)
def test_the_access_log_goes_where_the_setting_says(monkeypatch, access_log, expected):
    if access_log is None:
        monkeypatch.delenv("PACKYARD_ACCESS_LOG", raising=False)
    else:
        monkeypatch.setenv("PACKYARD_ACCESS_LOG", access_log)
    options = uwsgi_options("fd://3", None, "wsgi:app", "/run/web.sock")
    if expected is None:
        assert "--disable-logging" in options and "--req-logger" not in options
    else:
        assert _option(options, "--req-logger") == expected


def test_the_listener_and_worker_counts_become_uwsgi_options():
    options = uwsgi_options("fd://3", 3, "wsgi:app", "/run/web.sock")
    assert _option(options, "--http") == "fd://3"
    assert _option(options, "--http-to") == _option(options, "--socket") == "/run/web.sock"
    assert _option(options, "--processes") == "3"
    assert _option(options, "--module") == "wsgi:app"


def test_the_exit_handlers_run_in_whichever_thread_ends_the_process(monkeypatch):
    """A uWSGI process may end in a thread other than its main one (the metrics' flush
    thread did, having taken the SIGTERM). Setting signal handlers there raised
    ValueError, so the buffered download counts were never written."""
    ran: list[str] = []
    monkeypatch.setattr(serving.atexit, "_run_exitfuncs", lambda: ran.append("handlers"))
    failures: list[BaseException] = []

    def ending() -> None:
        try:
            serving._run_exit_handlers()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    thread = threading.Thread(target=ending)
    thread.start()
    thread.join()
    assert not failures and ran == ["handlers"]


def test_the_thread_count_becomes_a_uwsgi_option():
    assert _option(uwsgi_options("fd://3", 1, "wsgi:app", "/run/web.sock"), "--threads") == "4"
    options = uwsgi_options("fd://3", 1, "wsgi:app", "/run/web.sock", threads=1)
    assert _option(options, "--threads") == "1"
    spec = json.loads(serve_command("127.0.0.1", 8080, 1, threads=2)[-1])
    assert _option(spec["server"], "--threads") == "2"


def test_serve_passes_its_thread_count_on_and_refuses_none(monkeypatch, tmp_path):
    """``packyard serve --threads N`` ends in uWSGI's options; 0 is a usage error."""
    monkeypatch.setenv("PACKYARD_DATA_DIR", str(tmp_path))
    for name in ("PACKYARD_DATABASE_URL", "PACKYARD_STORAGE_URL", "PACKYARD_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    # Neither this process's metrics nor its image may change: it is pytest's.
    monkeypatch.setattr(cli, "use_directory", lambda path, clean: None)
    executed: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, command: executed.append(command))
    runner = CliRunner()
    port = str(free_port())
    refused = runner.invoke(cli.main, ["serve", "--port", port, "--no-worker", "--threads", "0"])
    assert refused.exit_code == 2 and "--threads" in refused.output and not executed
    served = runner.invoke(cli.main, ["serve", "--port", port, "--no-worker", "--threads", "1"])
    assert served.exit_code == 0, served.output
    assert _option(json.loads(executed[0][-1])["server"], "--threads") == "1"


def test_the_default_leaves_a_core_to_the_router_and_the_worker():
    assert [default_processes(cpus) for cpus in (1, 2, 4, 16)] == [1, 1, 3, 8]


def test_the_master_imports_the_app_only_for_several_processes_to_share():
    several = uwsgi_options("fd://3", 3, "wsgi:app", "/run/web.sock")
    assert _option(several, "--shared-import") == "app.prefork"
    assert "--shared-import" not in uwsgi_options("fd://3", 1, "wsgi:app", "/run/web.sock")


# --- packyard serve, live -----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[LiveServer, str]]:
    data = tmp_path_factory.mktemp("serve")
    server = LiveServer(data, packyard_env(data), worker=False)
    group = server.api("POST", "/groups", json={"name": "team", "path": "team"}).json()
    project = server.api(
        "POST", "/projects", json={"name": "lib", "path": "lib", "namespace_id": group["id"]}
    ).json()
    try:
        yield server, f"{server.url}/api/v4/projects/{project['id']}/packages/pypi"
    finally:
        server.stop()


def _post(server: LiveServer, url: str, body: bytes | Iterator[bytes], boundary: str):
    return requests.post(
        url,
        data=body,
        auth=("__token__", server.admin_token),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )


def test_twine_sees_why_a_repeated_upload_failed(served):
    server, url = served
    filename, data = make_wheel("again", "1.0")
    boundary = uuid.uuid4().hex
    body = _multipart(boundary, "again", filename, data)
    assert _post(server, url, body, boundary).status_code == 201
    repeated = _post(server, url, body, boundary)
    assert repeated.status_code == 400
    # twine prints the reason phrase, not the body: it must say why.
    assert repeated.reason.startswith("File already exists")


def test_an_upload_sent_in_chunks_is_stored_whole(served):
    server, url = served
    filename, data = make_wheel("chunky", "1.0", payload=random.randbytes(300_000))
    boundary = uuid.uuid4().hex
    body = _multipart(boundary, "chunky", filename, data)
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))  # requests: chunked
    assert _post(server, url, pieces, boundary).status_code == 201
    page = requests.get(
        f"{url}/simple/chunky/",
        auth=("__token__", server.admin_token),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=10,
    ).json()
    [stored] = page["files"]
    assert stored["filename"] == filename
    assert stored["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_large_uploads_are_answered_every_time(served):
    """With a 64 KiB router buffer, the first read of a large body overflowed the packet the
    router hands the worker: about one upload in three ended without any answer."""
    server, url = served
    payload = random.randbytes(3 * 2**20)
    for version in range(8):
        filename, data = make_wheel("large", f"1.{version}", payload=payload)
        boundary = uuid.uuid4().hex
        body = _multipart(boundary, "large", filename, data)
        assert _post(server, url, body, boundary).status_code == 201


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_an_upload_refused_before_its_body_is_read_is_still_answered(served, chunked):
    """A wrong token is refused before the body is read. The process used to answer and
    close with the body unread: the router dropped the connection, and the client (twine
    with a file of 100 kB or more; any size now and then) got a connection error instead
    of the 401 that says why. (Seen as a lost upload answer in the PostgreSQL restart test.)"""
    server, url = served
    with requests.Session() as session:  # one kept-alive connection for all of them
        for size in (100_000, 3_000_000, 100_000):
            filename, data = make_wheel("refused", "1.0", payload=random.randbytes(size))
            boundary = uuid.uuid4().hex
            body = _multipart(boundary, "refused", filename, data)
            pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
            refused = session.post(
                url,
                data=pieces if chunked else body,
                auth=("__token__", "pyd-pat-not-a-token"),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=60,
            )
            assert refused.status_code == 401
        assert session.get(f"{server.url}/-/health", timeout=10).status_code == 200


def test_an_answer_to_a_chunked_request_says_the_connection_closes(served):
    """uWSGI's router keeps no connection alive after a chunked request body, and used to
    close it without saying so: a client sending its next request on it (the chunked test
    above, now and then; uv after a chunked upload) got a reset instead of an answer."""
    server, url = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            f"POST {urlsplit(url).path} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Basic {base64.b64encode(b'__token__:pyd-pat-wrong').decode()}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
            "5\r\n--b--\r\n0\r\n\r\n".encode()
        )
        head, _, rest = _read_answer(connection, b"")
        assert head.startswith(b"HTTP/1.1 401 ")
        assert b"\r\nconnection: close" in head.lower()
        assert rest == b"" and connection.recv(1) == b""  # and it is closed


def test_an_upload_over_every_limit_is_answered_413_not_dropped(tmp_path):
    """A body longer than any upload may be is refused unread. Twine, sending a 20 MB file
    to a registry with a 1 MB limit, showed a traceback (the connection dropped) instead of
    "413 File too large"."""
    server = LiveServer(tmp_path, packyard_env(tmp_path, MAX_UPLOAD_SIZE="1000000"), worker=False)
    try:
        group = server.api("POST", "/groups", json={"name": "team", "path": "team"}).json()
        project = server.api(
            "POST", "/projects", json={"name": "lib", "path": "lib", "namespace_id": group["id"]}
        ).json()
        filename, data = make_wheel("big", "1.0", payload=random.randbytes(20_000_000))
        path = tmp_path / filename
        path.write_bytes(data)
        upload = subprocess.run(
            [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
             "--repository-url", f"{server.url}/api/v4/projects/{project['id']}/packages/pypi",
             "-u", "__token__", "-p", server.admin_token, str(path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert upload.returncode == 1
        assert "413 Request Entity Too Large" in upload.stdout + upload.stderr, upload.stderr
        assert "a file of at most" in upload.stdout and "1000000 bytes" in upload.stdout
    finally:
        server.stop()


def test_every_answer_carries_the_date(served):
    """RFC 9110 6.6.1: an origin server with a clock sends Date. uWSGI's router adds none;
    only answers made by Werkzeug's send_file (the files) had one. Caches between client and
    registry work out an answer's age from it."""
    server, url = served
    filename, data = make_wheel("dated", "1.0")
    boundary = uuid.uuid4().hex
    assert _post(server, url, _multipart(boundary, "dated", filename, data), boundary).ok
    auth = {"PRIVATE-TOKEN": server.admin_token}
    page = requests.get(f"{url}/simple/dated/", headers=auth, timeout=10)
    href = page.text.split('href="', 1)[1].split('"', 1)[0]
    answers = [
        requests.get(f"{server.url}/-/health", timeout=10),
        page,
        requests.get(f"{url}/simple/dated/", headers=auth, timeout=10),  # from the cache
        requests.get(urljoin(page.url, href), headers=auth, timeout=10),  # the file
        requests.get(f"{server.url}/no-such-page", timeout=10),
    ]
    for answer in answers:
        sent = email.utils.parsedate_to_datetime(answer.headers["Date"])
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 30, answer.url
        assert answer.headers["Date"].endswith(" GMT")


def test_a_client_keeps_its_connection_between_requests(served):
    server, url = served
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"PRIVATE-TOKEN": server.admin_token}
    sockets = []
    try:
        for path in ("/-/health", f"{urlsplit(url).path}/simple/", "/-/health"):
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert not response.will_close  # HTTP/1.1 without "Connection: close"
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is sockets[1] is sockets[2]


def _read_answer(connection: socket.socket, pending: bytes) -> tuple[bytes, bytes, bytes]:
    """One response's head and body (by its Content-Length; none for a 304), and what
    followed it, from a raw socket."""

    def more(received: bytes) -> bytes:
        chunk = connection.recv(65536)
        assert chunk, f"closed after {received!r}"
        return received + chunk

    while b"\r\n\r\n" not in pending:
        pending = more(pending)
    head, _, rest = pending.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = 0 if head.startswith(b"HTTP/1.1 304 ") else int(fields.get(b"content-length", 0))
    while len(rest) < length:
        rest = more(rest)
    return head, rest[:length], rest[length:]


def test_a_revalidation_leaves_the_connection_readable(served):
    """A 304 has no body (RFC 9112), but uWSGI's router chunks every response without a
    length: its terminating chunk then began the next answer on the connection, which
    browsers reject (ERR_INVALID_HTTP_RESPONSE). (http.client happens to read it.)"""
    server, _ = served
    etag = requests.get(f"{server.url}/static/packyard.css", timeout=10).headers["ETag"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(f"GET /static/packyard.css HTTP/1.1\r\nHost: localhost\r\n"
                           f"If-None-Match: {etag}\r\n\r\n".encode())  # fmt: skip
        head, _, rest = _read_answer(connection, b"")
        assert head.startswith(b"HTTP/1.1 304 ")
        if b"connection: close" not in head.lower():  # kept alive: the next answer is clean
            connection.sendall(b"GET /-/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head, _, _ = _read_answer(connection, rest)
            assert head.startswith(b"HTTP/1.1 200 "), head[:40]


def test_pip_revalidating_a_cached_page_keeps_its_connection(served):
    """pip revalidates every index page it has cached (If-None-Match). A 304 from the
    response cache carries the page's Content-Length (RFC 9110 allows it), so the router
    neither chunks it nor has to close the connection: pip goes on on the same one."""
    server, url = served
    page = f"{urlsplit(url).path}/simple/"
    ask = f"GET {page} HTTP/1.1\r\nHost: localhost\r\nPRIVATE-TOKEN: {server.admin_token}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        pending = b""
        for _ in range(2):  # the second answer comes from the response cache
            connection.sendall(f"{ask}\r\n".encode())
            head, _, pending = _read_answer(connection, pending)
            assert head.startswith(b"HTTP/1.1 200 ")
        etag = next(line.split(b": ", 1)[1] for line in head.split(b"\r\n")
                    if line.lower().startswith(b"etag: "))  # fmt: skip
        connection.sendall(f"{ask}If-None-Match: {etag.decode()}\r\n\r\n".encode())
        head, _, pending = _read_answer(connection, pending)
        assert head.startswith(b"HTTP/1.1 304 ")
        assert b"connection: close" not in head.lower()
        connection.sendall(b"GET /-/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head, _, pending = _read_answer(connection, pending)
        assert head.startswith(b"HTTP/1.1 200 "), head


def _ask_health(port: int, connection: socket.socket | None = None) -> socket.socket:
    """A connection (a new one, or ``connection``) that asked for a page, read the answer,
    and stays open: idle keep-alive."""
    connection = connection or socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(b"GET /-/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = b""
    while b"}" not in answer:  # the end of the JSON body
        chunk = connection.recv(4096)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return connection


def test_idle_keep_alive_connections_do_not_stall_new_requests(served):
    """500 clients holding their connections open (pip's pool between two installs, say)
    must not use up the server: a new request is answered within 100 ms."""
    server, _url = served
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(_ask_health(server.port)) for _ in range(500)]
        seconds = []
        for _ in range(5):  # the best of five: the machine may be busy with other work
            started = time.monotonic()
            assert requests.get(f"{server.url}/-/health", timeout=10).status_code == 200
            seconds.append(time.monotonic() - started)
        assert min(seconds) < 0.1, seconds
        for connection in idle:  # they were kept open all along: each answers again
            _ask_health(server.port, connection)


# --- X-Forwarded-* count only from trusted proxies ------------------------------------------

SPOOFED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Host": "evil.example",
}


def _cookie_is_secure(response) -> bool:
    return "secure" in [part.strip().lower() for part in response.headers["Set-Cookie"].split(";")]


@pytest.mark.parametrize("proxies", [0, 1])
def test_the_app_takes_forwarded_headers_from_trusted_proxies_only(tmp_path, database_url, proxies):
    app = create_app(
        {"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url, "PROXY_COUNT": proxies,
         "LOAD_ENTRYPOINT_PLUGINS": False}
    )  # fmt: skip
    with app.app_context():
        registry = Registry(app, app.test_client())
        token = registry.token(registry.user("root", admin=True))
        registry.group("team")
        headers = {**SPOOFED, "PRIVATE-TOKEN": token}
        group = registry.client.get("/api/v4/groups/team", headers=headers).json
        sign_in_page = registry.client.get("/users/sign_in", headers=SPOOFED)
        if proxies:
            assert group["web_url"] == "https://evil.example/team"
            assert _cookie_is_secure(sign_in_page)
        else:
            assert group["web_url"] == "http://localhost/team"
            assert not _cookie_is_secure(sign_in_page)
        db.session.remove()


@pytest.mark.parametrize("header", [{name: value} for name, value in SPOOFED.items()])
def test_packyard_serve_ignores_forwarded_headers_without_a_trusted_proxy(served, header):
    server, _url = served
    sign_in_page = requests.get(f"{server.url}/users/sign_in", headers=header, timeout=10)
    assert not _cookie_is_secure(sign_in_page)
    headers = {**header, "PRIVATE-TOKEN": server.admin_token}
    group = requests.get(f"{server.url}/api/v4/groups/team", headers=headers, timeout=10).json()
    assert group["web_url"] == f"{server.url}/team"


def test_packyard_serve_behind_a_proxy_takes_the_scheme_it_forwards_and_no_other(tmp_path):
    server = LiveServer(tmp_path, packyard_env(tmp_path, PROXY_COUNT="1"), worker=False)
    try:
        proxied = {"X-Forwarded-Proto": "https"}
        sign_in = f"{server.url}/users/sign_in"
        assert _cookie_is_secure(requests.get(sign_in, headers=proxied, timeout=10))
        # A header the proxy passes on from its client, which PROXY_COUNT does not cover.
        passed_on = {"X-Forwarded-Ssl": "on"}
        assert not _cookie_is_secure(requests.get(sign_in, headers=passed_on, timeout=10))
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/before-start", "/after-start"])
def test_an_error_outside_any_view_is_answered_not_left_hanging(tmp_path, path):
    """uWSGI answers nothing to a request whose app raises, and holds the connection for
    its socket timeout (120 s): the client hangs. The adapted app answers 500 at once."""
    port = free_port()
    command = serve_command("127.0.0.1", port, 1, "tests.failing_wsgi:create()")
    server = LiveProcess(command, packyard_env(tmp_path), tmp_path / "uwsgi.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                break
            # Refused before the router listens; a timeout while the worker loads the app
            # (a server that leaves the request hanging times out until the deadline).
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
        assert response.status_code == 500
        assert response.text == "500 Internal Server Error\n"
    finally:
        server.stop()


def test_packyard_serve_starts_and_stops_in_a_few_clean_lines(tmp_path):
    """The real ``packyard serve`` (two web processes and the embedded worker): its own
    short start, none of uWSGI's banner or per-process lines, errors still shown."""
    server = LiveServer(tmp_path, packyard_env(tmp_path), worker=True)
    try:
        started = server.process.output()
        assert requests.get(f"{server.url}/no-such-page/-/packages", timeout=10).status_code
    finally:
        server.stop()
    stopped = server.process.output()
    lines = [line for line in started.splitlines() if line.strip()]
    assert f"Packyard serving on {server.url}/" in lines, started
    for noise in ("running as root", "uWSGI", "spawned", "WSGI app 0", "Python", "detected"):
        assert noise not in started, f"{noise!r} in:\n{started}"
    assert len(lines) <= 6, started  # the admin token's lines (first run) and the URL
    assert "buried" not in stopped and "goodbye" not in stopped, stopped


@pytest.mark.parametrize("to_stdout", [True, False])
def test_the_access_log_passes_and_the_banner_does_not(tmp_path, to_stdout):
    """With the access log on (to stdout, or to a file), uWSGI's banner and per-process
    lines are still left out, and the access lines are all there."""
    log_file = tmp_path / "access.log"
    access_log = "-" if to_stdout else str(log_file)
    env = packyard_env(tmp_path, ACCESS_LOG=access_log)
    server = LiveServer(tmp_path, env, worker=False)
    try:
        assert requests.get(f"{server.url}/-/health?probe=1", timeout=10).status_code == 200
        time.sleep(0.5)  # uWSGI logs a request after its answer
    finally:
        server.stop()
    output = server.process.output()
    access = output if to_stdout else log_file.read_text()
    assert '"GET /-/health?probe=1 HTTP/1.1" 200' in access, access
    assert f"Packyard serving on {server.url}/" in output
    for noise in ("running as root", "uWSGI", "spawned", "WSGI app 0", "Python", "buried"):
        assert noise not in output, f"{noise!r} in:\n{output}"


def test_uwsgi_errors_pass_the_filter(tmp_path):
    """What is not uWSGI's start-up chatter reaches the operator: a port already taken."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "packyard"), "serve", "--port", str(port), "--no-worker"],
            env=packyard_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode != 0
    assert "Address already in use" in result.stderr, result.stderr
    assert "running as root" not in result.stderr


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for child in children for c in (child, *_descendants(int(child)))]


def test_the_embedded_worker_yields_the_cores_to_the_web_processes(tmp_path):
    """Processing an upload costs about as much CPU as receiving it: the worker runs at a
    lower priority, so that it does not slow the client's next upload down."""
    server = LiveServer(tmp_path, packyard_env(tmp_path), worker=True)
    try:
        pids = _descendants(server.process.proc.pid)
        niceness = {
            "celery" in Path(f"/proc/{pid}/cmdline").read_text(): os.getpriority(
                os.PRIO_PROCESS, pid
            )
            for pid in pids
        }
    finally:
        server.stop()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness == {True: min(own + 10, 19), False: own}, niceness
