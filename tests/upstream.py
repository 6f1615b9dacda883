"""A local upstream index for the tests: a static PEP 503/691/658/700 tree of real wheels
and sdists, served on loopback by a small threaded HTTP server that logs every request.

``UpstreamTree`` writes the tree; ``serve_in_thread`` serves it from the test process;
``LiveUpstream`` runs ``python -m tests.upstream`` as a child process (stopped by PID),
for the end-to-end tests whose server must go down and come back on the same port.
Pages answer PEP 691 JSON to clients that prefer it (as Packyard does) and HTML otherwise,
with an ETag and 304s; ``/files/...`` serves files and their ``.metadata`` (those with
``slow`` in their name at about 1 MiB a second, for tests of concurrent first downloads).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import json
import os
import socket
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SLOW_CHUNK = 64 * 1024


def normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Dist:
    filename: str
    content: bytes
    requires_python: str | None = None
    yanked: str | bool = False
    metadata: bytes | None = None  # a wheel's METADATA, served as ``.metadata``
    # What the page claims (defaults: the real content's); tests tamper with them.
    claimed_sha256: str | None = None

    @property
    def sha256(self) -> str:
        return self.claimed_sha256 or hashlib.sha256(self.content).hexdigest()


@dataclass
class UpstreamTree:
    """Writes ``simple/<name>/index.{html,json}`` and ``files/<filename>`` under ``root``."""

    root: Path
    projects: dict[str, list[Dist]] = field(default_factory=dict)
    html_only: set[str] = field(default_factory=set)

    def add(self, name: str, dist: tuple[str, bytes], **options: object) -> Dist:
        filename, content = dist
        entry = Dist(filename, content, **options)  # type: ignore[arg-type]
        if entry.metadata is None and filename.endswith(".whl"):
            entry.metadata = wheel_metadata(content)
        self.projects.setdefault(normalize(name), []).append(entry)
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        (files / filename).write_bytes(content)
        if entry.metadata is not None:
            (files / f"{filename}.metadata").write_bytes(entry.metadata)
        self._write_pages(normalize(name))
        return entry

    def _write_pages(self, name: str) -> None:
        dists = self.projects[name]
        page = self.root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        _replace(page / "index.html", _html_page(name, dists))
        if name in self.html_only:
            (page / "index.json").unlink(missing_ok=True)
        else:
            _replace(page / "index.json", _json_page(name, dists))
        names = sorted(self.projects)  # the root index (devpi's mirror reads it)
        links = "".join(f'<a href="{n}/">{n}</a><br>' for n in names)
        _replace(
            self.root / "simple" / "index.html",
            f"<!DOCTYPE html><html><body>{links}</body></html>\n",
        )
        projects = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
        _replace(self.root / "simple" / "index.json", json.dumps(projects))

    def tamper(self, filename: str, content: bytes) -> None:
        """Serve other bytes under ``filename`` than its page announces."""
        (self.root / "files" / filename).write_bytes(content)


def wheel_metadata(content: bytes) -> bytes:
    with zipfile.ZipFile(BytesIO(content)) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name)


def _replace(path: Path, text: str) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def _html_page(name: str, dists: list[Dist]) -> str:
    links = []
    for d in dists:
        attrs = f'href="../../files/{d.filename}#sha256={d.sha256}"'
        if d.requires_python:
            attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
        if d.yanked is not False:
            attrs += f' data-yanked="{html.escape(d.yanked if isinstance(d.yanked, str) else "")}"'
        if d.metadata is not None:
            attrs += f' data-core-metadata="sha256={hashlib.sha256(d.metadata).hexdigest()}"'
        links.append(f"<a {attrs}>{d.filename}</a><br>")
    return f"<!DOCTYPE html><html><body><h1>{name}</h1>{''.join(links)}</body></html>\n"


def _json_page(name: str, dists: list[Dist]) -> str:
    files = []
    for d in dists:
        meta = {"sha256": hashlib.sha256(d.metadata).hexdigest()} if d.metadata else False
        files.append(
            {
                "filename": d.filename,
                "url": f"/files/{d.filename}",  # absolute path: resolved against the page
                "hashes": {"sha256": d.sha256},
                "requires-python": d.requires_python,
                "yanked": d.yanked,
                "size": len(d.content),
                "upload-time": "2024-01-02T03:04:05.678901Z",
                "core-metadata": meta,
            }
        )
    versions = sorted({d.filename.split("-")[1].removesuffix(".tar.gz") for d in dists})
    data = {"meta": {"api-version": "1.1"}, "name": name, "versions": versions, "files": files}
    return json.dumps(data)


class UpstreamHandler(BaseHTTPRequestHandler):
    """Serves the tree of ``server.root``; appends ``METHOD path`` to ``server.requests``."""

    server: UpstreamServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm on, a keep-alive client
    # would wait for its delayed ACK (40 ms) before each body, as no real index makes it.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        self.server.log(f"{self.command} {self.path}")
        self.server.authorizations.append(self.headers.get("Authorization"))
        path = self.path.split("?", 1)[0]
        target, content_type = self._target(path)
        if target is None or not target.is_file():
            self._send(404, b"not found\n", "text/plain", send_body)
            return
        body = target.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if path.startswith("/simple/") and self.headers.get("If-None-Match") == etag:
            self._send(304, b"", content_type, False, etag)
            return
        self._send(
            200, body, content_type, send_body, etag if path.startswith("/simple/") else None
        )

    def _target(self, path: str) -> tuple[Path | None, str]:
        root = self.server.root
        if path.startswith("/simple/") and path.endswith("/"):
            page = root / path.strip("/")
            if JSON_TYPE in self.headers.get("Accept", "") and (page / "index.json").exists():
                return page / "index.json", JSON_TYPE
            return page / "index.html", "text/html; charset=utf-8"
        if path.startswith("/files/") and "/" not in path[len("/files/") :]:
            return root / "files" / path[len("/files/") :], "application/octet-stream"
        return None, "text/plain"

    def _send(
        self, status: int, body: bytes, content_type: str, send_body: bool, etag: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        if not send_body or status == 304:
            return
        if "slow" not in self.path:
            self.wfile.write(body)
            return
        for start in range(0, len(body), SLOW_CHUNK):  # files named *slow*: ~1 s a MiB
            time.sleep(0.06)  # before each chunk: a small .metadata takes 60 ms too
            self.wfile.write(body[start : start + SLOW_CHUNK])
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:  # the request log is ours
        pass


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int = 0, log_path: Path | None = None) -> None:
        super().__init__(("127.0.0.1", port), UpstreamHandler)
        self.root = root
        self.log_path = log_path
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = super().get_request()
        with self._lock:
            self._connections.add(connection)
        return connection, address

    def stop(self) -> None:
        """Stop listening and cut the connections kept alive: down, as a dead host is."""
        self.shutdown()
        self.server_close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def log(self, line: str) -> None:
        with self._lock:
            self.requests.append(line)
            if self.log_path is not None:
                with self.log_path.open("a") as fh:
                    fh.write(line + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/simple/"


@contextmanager
def serve_in_thread(root: Path) -> Iterator[UpstreamServer]:
    server = UpstreamServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if thread.is_alive():
            server.stop()
        thread.join()


class LiveUpstream:
    """``python -m tests.upstream`` in a child process, on a port that survives restarts."""

    def __init__(self, root: Path, port: int) -> None:
        from tests.services import LiveProcess

        self.root, self.port = root, port
        self.log_path = root.parent / "upstream-requests.log"
        self.url = f"http://127.0.0.1:{port}/simple/"
        args = [sys.executable, "-m", "tests.upstream", str(root), str(port), str(self.log_path)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.process = LiveProcess(args, env, root.parent / "upstream.log")
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the upstream did not listen:\n{self.process.output()}")

    def requests(self) -> list[str]:
        return self.log_path.read_text().splitlines() if self.log_path.exists() else []

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve an upstream test index.")
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    UpstreamServer(args.root, args.port, args.log).serve_forever()


if __name__ == "__main__":
    main()
