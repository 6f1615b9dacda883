"""The upstream's page for a name, parsed from PEP 691 JSON or PEP 503 HTML into plain data
that is kept (``UpstreamProject.page``) and rendered by Packyard's own page renderers.

Every field a client uses is kept: sha256, requires-python, yanked and its reason, the
core metadata's sha256 (PEP 658/714), size and upload time (PEP 700), versions.  A file is
left out when it cannot be verified (no sha256) or does not belong to the name (its
filename names another project): Packyard never serves what it cannot check.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from app.domain.indexes import IndexFile, ProjectPage
from app.domain.names import normalize

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!~-]*$", re.ASCII)
_MAX_TEXT = 1024  # requires-python, yanked reasons: longer values are cut


class InvalidPage(ValueError):
    """The upstream answered something that is not a simple-repository page."""


@dataclass(frozen=True)
class UpstreamEntry:
    filename: str
    url: str  # absolute, on the upstream
    sha256: str
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    metadata_sha256: str | None = None
    size: int | None = None
    upload_time: str | None = None  # ISO 8601, as the upstream wrote it


@dataclass(frozen=True)
class UpstreamPage:
    name: str
    files: tuple[UpstreamEntry, ...]
    versions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "files": [asdict(entry) for entry in self.files],
            "versions": list(self.versions),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpstreamPage:
        files = tuple(UpstreamEntry(**entry) for entry in data["files"])
        return cls(data["name"], files, tuple(data["versions"]))

    def find(self, sha256: str, filename: str) -> UpstreamEntry | None:
        return next((f for f in self.files if f.sha256 == sha256 and f.filename == filename), None)

    def digest_source(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


def parse_page(body: bytes, content_type: str, url: str, normalized: str) -> UpstreamPage:
    """The page at ``url`` (its final URL, after redirects) for the name ``normalized``."""
    if "json" in content_type.lower():
        return parse_json_page(body, url, normalized)
    return parse_html_page(body, url, normalized)


def parse_json_page(body: bytes, url: str, normalized: str) -> UpstreamPage:
    """PEP 691 (and PEP 700's size, upload-time and versions)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidPage(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise InvalidPage("a JSON page needs a list of files")
    entries = [_json_entry(item, url) for item in data["files"] if isinstance(item, dict)]
    versions = data.get("versions")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        versions = None
    name = data.get("name") if isinstance(data.get("name"), str) else normalized
    return _page(name, entries, normalized, versions)


def _json_entry(item: dict[str, Any], base_url: str) -> UpstreamEntry | None:
    filename, href, hashes = item.get("filename"), item.get("url"), item.get("hashes")
    if not isinstance(filename, str) or not isinstance(href, str) or not isinstance(hashes, dict):
        return None
    sha256 = _sha256(hashes.get("sha256"))
    if sha256 is None:
        return None
    yanked = item.get("yanked", False)
    metadata = item.get("core-metadata", item.get("dist-info-metadata", False))
    size = item.get("size")
    upload_time = item.get("upload-time")
    return UpstreamEntry(
        filename=filename,
        url=urljoin(base_url, href),
        sha256=sha256,
        requires_python=_text(item.get("requires-python")),
        yanked=bool(yanked),
        yanked_reason=_text(yanked) if isinstance(yanked, str) else None,
        metadata_sha256=_sha256(metadata.get("sha256")) if isinstance(metadata, dict) else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload_time if isinstance(upload_time, str) else None,
    )


def parse_html_page(body: bytes, url: str, normalized: str) -> UpstreamPage:
    """PEP 503 with PEP 592 (yanked), 629 and 658/714 (core metadata) attributes."""
    parser = _AnchorParser()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser raises assorted errors on broken markup
        raise InvalidPage(f"unreadable HTML: {exc}") from None
    entries = [_html_entry(attrs, text, url) for attrs, text in parser.anchors]
    return _page(normalized, entries, normalized, None)


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def _html_entry(attrs: dict[str, str | None], text: str, base_url: str) -> UpstreamEntry | None:
    href = attrs.get("href")
    if not href:
        return None
    link, fragment = urldefrag(urljoin(base_url, href))
    algorithm, _, value = fragment.partition("=")
    sha256 = _sha256(value) if algorithm == "sha256" else None
    if sha256 is None:
        return None
    yanked = attrs.get("data-yanked")
    metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
    algorithm, _, value = (metadata or "").partition("=")
    return UpstreamEntry(
        filename=text or unquote(urlsplit(link).path.rsplit("/", 1)[-1]),
        url=link,
        sha256=sha256,
        requires_python=_text(attrs.get("data-requires-python")),
        yanked="data-yanked" in attrs,
        yanked_reason=_text(yanked),
        metadata_sha256=_sha256(value) if algorithm == "sha256" else None,
    )


def _page(
    name: str, entries: list[UpstreamEntry | None], normalized: str, versions: list[str] | None
) -> UpstreamPage:
    files = tuple(
        entry
        for entry in entries
        if entry is not None
        and _safe_filename(entry.filename)
        and normalized in name_candidates(entry.filename)
        and urlsplit(entry.url).scheme in ("http", "https")
    )
    if versions is None:
        found = (version_of(f.filename) for f in files)
        versions = list(dict.fromkeys(v for v in found if v is not None))
    return UpstreamPage(name, files, tuple(versions))


def _sha256(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if _SHA256_RE.match(value) else None


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:_MAX_TEXT]


def _safe_filename(filename: str) -> bool:
    """What a distribution filename may hold: it goes into URLs and storage keys as is."""
    return len(filename) <= 255 and _FILENAME_RE.match(filename) is not None


def name_candidates(filename: str) -> list[str]:
    """The normalized names a distribution filename may belong to.

    A wheel names its project before the first ``-``; an sdist (or an older format) may
    have ``-`` inside the name (``foo-bar-1.0.tar.gz``), so every prefix is a candidate."""
    stem = filename.split("-")
    if filename.endswith(".whl"):
        return [normalize(stem[0])]
    return [normalize("-".join(stem[:i])) for i in range(1, len(stem))]


def version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def as_project_page(page: UpstreamPage, files_prefix: str) -> ProjectPage:
    """The page as Packyard serves it: every file through Packyard's own file URL."""
    files = [
        IndexFile(
            filename=f.filename,
            url=f"{files_prefix}{f.sha256}/{f.filename}",
            sha256=f.sha256,
            requires_python=f.requires_python,
            yanked=f.yanked,
            yanked_reason=f.yanked_reason,
            size=f.size,
            upload_time=_moment(f.upload_time),
            metadata_sha256=f.metadata_sha256,
        )
        for f in page.files
    ]
    return ProjectPage(
        name=page.name,
        normalized_name=normalize(page.name),
        files=files,
        versions=list(page.versions),
    )


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
