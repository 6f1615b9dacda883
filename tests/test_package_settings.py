"""Issue 18, through the Flask test client on SQLite and PostgreSQL: the Packages switch,
the duplicate policy (validation, inheritance, atomic replacement, exceptions), and
package protection rules (API validation and permissions, enforcement on upload, delete
and yank for users, job tokens and deploy tokens, and the settings page's forms)."""

from __future__ import annotations

import hashlib
import io

import pytest
from sqlalchemy import select

from app.domain.access import DEVELOPER, MAINTAINER, OWNER
from app.domain.accounts import create_job_token
from app.domain.duplicates import DuplicatePolicy
from app.domain.names import normalize
from app.domain.protection import pattern_regex
from app.extensions import db
from app.models import PackageFile, StorageDeletion
from tests.conftest import basic
from tests.dists import make_wheel, multipart_upload
from tests.test_manage_ui import post, signed_in
from tests.test_ui import text
from tests.test_uploads import MiB, assert_nothing_left, stored_files

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def team(registry):
    root = registry.user("root", admin=True)
    maintainer, developer, owner = (registry.user(n) for n in ("mia", "dev", "olga"))
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    project = registry.project(sub, "lib")
    other = registry.project(group, "other")
    registry.member(maintainer, MAINTAINER, group=group)
    registry.member(developer, DEVELOPER, group=group)
    registry.member(owner, OWNER, group=group)
    return {
        "group": group,
        "sub": sub,
        "project": project,
        "other": other,
        "admin": registry.token(root),
        "maintainer": registry.token(maintainer),
        "developer": registry.token(developer),
        "owner": registry.token(owner),
        "developer_user": developer,
        "maintainer_user": maintainer,
    }


def api(client, method: str, path: str, token: str, **data):
    return client.open(
        f"/api/v4{path}", method=method, json=data or None, headers={"PRIVATE-TOKEN": token}
    )


def page(client, path: str, token: str, name: str):
    return client.get(f"{path}/simple/{name}/", headers={**basic(token), "Accept": JSON})


def project_index(project_id: int) -> str:
    return f"/api/v4/projects/{project_id}/packages/pypi"


def group_index(group_id: int) -> str:
    return f"/api/v4/groups/{group_id}/-/packages/pypi"


# --- plain functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("acme-*", "acme-core", True),
        ("acme-*", "Acme_Core", True),  # names are compared normalized
        ("Acme.*", "acme-core", True),
        ("acme-*", "acme", False),
        ("acme-*", "my-acme-core", False),  # anchored at both ends
        ("*-internal", "billing_internal", True),
        ("acme", "acme", True),
        ("acme", "acmes", False),
        ("a*c*e", "a-b-c-d-e", True),
        ("*", "anything", True),
    ],
)
def test_rule_patterns_match_normalized_names_with_star_wildcards(pattern, name, matches):
    assert (pattern_regex(pattern).fullmatch(normalize(name)) is not None) == matches


@pytest.mark.parametrize(
    ("policy", "version", "allowed"),
    [
        (DuplicatePolicy(), "1.0", False),
        (DuplicatePolicy(allowed=True), "1.0", True),
        (DuplicatePolicy(False, r"\.dev\d+$"), "1.0.dev2", True),
        (DuplicatePolicy(False, r"\.dev\d+$"), "1.0", False),
        (DuplicatePolicy(True, r"\.dev\d+$"), "1.0.dev2", False),
        (DuplicatePolicy(True, r"\.dev\d+$"), "1.0", True),
        (DuplicatePolicy(False, "^scratch"), "1.0", True),  # the name matches
    ],
)
def test_the_exception_regex_is_searched_in_the_name_and_the_version(policy, version, allowed):
    assert policy.allows("scratch-pkg", version) is allowed


# --- packages_enabled ------------------------------------------------------------------


def test_disabling_packages_refuses_uploads_and_hides_the_indexes_until_enabled(
    registry, client, team
):
    project, admin = team["project"], team["admin"]
    wheel = make_wheel("switch-demo", "1.0")
    assert registry.upload(project, *wheel, token=admin).status_code == 201
    assert api(client, "GET", f"/projects/{project.id}", admin).json["packages_enabled"] is True
    listed = page(client, group_index(team["group"].id), admin, "switch-demo")
    assert listed.status_code == 200

    off = api(client, "PUT", f"/projects/{project.id}", team["maintainer"], packages_enabled=False)
    assert off.status_code == 200 and off.json["packages_enabled"] is False
    refused = registry.upload(project, *make_wheel("switch-demo", "2.0"), token=admin)
    assert refused.status_code == 403
    assert "packages are disabled" in refused.status and "packages are disabled" in refused.text
    assert page(client, project_index(project.id), admin, "switch-demo").status_code == 404
    root = client.get(f"{project_index(project.id)}/simple/", headers=basic(admin))
    assert root.status_code == 404
    sha = listed.json["files"][0]["hashes"]["sha256"]
    file_url = f"{project_index(project.id)}/files/{sha}/{wheel[0]}"
    assert client.get(file_url, headers=basic(admin)).status_code == 404
    assert page(client, group_index(team["group"].id), admin, "switch-demo").status_code == 404
    group_root = client.get(f"{group_index(team['group'].id)}/simple/", headers=basic(admin))
    assert "switch-demo" not in group_root.text
    assert len(stored_files(registry.app)) == 1  # the file is kept

    on = api(client, "PUT", f"/projects/{project.id}", team["maintainer"], packages_enabled=True)
    assert on.json["packages_enabled"] is True
    assert page(client, group_index(team["group"].id), admin, "switch-demo").status_code == 200
    assert client.get(file_url, headers=basic(admin)).data == wheel[1]
    events = api(client, "GET", f"/projects/{project.id}/audit_events", admin).json
    changes = [e["details"].get("packages_enabled") for e in events
               if e["event_name"] == "settings_changed"]  # fmt: skip
    assert changes == [True, False]  # newest first


def test_packages_enabled_is_true_or_false_and_only_maintainers_set_it(client, team):
    path = f"/projects/{team['project'].id}"
    for bad in (None, "maybe", 3):
        answer = api(client, "PUT", path, team["maintainer"], packages_enabled=bad)
        assert answer.status_code == 400, bad
    denied = api(client, "PUT", path, team["developer"], packages_enabled=False)
    assert denied.status_code == 403


# --- the duplicate policy --------------------------------------------------------------


def test_duplicate_settings_are_validated_and_shown(client, team):
    group_path, project_path = f"/groups/{team['group'].id}", f"/projects/{team['project'].id}"
    for path in (group_path, project_path):
        shown = api(client, "GET", path, team["admin"]).json
        assert shown["pypi_duplicates_allowed"] is None
        assert shown["pypi_duplicate_exception_regex"] is None
        bad = api(client, "PUT", path, team["maintainer"], pypi_duplicate_exception_regex="(")
        assert bad.status_code == 400 and "regular expression" in bad.json["message"]
        long = api(
            client, "PUT", path, team["maintainer"], pypi_duplicate_exception_regex="a" * 256
        )
        assert long.status_code == 400
        flag = api(client, "PUT", path, team["maintainer"], pypi_duplicates_allowed="sometimes")
        assert flag.status_code == 400
        ok = api(
            client,
            "PUT",
            path,
            team["maintainer"],
            pypi_duplicates_allowed=True,
            pypi_duplicate_exception_regex=r"\.dev\d+$",
        )
        assert ok.status_code == 200, ok.json
        assert ok.json["pypi_duplicates_allowed"] is True
        assert ok.json["pypi_duplicate_exception_regex"] == r"\.dev\d+$"


def test_an_allowed_reupload_replaces_the_file_atomically(registry, client, team):
    """Set on the top group, inherited through the subgroup; the new file has a new row and
    storage key, the old link answers 404, the old blob is queued for deletion, and the
    audit event keeps the old sha256."""
    project, admin = team["project"], team["admin"]
    filename, first = make_wheel("dup-demo", "1.0")
    _, second = make_wheel("dup-demo", "1.0", payload=b"second build")
    assert registry.upload(project, filename, first, token=admin).status_code == 201
    refused = registry.upload(project, filename, second, token=admin)
    assert refused.status_code == 400 and refused.status == f"400 File already exists: {filename}"

    api(client, "PUT", f"/groups/{team['group'].id}", admin, pypi_duplicates_allowed=True)
    old = db.session.execute(select(PackageFile)).scalar_one()
    old_id, old_key, old_sha = old.id, old.storage_key, old.sha256
    before = page(client, project_index(project.id), admin, "dup-demo")
    replaced = registry.upload(project, filename, second, token=admin)
    assert replaced.status_code == 201, replaced.status

    db.session.expire_all()
    new = db.session.execute(select(PackageFile)).scalar_one()
    assert new.storage_key != old_key  # (SQLite may reuse the id of the deleted row)
    assert new.sha256 == hashlib.sha256(second).hexdigest()
    after = page(client, project_index(project.id), admin, "dup-demo")
    assert after.json["files"][0]["hashes"]["sha256"] == new.sha256
    assert after.headers["ETag"] != before.headers["ETag"]
    base = f"{project_index(project.id)}/files"
    assert client.get(f"{base}/{old_sha}/{filename}", headers=basic(admin)).status_code == 404
    assert client.get(f"{base}/{new.sha256}/{filename}", headers=basic(admin)).data == second
    # The eager worker already removed the old blob; only the new one is left.
    assert [p.read_bytes() for p in stored_files(registry.app)] == [second]
    assert db.session.execute(select(StorageDeletion)).first() is None
    events = api(client, "GET", f"/projects/{project.id}/audit_events", admin).json
    uploaded = next(e for e in events if e["event_name"] == "package_file_uploaded")
    assert uploaded["details"]["replaced_sha256"] == old_sha
    assert uploaded["details"]["replaced_file_id"] == old_id


@pytest.mark.parametrize("allowed", [False, True])
def test_the_exception_regex_inverts_the_policy_for_matching_versions(
    registry, client, team, allowed
):
    project, admin = team["project"], team["admin"]
    api(
        client,
        "PUT",
        f"/projects/{project.id}",
        admin,
        pypi_duplicates_allowed=allowed,
        pypi_duplicate_exception_regex=r"\.dev\d+$",
    )
    answers = {}
    for version in ("1.0", "1.1.dev3"):
        filename, first = make_wheel("regex-demo", version)
        assert registry.upload(project, filename, first, token=admin).status_code == 201
        again = make_wheel("regex-demo", version, payload=b"rebuilt")[1]
        answers[version] = registry.upload(project, filename, again, token=admin).status_code
    assert answers == ({"1.0": 201, "1.1.dev3": 400} if allowed else {"1.0": 400, "1.1.dev3": 201})


def test_a_project_setting_overrides_its_groups(registry, client, team):
    project, admin = team["project"], team["admin"]
    api(client, "PUT", f"/groups/{team['sub'].id}", admin, pypi_duplicates_allowed=True)
    api(client, "PUT", f"/projects/{project.id}", admin, pypi_duplicates_allowed=False)
    filename, first = make_wheel("override-demo", "1.0")
    assert registry.upload(project, filename, first, token=admin).status_code == 201
    again = registry.upload(project, filename, first + b"", token=admin)
    assert again.status_code == 400
    api(client, "PUT", f"/projects/{project.id}", admin, pypi_duplicates_allowed=None)
    assert registry.upload(project, filename, first, token=admin).status_code == 201


# --- package protection rules: the API -------------------------------------------------


def rules_path(project) -> str:
    return f"/projects/{project.id}/packages/protection/rules"


def test_maintainers_create_list_change_and_delete_rules(client, team):
    path = rules_path(team["project"])
    acme = {"package_name_pattern": "acme-*", "package_type": "pypi"}
    created = api(client, "POST", path, team["maintainer"], **acme,
                  minimum_access_level_for_push="maintainer")  # fmt: skip
    assert created.status_code == 201, created.json
    rule = created.json
    assert rule == {
        "id": rule["id"],
        "project_id": team["project"].id,
        "package_name_pattern": "acme-*",
        "package_type": "pypi",
        "minimum_access_level_for_push": "maintainer",
        "minimum_access_level_for_delete": None,
    }
    listed = api(client, "GET", path, team["maintainer"])
    assert listed.json == [rule] and listed.headers["X-Total"] == "1"
    again = api(client, "POST", path, team["maintainer"], **acme,
                minimum_access_level_for_push="owner")  # fmt: skip
    assert again.status_code == 409

    changed = api(
        client,
        "PATCH",
        f"{path}/{rule['id']}",
        team["maintainer"],
        minimum_access_level_for_delete="owner",
    )
    assert changed.status_code == 200
    assert changed.json["minimum_access_level_for_delete"] == "owner"
    assert changed.json["minimum_access_level_for_push"] == "maintainer"
    emptied = api(
        client,
        "PATCH",
        f"{path}/{rule['id']}",
        team["maintainer"],
        minimum_access_level_for_push=None,
        minimum_access_level_for_delete=None,
    )
    assert emptied.status_code == 400  # a rule guards something

    other = rules_path(team["other"])
    assert api(client, "DELETE", f"{other}/{rule['id']}", team["admin"]).status_code == 404
    assert api(client, "DELETE", f"{path}/{rule['id']}", team["maintainer"]).status_code == 204
    assert api(client, "GET", path, team["maintainer"]).json == []
    events = api(client, "GET", f"/projects/{team['project'].id}/audit_events", team["admin"]).json
    names = {e["event_name"] for e in events}
    assert {
        "package_protection_rule_created",
        "package_protection_rule_updated",
        "package_protection_rule_deleted",
    } <= names


@pytest.mark.parametrize(
    "fields",
    [
        {
            "package_name_pattern": "acme-*",
            "package_type": "pypi",
            "minimum_access_level_for_push": "developer",
        },
        {
            "package_name_pattern": "acme-*",
            "package_type": "pypi",
            "minimum_access_level_for_delete": 40,
        },
        {
            "package_name_pattern": "acme-*",
            "package_type": "npm",
            "minimum_access_level_for_push": "owner",
        },
        {
            "package_name_pattern": "acme/*",
            "package_type": "pypi",
            "minimum_access_level_for_push": "owner",
        },
        {
            "package_name_pattern": "",
            "package_type": "pypi",
            "minimum_access_level_for_push": "owner",
        },
        {
            "package_name_pattern": "x" * 256,
            "package_type": "pypi",
            "minimum_access_level_for_push": "owner",
        },
        {"package_name_pattern": "acme-*", "package_type": "pypi"},
        {"package_name_pattern": "acme-*", "minimum_access_level_for_push": "owner"},
    ],
)
def test_invalid_rules_are_refused(client, team, fields):
    answer = api(client, "POST", rules_path(team["project"]), team["maintainer"], **fields)
    assert answer.status_code == 400, answer.json
    assert api(client, "GET", rules_path(team["project"]), team["maintainer"]).json == []


def test_developers_and_deploy_tokens_do_not_manage_rules(registry, client, team):
    path = rules_path(team["project"])
    fields = {
        "package_name_pattern": "a*",
        "package_type": "pypi",
        "minimum_access_level_for_push": "maintainer",
    }
    assert api(client, "GET", path, team["developer"]).status_code == 403
    assert api(client, "POST", path, team["developer"], **fields).status_code == 403
    deploy = registry.deploy_token(("write_package_registry",), project=team["project"])
    assert api(client, "POST", path, deploy, **fields).status_code == 403
    assert client.get(f"/api/v4{path}").status_code == 401


# --- package protection rules: enforcement ---------------------------------------------


def protect(client, team, pattern: str, **levels: str) -> int:
    answer = api(
        client,
        "POST",
        rules_path(team["project"]),
        team["maintainer"],
        package_name_pattern=pattern,
        package_type="pypi",
        **levels,
    )
    assert answer.status_code == 201, answer.json
    return int(answer.json["id"])


def test_pushing_a_protected_name_needs_the_rules_level(registry, client, team):
    project = team["project"]
    rule_id = protect(client, team, "acme-*", minimum_access_level_for_push="maintainer")
    protected = make_wheel("Acme_Core", "1.0")  # normalized: acme-core
    refused = registry.upload(project, *protected, token=team["developer"])
    assert refused.status_code == 403
    assert f"protection rule {rule_id}" in refused.status and "acme-core" in refused.text
    free = registry.upload(project, *make_wheel("other-pkg", "1.0"), token=team["developer"])
    assert free.status_code == 201
    assert registry.upload(project, *protected, token=team["maintainer"]).status_code == 201

    deploy = registry.deploy_token(("write_package_registry",), project=project)
    by_deploy = registry.upload(project, *make_wheel("acme-x", "1.0"), token=deploy)
    assert by_deploy.status_code == 403 and f"rule {rule_id}" in by_deploy.text
    assert registry.upload(project, *make_wheel("ok-x", "1.0"), token=deploy).status_code == 201

    _, dev_job = create_job_token(db.session, project, team["developer_user"].id, None)
    _, maintainer_job = create_job_token(db.session, project, team["maintainer_user"].id, None)
    job = make_wheel("acme-job", "1.0")
    by_dev_job = registry.upload(project, *job, token=None, headers={"JOB-TOKEN": dev_job})
    assert by_dev_job.status_code == 403
    by_job = registry.upload(project, *job, token=None, headers={"JOB-TOKEN": maintainer_job})
    assert by_job.status_code == 201


def test_a_protected_name_is_refused_before_its_file_is_received(registry, client, team):
    """The file part's name says which package it is: a push the rules refuse ends there,
    not after the whole file was received, hashed and stored."""
    project = team["project"]
    protect(client, team, "acme-*", minimum_access_level_for_push="maintainer")
    big = b"PK\x03\x04" + b"\x00" * (8 * MiB)
    body, content_type = multipart_upload("acme-core", "1.0", "acme_core-1.0-py3-none-any.whl", big)
    stream = io.BytesIO(body)
    refused = client.post(
        f"/api/v4/projects/{project.id}/packages/pypi",
        input_stream=stream,
        content_length=len(body),
        content_type=content_type,
        headers=basic(team["developer"]),
    )
    assert refused.status_code == 403 and "acme-core" in refused.text
    assert stream.tell() < MiB  # the server stopped reading at the file part's header
    assert_nothing_left(registry.app)


def test_deleting_and_yanking_a_protected_name_need_the_rules_level(registry, client, team):
    project = team["project"]
    assert (
        registry.upload(project, *make_wheel("acme-core", "1.0"), token=team["admin"]).status_code
        == 201
    )
    package_id = api(client, "GET", f"/projects/{project.id}/packages", team["admin"]).json[0]["id"]
    protect(client, team, "acme-*", minimum_access_level_for_delete="owner")
    package = f"/projects/{project.id}/packages/{package_id}"
    for token in ("maintainer", "developer"):
        yanked = api(client, "POST", f"{package}/yank", team[token])
        assert yanked.status_code == 403, token
    answer = api(client, "POST", f"{package}/yank", team["maintainer"])
    assert "Package protected" in answer.json["message"]
    assert api(client, "DELETE", package, team["maintainer"]).status_code == 403
    assert api(client, "POST", f"{package}/yank", team["owner"]).status_code == 200
    assert api(client, "DELETE", package, team["owner"]).status_code == 204


# --- the settings page -----------------------------------------------------------------


def rule_form(pattern: str, push: str, delete: str = "") -> dict[str, str]:
    return {"package_name_pattern": pattern, "minimum_access_level_for_push": push,
            "minimum_access_level_for_delete": delete}  # fmt: skip


def test_the_settings_page_manages_rules_and_package_settings(app, registry, team):
    settings = "/team/sub/lib/-/project_settings"
    rules = f"{settings}/protection_rules"
    browser = signed_in(app, "mia")
    shown = browser.get(settings)
    assert shown.status_code == 200 and "Package protection rules" in text(shown)
    assert post(browser, rules, rule_form("acme-*", "owner"), settings).status_code == 303
    listed = api(app.test_client(), "GET", rules_path(team["project"]), team["admin"]).json
    assert [(r["package_name_pattern"], r["minimum_access_level_for_push"]) for r in listed] == [
        ("acme-*", "owner")
    ]
    rule_id = listed[0]["id"]
    bad = post(browser, f"{rules}/{rule_id}", rule_form("acme-*", "guest"), settings)
    assert bad.status_code == 400 and "minimum_access_level_for_push" in text(bad)
    edited = post(browser, f"{rules}/{rule_id}", rule_form("acme-core", "maintainer", "admin"),
                  settings)  # fmt: skip
    assert edited.status_code == 303
    assert "acme-core" in text(browser.get(settings))
    no_csrf = browser.post(f"{settings}/protection_rules/{rule_id}/delete")
    assert no_csrf.status_code == 400
    removed = post(browser, f"{settings}/protection_rules/{rule_id}/delete", {}, settings)
    assert removed.status_code == 303
    assert api(app.test_client(), "GET", rules_path(team["project"]), team["admin"]).json == []

    saved = post(
        browser,
        settings,
        {
            "name": "Lib",
            "packages_enabled": "false",
            "pypi_duplicates_allowed": "true",
            "pypi_duplicate_exception_regex": r"^1\.0$",
        },
        settings,
    )
    assert saved.status_code == 303
    assert "Packages are disabled" in text(browser.get("/team/sub/lib/-/packages"))
    project = api(app.test_client(), "GET", f"/projects/{team['project'].id}", team["admin"]).json
    assert project["packages_enabled"] is False and project["pypi_duplicates_allowed"] is True
    assert project["pypi_duplicate_exception_regex"] == r"^1\.0$"
    dev_browser = signed_in(app, "dev")
    assert dev_browser.get(settings).status_code == 403
    refused = post(
        dev_browser,
        f"{settings}/protection_rules",
        {"package_name_pattern": "x*", "minimum_access_level_for_push": "owner"},
    )
    assert refused.status_code == 403


def test_a_download_whose_blob_was_removed_meanwhile_answers_404_not_500(registry, client, team):
    """The race a replacement leaves: a request found the old row just before the commit,
    and the worker removed its blob before the file was opened."""
    project, admin = team["project"], team["admin"]
    filename, content = make_wheel("gone-demo", "1.0")
    assert registry.upload(project, filename, content, token=admin).status_code == 201
    url = f"{project_index(project.id)}/files/{hashlib.sha256(content).hexdigest()}/{filename}"
    assert client.get(url, headers=basic(admin)).status_code == 200  # found and cached
    for blob in stored_files(registry.app):
        blob.unlink()
    assert client.get(url, headers=basic(admin)).status_code == 404
