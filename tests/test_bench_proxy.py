"""The bench's counting proxy reads HTTP/1.1 well enough to split bytes by response: heads
and bodies, whatever framing the server chose and however the bytes arrive."""

from __future__ import annotations

import gzip
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from harness.proxy import CountingProxy, RequestReader, ResponseReader

REQUESTS = (
    b"GET /simple/a/ HTTP/1.1\r\nHost: x\r\nAccept: application/vnd.pypi.simple.v1+json\r\n"
    b"Accept-Encoding: gzip, deflate\r\n\r\n"
    b"HEAD /files/a.whl HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /files/a.whl.metadata HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
    b'GET /files/a.whl HTTP/1.1\r\nHost: x\r\nIf-None-Match: "abc"\r\n\r\n'
    b"GET /files/b.whl HTTP/1.1\r\nHost: x\r\n\r\n"
)
HEADS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # HEAD: no body follows
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n',
    b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\n\r\n",  # until the close
)
CHUNKED = b"3\r\nabc\r\n10;x=y\r\n" + b"z" * 16 + b"\r\n0\r\nT: 1\r\n\r\n"  # a trailer too
BODIES = (b"hello", b"", CHUNKED, b"", b"q" * 7)


def test_the_readers_split_responses_fed_a_byte_at_a_time():
    requests_in, responses = RequestReader(), ResponseReader()
    for byte in REQUESTS:
        responses.pending.extend(requests_in.feed(bytes([byte])))
    answer = b"".join(head + body for head, body in zip(HEADS, BODIES, strict=True))
    for byte in answer:
        responses.feed(bytes([byte]))
    responses.close()
    done = responses.done
    assert [(e.method, e.target, e.status) for e in done] == [
        ("GET", "/simple/a/", 200),
        ("HEAD", "/files/a.whl", 200),
        ("GET", "/files/a.whl.metadata", 200),
        ("GET", "/files/a.whl", 304),
        ("GET", "/files/b.whl", 200),
    ]
    assert [e.head_bytes for e in done] == [len(head) for head in HEADS]
    assert [e.body_bytes for e in done] == [len(body) for body in BODIES]
    assert done[0].request_headers["accept-encoding"] == "gzip, deflate"
    assert done[2].request_headers["accept-encoding"] == "identity"
    assert sum(e.head_bytes + e.body_bytes for e in done) == len(answer)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: several responses on one connection

    def do_GET(self) -> None:
        body = b"x" * 3000
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_proxy_counts_each_response_through_a_kept_alive_connection():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = CountingProxy(server.server_address[1], read_http=True)
    try:
        with requests.Session() as session:
            base = f"http://127.0.0.1:{proxy.port}"
            session.get(f"{base}/plain", headers={"Accept-Encoding": "identity"}, timeout=10)
            session.get(f"{base}/zipped", headers={"Accept-Encoding": "gzip"}, timeout=10)
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()
    exchanges = proxy.exchanges
    assert proxy.connections == 1 and proxy.unreadable == 0
    assert [e.target for e in exchanges] == ["/plain", "/zipped"]
    assert exchanges[0].body_bytes == 3000
    assert exchanges[1].body_bytes == len(gzip.compress(b"x" * 3000))
    assert sum(e.head_bytes + e.body_bytes for e in exchanges) == proxy.down
