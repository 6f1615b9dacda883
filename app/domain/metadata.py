"""Core metadata of a stored distribution: located safely, parsed with pkginfo."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

import pkginfo

from app.domain.archives import (
    ArchiveLimits,
    UnsafeArchive,
    dist_info_metadata,
    read_tar_member,
    read_zip_member,
    top_level_file,
)
from app.domain.errors import InvalidInput
from app.domain.names import normalize, parse_version

# Every core metadata field, as pkginfo names it (Metadata-Version 1.0 to 2.5).
FIELDS = (
    "metadata_version", "name", "version", "summary", "description",
    "description_content_type", "keywords", "home_page", "download_url", "author",
    "author_email", "maintainer", "maintainer_email", "license", "license_expression",
    "license_file", "classifiers", "requires_dist", "requires_python", "requires_external",
    "provides_extras", "provides_dist", "obsoletes_dist", "project_urls", "platforms",
    "supported_platforms", "dynamic", "requires", "provides", "obsoletes",
)  # fmt: skip


class InvalidMetadata(InvalidInput):
    pass


@dataclass(frozen=True)
class CoreMetadata:
    raw: bytes
    fields: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def read_metadata_bytes(fh: BinaryIO, filename: str, limits: ArchiveLimits) -> bytes:
    if filename.endswith(".whl"):
        return read_zip_member(fh, dist_info_metadata, limits)[1]
    if filename.endswith(".zip"):
        return read_zip_member(fh, lambda n: top_level_file(n, "PKG-INFO"), limits)[1]
    if filename.endswith(".tar.gz"):
        return read_tar_member(fh, lambda n: top_level_file(n, "PKG-INFO"), limits)[1]
    raise UnsafeArchive(f"Unsupported archive type: {filename}")


def parse_metadata(raw: bytes) -> CoreMetadata:
    """Parse METADATA/PKG-INFO; non-UTF-8 text or an unknown major version is an error."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMetadata(f"Metadata is not valid UTF-8: {exc}") from None
    dist = pkginfo.Distribution()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist.parse(raw)
    version = dist.metadata_version or ""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) not in (1, 2):
        raise InvalidMetadata(f"Unsupported Metadata-Version: {version or 'missing'}")
    fields = {name: _plain(getattr(dist, name, None)) for name in FIELDS}
    return CoreMetadata(raw=raw, fields=fields)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def check_matches(meta: CoreMetadata, name: str, version: str) -> None:
    """The file's own name and version must be the ones it was uploaded as."""
    own_name = meta.fields.get("name") or ""
    own_version = meta.fields.get("version") or ""
    if normalize(own_name) != normalize(name):
        raise InvalidMetadata(f"Metadata name {own_name!r} does not match the upload {name!r}")
    try:
        same_version = parse_version(own_version) == parse_version(version)
    except InvalidInput:
        same_version = False
    if not same_version:
        raise InvalidMetadata(
            f"Metadata version {own_version!r} does not match the upload {version!r}"
        )
