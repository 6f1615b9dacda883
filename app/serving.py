"""What ``packyard serve`` serves: the app, adapted to uWSGI's HTTP socket.

uWSGI's HTTP socket hands a request body sent with ``Transfer-Encoding: chunked`` to the app
as an empty ``wsgi.input``; its chunks can only be read through ``uwsgi.chunked_read``.
Without this adapter such an upload would look as if it had no file at all.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app import create_app

ReadChunk = Callable[[], bytes]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
    """``wsgi_app`` with chunked request bodies readable from ``wsgi.input``."""

    def adapted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ["wsgi.input"] = io.BufferedReader(ChunkedInput(read_chunk))
            environ["wsgi.input_terminated"] = True  # Werkzeug reads it to its end
        return wsgi_app(environ, start_response)

    return adapted


def create_uwsgi_app() -> Flask:
    """The app for uWSGI's processes (``--module app.serving:create_uwsgi_app()``)."""
    import uwsgi  # only inside uWSGI's processes

    app = create_app()
    app.wsgi_app = chunked_input(app.wsgi_app, uwsgi.chunked_read)  # type: ignore[method-assign]
    return app
