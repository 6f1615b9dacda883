"""``packyard serve``'s web server: uWSGI, its options, and the app adapted to it.

uWSGI was picked by measurement (``bench/servers.py``, figures in ``bench/SERVERS.md``).
Its HTTP socket hands a request body sent with ``Transfer-Encoding: chunked`` to the app
as an empty ``wsgi.input``; the chunks can only be read through ``uwsgi.chunked_read``.
Without ``chunked_input`` such an upload would look as if it had no file at all.
And when the app raises instead of answering, uWSGI sends nothing and keeps the client's
connection open until its socket timeout: ``answer_errors`` answers 500 instead.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.http import http_date

from app import create_app
from app.logs import configure_logging
from app.metrics.exposition import mark_dead

ReadChunk = Callable[[], bytes]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
log = logging.getLogger(__name__)
INTERNAL_ERROR = b"500 Internal Server Error\n"
LINGER_SECONDS = 30  # nginx's lingering_time: how long an unread body is read and discarded


class ChunkedInput(io.RawIOBase):
    """A readable stream over a chunk reader that returns ``b""`` after the last chunk."""

    def __init__(self, read_chunk: ReadChunk) -> None:
        self._read_chunk = read_chunk
        self._pending = memoryview(b"")
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._finished:
            chunk = self._read_chunk()
            self._finished = not chunk
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def chunked_input(wsgi_app: WSGIApp, read_chunk: ReadChunk) -> WSGIApp:
    """``wsgi_app`` with chunked request bodies readable from ``wsgi.input``.

    uWSGI's router never keeps a connection alive after a chunked request body, and closes
    it without a word: the answer says so (RFC 9112, 9.6), or a client would send its next
    request on the closing connection and get a reset instead of an answer."""

    def adapted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return wsgi_app(environ, start_response)
        environ["wsgi.input"] = io.BufferedReader(ChunkedInput(read_chunk))
        environ["wsgi.input_terminated"] = True  # Werkzeug reads it to its end

        def closing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if name.lower() != "connection"]
            return start_response(status, [*kept, ("Connection", "close")], exc_info)

        return wsgi_app(environ, closing)

    return adapted


def plain_http(wsgi_app: WSGIApp) -> WSGIApp:
    """``wsgi_app`` with the scheme of the socket ``packyard serve`` opens: plain HTTP.

    uWSGI takes ``wsgi.url_scheme`` from the ``X-Forwarded-Proto`` or ``X-Forwarded-Ssl``
    of any client.  Only the app's ProxyFix may honour such headers, for as many proxies
    as ``PACKYARD_PROXY_COUNT`` trusts: without one, a client could make the session
    cookie ``Secure`` or the API's URLs ``https``."""

    def adapted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.url_scheme"] = "http"
        return wsgi_app(environ, start_response)

    return adapted


def answer_errors(wsgi_app: WSGIApp) -> WSGIApp:
    """``wsgi_app``, answering 500 when it raises instead of returning its response.

    Flask answers its views' errors itself; this catches what escapes it (middleware
    around it, its teardown). uWSGI's HTTP socket would answer such a request with nothing
    at all and hold the connection for its socket timeout (120 s): the client would hang.
    """

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return wsgi_app(environ, start_response)
        except Exception:
            log.exception("unhandled error on %s %s", environ.get("REQUEST_METHOD"),
                          environ.get("PATH_INFO"))  # fmt: skip
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(INTERNAL_ERROR)))]
            # Nothing is sent yet, so this replaces any status the app had set. (uWSGI fails
            # the exc_info form of this call with a SystemError, and then sends nothing.)
            start_response("500 Internal Server Error", headers)
            return [INTERNAL_ERROR]

    return guarded


def drain_unread_body(wsgi_app: WSGIApp, seconds: float = LINGER_SECONDS) -> WSGIApp:
    """``wsgi_app``, reading what it left of the request body before it answers.

    A view may answer before reading the body: a wrong token is refused first, a body
    longer than any upload is refused unread (413). The process then closed its socket to
    the router with the body unread, and the router dropped the client's connection with
    the answer: twine showed a connection error instead of the 401 or 413 that says why.
    Like nginx's lingering close, the rest is read and discarded, for ``seconds`` at most
    (a body that takes longer still loses its answer). A slow body held a web thread as
    long already, while it was being read.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or "0"
        if length == "0" and not environ.get("wsgi.input_terminated"):
            return wsgi_app(environ, start_response)  # no body (chunked_input marks one)
        response = wsgi_app(environ, start_response)
        _discard(environ["wsgi.input"], time.monotonic() + seconds)
        return response

    return app


def _discard(body: io.RawIOBase | io.BufferedIOBase, deadline: float) -> None:
    """Reads ``body`` to its end or until ``deadline``; a client that went away ends it."""
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline and body.read(65536):
            pass


def close_after_bodiless(wsgi_app: WSGIApp) -> WSGIApp:
    """``wsgi_app``, closing the connection after a 304, or an answer to HEAD, that has no
    ``Content-Length``.

    uWSGI's HTTP router (``--http-auto-chunked``) chunks every response without a length
    on a kept-alive connection, 304 included. Such a response has no body (RFC 9112), so
    the client reads the router's terminating chunk as the start of the next response
    (Chromium: ERR_INVALID_HTTP_RESPONSE). The router closes instead when asked to. Only
    conditional and HEAD requests can get such an answer: the rest pass untouched.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        head = environ.get("REQUEST_METHOD") == "HEAD"
        if not (head or "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ):
            return wsgi_app(environ, start_response)

        def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            bodiless = head or status.startswith("304")
            if bodiless and not any(name.lower() == "content-length" for name, _ in headers):
                headers = [*headers, ("Connection", "close")]
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, starting)

    return app


def dated(wsgi_app: WSGIApp) -> WSGIApp:
    """``wsgi_app``, each answer carrying ``Date`` unless it has one.

    RFC 9110 (6.6.1) asks an origin server with a clock for it, and uWSGI's router adds
    none: only the files had one (Werkzeug's ``send_file`` sets it). Caches between client
    and registry work out an answer's age from it."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == "date" for name, _ in headers):
                # A new list, not an append: the response cache's lists are shared.
                headers = [*headers, ("Date", current_http_date())]
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, starting)

    return app


_formatted: tuple[int, str] = (0, "")


def current_http_date() -> str:
    """Now in HTTP's format (Werkzeug's ``http_date``), formatted once a second."""
    global _formatted
    now = int(time.time())
    if _formatted[0] != now:
        _formatted = (now, http_date(now))
    return _formatted[1]


def for_uwsgi(wsgi_app: WSGIApp) -> WSGIApp:
    """``wsgi_app`` as uWSGI needs it: chunked bodies readable, escaped errors answered,
    unread bodies read before the answer, bodiless answers framed, answers dated."""
    import uwsgi  # only inside uWSGI's processes

    answered = drain_unread_body(answer_errors(wsgi_app))
    return dated(close_after_bodiless(chunked_input(answered, uwsgi.chunked_read)))


def create_uwsgi_app() -> Flask:
    """The app for uWSGI's processes (``--module app.serving:create_uwsgi_app()``)."""
    import uwsgi

    app = create_app()
    if app.config["LOG_FORMAT"] == "json":
        configure_logging("json")
    app.wsgi_app = plain_http(for_uwsgi(app.wsgi_app))  # type: ignore[method-assign]
    atexit.register(mark_dead)  # a uWSGI process that ends: its live gauges drop out
    uwsgi.atexit = _run_exit_handlers
    return app


def _run_exit_handlers() -> None:
    """Python's exit handlers, which write what is still buffered (the download counts,
    ``app.domain.counters``), safe from the stop signals that uWSGI's master repeats
    while it waits: one would interrupt them half-way (KeyboardInterrupt).

    A threaded process may end in any of its threads, the last one to finish its request.
    Only the main thread may set signal handlers, and only it gets KeyboardInterrupt: in
    another, the handlers simply run."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    atexit._run_exitfuncs()


class ServerFailed(RuntimeError):
    """The server process ended other than by a stop signal (it failed to start, say)."""


# uWSGI's request log in Apache's combined format, plus the time taken.
ACCESS_LOG_FORMAT = (
    '%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) '
    '"%(referer)" "%(uagent)" %(msecs)ms'
)
UWSGI_APP = "app.serving:create_uwsgi_app()"
# Threads per web process. Each request that waits on its client (an upload's body, a
# download to a slow link) holds one; fewer threads contend less for the GIL, so short
# requests go faster (figures in the README's Production section).
DEFAULT_THREADS = 4
SUPERVISOR = Path(__file__).with_name("supervisor.py")


def run_server(host: str, port: int, workers: int | None, app: str = UWSGI_APP) -> None:
    """Serve the WSGI app ``app`` (uWSGI's ``module:callable``) on uWSGI until SIGTERM/SIGINT,
    under the supervisor in a child process (pyuwsgi ends its process with exit(), which
    would skip the caller's clean-up)."""
    returncode = subprocess.call(serve_command(host, port, workers, app))
    if returncode != 0:
        raise ServerFailed(f"uWSGI exited with status {returncode}")


def serve_command(
    host: str,
    port: int,
    workers: int | None,
    app: str = UWSGI_APP,
    worker: list[str] | None = None,
    threads: int = DEFAULT_THREADS,
) -> list[str]:
    """The supervisor's command line: uWSGI serving ``app``, and the ``worker`` command.

    uWSGI serves Packyard's pages 1.7 to 2 times as fast as gunicorn here and keeps the
    reason phrase twine shows (granian, faster still, drops it): ``bench/servers.py``
    measures the candidates, ``bench/SERVERS.md`` has the figures.

    The socket between uWSGI's HTTP router and its workers is in a directory only this user
    may enter, which the supervisor removes at the end: whoever reaches that socket could
    set any request variable (the client's address, say), which the HTTP port never lets a
    client do."""
    directory = tempfile.mkdtemp(prefix="packyard-serve-")
    backend = os.path.join(directory, "web.sock")
    server = uwsgi_command("fd://{listen_fd}", workers, app, backend, threads)
    spec = {
        "server": server,
        "worker": worker,
        "remove": directory,
        "listen": [host, port, _listen_backlog()],
    }
    return [sys.executable, "-I", str(SUPERVISOR), json.dumps(spec)]


def uwsgi_command(
    listen: str, workers: int | None, app: str, backend: str, threads: int = DEFAULT_THREADS
) -> list[str]:
    """The command line of the uWSGI process that the supervisor starts; ``listen`` is the
    router's socket as uWSGI names it (``fd://N``: the supervisor's)."""
    run = "import sys, pyuwsgi; pyuwsgi.run(sys.argv[1:])"
    return [sys.executable, "-c", run, *uwsgi_options(listen, workers, app, backend, threads)]


def uwsgi_options(
    listen: str, workers: int | None, app: str, backend: str, threads: int = DEFAULT_THREADS
) -> list[str]:
    """uWSGI's options: an HTTP router in front of the app's worker processes.

    The router (one process, an event loop in C) holds the clients' connections, keep-alive
    included, and hands each request to a free worker over the ``backend`` socket. Idle
    keep-alive connections cost the router a file descriptor each, and no worker thread:
    on uWSGI's own HTTP socket every open connection holds a thread until its timeout, so a
    few idle clients stall it (hence the ``Connection: close`` it used to send)."""
    processes = workers or default_processes()
    return [
        "--strict",  # an unknown option is an error, not a warning
        "--http", listen,
        "--http-to", backend,
        "--socket", backend,
        "--http-keepalive",  # HTTP/1.1 clients keep their connection between requests
        "--http-auto-chunked",  # also after a response of unknown length (streamed)
        "--http-chunked-input",  # bodies sent chunked (uv does) pass through to the worker
        "--http-manage-expect",  # answer "Expect: 100-continue" (curl's large uploads)
        # Request headers up to 32 KiB (default: 4 KiB). Not 64: the router passes them on in
        # a uwsgi packet whose size field has 16 bits, and with a 64 KiB buffer, headers and
        # the first part of a large body overflowed it: the upload failed without an answer.
        "--http-buffer-size", "32768",
        "--buffer-size", "65535",  # the largest packet the worker may receive
        "--http-timeout", "120",  # a slow client's upload may pause; idle keep-alive ends
        "--module", app,
        "--need-app",
        "--master",
        "--processes", str(processes),
        "--threads", str(threads),
        "--thunder-lock",  # one process accepts at a time: connections spread evenly
        *_shared_import(processes),
        "--lazy-apps",  # each process makes its own app: no connections shared over fork
        "--single-interpreter",
        "--die-on-term",  # SIGTERM stops (uWSGI's default is to reload)
        "--listen", str(_listen_backlog()),
        "--socket-timeout", "120",  # between router and worker, as --http-timeout
        "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception",
        *_logging_options(),
    ]  # fmt: skip


def default_processes(cpus: int | None = None) -> int:
    """One web process per core but one, up to 8: the HTTP router and the embedded worker
    take the last core's share. On 2 cores, one process of 4 threads serves index pages as
    fast as two (the router does the HTTP work in C) with 55 MiB less memory."""
    return max(1, min((cpus or os.cpu_count() or 1) - 1, 8))


def _shared_import(processes: int) -> list[str]:
    """Several web processes share the app's modules, imported by the master before it
    forks (``app.prefork``). A single one shares nothing: the master's copy (and the router's,
    forked from it) would only add 29 MiB."""
    return ["--shared-import", "app.prefork"] if processes > 1 else []


def _logging_options() -> list[str]:
    access_log = os.environ.get("PACKYARD_ACCESS_LOG")
    if not access_log:
        return ["--disable-logging"]
    destination = "stdio" if access_log == "-" else f"file:{access_log}"
    return ["--req-logger", destination, "--log-format", ACCESS_LOG_FORMAT]


def _listen_backlog(wanted: int = 1024) -> int:
    """uWSGI refuses to start with a backlog over the kernel's ``somaxconn``."""
    try:
        return min(wanted, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return 128
