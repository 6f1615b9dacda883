"""Names: of packages, versions and distribution filenames (PEP 503, 440, 491, 625), and
of accounts and namespaces (usernames, emails, group and project paths, as GitLab's)."""

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


# Usernames and group and project paths, as GitLab allows them: letters, digits, '_', '-'
# and '.'; a letter or digit first and last; never two special characters in a row.
_PATH_RE = re.compile(r"[A-Za-z0-9](?:[._-]?[A-Za-z0-9])*", re.ASCII)
MAX_PATH = 255
PATH_RULE = (
    "can contain only letters, digits, '_', '-' and '.', must start and end with a letter "
    "or digit, may not have two special characters in a row, and may not end in '.git' "
    "or '.atom'"
)

# First segments of the URLs the app routes at "/" (tests/test_namespace_rules.py checks
# the URL map against it): a top-level group or a user of that name would be shadowed.
APP_TOP_LEVEL_ROUTES = frozenset({"-", "_", "api", "static", "users"})
# GitLab's top-level routes that a GitLab user or client may expect here too; reserving
# them keeps paths portable between Packyard and GitLab, and the web pages free to grow.
GITLAB_TOP_LEVEL_ROUTES = frozenset(
    {".well-known", "admin", "assets", "dashboard", "explore", "favicon.ico", "groups",
     "health", "health_check", "help", "oauth", "profile", "projects", "public",
     "robots.txt", "s", "search", "snippets", "u", "uploads", "v2"}
)  # fmt: skip
RESERVED_TOP_LEVEL = APP_TOP_LEVEL_ROUTES | GITLAB_TOP_LEVEL_ROUTES


def validate_path(path: object, what: str = "path") -> str:
    """A username or group or project path that follows GitLab's character rules."""
    if (
        not isinstance(path, str)
        or len(path) > MAX_PATH
        or not _PATH_RE.fullmatch(path)
        or path.lower().endswith((".git", ".atom"))
    ):
        raise InvalidInput(f"{what} is invalid: {path!r} {PATH_RULE}")
    return path


def validate_top_level(path: object, what: str = "path") -> str:
    """A username or top-level group path: a valid path that no top-level URL uses."""
    path = validate_path(path, what)
    if path.lower() in RESERVED_TOP_LEVEL:
        raise InvalidInput(f"{what} is reserved: {path!r} is a top-level route")
    return path


# local@domain.tld: RFC 5322 "atext" in dot-separated runs, then a DNS host name whose
# last label is a top-level domain (letters, or an IDNA "xn--" label).
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})",
    re.ASCII,
)
MAX_EMAIL = 254  # RFC 5321's longest forward path, less its angle brackets
MAX_EMAIL_LOCAL = 64


def validate_email(email: object) -> str:
    """An email address of the form local@domain.tld, stripped of surrounding blanks."""
    text = email.strip() if isinstance(email, str) else ""
    local = text.rpartition("@")[0]
    if len(text) > MAX_EMAIL or len(local) > MAX_EMAIL_LOCAL or not _EMAIL_RE.fullmatch(text):
        raise InvalidInput(f"email is invalid: {email!r} is not an address like name@example.com")
    return text
