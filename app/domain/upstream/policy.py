"""Which names may go to the upstream index, and how: the rules against dependency confusion.

An index's mode comes from its project (for a project index), then the nearest group up
the chain that sets one, then the instance (``PACKYARD_UPSTREAM_MODE``).  Whatever the
mode, a name never goes upstream, for any caller, when

1. any project of the instance holds it or ever held it (``exists_locally``), readable by
   the caller or not: its local page is the whole answer, never merged with the upstream's;
2. it matches an ``upstream_deny`` pattern set anywhere on the chain;
3. some level of the chain sets ``upstream_allow`` and the name matches none of its patterns.

Each level can only narrow what goes upstream: a subgroup cannot lift its parent's lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy.orm import Session

from app.config import UPSTREAM_MODES
from app.domain.errors import InvalidInput
from app.domain.forwarding import exists_locally
from app.domain.names import normalize, validate_name
from app.domain.namespaces import group_chain
from app.models import Group, Project

OFF, REDIRECT, CACHE = UPSTREAM_MODES
MAX_PATTERNS = 200
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?\[\]!-]{1,255}$", re.ASCII)


@dataclass(frozen=True)
class UpstreamPolicy:
    """What one index does with names it does not hold: plain values, safe to cache."""

    mode: str
    deny: tuple[str, ...] = ()
    allow: tuple[tuple[str, ...], ...] = ()  # one tuple per level that sets a list

    def admits(self, normalized: str) -> bool:
        """Whether the lists let ``normalized`` go upstream (rule 1 is checked apart)."""
        if any(fnmatchcase(normalized, pattern) for pattern in self.deny):
            return False
        return all(any(fnmatchcase(normalized, p) for p in patterns) for patterns in self.allow)


def policy_for(
    session: Session, group: Group, project: Project | None, instance_mode: str
) -> UpstreamPolicy:
    """The policy of a group index, or of a project index when ``project`` is given."""
    levels: list[Group | Project] = [project] if project is not None else []
    levels += group_chain(session, group)
    mode = next((level.upstream_mode for level in levels if level.upstream_mode), instance_mode)
    deny = tuple(p for level in levels for p in level.upstream_deny or ())
    allow = tuple(
        tuple(level.upstream_allow) for level in levels if level.upstream_allow is not None
    )
    return UpstreamPolicy(mode, deny, allow)


def mode_for_name(session: Session, policy: UpstreamPolicy, name: str) -> str:
    """The policy's mode for ``name``, or ``off`` when a rule keeps the name from upstream."""
    try:
        normalized = normalize(validate_name(name))
    except InvalidInput:
        return OFF  # not a distribution name: nothing upstream could serve
    if policy.mode == OFF or not policy.admits(normalized):
        return OFF
    if exists_locally(session, normalized):
        return OFF
    return policy.mode


# Parsing the settings (app.domain.settings) --------------------------------------------


def parse_mode(setting: str, value: Any) -> str | None:
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "null"):
        return None
    if text not in UPSTREAM_MODES:
        raise InvalidInput(f"{setting} must be one of {', '.join(UPSTREAM_MODES)} or null")
    return text


def parse_patterns(setting: str, value: Any) -> list[str] | None:
    """A list of fnmatch patterns (a JSON list, repeated ``name[]`` fields, or a string
    separated by commas or spaces), normalized as names are; null or "" clears it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    items = value if isinstance(value, list) else re.split(r"[\s,]+", str(value))
    patterns: list[str] = []
    for item in (str(item).strip() for item in items):
        if not item:
            continue
        if not _PATTERN_RE.match(item):
            raise InvalidInput(
                f"{setting}: {item!r} is not a name pattern (letters, digits, . _ - * ? [ ] !)"
            )
        pattern = normalize(item)
        if pattern not in patterns:
            patterns.append(pattern)
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"{setting} takes at most {MAX_PATTERNS} patterns")
    return patterns
