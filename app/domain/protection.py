"""Package protection rules, as GitLab's: names matching a pattern may only be pushed (or
deleted, or yanked) by callers at or above the rule's level.

Levels are GitLab's ``maintainer``, ``owner`` and ``admin`` (instance administrators).
Credentials without a user (deploy tokens, trusted publishers' tokens) count as
developers, as GitLab does not treat deploy tokens as maintainers: any rule holds them.
A job token counts as the user its job runs for.  Patterns match normalized names,
``*`` standing for any run of characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.access import DEVELOPER, MAINTAINER, OWNER, Access
from app.domain.audit import Actor, record
from app.domain.errors import Conflict, Forbidden, InvalidFilename, InvalidInput
from app.domain.identity import Identity
from app.domain.names import normalize, parse_filename
from app.domain.packages import PACKAGE_TYPE
from app.models import PackageProtectionRule, Project

ADMIN = 60  # above every role: only instance administrators
LEVELS = {"maintainer": MAINTAINER, "owner": OWNER, "admin": ADMIN}
PUSH, DELETE = "push", "delete"
MAX_PATTERN = 255
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*-]+$", re.ASCII)
_USERLESS = ("deploy_token", "trusted_publisher")


def caller_level(identity: Identity, access: Access) -> int:
    """The level a rule compares against: the role, ``ADMIN`` for administrators."""
    if identity.is_admin:
        return ADMIN
    if identity.kind in _USERLESS:
        return DEVELOPER
    return access.role


def check_not_protected(
    session: Session, project: Project, name: str, action: str, level: int
) -> None:
    """Raise 403 naming the first rule that guards ``action`` on ``name`` above ``level``."""
    for rule in _rules(session, project.id):
        required = getattr(rule, f"minimum_access_level_for_{action}")
        if required is None or LEVELS[required] <= level or not _matches(rule, name):
            continue
        raise Forbidden(
            f"403 Forbidden: Package protected. {normalize(name)} matches the protection rule"
            f" {rule.id} ({rule.package_name_pattern!r}): {action} needs {required} access"
        )


def check_push_not_protected(session: Session, project: Project, filename: str, level: int) -> None:
    """``check_not_protected`` for a push, by the package the filename names. Run as the
    file part begins, a refused push is not received. A filename that names no
    distribution passes: validation refuses it, and an upload is accepted only under the
    name its filename gives."""
    try:
        name = parse_filename(filename).name
    except InvalidFilename:
        return
    check_not_protected(session, project, name, PUSH, level)


def _rules(session: Session, project_id: int) -> list[PackageProtectionRule]:
    query = select(PackageProtectionRule).where(
        PackageProtectionRule.project_id == project_id,
        PackageProtectionRule.package_type == PACKAGE_TYPE,
    )
    return list(session.execute(query.order_by(PackageProtectionRule.id)).scalars())


def _matches(rule: PackageProtectionRule, name: str) -> bool:
    return pattern_regex(rule.package_name_pattern).fullmatch(normalize(name)) is not None


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``*`` is any run of characters; everything else is literal (normalized)."""
    parts = [re.escape(normalize(part)) if part else "" for part in pattern.split("*")]
    return re.compile(".*".join(parts))


def rules_query(project: Project) -> Any:
    return (
        select(PackageProtectionRule)
        .where(PackageProtectionRule.project_id == project.id)
        .order_by(PackageProtectionRule.id)
    )


def create_rule(
    session: Session, project: Project, params: Mapping[str, Any], actor: Actor
) -> PackageProtectionRule:
    fields = _parse(params, partial=False)
    rule = PackageProtectionRule(project_id=project.id, **fields)
    _check_guards_something(rule)
    session.add(rule)
    _save(session, project, rule, "package_protection_rule_created", fields, actor)
    return rule


def update_rule(
    session: Session,
    project: Project,
    rule: PackageProtectionRule,
    params: Mapping[str, Any],
    actor: Actor,
) -> None:
    fields = _parse(params, partial=True)
    changed = {name: value for name, value in fields.items() if getattr(rule, name) != value}
    for name, value in changed.items():
        setattr(rule, name, value)
    _check_guards_something(rule)
    _save(session, project, rule, "package_protection_rule_updated", changed, actor)


def delete_rule(
    session: Session, project: Project, rule: PackageProtectionRule, actor: Actor
) -> None:
    details = {"package_name_pattern": rule.package_name_pattern}
    record(session, actor, "package_protection_rule_deleted", project,
           "PackageProtectionRule", rule.id, project.full_path, details)  # fmt: skip
    session.delete(rule)
    session.commit()


def find_rule(session: Session, project: Project, rule_id: int) -> PackageProtectionRule | None:
    rule = session.get(PackageProtectionRule, rule_id)
    return rule if rule is not None and rule.project_id == project.id else None


def _save(
    session: Session,
    project: Project,
    rule: PackageProtectionRule,
    action: str,
    details: dict[str, Any],
    actor: Actor,
) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("409 Conflict: a rule with this package_name_pattern exists") from None
    record(session, actor, action, project, "PackageProtectionRule", rule.id,
           project.full_path, details)  # fmt: skip
    session.commit()


def _check_guards_something(rule: PackageProtectionRule) -> None:
    if rule.minimum_access_level_for_push is None and rule.minimum_access_level_for_delete is None:
        raise InvalidInput(
            "minimum_access_level_for_push, minimum_access_level_for_delete are missing,"
            " at least one parameter must be provided"
        )


def _parse(params: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate the given fields (all required ones unless ``partial``)."""
    parsed: dict[str, Any] = {}
    if "package_name_pattern" in params or not partial:
        parsed["package_name_pattern"] = _pattern(params.get("package_name_pattern"))
    if "package_type" in params or not partial:
        if params.get("package_type") != PACKAGE_TYPE:
            raise InvalidInput("package_type does not have a valid value (only pypi)")
        parsed["package_type"] = PACKAGE_TYPE
    for action in (PUSH, DELETE):
        key = f"minimum_access_level_for_{action}"
        if key in params:
            parsed[key] = _level(key, params[key])
    return parsed


def _pattern(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidInput("package_name_pattern is missing")
    if len(text) > MAX_PATTERN or not _PATTERN_RE.match(text):
        raise InvalidInput(
            f"package_name_pattern is invalid: letters, digits, '.', '_', '-' and '*'"
            f" wildcards, at most {MAX_PATTERN} characters"
        )
    return text


def _level(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in LEVELS:
        raise InvalidInput(f"{key} does not have a valid value ({', '.join(LEVELS)} or null)")
    return str(value)
