"""HTTP to the upstream index: a requests session per thread, short timeouts, and
credentials sent only where they belong.

Credentials come from the index URL's userinfo (``https://user:token@host/simple/``),
sent to that host only, or else from ``~/.netrc`` (``NETRC``) for whichever host serves
the request; redirects to another host drop them.  Proxies come from the usual
``HTTPS_PROXY``/``NO_PROXY`` variables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import ReadTimeoutError

from app.domain.errors import PackyardError

PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024 * 1024
USER_AGENT = "Packyard (pull-through cache)"


class UpstreamError(PackyardError):
    """The upstream could not be reached or answered nonsense: 502 Bad Gateway."""

    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


@dataclass(frozen=True)
class Upstream:
    """Where the upstream index is, and how long to wait for it."""

    url: str  # without credentials, ends with "/"
    auth: tuple[str, str] | None
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Upstream:
        parts = urlsplit(str(config["UPSTREAM_URL"]))
        auth = None
        if parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"  # IPv6
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", ""))
        return cls(
            url, auth, float(config["UPSTREAM_TIMEOUT"]), float(config["UPSTREAM_READ_TIMEOUT"])
        )

    def page_url(self, normalized: str) -> str:
        return f"{self.url}{normalized}/"

    def auth_for(self, url: str) -> tuple[str, str] | None:
        """The index's own credentials, for the index's own origin only."""
        if self.auth is None:
            return None
        mine, theirs = urlsplit(self.url), urlsplit(url)
        same = (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)
        return self.auth if same else None

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


@dataclass(frozen=True)
class PageAnswer:
    status: int  # 200, 304 (not modified) or 404 (no such name upstream)
    url: str  # after redirects: relative links resolve against it
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def fetch_page(
    upstream: Upstream, normalized: str, etag: str | None = None, last_modified: str | None = None
) -> PageAnswer:
    """The upstream's page for a name, conditionally when validators are given."""
    headers = {"Accept": PAGE_ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    url = upstream.page_url(normalized)
    with _get(upstream, url, headers) as response:
        if response.status_code in (304, 404, 410):
            return PageAnswer(404 if response.status_code == 410 else response.status_code, url)
        _require_ok(response)
        body = _read_capped(response, MAX_PAGE_BYTES)
        return PageAnswer(
            200,
            response.url,
            body,
            response.headers.get("Content-Type", ""),
            response.headers.get("ETag"),
            response.headers.get("Last-Modified"),
        )


def open_file(upstream: Upstream, url: str) -> requests.Response:
    """A streaming answer for a file, as stored upstream (no content encoding undone);
    the caller closes it."""
    response = _get(upstream, url, {"Accept-Encoding": "identity"})
    if response.status_code != 200:
        response.close()
        _require_ok(response)
    return response


def fetch_small(upstream: Upstream, url: str, limit: int = MAX_METADATA_BYTES) -> bytes:
    with _get(upstream, url, {"Accept-Encoding": "identity"}) as response:
        _require_ok(response)
        return _read_capped(response, limit, decode=False)


def _get(upstream: Upstream, url: str, headers: dict[str, str]) -> requests.Response:
    try:
        return _session().get(
            url,
            headers=headers,
            auth=upstream.auth_for(url),
            timeout=upstream.timeouts,
            stream=True,
        )
    except requests.Timeout as exc:
        raise UpstreamTimeout(f"504 Upstream timed out: {_reason(exc)}") from None
    except requests.RequestException as exc:
        raise UpstreamError(f"502 Upstream unreachable: {_reason(exc)}") from None


def _require_ok(response: requests.Response) -> None:
    if response.status_code != 200:
        where = urlsplit(response.url)
        raise UpstreamError(
            f"502 Upstream answered {response.status_code} for {where.netloc}{where.path}"
        )


def _read_capped(response: requests.Response, limit: int, decode: bool = True) -> bytes:
    chunks, size = [], 0
    with translated_errors():
        if decode:
            stream = response.iter_content(65536)
        else:
            stream = response.raw.stream(65536, decode_content=False)
        for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"502 Upstream answer larger than {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Transport errors while reading an answer, as UpstreamError/UpstreamTimeout."""
    try:
        yield
    except (requests.Timeout, ReadTimeoutError) as exc:
        raise UpstreamTimeout(f"504 Upstream timed out: {_reason(exc)}") from None
    except (requests.RequestException, TransportError, OSError) as exc:
        raise UpstreamError(f"502 Upstream connection failed: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """The exception's gist: urllib3 wraps the cause in layers of repr."""
    text = str(exc.args[0] if exc.args else exc)
    return text.rsplit(": ", 1)[-1].strip("')\"") or type(exc).__name__


_local = threading.local()


def _session() -> requests.Session:
    """One session (and connection pool) per thread and process: never shared after fork."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None or getattr(_local, "pid", None) != os.getpid():
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        _local.session, _local.pid = session, os.getpid()
    return session
