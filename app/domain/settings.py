"""Per-namespace settings set through the API: upload limit, storage quota, upstream,
visibility, name and description, the duplicate policy, and (projects) whether packages
are enabled.

``None`` (JSON null, or an empty form field) clears a setting: it inherits again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.domain.access import OWNER
from app.domain.audit import record
from app.domain.duplicates import parse_regex
from app.domain.errors import Forbidden, InvalidInput
from app.domain.identity import Identity
from app.domain.namespaces import (
    MAX_NAME,
    check_fits_group,
    check_holds_nothing_more_visible,
    parse_description,
)
from app.domain.upstream.policy import parse_mode, parse_patterns
from app.models import Group, Project
from app.models.namespaces import VISIBILITIES

_BIGINT_MAX = 2**63 - 1  # the columns are BIGINT
_INT_MAX = 2**31 - 1
Parser = Callable[[str, Any], Any]


def _size(minimum: int, unit: str = "bytes", maximum: int = _BIGINT_MAX) -> Parser:
    def parse(name: str, value: Any) -> int | None:
        if value is None or value == "":
            return None
        number = _integer(value)
        if number is None or not minimum <= number <= maximum:
            raise InvalidInput(f"{name} must be an integer of at least {minimum} ({unit}) or null")
        return number

    return parse


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):  # JSON true is not a size
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _flag(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    raise InvalidInput(f"{name} must be true, false or null")


def _switch(name: str, value: Any) -> bool:
    """A setting that is on or off, never inherited."""
    flag = _flag(name, value)
    if flag is None:
        raise InvalidInput(f"{name} must be true or false")
    return flag


def _visibility(name: str, value: Any) -> str:
    if value not in VISIBILITIES:
        raise InvalidInput(f"{name} must be one of {', '.join(VISIBILITIES)}")
    return str(value)


def _name(name: str, value: Any) -> str:
    """A display name: the path stays, so URLs and client settings keep working."""
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_NAME:
        raise InvalidInput(f"{name} is invalid (1 to {MAX_NAME} characters)")
    return text


# A zero upload limit would refuse every file: a quota of 0 is the way to freeze storage.
PROJECT_SETTINGS = {
    "max_upload_size": _size(1),
    "storage_quota": _size(0),
    "visibility": _visibility,
    "upstream_mode": parse_mode,
    "upstream_allow": parse_patterns,
    "upstream_deny": parse_patterns,
    "name": _name,
    "pypi_duplicates_allowed": _flag,
    "pypi_duplicate_exception_regex": parse_regex,
    "description": parse_description,
    # Retention (app.domain.retention): null inherits from the parent group.
    "retention_keep_n": _size(1, "releases of each name", _INT_MAX),
    "retention_prerelease_days": _size(0, "days", _INT_MAX),
}
# ``forwarding`` (true/false) is the older word for upstream_mode redirect/off.
GROUP_SETTINGS = {**PROJECT_SETTINGS, "forwarding": _flag}
PROJECT_SETTINGS["packages_enabled"] = _switch


# Limits protect the instance's disk: maintainers may not lift what an admin set.
ADMIN_ONLY = frozenset({"max_upload_size", "storage_quota"})


def update_settings(
    session: Session,
    target: Group | Project,
    params: Mapping[str, Any],
    actor: Identity,
    *,
    role: int = 0,
) -> None:
    """Validate every given setting first, then apply them all (or none), audit, commit.

    ``role`` is the actor's role on ``target``: changing its visibility takes an owner."""
    fields = GROUP_SETTINGS if isinstance(target, Group) else PROJECT_SETTINGS
    parsed = {name: parse(name, params[name]) for name, parse in fields.items() if name in params}
    if not actor.is_admin and ADMIN_ONLY & parsed.keys():
        raise Forbidden("403 Forbidden: only administrators set upload limits and storage quotas")
    _check_forwarding_agrees(parsed)
    changed = {name: value for name, value in parsed.items() if getattr(target, name) != value}
    if "visibility" in changed:
        _check_visibility_change(session, target, changed["visibility"], actor, role)
    for name, value in changed.items():
        setattr(target, name, value)
    if changed:
        kind = type(target).__name__
        record(
            session, actor, "settings_changed", target, kind, target.id, target.full_path, changed
        )
    session.commit()


def _check_visibility_change(
    session: Session, target: Group | Project, visibility: str, actor: Identity, role: int
) -> None:
    """As GitLab: owners change visibility, and nothing is more visible than its group."""
    if not actor.is_admin and role < OWNER:
        raise Forbidden("403 Forbidden: only owners change the visibility")
    if isinstance(target, Project):
        check_fits_group(session, target.group, visibility, f"project {target.full_path}")
        return
    if target.parent is not None:
        check_fits_group(session, target.parent, visibility, f"group {target.full_path}")
    check_holds_nothing_more_visible(session, target, visibility)


def _check_forwarding_agrees(parsed: dict[str, Any]) -> None:
    """``forwarding`` and ``upstream_mode`` together must say the same thing."""
    if "forwarding" not in parsed or "upstream_mode" not in parsed:
        return
    mode, forwarding = parsed["upstream_mode"], parsed.pop("forwarding")
    if forwarding != (None if mode is None else mode != "off"):
        raise InvalidInput("forwarding contradicts upstream_mode: give upstream_mode alone")
