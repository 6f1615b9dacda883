"""The duplicate policy: may a filename already in a project be uploaded again?

GitLab's namespace package settings, by their names: ``pypi_duplicates_allowed`` (default
false) and ``pypi_duplicate_exception_regex``: a package whose name or version the regex
finds (``re.search``) is the exception, re-uploadable when duplicates are refused and not
when they are allowed.  Each is set on a project or a group, null inheriting from the
nearest group that sets it; an empty regex inherits too (``(?!)`` matches nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.domain.errors import InvalidInput
from app.models import Group, Project

MAX_REGEX = 255


@dataclass(frozen=True)
class DuplicatePolicy:
    allowed: bool = False
    exception_regex: str | None = None

    def allows(self, name: str, version: str) -> bool:
        """Whether a file of this release may replace one of the same filename."""
        if not self.exception_regex:
            return self.allowed
        pattern = re.compile(self.exception_regex)
        excepted = any(pattern.search(text) for text in (name, version))
        return self.allowed != excepted


def duplicate_policy(session: Session, project: Project) -> DuplicatePolicy:
    """The project's settings, each completed from the nearest group that sets it."""
    allowed, regex = project.pypi_duplicates_allowed, project.pypi_duplicate_exception_regex
    group: Group | None = project.group
    seen: set[int] = set()
    while group is not None and group.id not in seen and (allowed is None or regex is None):
        seen.add(group.id)
        allowed = group.pypi_duplicates_allowed if allowed is None else allowed
        regex = group.pypi_duplicate_exception_regex if regex is None else regex
        group = group.parent
    return DuplicatePolicy(bool(allowed), regex or None)


def parse_regex(setting: str, value: Any) -> str | None:
    """A Python regular expression, or None (inherit)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REGEX:
        raise InvalidInput(
            f"{setting} must be a regular expression of {MAX_REGEX} characters at most"
        )
    try:
        re.compile(value)
    except re.error as error:
        raise InvalidInput(f"{setting} is not a valid regular expression: {error}") from None
    return value
