"""The OpenAPI 3.1 document of the REST API, served at ``GET /api/v4/openapi.json``.

Maintained by hand next to the views. ``tests/test_openapi.py`` fails when a route under
/api/v4 is not documented here (or a documented one does not exist), and
``tests/test_openapi_fuzz.py`` drives every operation with schemathesis and checks the
answers against these schemas. The PyPI endpoints (``.../packages/pypi/...``) are left
out: their contract is PEP 503/691/694 and twine's upload protocol, not JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from app.web.api import bp

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
TIME = _nullable("string", format="date-time")
NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 255}
DESCRIPTION: Schema = _nullable(
    "string", maxLength=2000, description="Plain text; empty or null clears it"
)
VISIBILITY: Schema = {"type": "string", "enum": ["private", "internal", "public"]}
USER_STATE: Schema = {"type": "string", "enum": ["active", "blocked"]}
ACCESS_LEVEL: Schema = {"type": "integer", "enum": [10, 20, 30, 40, 50]}
PAT_SCOPES: Schema = {
    "type": "array",
    "items": {"type": "string", "enum": ["api", "read_api"]},
    "minItems": 1,
}
DEPLOY_SCOPES: Schema = {
    "type": "array",
    "items": {"type": "string", "enum": ["read_package_registry", "write_package_registry"]},
    "minItems": 1,
}
EXPIRES_AT: Schema = {
    "type": "string",
    "description": "A date (YYYY-MM-DD, midnight UTC) or an ISO 8601 time.",
    "anyOf": [{"format": "date"}, {"format": "date-time"}],
}
SIZE_SETTING = _nullable(
    "integer", minimum=0, description="Bytes; null inherits (the parent group, then the instance)"
)
UPSTREAM_MODE_SETTING: Schema = {
    "type": ["string", "null"],
    "enum": ["off", "redirect", "cache", None],
    "description": "For names no project holds or held: 404, 307 to the upstream, or the"
    " pull-through cache; null inherits (the parent group, then the instance)",
}
PATTERNS_SETTING: Schema = {
    "type": ["array", "null"],
    "items": {"type": "string", "pattern": r"^[A-Za-z0-9._*?\[\]!-]{1,255}$"},
    "maxItems": 200,
    "description": "fnmatch patterns on normalized names (stored normalized); they add up"
    " along the group chain. A string separated by commas or spaces is accepted too",
}
UPSTREAM_SETTINGS: dict[str, Schema] = {
    "upstream_mode": UPSTREAM_MODE_SETTING,
    "upstream_allow": {**PATTERNS_SETTING, "description": "Only matching names go upstream; "
                       + PATTERNS_SETTING["description"]},
    "upstream_deny": {**PATTERNS_SETTING, "description": "Matching names never go upstream; "
                      + PATTERNS_SETTING["description"]},
}  # fmt: skip
DUPLICATE_SETTINGS: dict[str, Schema] = {
    "pypi_duplicates_allowed": _nullable(
        "boolean", description="Whether a filename may be uploaded again, replacing its file;"
        " null inherits (the parent group, then false)"),
    "pypi_duplicate_exception_regex": _nullable(
        "string", maxLength=255, description="Python regular expression: a package whose name or"
        " version it finds is the exception to pypi_duplicates_allowed; null or empty inherits"),
}  # fmt: skip
PACKAGES_ENABLED: Schema = {
    "type": "boolean",
    "description": "false: uploads answer 403, the project's index 404, and its packages leave"
    " every group index (files are kept)",
}
PROTECTION_LEVEL: Schema = {
    "type": ["string", "null"],
    "enum": ["maintainer", "owner", "admin", None],
}
RETENTION_SETTINGS: dict[str, Schema] = {
    "retention_keep_n": _nullable(
        "integer", minimum=1, description="Retention: keep the newest N releases of each name; "
        "null inherits from the parent group"),
    "retention_prerelease_days": _nullable(
        "integer", minimum=0, description="Retention: remove pre-releases and dev releases "
        "older than this many days; null inherits from the parent group"),
}  # fmt: skip
UPLOAD_LIMIT_SETTING = _nullable(
    "integer", minimum=1, description="Bytes; null inherits (the parent group, then the instance)"
)

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"message": STRING}, ("message",)),
    "User": _object(
        {
            "id": INTEGER,
            "username": STRING,
            "name": STRING,
            "email": _nullable("string"),
            "state": USER_STATE,
            "is_admin": BOOLEAN,
            "created_at": TIME,
            "web_url": STRING,
        },
        ("id", "username", "is_admin"),
    ),
    "Group": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "path": STRING,
            "full_path": STRING,
            "full_name": STRING,
            "description": STRING,
            "parent_id": _nullable("integer"),
            "visibility": VISIBILITY,
            "created_at": TIME,
            "web_url": STRING,
            "max_upload_size": SIZE_SETTING,
            "storage_quota": SIZE_SETTING,
            "forwarding": _nullable(
                "boolean", description="Read from upstream_mode: false for off, else true"
            ),
            **UPSTREAM_SETTINGS,
            **DUPLICATE_SETTINGS,
            **RETENTION_SETTINGS,
        },
        ("id", "name", "path", "full_path", "visibility"),
    ),
    "Project": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "path": STRING,
            "path_with_namespace": STRING,
            "name_with_namespace": STRING,
            "description": STRING,
            "namespace": _object(
                {"id": INTEGER, "full_path": STRING, "kind": STRING}, ("id", "full_path")
            ),
            "visibility": VISIBILITY,
            "created_at": TIME,
            "web_url": STRING,
            "packages_enabled": PACKAGES_ENABLED,
            "max_upload_size": SIZE_SETTING,
            "storage_quota": SIZE_SETTING,
            **UPSTREAM_SETTINGS,
            **DUPLICATE_SETTINGS,
            **RETENTION_SETTINGS,
        },
        ("id", "name", "path", "path_with_namespace", "visibility"),
    ),
    "PackageProtectionRule": _object(
        {
            "id": INTEGER,
            "project_id": INTEGER,
            "package_name_pattern": STRING,
            "package_type": {"type": "string", "enum": ["pypi"]},
            "minimum_access_level_for_push": PROTECTION_LEVEL,
            "minimum_access_level_for_delete": PROTECTION_LEVEL,
        },
        ("id", "project_id", "package_name_pattern", "package_type"),
    ),
    "Member": _object(
        {
            "id": INTEGER,
            "username": STRING,
            "name": STRING,
            "access_level": ACCESS_LEVEL,
            "state": USER_STATE,
            "web_url": STRING,
            "membership_source": _object(
                {
                    "id": INTEGER,
                    "full_path": STRING,
                    "kind": {"type": "string", "enum": ["group", "project"]},
                },
                ("id", "full_path", "kind"),
            ),
        },
        ("id", "username", "access_level"),
    ),
    "PersonalAccessToken": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "revoked": BOOLEAN,
            "created_at": TIME,
            "scopes": {"type": "array", "items": STRING},
            "user_id": INTEGER,
            "last_used_at": TIME,
            "active": BOOLEAN,
            "expires_at": _nullable("string", format="date"),
            "token_prefix": STRING,
        },
        ("id", "name", "revoked", "scopes", "user_id", "active"),
    ),
    "NewPersonalAccessToken": {
        "allOf": [
            _ref("PersonalAccessToken"),
            _object({"token": {**STRING, "description": "The secret, shown once"}}, ("token",)),
        ]
    },
    "DeployToken": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "username": STRING,
            "expires_at": TIME,
            "scopes": {"type": "array", "items": STRING},
            "revoked": BOOLEAN,
            "expired": BOOLEAN,
            "token_prefix": STRING,
        },
        ("id", "name", "username", "scopes", "revoked", "expired"),
    ),
    "NewDeployToken": {
        "allOf": [
            _ref("DeployToken"),
            _object({"token": {**STRING, "description": "The secret, shown once"}}, ("token",)),
        ]
    },
    "JobToken": _object({"token": STRING, "expires_at": TIME}, ("token", "expires_at")),
    "TrustedPublisher": _object(
        {
            "id": INTEGER,
            "project_id": INTEGER,
            "issuer": STRING,
            "claims": {"type": "object", "additionalProperties": STRING},
            "created_at": TIME,
        },
        ("id", "project_id", "issuer", "claims", "created_at"),
    ),
    "Package": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "version": STRING,
            "package_type": {"type": "string", "enum": ["pypi"]},
            "status": {"type": "string", "enum": ["default", "processing", "error"]},
            "_links": _object(
                {"web_path": STRING, "delete_api_path": STRING}, ("web_path", "delete_api_path")
            ),
            "created_at": TIME,
            "last_downloaded_at": {
                **TIME,
                "description": "Current within DOWNLOAD_FLUSH_INTERVAL (default 5 s)",
            },
            "download_count": {**INTEGER, "description": "Downloads of the release's files"},
            "project_id": INTEGER,
            "project_path": STRING,
            "pipeline": {"type": "null"},
            "pipelines": {"type": "array", "maxItems": 0},
            "tags": {"type": "array", "maxItems": 0},
            "yanked": BOOLEAN,
            "yanked_reason": _nullable("string"),
            "protected": {**BOOLEAN, "description": "Never removed by a retention policy"},
        },
        ("id", "name", "version", "package_type", "status", "_links", "created_at", "yanked"),
    ),
    "PackageDetail": {
        "allOf": [
            _ref("Package"),
            _object(
                {
                    "versions": {
                        "type": "array",
                        "description": "The other versions of this package in the project",
                        "items": _object(
                            {"id": INTEGER, "version": STRING, "created_at": TIME},
                            ("id", "version"),
                        ),
                    }
                },
                ("versions",),
            ),
        ]
    },
    "PackageFile": _object(
        {
            "id": INTEGER,
            "package_id": INTEGER,
            "created_at": TIME,
            "file_name": STRING,
            "size": INTEGER,
            "file_md5": STRING,
            "file_sha1": {"type": "null"},
            "file_sha256": STRING,
            "status": {"type": "string", "enum": ["default", "processing", "error"]},
            "error_reason": _nullable(
                "string", description="Why processing refused the file; null unless status is error"
            ),
            "requires_python": _nullable("string"),
            "download_count": INTEGER,
            "last_downloaded_at": TIME,
            "pipelines": {"type": "array", "maxItems": 0},
        },
        ("id", "package_id", "file_name", "size", "file_sha256"),
    ),
    "RetentionRemoval": {
        "allOf": [
            _ref("Package"),
            _object({"retention_reason": STRING}, ("retention_reason",)),
        ]
    },
    "Hook": _object(
        {
            "id": INTEGER,
            "url": STRING,
            "project_id": INTEGER,
            "group_id": INTEGER,
            "created_at": TIME,
            "package_events": BOOLEAN,
            "enable_ssl_verification": BOOLEAN,
            "token_set": {
                **BOOLEAN,
                "description": "Whether bodies are signed (the token is never shown)",
            },
            "push_events": BOOLEAN,
            "tag_push_events": BOOLEAN,
            "merge_requests_events": BOOLEAN,
        },
        ("id", "url", "package_events"),
    ),
    "HookEvent": _object(
        {
            "id": INTEGER,
            "hook_id": INTEGER,
            "trigger": {
                "type": "string",
                "enum": [
                    "package_published",
                    "package_processed",
                    "package_failed",
                    "package_yanked",
                    "package_deleted",
                ],
            },
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": INTEGER,
            "created_at": TIME,
            "request_data": {"type": "object", "description": "The body sent (and resent)"},
            "response_status": _nullable("integer"),
            "execution_duration": _nullable("number"),
            "deliveries": {
                "type": "array",
                "items": _object(
                    {
                        "id": INTEGER,
                        "status": {"type": "string", "enum": ["succeeded", "failed"]},
                        "response_status": _nullable("integer"),
                        "execution_duration": {"type": "number"},
                        "error": _nullable("string"),
                        "created_at": TIME,
                    },
                    ("id", "status"),
                ),
            },
        },
        ("id", "hook_id", "trigger", "state", "attempts"),
    ),
    "ReservedName": _object(
        {
            "name": {**STRING, "description": "The normalized name (PEP 503)"},
            "created_at": TIME,
            "published": {**BOOLEAN, "description": "Whether a project holds a release of it"},
        },
        ("name", "created_at", "published"),
    ),
    "AuditEvent": _object(
        {
            "id": INTEGER,
            "author_id": _nullable("integer"),
            "entity_id": _nullable("integer"),
            "entity_type": {"type": "string", "enum": ["User", "Group", "Project", "Instance"]},
            "event_name": STRING,
            "details": _object(
                {
                    "author_name": STRING,
                    "custom_message": STRING,
                    "target_id": _nullable("integer"),
                    "target_type": STRING,
                    "target_details": _nullable("string"),
                    "entity_path": _nullable("string"),
                },
                ("author_name", "target_type"),
            ),
            "created_at": TIME,
        },
        ("id", "entity_type", "event_name", "details", "created_at"),
    ),
    "UpstreamFile": _object(
        {
            "id": INTEGER,
            "name": {**STRING, "description": "The normalized project name"},
            "filename": STRING,
            "sha256": STRING,
            "size": _nullable("integer"),
            "stored": BOOLEAN,
            "url": {**STRING, "description": "Where the upstream serves it"},
            "requested_by": _nullable("string", description="The index that first asked"),
            "created_at": {**TIME, "description": "First asked for"},
            "fetched_at": {**TIME, "description": "Fetched and stored"},
            "last_used_at": TIME,
            "hit_count": {**INTEGER, "description": "Answers from storage"},
            "failures": INTEGER,
            "last_error": _nullable("string"),
        },
        ("id", "name", "filename", "sha256", "stored", "hit_count", "failures"),
    ),
    "UpstreamProject": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "missing_upstream": {**BOOLEAN, "description": "The upstream answered 404"},
            "fetched_at": TIME,
            "last_used_at": TIME,
            "failures": INTEGER,
            "last_error": _nullable("string"),
            "stored_files": INTEGER,
            "stored_bytes": INTEGER,
        },
        ("id", "name", "missing_upstream", "stored_files", "stored_bytes"),
    ),
    "UpstreamPurge": _object(
        {"files": INTEGER, "pages": INTEGER, "bytes": INTEGER}, ("files", "pages", "bytes")
    ),
}

SECURITY = [{"PrivateToken": []}, {"BearerToken": []}, {"BasicAuth": []}, {"JobToken": []}]
ERRORS = {
    400: "Invalid parameters",
    401: "No or bad credentials (with `WWW-Authenticate: Basic`)",
    403: "Visible, but the caller may not do this",
    404: "No such resource, or not visible to the caller",
    409: "Already exists, or still in use",
}


def _param(name: str, where: str, schema: Schema, description: str = "", **extra: Any) -> Schema:
    param: Schema = {"name": name, "in": where, "schema": schema, **extra}
    if where == "path":
        param["required"] = True
    if description:
        param["description"] = description
    return param


NAMESPACE_ID = _param(
    "id", "path", {"type": "string", "minLength": 1, "examples": ["1", "team%2Flib"]},
    "The numeric ID or the URL-encoded full path (`team%2Flib`)",
)  # fmt: skip
PACKAGE_ID = _param("package_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
FILE_ID = _param("file_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
UPSTREAM_FILE_ID = _param("upstream_file_id", "path", {"type": "integer", "minimum": 1})
TOKEN_ID = _param("token_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
USER_ID = _param("user_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
EVENT_ID = _param("event_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
PAGINATION = [
    _param("page", "query", {"type": "integer", "minimum": 1, "default": 1}),
    _param(
        "per_page", "query", {"type": "integer", "minimum": 1, "default": 20},
        "Items per page; more than 100 is taken as 100",
    ),
]  # fmt: skip
PAGE_HEADERS = {
    name: {"description": description, "schema": STRING}
    for name, description in (
        ("X-Total", "Number of items"),
        ("X-Total-Pages", "Number of pages"),
        ("X-Page", "This page"),
        ("X-Per-Page", "Items per page"),
        ("X-Next-Page", "The next page, empty on the last"),
        ("X-Prev-Page", "The previous page, empty on the first"),
        ("Link", 'RFC 8288 links: rel="first", "last", "next", "prev"'),
    )
}
TIME_FILTERS = [
    _param("created_after", "query", STRING, "Events at or after this date or ISO 8601 time"),
    _param("created_before", "query", STRING, "Events at or before this date or ISO 8601 time"),
]


def _operation(
    summary: str,
    tag: str,
    *,
    ok: tuple[int, str, Schema | None],
    errors: tuple[int, ...] = (401, 403, 404),
    params: list[Schema] | None = None,
    body: Schema | None = None,
    paginated: bool = False,
    public: bool = False,
    description: str = "",
) -> Schema:
    status, what, schema = ok
    success: Schema = {"description": what}
    if schema is not None:
        success["content"] = {JSON: {"schema": schema}}
    if paginated:
        success["headers"] = PAGE_HEADERS
    responses: dict[str, Schema] = {str(status): success}
    for code in sorted({*errors, *([400] if body or paginated else [])}):
        responses[str(code)] = {
            "description": ERRORS[code],
            "content": {JSON: {"schema": _ref("Error")}},
        }
    responses["default"] = {
        "description": "Any other error",
        "content": {JSON: {"schema": _ref("Error")}},
    }
    operation: Schema = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        operation["description"] = description
    if params or paginated:
        operation["parameters"] = [*(params or []), *(PAGINATION if paginated else [])]
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if public:
        operation["security"] = [{}, *SECURITY]  # anonymous callers read public ones
    return operation


def _list_of(name: str) -> Schema:
    return {"type": "array", "items": _ref(name)}


def _no_content(what: str) -> tuple[int, str, None]:
    return (204, what, None)


PACKAGE_FILTERS = [
    _param("package_name", "query", STRING, "Part of the name (case-insensitive)"),
    _param("package_version", "query", STRING, "As written, or PEP 440 normalized (v1 is 1)"),
    _param(
        "package_type", "query",
        {"type": "string", "enum": ["conan", "maven", "npm", "pypi", "composer", "nuget", "helm",
                                    "terraform_module", "golang", "generic", "debian", "rubygems",
                                    "rpm", "ml_model", "cargo"]},
        "Only `pypi` matches anything here",
    ),
    _param(
        "status", "query",
        {"type": "string", "enum": ["default", "hidden", "processing", "error",
                                    "pending_destruction"]},
        "The status derived from the files: processing while any is, error when all are",
    ),
    _param("sort", "query", {"type": "string", "enum": ["asc", "desc"], "default": "asc"}),
    _param("include_versionless", "query", BOOLEAN, "Accepted; every PyPI package has a version"),
]  # fmt: skip
ORDER_BY = ["created_at", "name", "version", "type"]


def _package_paths() -> dict[str, Schema]:
    project_pkgs = "/projects/{id}/packages"
    package = project_pkgs + "/{package_id}"
    project_filters = [
        *PACKAGE_FILTERS,
        _param("order_by", "query", {"type": "string", "enum": ORDER_BY}),
    ]
    group_filters = [
        *PACKAGE_FILTERS,
        _param("order_by", "query", {"type": "string", "enum": [*ORDER_BY, "project_path"]}),
        _param("exclude_subgroups", "query", BOOLEAN),
    ]
    yank_body = _object({"reason": {"type": "string", "maxLength": 1000}})
    maintainer = "Needs the delete permission (maintainer)."
    return {
        project_pkgs: {
            "get": _operation(
                "List a project's packages", "packages", ok=(200, "Packages", _list_of("Package")),
                params=[NAMESPACE_ID, *project_filters], paginated=True, public=True,
            ),
        },
        "/groups/{id}/packages": {
            "get": _operation(
                "List the packages of a group's readable projects (and its subgroups')",
                "packages", ok=(200, "Packages", _list_of("Package")),
                params=[NAMESPACE_ID, *group_filters], paginated=True, public=True,
            ),
        },
        package: {
            "get": _operation(
                "Get a package", "packages", ok=(200, "The package", _ref("PackageDetail")),
                params=[NAMESPACE_ID, PACKAGE_ID], public=True,
            ),
            "delete": _operation(
                "Delete a package and its files", "packages",
                ok=_no_content("Deleted; stored files are removed by the worker"),
                params=[NAMESPACE_ID, PACKAGE_ID], description=maintainer,
            ),
        },
        package + "/package_files": {
            "get": _operation(
                "List a package's files", "packages", ok=(200, "Files", _list_of("PackageFile")),
                params=[
                    NAMESPACE_ID, PACKAGE_ID,
                    _param("order_by", "query",
                           {"type": "string", "enum": ["id", "file_name", "created_at"]}),
                    _param("sort", "query", {"type": "string", "enum": ["asc", "desc"]}),
                ],
                paginated=True, public=True,
            ),
        },
        package + "/package_files/{file_id}": {
            "delete": _operation(
                "Delete a package file", "packages", ok=_no_content("Deleted"),
                params=[NAMESPACE_ID, PACKAGE_ID, FILE_ID],
                description=maintainer + " A package left without files is deleted too; the"
                " filename may be uploaded again.",
            ),
        },
        package + "/yank": {
            "post": _operation(
                "Yank a release (PEP 592)", "packages", ok=(200, "Yanked", _ref("Package")),
                params=[NAMESPACE_ID, PACKAGE_ID], body=yank_body,
                description=maintainer + " Every index marks its files yanked at once; they"
                " stay downloadable. Yanking again replaces the reason.",
            ),
        },
        package + "/protect": {
            "post": _operation(
                "Protect a release from retention policies", "packages",
                ok=(200, "Protected", _ref("Package")), params=[NAMESPACE_ID, PACKAGE_ID],
                description=maintainer,
            ),
        },
        package + "/unprotect": {
            "post": _operation(
                "Let retention policies remove a release again", "packages",
                ok=(200, "Not protected", _ref("Package")), params=[NAMESPACE_ID, PACKAGE_ID],
                description=maintainer,
            ),
        },
        project_pkgs + "/retention/preview": {
            "get": _operation(
                "What the project's retention policy would remove now (dry run)", "packages",
                ok=(200, "Releases", _list_of("RetentionRemoval")), params=[NAMESPACE_ID],
                paginated=True, description=maintainer,
            ),
        },
        "/groups/{id}/packages/retention/preview": {
            "get": _operation(
                "What the retention policies would remove in the group's projects (dry run)",
                "packages", ok=(200, "Releases", _list_of("RetentionRemoval")),
                params=[NAMESPACE_ID], paginated=True, description=maintainer,
            ),
        },
        package + "/unyank": {
            "post": _operation(
                "Unyank a release", "packages", ok=(200, "Not yanked", _ref("Package")),
                params=[NAMESPACE_ID, PACKAGE_ID], description=maintainer,
            ),
        },
    }  # fmt: skip


def _reserved_name_paths() -> dict[str, Schema]:
    never_forwarded = (
        "A name once published in the instance is never forwarded to the upstream index, even"
        " after its last release is deleted, until an admin releases it."
    )
    return {
        "/reserved_names": {
            "get": _operation(
                "List reserved names (admins)", "packages",
                ok=(200, "Reserved names, by name", _list_of("ReservedName")),
                errors=(401, 403), paginated=True, description=never_forwarded,
            ),
        },
        "/reserved_names/{name}": {
            "delete": _operation(
                "Release a reserved name (admins)", "packages",
                ok=_no_content("Released: the name may be forwarded upstream again"),
                errors=(401, 403, 404, 409),
                params=[_param("name", "path", {"type": "string", "minLength": 1,
                                                "examples": ["demo"]}, "Any spelling of the name")],
                description=never_forwarded + " Audited (`reserved_name_released`). 404 when"
                " the name is not reserved; 409 while a project still holds a release of it.",
            ),
        },
    }  # fmt: skip


def _token_paths() -> dict[str, Schema]:
    pat = "/personal_access_tokens"
    rotate_body = _object({"expires_at": EXPIRES_AT})
    rotated = (200, "The new token (the old one is revoked)", _ref("NewPersonalAccessToken"))
    deploy_body = _object(
        {"name": NAME, "scopes": DEPLOY_SCOPES, "username": NAME, "expires_at": EXPIRES_AT},
        ("name", "scopes"),
    )
    paths: dict[str, Schema] = {
        pat: {
            "get": _operation(
                "List personal access tokens (the caller's; an admin may pass user_id)", "tokens",
                ok=(200, "Tokens", _list_of("PersonalAccessToken")),
                params=[
                    _param("user_id", "query", {"type": "integer", "minimum": 1}),
                    _param("state", "query", {"type": "string", "enum": ["active", "inactive"]}),
                    _param("revoked", "query", BOOLEAN),
                    _param("search", "query", STRING, "Part of the name"),
                ],
                errors=(401, 403), paginated=True,
            ),
        },
        pat + "/self": {
            "get": _operation(
                "The token of this request", "tokens",
                ok=(200, "The token", _ref("PersonalAccessToken")),
            ),
            "delete": _operation(
                "Revoke the token of this request", "tokens", ok=_no_content("Revoked")
            ),
        },
        pat + "/self/rotate": {
            "post": _operation(
                "Rotate the token of this request", "tokens", ok=rotated, body=rotate_body,
            ),
        },
        pat + "/{token_id}": {
            "get": _operation(
                "Get a personal access token", "tokens",
                ok=(200, "The token", _ref("PersonalAccessToken")), params=[TOKEN_ID],
            ),
            "delete": _operation(
                "Revoke a personal access token", "tokens", ok=_no_content("Revoked"),
                params=[TOKEN_ID],
            ),
        },
        pat + "/{token_id}/rotate": {
            "post": _operation(
                "Rotate a personal access token (GitLab's rotate)", "tokens", ok=rotated,
                params=[TOKEN_ID], body=rotate_body,
                description="Revokes the token and returns a new one with the same name and"
                " scopes, expiring at `expires_at` (a week from now by default).",
            ),
        },
        "/users/{user_id}/personal_access_tokens": {
            "post": _operation(
                "Create a personal access token (for oneself, or anyone as an admin)", "tokens",
                ok=(201, "Created", _ref("NewPersonalAccessToken")), params=[USER_ID],
                body=_object(
                    {"name": NAME, "scopes": PAT_SCOPES, "expires_at": EXPIRES_AT},
                    ("name", "scopes"),
                ),
            ),
        },
        "/deploy_tokens": {
            "get": _operation(
                "List every deploy token (admins)", "tokens",
                ok=(200, "Deploy tokens", _list_of("DeployToken")),
                params=[_param("active", "query", BOOLEAN)], errors=(401, 403), paginated=True,
            ),
        },
    }  # fmt: skip
    for kind in ("projects", "groups"):
        base = f"/{kind}/{{id}}/deploy_tokens"
        paths[base] = {
            "get": _operation(
                f"List the deploy tokens of a {kind[:-1]} (maintainers)", "tokens",
                ok=(200, "Deploy tokens", _list_of("DeployToken")),
                params=[NAMESPACE_ID, _param("active", "query", BOOLEAN)], paginated=True,
            ),
            "post": _operation(
                f"Create a {kind[:-1]} deploy token (maintainers)", "tokens",
                ok=(201, "Created", _ref("NewDeployToken")), params=[NAMESPACE_ID],
                body=deploy_body,
            ),
        }  # fmt: skip
        paths[base + "/{token_id}"] = {
            "get": _operation(
                "Get a deploy token", "tokens", ok=(200, "The token", _ref("DeployToken")),
                params=[NAMESPACE_ID, TOKEN_ID],
            ),
            "delete": _operation(
                "Revoke a deploy token", "tokens", ok=_no_content("Revoked"),
                params=[NAMESPACE_ID, TOKEN_ID],
            ),
        }  # fmt: skip
    return paths


HOOK_ID = _param("hook_id", "path", {"type": "integer", "minimum": 1, "examples": [1]})
HOOK_BODY = _object({
    "url": {**STRING, "description": "An http(s) URL; loopback and private addresses too"},
    "token": {**STRING, "description": "Signs each body: X-Packyard-Signature-256"},
    "package_events": {**BOOLEAN, "default": True},
    "enable_ssl_verification": {**BOOLEAN, "default": True},
})  # fmt: skip


def _hook_paths() -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for kind in ("projects", "groups"):
        base, what = f"/{kind}/{{id}}/hooks", kind[:-1]
        one = base + "/{hook_id}"
        paths[base] = {
            "get": _operation(
                f"List the webhooks of a {what} (maintainers)",
                kind,
                ok=(200, "Hooks", _list_of("Hook")),
                params=[NAMESPACE_ID],
                paginated=True,
            ),
            "post": _operation(
                f"Add a webhook to a {what} (maintainers)",
                kind,
                ok=(201, "Created", _ref("Hook")),
                params=[NAMESPACE_ID],
                body={**HOOK_BODY, "required": ["url"]},
            ),
        }
        paths[one] = {
            "get": _operation(
                "Get a webhook",
                kind,
                ok=(200, "The hook", _ref("Hook")),
                params=[NAMESPACE_ID, HOOK_ID],
            ),
            "put": _operation(
                "Edit a webhook",
                kind,
                ok=(200, "The hook", _ref("Hook")),
                params=[NAMESPACE_ID, HOOK_ID],
                body=HOOK_BODY,
            ),
            "delete": _operation(
                "Delete a webhook", kind, ok=_no_content("Deleted"), params=[NAMESPACE_ID, HOOK_ID]
            ),
        }
        paths[one + "/events"] = {
            "get": _operation(
                "The webhook's events and delivery log, newest first",
                kind,
                ok=(200, "Events", _list_of("HookEvent")),
                params=[NAMESPACE_ID, HOOK_ID],
                paginated=True,
            ),
        }
        paths[one + "/events/{event_id}/resend"] = {
            "post": _operation(
                "Send an event again (queued for the workers)",
                kind,
                ok=(202, "Queued", _ref("HookEvent")),
                params=[NAMESPACE_ID, HOOK_ID, EVENT_ID],
            ),
        }
    return paths  # fmt: skip


def _namespace_paths() -> dict[str, Schema]:
    settings = {
        "max_upload_size": UPLOAD_LIMIT_SETTING,
        "storage_quota": SIZE_SETTING,
        "visibility": VISIBILITY,  # owners; never above the group's
        "name": NAME,
        "description": DESCRIPTION,
    }
    member_body = _object(
        {"user_id": {"type": "integer", "minimum": 1}, "access_level": ACCESS_LEVEL},
        ("user_id", "access_level"),
    )
    member = (201, "Added", _ref("Member"))
    return {
        "/groups": {
            "get": _operation(
                "List the groups the caller may see", "groups",
                ok=(200, "Groups", _list_of("Group")), errors=(401,), paginated=True, public=True,
            ),
            "post": _operation(
                "Create a group (a subgroup needs maintainer on the parent)", "groups",
                ok=(201, "Created", _ref("Group")), errors=(400, 401, 403, 404, 409),
                body=_object(
                    {"name": NAME, "path": STRING, "parent_id": {"type": "integer", "minimum": 1},
                     "visibility": VISIBILITY, "description": DESCRIPTION},
                    ("path",),
                ),
            ),
        },
        "/groups/{id}": {
            "get": _operation(
                "Get a group", "groups", ok=(200, "The group", _ref("Group")),
                params=[NAMESPACE_ID], public=True,
            ),
            "put": _operation(
                "Change a group's settings (maintainers; visibility: owners; limits and quotas: "
                "admins)", "groups",
                ok=(200, "The group", _ref("Group")), params=[NAMESPACE_ID],
                body=_object({**settings, **UPSTREAM_SETTINGS, **DUPLICATE_SETTINGS,
                              **RETENTION_SETTINGS,
                              "forwarding": _nullable(
                    "boolean", description="true: upstream_mode redirect (kept if cache);"
                    " false: off; null: inherit")}),
            ),
        },
        "/groups/{id}/subgroups": {
            "get": _operation(
                "List a group's visible subgroups", "groups",
                ok=(200, "Groups", _list_of("Group")), params=[NAMESPACE_ID], paginated=True,
                public=True,
            ),
        },
        "/groups/{id}/projects": {
            "get": _operation(
                "List a group's visible projects", "groups",
                ok=(200, "Projects", _list_of("Project")), params=[NAMESPACE_ID], paginated=True,
                public=True,
            ),
        },
        "/groups/{id}/members": {
            "post": _operation(
                "Add a member to a group (maintainers; only owners grant Owner)", "groups",
                ok=member,
                errors=(400, 401, 403, 404, 409), params=[NAMESPACE_ID], body=member_body,
            ),
        },
        "/projects": {
            "get": _operation(
                "List the projects the caller may see", "projects",
                ok=(200, "Projects", _list_of("Project")), errors=(401,), paginated=True,
                public=True,
            ),
            "post": _operation(
                "Create a project (maintainer on the namespace)", "projects",
                ok=(201, "Created", _ref("Project")), errors=(400, 401, 403, 404, 409),
                body=_object(
                    {"name": NAME, "path": STRING,
                     "namespace_id": {"type": "integer", "minimum": 1}, "visibility": VISIBILITY,
                     "description": DESCRIPTION},
                    ("namespace_id",),
                ),
            ),
        },
        "/projects/{id}": {
            "get": _operation(
                "Get a project", "projects", ok=(200, "The project", _ref("Project")),
                params=[NAMESPACE_ID], public=True,
            ),
            "put": _operation(
                "Change a project's settings (maintainers; visibility: owners; limits and "
                "quotas: admins)", "projects",
                ok=(200, "The project", _ref("Project")), params=[NAMESPACE_ID],
                body=_object({**settings, **UPSTREAM_SETTINGS, **DUPLICATE_SETTINGS,
                              **RETENTION_SETTINGS, "packages_enabled": PACKAGES_ENABLED}),
            ),
        },
        "/projects/{id}/members": {
            "post": _operation(
                "Add a member to a project (maintainers; only owners grant Owner)", "projects",
                ok=member,
                errors=(400, 401, 403, 404, 409), params=[NAMESPACE_ID], body=member_body,
            ),
        },
        "/projects/{id}/job_tokens": {
            "post": _operation(
                "Mint a CI job token for the project (developers)", "projects",
                ok=(201, "Created", _ref("JobToken")), params=[NAMESPACE_ID],
                body=_object({"expires_in": {"type": "integer", "minimum": 1,
                                             "maximum": 86400}}),
            ),
        },
    }  # fmt: skip


def _merged(*parts: dict[str, Schema]) -> dict[str, Schema]:
    """Paths from several parts, the operations of a path found in more than one combined."""
    paths: dict[str, Schema] = {}
    for part in parts:
        for path, operations in part.items():
            paths.setdefault(path, {}).update(operations)
    return paths


def _deletion_paths() -> dict[str, Schema]:
    """DELETE of groups and projects (owners): rows at once, stored files by the workers."""
    accepted = (202, "Accepted: deleted; the workers remove its stored files", _ref("Error"))
    return {
        "/groups/{id}": {
            "delete": _operation(
                "Delete a group with its subgroups, projects and packages (owners; refused "
                "while it holds anything the caller cannot see)",
                "groups",
                ok=accepted,
                params=[NAMESPACE_ID],
            ),
        },
        "/projects/{id}": {
            "delete": _operation(
                "Delete a project with its packages (owners)",
                "projects",
                ok=accepted,
                params=[NAMESPACE_ID],
            ),
        },
    }


def _member_paths() -> dict[str, Schema]:
    """GET, PUT and DELETE of members (POST is with the groups and projects)."""
    paths: dict[str, Schema] = {}
    for kind, tag in (("groups", "groups"), ("projects", "projects")):
        where = kind[:-1]
        paths[f"/{kind}/{{id}}/members"] = {
            "get": _operation(
                f"List the {where}'s own members",
                tag,
                ok=(200, "Members", _list_of("Member")),
                params=[NAMESPACE_ID],
                paginated=True,
            ),
        }
        paths[f"/{kind}/{{id}}/members/all"] = {
            "get": _operation(
                f"List the {where}'s members with those inherited from its groups (each once, "
                "with the highest role)",
                tag,
                ok=(200, "Members", _list_of("Member")),
                params=[NAMESPACE_ID],
                paginated=True,
            ),
        }
        paths[f"/{kind}/{{id}}/members/{{user_id}}"] = {
            "get": _operation(
                f"Get a member of the {where}",
                tag,
                ok=(200, "The member", _ref("Member")),
                params=[NAMESPACE_ID, USER_ID],
            ),
            "put": _operation(
                "Change a member's role (maintainers; never above your own role, nor for a "
                "member above it)",
                tag,
                ok=(200, "The member", _ref("Member")),
                errors=(400, 401, 403, 404),
                params=[NAMESPACE_ID, USER_ID],
                body=_object({"access_level": ACCESS_LEVEL}, ("access_level",)),
            ),
            "delete": _operation(
                "Remove a member (maintainers), or leave (your own user_id; any member); a group "
                "keeps at least one owner",
                tag,
                ok=_no_content("Removed"),
                params=[NAMESPACE_ID, USER_ID],
            ),
        }
    return paths


def _user_and_audit_paths() -> dict[str, Schema]:
    return {
        "/user": {
            "get": _operation(
                "The caller", "users", ok=(200, "The user", _ref("User")), errors=(401, 403)
            ),
        },
        "/users": {
            "post": _operation(
                "Create a user (admins)", "users", ok=(201, "Created", _ref("User")),
                errors=(400, 401, 403, 409),
                body=_object(
                    {"username": NAME, "email": STRING, "password": STRING, "admin": BOOLEAN},
                    ("username",),
                ),
            ),
            "get": _operation(
                "List users (admins)", "users", ok=(200, "Users", _list_of("User")),
                errors=(401, 403), paginated=True,
                params=[
                    _param("search", "query", STRING, "Part of the username or email"),
                    _param("state", "query", USER_STATE),
                ],
            ),
        },
        "/users/{user_id}": {
            "get": _operation(
                "Get a user (the email only for admins and the user)", "users",
                ok=(200, "The user", _ref("User")), params=[USER_ID],
            ),
            "put": _operation(
                "Edit a user (admins); a new password ends their sessions", "users",
                ok=(200, "The user", _ref("User")), errors=(400, 401, 403, 404, 409),
                params=[USER_ID],
                body=_object({"email": STRING, "password": STRING, "admin": BOOLEAN}, ()),
            ),
            "delete": _operation(
                "Delete a user (admins); their packages stay, attributed", "users",
                ok=_no_content("Deleted"), params=[USER_ID],
            ),
        },
        "/users/{user_id}/block": {
            "post": _operation(
                "Block a user (admins): their sessions and tokens stop working at once",
                "users", ok=(201, "Blocked", BOOLEAN), params=[USER_ID],
            ),
        },
        "/users/{user_id}/unblock": {
            "post": _operation(
                "Unblock a user (admins)", "users", ok=(201, "Unblocked", BOOLEAN),
                params=[USER_ID],
            ),
        },
        "/audit_events": {
            "get": _operation(
                "List audit events (admins), newest first", "audit",
                ok=(200, "Events", _list_of("AuditEvent")), errors=(401, 403),
                params=[
                    *TIME_FILTERS,
                    _param("entity_type", "query",
                           {"type": "string", "enum": ["User", "Group", "Project", "Instance"]}),
                    _param("entity_id", "query", {"type": "integer", "minimum": 1},
                           "Needs entity_type"),
                ],
                paginated=True,
            ),
        },
        "/audit_events/{event_id}": {
            "get": _operation(
                "Get an audit event (admins)", "audit", ok=(200, "The event", _ref("AuditEvent")),
                params=[EVENT_ID],
            ),
        },
        "/projects/{id}/audit_events": {
            "get": _operation(
                "List a project's audit events (maintainers)", "audit",
                ok=(200, "Events", _list_of("AuditEvent")), params=[NAMESPACE_ID, *TIME_FILTERS],
                paginated=True,
            ),
        },
        "/groups/{id}/audit_events": {
            "get": _operation(
                "List a group's audit events (owners)", "audit",
                ok=(200, "Events", _list_of("AuditEvent")), params=[NAMESPACE_ID, *TIME_FILTERS],
                paginated=True,
            ),
        },
        **_upstream_paths(),
        "/openapi.json": {
            "get": _operation(
                "This document", "meta", ok=(200, "OpenAPI 3.1", {"type": "object"}), errors=(),
                public=True,
            ),
        },
    }  # fmt: skip


def _upstream_paths() -> dict[str, Schema]:
    name = _param("name", "query", STRING, "A project name (normalized before matching)")
    return {
        "/upstream/files": {
            "get": _operation(
                "List the files the pull-through cache recorded (admins), last used first",
                "upstream", ok=(200, "Files", _list_of("UpstreamFile")), errors=(401, 403),
                params=[name], paginated=True,
            ),
            "delete": _operation(
                "Purge cached files and pages, of one name or all (admins; audited)", "upstream",
                ok=(200, "What was removed", _ref("UpstreamPurge")), errors=(401, 403),
                params=[name],
            ),
        },
        "/upstream/files/{upstream_file_id}": {
            "delete": _operation(
                "Purge one cached file (admins; audited)", "upstream",
                ok=_no_content("Removed"), params=[UPSTREAM_FILE_ID],
            ),
        },
        "/upstream/projects": {
            "get": _operation(
                "List the names whose upstream page is kept (admins), with stored files",
                "upstream", ok=(200, "Names", _list_of("UpstreamProject")), errors=(401, 403),
                params=[name], paginated=True,
            ),
        },
    }  # fmt: skip


def _protection_paths() -> dict[str, Schema]:
    """app/web/api/protection.py: GitLab's package protection rules."""
    rules = "/projects/{id}/packages/protection/rules"
    pattern = {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": r"^[A-Za-z0-9._*-]+$",
        "description": "Normalized names; * matches any run of characters",
    }
    fields = {
        "package_name_pattern": pattern,
        "package_type": {"type": "string", "enum": ["pypi"]},
        "minimum_access_level_for_push": PROTECTION_LEVEL,
        "minimum_access_level_for_delete": PROTECTION_LEVEL,
    }
    rule_id = _param("rule_id", "path", {"type": "integer", "minimum": 1})
    about = (
        "Maintainers. Uploads (push), and deletes and yanks (delete), of a matching name by"
        " a caller below the level answer 403 naming the rule; deploy tokens and trusted"
        " publishers count as developers, job tokens as their user."
    )
    return {
        rules: {
            "get": _operation(
                "List the project's package protection rules", "projects",
                ok=(200, "Rules", _list_of("PackageProtectionRule")), params=[NAMESPACE_ID],
                paginated=True, description=about,
            ),
            "post": _operation(
                "Add a package protection rule (one level at least)", "projects",
                ok=(201, "Created", _ref("PackageProtectionRule")), params=[NAMESPACE_ID],
                errors=(400, 401, 403, 404, 409), description=about,
                body=_object(fields, ("package_name_pattern", "package_type")),
            ),
        },
        rules + "/{rule_id}": {
            "patch": _operation(
                "Change a package protection rule", "projects",
                ok=(200, "The rule", _ref("PackageProtectionRule")),
                params=[NAMESPACE_ID, rule_id], errors=(400, 401, 403, 404, 409),
                body=_object(fields), description=about,
            ),
            "delete": _operation(
                "Delete a package protection rule", "projects", ok=_no_content("Deleted"),
                params=[NAMESPACE_ID, rule_id], description=about,
            ),
        },
    }  # fmt: skip


def _trusted_publisher_paths() -> dict[str, Schema]:
    """plugins/oidc_publishing.py: who may exchange a CI identity token (contract 9)."""
    publishers = "/projects/{id}/trusted_publishers"
    maintainer = "Maintainers, with a personal access token."
    claims = {"type": "object", "minProperties": 1, "maxProperties": 20,
              "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 255},
              "description": "Claim name to the value the token must carry; one of them "
                             "names the repository (project_path, repository, sub...)"}  # fmt: skip
    return {
        publishers: {
            "get": _operation(
                "List the project's trusted publishers", "projects",
                ok=(200, "Publishers", _list_of("TrustedPublisher")), params=[NAMESPACE_ID],
                description=maintainer,
            ),
            "post": _operation(
                "Add a trusted publisher: an issuer and the claims its tokens must carry",
                "projects", ok=(201, "Created", _ref("TrustedPublisher")),
                params=[NAMESPACE_ID], description=maintainer,
                body=_object({"issuer": {"type": "string", "format": "uri"}, "claims": claims},
                             ("issuer", "claims")),
            ),
        },
        publishers + "/{publisher_id}": {
            "delete": _operation(
                "Remove a trusted publisher", "projects", ok=_no_content("Removed"),
                params=[NAMESPACE_ID, _param("publisher_id", "path",
                                             {"type": "integer", "minimum": 1})],
                description=maintainer,
            ),
        },
    }  # fmt: skip


def document() -> Schema:
    """The whole document; paths are relative to the server URL ``/api/v4``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Packyard REST API",
            "version": "4",
            "description": (
                "GitLab-shaped REST API of Packyard, a private Python package registry. "
                "Parameters may be sent as JSON, form fields or the query string. Errors "
                'answer `{"message": ...}`. Lists are paginated as GitLab does (`page`, '
                "`per_page`, `X-Total`... and a `Link` header). Anonymous callers read public "
                "projects and groups only; for anything else they get 401 with a Basic "
                "challenge, whether it exists or not."
            ),
        },
        "servers": [{"url": "/api/v4"}],
        "security": SECURITY,
        "tags": [
            {"name": name}
            for name in (
                "packages",
                "tokens",
                "groups",
                "projects",
                "users",
                "audit",
                "upstream",
                "meta",
            )
        ],
        "paths": {
            **_package_paths(),
            **_reserved_name_paths(),
            **_token_paths(),
            **_merged(_namespace_paths(), _member_paths(), _deletion_paths(), _hook_paths()),
            **_user_and_audit_paths(),
            **_trusted_publisher_paths(),
            **_protection_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "PrivateToken": {"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN"},
                "JobToken": {"type": "apiKey", "in": "header", "name": "JOB-TOKEN"},
                "BearerToken": {"type": "http", "scheme": "bearer"},
                "BasicAuth": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Any username; a token as the password",
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(document())
