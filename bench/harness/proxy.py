"""A byte-counting TCP relay, to measure what a client fetched from a server.

It forwards raw bytes, so it counts headers and bodies as the client received them,
whatever the server's logs say. With ``exchanges=True`` it also reads the HTTP/1.1 going
through (requests one after another on a connection, as pip and uv send them; no
pipelining) and keeps one ``Exchange`` per response: what was asked, with which headers,
and how many of the bytes received were the response's head and how many its body.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Exchange:
    method: str
    target: str
    request_headers: dict[str, str]  # names lowercased
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    head_bytes: int = 0  # status line, headers and the blank line
    body_bytes: int = 0  # as sent: chunked framing included, compressed if it was


class RequestReader:
    """Reads requests from the client's bytes: method, target and headers."""

    def __init__(self) -> None:
        self._buffer = b""
        self._body_left = 0

    def feed(self, data: bytes) -> list[Exchange]:
        self._buffer += data
        found = []
        while True:
            if self._body_left:
                taken = min(self._body_left, len(self._buffer))
                self._body_left -= taken
                self._buffer = self._buffer[taken:]
                if self._body_left:
                    return found
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return found
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = _headers(lines)
            self._body_left = int(headers.get("content-length", "0"))
            found.append(Exchange(method, target, headers))


class ResponseReader:
    """Splits the server's bytes into responses, each counted against its request."""

    def __init__(self) -> None:
        self.pending: deque[Exchange] = deque()  # asked, not yet answered
        self.done: list[Exchange] = []
        self.broken = False  # set by the relay when the bytes were not HTTP it could read
        self._current: Exchange | None = None
        self._buffer = b""
        self._body_left: int | None = None  # None: until the connection closes
        self._chunked = False
        self._chunk_left = 0  # of the current chunk's data and its CRLF
        self._trailers = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            if self._current is None:
                if not self._read_head():
                    return
            elif self._chunked:
                if not self._read_chunked():
                    return
            else:
                self._read_body()

    def close(self) -> None:
        """The connection ended: a body read until then is complete."""
        if self._current is not None:
            self._finish()

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        asked = self.pending.popleft() if self.pending else Exchange("?", "?", {})
        if 100 <= status < 200:  # an interim answer: the real one follows
            self.pending.appendleft(asked)
            return True
        asked.status, asked.response_headers = status, _headers(lines)
        asked.head_bytes = end + 4
        self._current = asked
        headers = asked.response_headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunk_left, self._trailers = 0, False
        if asked.method == "HEAD" or status in (204, 304):
            self._body_left = 0
        elif "content-length" in headers and not self._chunked:
            self._body_left = int(headers["content-length"])
        else:
            self._body_left = None
        if self._body_left == 0:
            self._finish()
        return True

    def _read_body(self) -> None:
        assert self._current is not None
        if self._body_left is None:  # until close
            self._current.body_bytes += len(self._buffer)
            self._buffer = b""
            return
        taken = min(self._body_left, len(self._buffer))
        self._current.body_bytes += taken
        self._body_left -= taken
        self._buffer = self._buffer[taken:]
        if self._body_left == 0:
            self._finish()

    def _read_chunked(self) -> bool:
        assert self._current is not None
        if self._chunk_left:
            taken = min(self._chunk_left, len(self._buffer))
            self._current.body_bytes += taken
            self._chunk_left -= taken
            self._buffer = self._buffer[taken:]
            return True
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return False
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        self._current.body_bytes += end + 2
        if self._trailers:
            if not line:  # the blank line after the trailers ends the body
                self._finish()
            return True
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            self._trailers = True
        else:
            self._chunk_left = size + 2  # the data, then its CRLF
        return True

    def _finish(self) -> None:
        assert self._current is not None
        self.done.append(self._current)
        self._current = None


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class CountingProxy:
    """Listens on a loopback port and relays every connection to ``target_port``."""

    def __init__(self, target_port: int, read_http: bool = False) -> None:
        self.target_port = target_port
        self.down = 0  # server -> client
        self.up = 0  # client -> server
        self.connections = 0
        self.read_http = read_http
        self.unreadable = 0  # connections whose HTTP the readers could not follow
        self._responses: list[ResponseReader] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def exchanges(self) -> list[Exchange]:
        """The responses read so far, per connection in order (after ``close``: all)."""
        return [exchange for reader in self._responses for exchange in reader.done]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def reset(self) -> None:
        self.down = self.up = self.connections = 0
        self._responses = []

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {client_w, server_w}
        requests, responses = None, None
        if self.read_http:
            requests, responses = RequestReader(), ResponseReader()
            self._responses.append(responses)
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, "up", requests, responses),
                self._pipe(server_r, client_w, "down", requests, responses),
            )
        finally:
            self._writers -= {client_w, server_w}
            client_w.close()
            server_w.close()
            if responses is not None:
                responses.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        requests: RequestReader | None,
        responses: ResponseReader | None,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if direction == "down":
                    self.down += len(chunk)
                else:
                    self.up += len(chunk)
                if responses is not None and not responses.broken:
                    try:
                        if direction == "down":
                            responses.feed(chunk)
                        elif requests is not None:
                            responses.pending.extend(requests.feed(chunk))
                    except (ValueError, IndexError):  # counted, and the relay goes on
                        responses.broken = True
                        self.unreadable += 1
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # pass a half-close on
        except (ConnectionError, OSError):
            writer.close()

    def close(self) -> None:
        """Stop listening and drop the connections the client left open (keep-alive)."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the relays then end by themselves
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(tasks, timeout=5) if tasks else None
