"""A webhook receiver on loopback: records each POST, answers as its script says."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """``answers`` is consumed one per request (an int status, or "hang" to never answer
    within any sensible timeout); once it is empty every request gets 200.  With
    ``per_event`` each event (``X-Packyard-Event-Id``) gets its own copy of ``answers``."""

    def __init__(self, answers: list[int | str] | None = None, per_event: bool = False) -> None:
        self.answers = list(answers or [])
        self.per_event = per_event
        self._scripts: dict[str, list[int | str]] = {}
        self.received: list[Received] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(Received(dict(self.headers), body, time.monotonic()))
                answer = receiver.answer(self.headers.get("X-Packyard-Event-Id", ""))
                if answer == "hang":
                    receiver._release.wait(30)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, event_id: str) -> int | str:
        script = self.answers
        if self.per_event:
            script = self._scripts.setdefault(event_id, list(self.answers))
        return script.pop(0) if script else 200

    def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} received"
        return self.received

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(answers: list[int | str] | None = None, per_event: bool = False) -> Iterator[Receiver]:
    running = Receiver(answers, per_event)
    try:
        yield running
    finally:
        running.close()
