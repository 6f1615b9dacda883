"""Package names, versions and distribution filenames (PEP 503, 440, 491, 625)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from app.domain.errors import InvalidFilename, InvalidInput

# PEP 508 / core metadata "Name" rule.
# ASCII only: with IGNORECASE alone, [A-Z] also matches U+017F, U+0131 and U+212A (Kelvin).
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE | re.ASCII)
SDIST_SUFFIXES = (".tar.gz", ".zip")


def normalize(name: str) -> str:
    """PEP 503 normalised form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_RE.match(name) or len(name) > 255:
        raise InvalidInput(f"Invalid package name: {name!r}")
    return name


def parse_version(version: str) -> Version:
    try:
        if len(version or "") > 255:
            raise InvalidVersion(version)
        return Version((version or "").strip())
    except InvalidVersion:
        raise InvalidInput(f"Invalid version: {version!r} is not a PEP 440 version") from None


def release_key(version: Version) -> str:
    """One key per PEP 440 version: versions that compare equal (``6.0``, ``6.0.0``,
    ``6``, ``v6.0``) share it, so they are one release."""
    return canonicalize_version(version, strip_trailing_zero=True)


@dataclass(frozen=True)
class DistFilename:
    filename: str
    name: str  # normalised
    version: Version
    kind: str  # "bdist_wheel" or "sdist"


def parse_filename(filename: str) -> DistFilename:
    """Validate a distribution filename and read its name and version."""
    if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
        raise InvalidFilename(f"Invalid filename: {filename!r}")
    if len(filename) > 255 or any(ord(c) < 32 for c in filename):
        raise InvalidFilename(f"Invalid filename: {filename!r}")
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return DistFilename(filename, str(name), version, "bdist_wheel")
        if filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return DistFilename(filename, str(name), version, "sdist")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidFilename(f"Invalid filename: {exc}") from None
    raise InvalidFilename(f"Invalid filename: {filename!r} (accepted: .whl, .tar.gz, .zip)")


def check_filename_matches(dist: DistFilename, name: str, version: Version) -> None:
    """The filename must name the same project and version as the upload form."""
    if canonicalize_name(dist.name) != canonicalize_name(name):
        raise InvalidFilename(
            f"Invalid filename: {dist.filename!r} does not match the package name {name!r}"
        )
    if dist.version != version:
        raise InvalidFilename(
            f"Invalid filename: {dist.filename!r} does not match the version {version}"
        )


REQUIRES_PYTHON_MAX = 255  # the size of package_files.requires_python


def validate_requires_python(value: str | None) -> str | None:
    """A PEP 440 specifier set (``>=3.9,<4``), or None when empty."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > REQUIRES_PYTHON_MAX:
        raise InvalidInput(f"Invalid requires_python: longer than {REQUIRES_PYTHON_MAX} characters")
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise InvalidInput(
            f"Invalid requires_python: {value!r} is not a version specifier"
        ) from None
    return value
