"""Simple-repository pages (PEP 503, 691, 629, 700, 592, 658, 714): query once,
render to HTML or JSON.  Links are relative, so pages work behind any proxy prefix."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape

from packaging.version import InvalidVersion, Version
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.tokens import as_utc
from app.models import Package, PackageFile

API_VERSION = "1.1"
# Error files are never listed. Written as "not error" rather than IN (processing, default)
# so that planners reach files through the package, not through the unselective state index.
LISTED = PackageFile.state != "error"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    size: int | None  # None: unknown (an upstream page without PEP 700 fields)
    upload_time: datetime | None
    metadata_sha256: str | None


@dataclass(frozen=True)
class ProjectPage:
    name: str  # the newest spelling, for people (the HTML title)
    normalized_name: str  # PEP 691's "name"
    files: list[IndexFile]
    versions: list[str]


def root_names(session: Session, project_ids: Iterable[int]) -> list[tuple[str, str]]:
    """(display name, normalised name) of every package with a listed file."""
    rows = session.execute(
        select(Package.normalized_name, Package.name)
        .join(PackageFile, PackageFile.package_id == Package.id)
        .where(Package.project_id.in_(list(project_ids)), LISTED)
        .order_by(Package.normalized_name, Package.id.desc())
    ).all()
    names: dict[str, str] = {}
    for normalized, name in rows:
        names.setdefault(normalized, name)  # newest spelling wins
    return [(name, normalized) for normalized, name in names.items()]


def project_page(
    session: Session, project_ids: Iterable[int], normalized: str, files_prefix: str
) -> ProjectPage | None:
    """The files of one package across ``project_ids``; None when it has none.

    When two projects hold the same filename the newest upload wins.
    ``files_prefix`` is the relative path from the page to the files endpoint.
    """
    rows = session.execute(
        select(PackageFile, Package)
        .join(Package, PackageFile.package_id == Package.id)
        .where(
            Package.project_id.in_(list(project_ids)),
            Package.normalized_name == normalized,
            LISTED,
        )
        .order_by(PackageFile.id.desc())
    ).all()
    if not rows:
        return None
    files: dict[str, IndexFile] = {}
    versions: dict[str, str] = {}
    for package_file, package in rows:
        versions.setdefault(package.canonical_version, package.version)
        if package_file.filename in files:
            continue
        files[package_file.filename] = IndexFile(
            filename=package_file.filename,
            url=f"{files_prefix}{package_file.sha256}/{package_file.filename}",
            sha256=package_file.sha256,
            requires_python=package_file.requires_python,
            yanked=package.yanked,
            yanked_reason=package.yanked_reason,
            size=package_file.size,
            upload_time=as_utc(package_file.created_at),  # type: ignore[arg-type]
            metadata_sha256=served_metadata_sha256(package_file),
        )
    name = rows[0][1].name
    return ProjectPage(
        name=name,
        normalized_name=normalized,
        files=sorted(files.values(), key=lambda f: f.filename),
        versions=sorted(versions.values(), key=_version_key),
    )


def served_metadata_sha256(package_file: PackageFile) -> str | None:
    """PEP 658 metadata is served for wheels only: an sdist's PKG-INFO may declare fields
    ``Dynamic`` that its build computes, so installers must not trust it in place of a build."""
    if not package_file.filename.endswith(".whl"):
        return None
    return package_file.metadata_sha256


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _upload_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_root_html(title: str, names: list[tuple[str, str]]) -> str:
    links = "\n".join(
        f'    <a href="{escape(normalized)}/">{escape(name)}</a><br/>' for name, normalized in names
    )
    return _html_document(f"Simple index: {title}", links)


def render_root_json(names: list[tuple[str, str]]) -> str:
    return json.dumps(
        {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n, _ in names]},
        separators=(",", ":"),
    )


def render_project_html(page: ProjectPage) -> str:
    return _html_document(f"Links for {page.name}", "\n".join(map(_file_anchor, page.files)))


def _file_anchor(f: IndexFile) -> str:
    attributes = [f'href="{escape(f.url)}#sha256={f.sha256}"']
    if f.requires_python:
        attributes.append(f'data-requires-python="{escape(f.requires_python)}"')
    if f.yanked:
        attributes.append(f'data-yanked="{escape(f.yanked_reason or "")}"')
    if f.metadata_sha256:
        value = f"sha256={f.metadata_sha256}"
        attributes.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
    return f"    <a {' '.join(attributes)}>{escape(f.filename)}</a><br/>"


def render_project_json(page: ProjectPage) -> str:
    # PEP 700 (1.1) makes size mandatory: a page with a file of unknown size says 1.0.
    version = API_VERSION if all(f.size is not None for f in page.files) else "1.0"
    return json.dumps(
        {
            "meta": {"api-version": version},
            "name": page.normalized_name,
            "versions": page.versions,
            "files": [_file_json(f) for f in page.files],
        },
        separators=(",", ":"),
    )


def _file_json(f: IndexFile) -> dict[str, object]:
    metadata: dict[str, str] | bool = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
    data: dict[str, object] = {
        "filename": f.filename,
        "url": f.url,
        "hashes": {"sha256": f.sha256},
        "requires-python": f.requires_python,
        "yanked": (f.yanked_reason or True) if f.yanked else False,
        "size": f.size,
        "upload-time": _upload_time(f.upload_time) if f.upload_time else None,
        "core-metadata": metadata,
        # PEP 714 keeps the old key for older clients; the contract also names the HTML one.
        "dist-info-metadata": metadata,
        "data-dist-info-metadata": metadata,
    }
    # Unknown PEP 700 fields are left out rather than sent as null.
    for key in ("size", "upload-time"):
        if data[key] is None:
            del data[key]
    return data


def _html_document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )
