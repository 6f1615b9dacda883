"""Package protection rules of a project, GitLab's shapes (``app.domain.protection``).

Maintainers list and manage them, as in GitLab."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from app.domain.errors import NotFound
from app.domain.protection import create_rule, delete_rule, find_rule, rules_query, update_rule
from app.extensions import db
from app.models import PackageProtectionRule, Project
from app.web.api import bp
from app.web.api.common import api_user, body, paginate
from app.web.auth import current_identity
from app.web.loaders import project_for

RULES = "/projects/<ref:project_ref>/packages/protection/rules"


@bp.get(RULES)
def list_protection_rules(project_ref: str) -> Response:
    project, _ = project_for(project_ref, "manage")
    return paginate(rules_query(project), rule_json)


@bp.post(RULES)
def post_protection_rule(project_ref: str) -> tuple[Response, int]:
    api_user(write=True)
    project, _ = project_for(project_ref, "manage")
    rule = create_rule(db.session, project, body(), current_identity())
    return jsonify(rule_json(rule)), 201


@bp.patch(RULES + "/<int:rule_id>")
def patch_protection_rule(project_ref: str, rule_id: int) -> Response:
    api_user(write=True)
    project, rule = _rule(project_ref, rule_id)
    update_rule(db.session, project, rule, body(), current_identity())
    return jsonify(rule_json(rule))


@bp.delete(RULES + "/<int:rule_id>")
def delete_protection_rule(project_ref: str, rule_id: int) -> tuple[str, int]:
    api_user(write=True)
    project, rule = _rule(project_ref, rule_id)
    delete_rule(db.session, project, rule, current_identity())
    return "", 204


def _rule(project_ref: str, rule_id: int) -> tuple[Project, PackageProtectionRule]:
    project, _ = project_for(project_ref, "manage")
    rule = find_rule(db.session, project, rule_id)
    if rule is None:
        raise NotFound("404 Package Protection Rule Not Found")
    return project, rule


def rule_json(rule: PackageProtectionRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "project_id": rule.project_id,
        "package_name_pattern": rule.package_name_pattern,
        "package_type": rule.package_type,
        "minimum_access_level_for_push": rule.minimum_access_level_for_push,
        "minimum_access_level_for_delete": rule.minimum_access_level_for_delete,
    }
