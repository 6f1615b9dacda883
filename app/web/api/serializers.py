"""GitLab's JSON shapes for Packyard's rows."""

from __future__ import annotations

from typing import Any

from flask import request

from app.domain.tokens import is_expired
from app.models import DeployToken, Group, PersonalAccessToken, Project, User
from app.web.api.common import iso


def web_url(path: str) -> str:
    return request.host_url.rstrip("/") + "/" + path


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.username,
        "email": user.email,
        "state": user.state,
        "is_admin": user.is_admin,
        "created_at": iso(user.created_at),
        "web_url": web_url(user.username),
    }


def group_json(group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "path": group.path,
        "full_path": group.full_path,
        "full_name": group.full_path.replace("/", " / "),
        "description": group.description or "",  # GitLab's empty description is ""
        "parent_id": group.parent_id,
        "visibility": group.visibility,
        "created_at": iso(group.created_at),
        "web_url": web_url(group.full_path),
        # Own settings; null inherits (parent group, then the instance).
        "max_upload_size": group.max_upload_size,
        "storage_quota": group.storage_quota,
        "forwarding": group.forwarding,  # true for redirect and cache: see upstream_mode
        **upstream_settings_json(group),
        **duplicate_settings_json(group),
        **retention_settings_json(group),
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "path": project.path,
        "path_with_namespace": project.full_path,
        "name_with_namespace": project.full_path.replace("/", " / "),
        "description": project.description or "",
        "namespace": {
            "id": project.group_id,
            "full_path": project.full_path.rsplit("/", 1)[0],
            "kind": "group",
        },
        "visibility": project.visibility,
        "created_at": iso(project.created_at),
        "web_url": web_url(project.full_path),
        "packages_enabled": project.packages_enabled,
        "max_upload_size": project.max_upload_size,
        "storage_quota": project.storage_quota,
        **upstream_settings_json(project),
        **duplicate_settings_json(project),
        **retention_settings_json(project),
    }


def upstream_settings_json(target: Group | Project) -> dict[str, Any]:
    """Own settings (null inherits); the lists are normalized fnmatch patterns."""
    return {
        "upstream_mode": target.upstream_mode,
        "upstream_allow": target.upstream_allow,
        "upstream_deny": target.upstream_deny,
    }


def duplicate_settings_json(target: Group | Project) -> dict[str, Any]:
    """Own settings (null inherits): ``app.domain.duplicates``."""
    return {
        "pypi_duplicates_allowed": target.pypi_duplicates_allowed,
        "pypi_duplicate_exception_regex": target.pypi_duplicate_exception_regex,
    }


def retention_settings_json(target: Group | Project) -> dict[str, Any]:
    """Own retention settings (null inherits), app.domain.retention."""
    return {
        "retention_keep_n": target.retention_keep_n,
        "retention_prerelease_days": target.retention_prerelease_days,
    }


def personal_token_json(token: PersonalAccessToken, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": token.id,
        "name": token.name,
        "revoked": token.revoked,
        "created_at": iso(token.created_at),
        "scopes": token.scope_list,
        "user_id": token.user_id,
        "last_used_at": iso(token.last_used_at),
        "active": not token.revoked and not is_expired(token.expires_at),
        "expires_at": iso(token.expires_at)[:10] if token.expires_at else None,
        "token_prefix": token.token_prefix,
    }
    if secret is not None:
        data["token"] = secret
    return data


def deploy_token_json(token: DeployToken, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": token.id,
        "name": token.name,
        "username": token.username,
        "expires_at": iso(token.expires_at),
        "scopes": token.scope_list,
        "revoked": token.revoked,
        "expired": is_expired(token.expires_at),
        "token_prefix": token.token_prefix,
    }
    if secret is not None:
        data["token"] = secret
    return data


def member_json(
    user: User, access_level: int, source: Group | Project | None = None
) -> dict[str, Any]:
    """GitLab's member: the user, the role, and (for inherited listings) where it is held."""
    data: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "name": user.username,
        "state": user.state,
        "access_level": access_level,
        "web_url": web_url(user.username),
    }
    if source is not None:
        data["membership_source"] = source_json(source)
    return data


def source_json(source: Group | Project) -> dict[str, Any]:
    kind = "group" if isinstance(source, Group) else "project"
    return {"id": source.id, "full_path": source.full_path, "kind": kind}
