"""The web pages through the Flask test client: access rules, sign-in, CSRF, tokens,
the package page and the admin dashboard (the browser tests are in test_browser.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from app.domain.access import all_readable_project_ids, project_access
from app.domain.names import normalize
from app.extensions import db
from app.models import Package, PackageFile, PersonalAccessToken, Project
from packyard import SessionStamp, hookimpl
from tests.conftest import Registry, basic
from tests.dists import make_wheel

PASSWORD = "s3cret-pass"  # what tests.conftest.Registry.user sets
DESCRIPTION = """\
Description-Content-Type: text/markdown; charset=UTF-8; variant=GFM
Classifier: Programming Language :: Python :: 3
Classifier: License :: OSI Approved :: MIT License
Project-URL: Source, https://example.com/src
Project-URL: Evil, javascript:alert(1)

# Widget toolkit

Frobnicates **widgets**. <script>alert("x")</script> [click](javascript:alert(1))

```python
import widgets
```
"""


@pytest.fixture
def world(registry):
    """team (public) / lib (private), team/sub (public) / open (public), other / secret."""
    admin = registry.user("root", admin=True)
    admin_token = registry.token(admin)
    team = registry.group("team", "public")  # nothing is more visible than its group
    sub = registry.group("sub", "public", parent=team)
    other = registry.group("other")
    lib = registry.project(team, "lib")
    opened = registry.project(sub, "open", "public")
    secret = registry.project(other, "secret")
    for project, name in ((lib, "private-pkg"), (opened, "public-pkg"), (secret, "secret-pkg")):
        filename, content = make_wheel(name, "1.0", summary=f"The {name} summary")
        assert registry.upload(project, filename, content, token=admin_token).status_code == 201
    filename, content = make_wheel(
        "widgets",
        "2.0",
        summary="Frobnicates widgets",
        requires_dist=("requests>=2",),
        requires_python=">=3.9",
        extra=DESCRIPTION,
    )
    assert registry.upload(lib, filename, content, token=admin_token).status_code == 201
    return {
        "admin": admin,
        "admin_token": admin_token,
        "team": team,
        "sub": sub,
        "lib": lib,
        "open": opened,
        "secret": secret,
        "other": other,
    }


def csrf_token(client, path: str = "/users/sign_in") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def sign_in(client, username: str, password: str = PASSWORD):
    return client.post(
        "/users/sign_in",
        data={"username": username, "password": password, "csrf_token": csrf_token(client)},
    )


def post_form(client, path: str, data: dict | None = None, token_page: str = "/"):
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, token_page)})


def package_id(name: str) -> int:
    return db.session.query(Package).filter_by(normalized_name=name).one().id


def text(response) -> str:
    return response.get_data(as_text=True)


# --- access rules -----------------------------------------------------------------


def test_home_lists_only_what_the_visitor_may_read(app, registry, world):
    registry.user("outsider")
    member = registry.user("member")
    registry.member(member, 20, group=world["team"])
    expected = {
        None: {"public-pkg"},
        "outsider": {"public-pkg"},
        "member": {"public-pkg", "private-pkg", "widgets"},
        "root": {"public-pkg", "private-pkg", "widgets", "secret-pkg"},
    }
    for username, names in expected.items():
        client = app.test_client()
        if username:
            assert sign_in(client, username).status_code == 303
        page = text(client.get("/"))
        listed = {normalize(n) for n in re.findall(r'class="name" href="[^"]+">([^<]+)</a>', page)}
        assert listed == names, username


def test_pages_hide_what_the_api_hides(app, registry, world):
    """For each credential and project: the project index and the packages page agree."""
    member = registry.user("member")
    registry.member(member, 20, group=world["team"])
    guest = registry.user("guest")
    registry.member(guest, 10, project=world["lib"])
    credentials = [
        None,
        world["admin_token"],
        registry.token(member),
        registry.token(guest),
        registry.token(registry.user("outsider")),
        registry.deploy_token(("read_package_registry",), group=world["sub"]),
    ]
    # API status -> page status: anonymous callers are sent to sign in instead of a 401.
    page_for = {200: 200, 401: 302, 403: 403, 404: 404}
    client = app.test_client()
    for token in credentials:
        headers = basic(token) if token else {}
        for project in db.session.query(Project).all():
            api = client.get(
                f"/api/v4/projects/{project.id}/packages/pypi/simple/", headers=headers
            )
            page = client.get(f"/{project.full_path}/-/packages", headers=headers)
            assert page.status_code == page_for[api.status_code], (token, project.full_path)
            if page.status_code == 302:
                assert page.location.startswith("/users/sign_in?next=")


def test_all_readable_project_ids_agree_with_project_access(app, registry, world):
    from app.web.auth import authenticate
    from packyard import PresentedCredentials

    member = registry.user("member")
    registry.member(member, 20, group=world["team"])
    registry.project(world["sub"], "inside", "internal")
    tokens = [
        None,
        world["admin_token"],
        registry.token(member),
        registry.token(member, ("read_api",)),
        registry.token(registry.user("outsider")),
        registry.deploy_token(("read_package_registry",), group=world["sub"]),
    ]
    projects = db.session.query(Project).all()
    for token in tokens:
        with app.test_request_context():
            identity = authenticate(PresentedCredentials(token, "basic") if token else None)
        expected = sorted(p.id for p in projects if project_access(db.session, identity, p).read)
        assert sorted(all_readable_project_ids(db.session, identity)) == expected, identity


@pytest.mark.parametrize(
    "path", ["/other", "/team/lib/-/packages", "/team/lib", "/nope/-/packages"]
)
def test_signed_out_visitors_are_sent_to_sign_in_and_outsiders_get_404(app, registry, world, path):
    anonymous = app.test_client().get(path)
    assert anonymous.status_code == 302
    assert anonymous.location == "/users/sign_in?next=" + path
    registry.user("outsider")
    client = app.test_client()
    sign_in(client, "outsider")
    response = client.get(path)
    assert response.status_code == 404
    assert "private-pkg" not in text(response)


def test_private_package_page_is_hidden(app, registry, world):
    path = f"/team/lib/-/packages/{package_id('private-pkg')}"
    assert app.test_client().get(path).status_code == 302
    registry.user("outsider")
    client = app.test_client()
    sign_in(client, "outsider")
    assert client.get(path).status_code == 404
    # A package id of another project is not found through this one.
    assert client.get(f"/team/sub/open/-/packages/{package_id('private-pkg')}").status_code == 404


def test_guest_sees_the_project_but_not_its_packages(app, registry, world):
    guest = registry.user("guest")
    registry.member(guest, 10, project=world["lib"])
    registry.member(guest, 10, project=world["secret"])
    client = app.test_client()
    sign_in(client, "guest")
    assert client.get("/team/lib/-/packages").status_code == 403
    assert client.get("/other").status_code == 200  # a member of something inside sees the group


def test_group_page_lists_subgroups_projects_and_packages(app, world):
    client = app.test_client()
    page = text(client.get("/team/sub"))
    assert "Open" in page and "public-pkg" in page and "private-pkg" not in page
    sign_in(client, "root")
    page = text(client.get("/team"))
    assert "/team/sub" in page and "/team/lib/-/packages" in page
    assert "private-pkg" in page and "public-pkg" in page and "secret-pkg" not in page


def test_a_project_path_leads_to_its_packages(app, world):
    client = app.test_client()
    sign_in(client, "root")
    response = client.get("/team/lib")
    assert response.status_code == 302 and response.location == "/team/lib/-/packages"


def test_page_routes_do_not_shadow_the_api(app, world):
    client = app.test_client()
    api = client.get("/api/v4/nothing/here")
    assert api.status_code == 404 and api.is_json
    assert client.post("/api/v4/projects", data={}).status_code == 401
    assert client.get("/-/health").json == {"status": "ok"}
    assert client.get("/users/nobody").status_code == 404
    assert client.get("/static/packyard.css").status_code == 200


# --- sign-in, sessions, CSRF ----------------------------------------------------------


def test_sign_in_refuses_unknown_users_and_wrong_passwords_alike(app, world):
    client = app.test_client()
    unknown = sign_in(client, "ghost", "whatever")
    wrong = sign_in(client, "root", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert "Invalid username or password." in text(unknown)
    assert "Invalid username or password." in text(wrong)
    assert client.get("/-/profile/personal_access_tokens").status_code == 302


def test_users_without_a_password_cannot_sign_in(app, registry, world):
    from app.domain.accounts import ensure_admin

    ensure_admin(db.session, "cli-admin")  # as `packyard create-admin` makes them
    assert sign_in(app.test_client(), "cli-admin", "").status_code == 401


def test_session_cookie_flags(app, world):
    response = sign_in(app.test_client(), "root")
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "packyard_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    secure = app.test_client()
    token = re.search(
        r'name="csrf_token" value="([^"]+)"',
        text(secure.get("/users/sign_in", base_url="https://localhost")),
    ).group(1)
    response = secure.post(
        "/users/sign_in",
        data={"username": "root", "password": PASSWORD, "csrf_token": token},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/users/sign_in"},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_forms_without_a_csrf_token_are_refused(app, world):
    client = app.test_client()
    refused = client.post("/users/sign_in", data={"username": "root", "password": PASSWORD})
    assert refused.status_code == 400 and "CSRF" in text(refused)
    sign_in(client, "root")
    before = db.session.query(PersonalAccessToken).count()
    refused = client.post("/-/profile/personal_access_tokens", data={"name": "x", "scopes": "api"})
    assert refused.status_code == 400
    assert db.session.query(PersonalAccessToken).count() == before


def test_the_session_cookie_does_not_authenticate_the_api(app, world):
    client = app.test_client()
    sign_in(client, "root")
    assert client.get("/api/v4/user").status_code == 401
    index = "/api/v4/projects/team%2Flib/packages/pypi/simple/"
    assert client.get(index).status_code == 401


def test_plugins_are_handed_the_sign_in_on_the_pages_only(tmp_path, database_url):
    class Witness:
        """Sees what every authenticate call is handed, and claims nothing."""

        def __init__(self) -> None:
            self.seen: list[SessionStamp | None] = []

        @hookimpl(tryfirst=True)
        def authenticate(self, credentials, session, signed_in):
            self.seen.append(signed_in)

    witness = Witness()
    app = create_app(
        {"DATA_DIR": str(tmp_path), "DATABASE_URL": database_url, "LOAD_ENTRYPOINT_PLUGINS": False},
        plugins=[witness],
    )
    with app.app_context():
        root = Registry(app, app.test_client()).user("root", admin=True)
        client = app.test_client()
        assert sign_in(client, "root").status_code == 303
        witness.seen.clear()
        assert client.get("/-/dashboard").status_code == 200  # a page: signed in
        assert client.get("/api/v4/user").status_code == 401  # the API: never the cookie
        [on_the_page, on_the_api] = witness.seen
        assert isinstance(on_the_page, SessionStamp) and on_the_page.user_id == root.id
        assert on_the_api is None
        db.session.remove()


def test_sign_out_ends_the_session_even_for_a_copied_cookie(app, world):
    client = app.test_client()
    sign_in(client, "root")
    stolen = client.get_cookie("packyard_session").value
    assert client.get("/-/dashboard").status_code == 200
    assert post_form(client, "/users/sign_out").status_code == 303
    assert client.get("/-/dashboard").status_code == 302
    replay = app.test_client()
    replay.set_cookie("packyard_session", stolen)
    assert replay.get("/-/dashboard").status_code == 302


def test_sign_in_returns_only_to_local_pages(app, world):
    for target, expected in [
        ("/team/lib/-/packages", "/team/lib/-/packages"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ]:
        client = app.test_client()
        response = client.post(
            "/users/sign_in",
            data={
                "username": "root",
                "password": PASSWORD,
                "next": target,
                "csrf_token": csrf_token(client),
            },
        )
        assert response.status_code == 303 and response.location == expected, target


def test_pages_send_security_headers(app, world):
    response = app.test_client().get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- tokens and users ----------------------------------------------------------------


def test_create_list_and_revoke_a_personal_access_token(app, registry, world):
    registry.user("alice")
    client = app.test_client()
    sign_in(client, "alice")
    created = post_form(
        client,
        "/-/profile/personal_access_tokens",
        {"name": "laptop", "scopes": ["api"], "expires_at": "2099-01-01"},
    )
    assert created.status_code == 201
    secret = re.search(r'id="new-token"[^>]*>(pyd-pat-[^<]+)<', text(created)).group(1)
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).json["username"] == "alice"
    listing = text(client.get("/-/profile/personal_access_tokens"))
    assert "laptop" in listing and secret[:12] in listing and secret not in listing
    token = db.session.query(PersonalAccessToken).filter_by(name="laptop").one()
    revoked = post_form(client, f"/-/profile/personal_access_tokens/{token.id}/revoke")
    assert revoked.status_code == 303
    assert client.get("/api/v4/user", headers={"PRIVATE-TOKEN": secret}).status_code == 401
    assert "revoked" in text(client.get("/-/profile/personal_access_tokens"))


def test_token_form_errors_and_other_users_tokens(app, registry, world):
    registry.user("alice")
    client = app.test_client()
    sign_in(client, "alice")
    refused = post_form(client, "/-/profile/personal_access_tokens", {"name": "no scopes"})
    assert refused.status_code == 400 and "scopes is missing" in text(refused)
    born_expired = {"name": "late", "scopes": ["api"], "expires_at": "2000-01-01"}
    refused = post_form(client, "/-/profile/personal_access_tokens", born_expired)
    assert refused.status_code == 400 and "expires_at must be in the future" in text(refused)
    admins = db.session.query(PersonalAccessToken).filter_by(user_id=world["admin"].id).one()
    stolen = post_form(client, f"/-/profile/personal_access_tokens/{admins.id}/revoke")
    assert stolen.status_code == 404
    db.session.refresh(admins)
    assert not admins.revoked


def test_admins_create_users_who_can_sign_in(app, registry, world):
    registry.user("plain")
    client = app.test_client()
    sign_in(client, "plain")
    assert client.get("/-/admin/users").status_code == 404
    admin = app.test_client()
    sign_in(admin, "root")
    short = post_form(admin, "/-/admin/users", {"username": "bob", "password": "short"})
    assert short.status_code == 400 and "at least 8" in text(short)
    created = post_form(admin, "/-/admin/users", {"username": "bob", "password": "long-enough"})
    assert created.status_code == 303
    assert "bob" in text(admin.get("/-/admin/users"))
    assert sign_in(app.test_client(), "bob", "long-enough").status_code == 303


# --- search and the package page -----------------------------------------------------


def test_search_matches_names_and_summaries(app, world):
    client = app.test_client()
    sign_in(client, "root")

    def found(query: str) -> set[str]:
        page = text(client.get("/", query_string={"search": query}))
        return {normalize(n) for n in re.findall(r'class="name" href="[^"]+">([^<]+)</a>', page)}

    assert found("frobnicates") == {"widgets"}
    assert found("PUBLIC_pkg") == {"public-pkg"}
    assert found("summary") == {"public-pkg", "private-pkg", "secret-pkg"}
    assert found("100%") == set()
    anonymous = text(app.test_client().get("/?search=pkg"))
    assert "public_pkg" in anonymous and "private_pkg" not in anonymous


def test_home_is_paginated(app, registry, world):
    from app.domain.browse import PER_PAGE

    project = world["open"]
    for i in range(PER_PAGE + 5):
        package = Package(
            project_id=project.id,
            name=f"bulk-{i:03d}",
            normalized_name=f"bulk-{i:03d}",
            version="1.0",
            canonical_version="1",
        )
        db.session.add(package)
    db.session.commit()
    client = app.test_client()
    first = text(client.get("/?search=bulk"))
    assert f"{PER_PAGE + 5} packages" in first and "bulk-000" in first and "bulk-054" not in first
    second = text(client.get("/?search=bulk&page=2"))
    assert "bulk-054" in second and "bulk-000" not in second


def test_page_argument_is_bounded(app, world):
    client = app.test_client()
    sign_in(client, "root")
    for page in ("99999999999999999999", "-3", "0", "abc", "1e3", "", "2147483648"):
        for path in ("/", "/team", "/team/lib/-/packages", "/?search=pkg"):
            joiner = "&" if "?" in path else "?"
            response = client.get(f"{path}{joiner}page={page}")
            assert response.status_code == 200, (path, page)


def test_package_page(app, world):
    client = app.test_client()
    sign_in(client, "root")
    lib = world["lib"]
    page = text(client.get(f"/team/lib/-/packages/{package_id('widgets')}"))
    assert '<h1 id="user-content-widget-toolkit">' in page.replace("\n", "")
    assert "<strong>widgets</strong>" in page
    assert "<script>alert" not in page and "javascript:alert" not in page.split("Evil")[0]
    assert '<a href="https://example.com/src" rel="nofollow noopener noreferrer">Source</a>' in page
    assert "Programming Language :: Python :: 3" in page and "requests&gt;=2" in page
    assert "&gt;=3.9" in page
    index = (
        f"http://__token__:$PACKYARD_TOKEN@localhost/api/v4/projects/{lib.id}/packages/pypi/simple/"
    )
    assert f"pip install --index-url {index} widgets==2.0" in page
    team_index = f"localhost/api/v4/groups/{world['team'].id}/-/packages/pypi/simple/"
    assert team_index in page
    file = db.session.query(PackageFile).filter_by(filename="widgets-2.0-py3-none-any.whl").one()
    for value in (file.sha256, file.md5, file.blake2_256, "root", "done"):
        assert value in page


def test_package_page_marks_yanked_releases_and_lists_versions(app, registry, world):
    for version in ("1.1", "1.10", "1.9"):
        filename, content = make_wheel("public-pkg", version)
        registry.upload(world["open"], filename, content, token=world["admin_token"])
    package = db.session.query(Package).filter_by(normalized_name="public-pkg", version="1.9").one()
    package.yanked, package.yanked_reason = True, "broken import"
    db.session.commit()
    page = text(app.test_client().get(f"/team/sub/open/-/packages/{package.id}"))
    assert "This release is yanked: broken import" in page
    listed = page.split('class="version-list"')[1].split("</ol>")[0]
    versions = re.findall(r'<a href="[^"]+">([^<]+)</a>', listed)
    assert versions == ["1.10", "1.9", "1.1", "1.0"]
    # Public: the install command needs no token.
    assert "pip install --index-url http://localhost/api/v4/projects/" in page


def test_base_url_setting_makes_install_urls(app, world):
    app.config["BASE_URL"] = "https://pkgs.example.com/"
    page = text(app.test_client().get(f"/team/sub/open/-/packages/{package_id('public-pkg')}"))
    assert "https://pkgs.example.com/api/v4/projects/" in page


def test_project_packages_page(app, world):
    client = app.test_client()
    sign_in(client, "root")
    page = text(client.get("/team/lib/-/packages"))
    assert "widgets" in page and "private-pkg" in page and "2 packages" in page
    assert "widgets" not in text(client.get("/team/lib/-/packages?search=private"))


# --- dashboard -----------------------------------------------------------------------


def broken_upload(registry, world, name: str = "broken") -> PackageFile:
    response = registry.upload(
        world["lib"],
        f"{name}-1.0.tar.gz",
        b"\x1f\x8b but then not gzip",  # gzip's magic passes the upload, not the worker
        token=world["admin_token"],
    )
    assert response.status_code == 201
    return db.session.query(PackageFile).filter_by(filename=f"{name}-1.0.tar.gz").one()


def test_dashboard_is_for_admins(app, registry, world):
    anonymous = app.test_client()
    assert anonymous.get("/-/dashboard").location == "/users/sign_in?next=/-/dashboard"
    assert anonymous.get("/-/dashboard/data.json").status_code == 401
    registry.user("plain")
    plain = app.test_client()
    sign_in(plain, "plain")
    assert plain.get("/-/dashboard").status_code == 404
    assert plain.get("/-/dashboard/data.json").status_code == 404
    # An admin's token does not open the dashboard: it is a page for browser sessions.
    headers = {"PRIVATE-TOKEN": world["admin_token"]}
    assert app.test_client().get("/-/dashboard", headers=headers).status_code == 302


def test_dashboard_shows_tasks_failures_and_throughput(app, registry, world):
    broken_upload(registry, world)
    client = app.test_client()
    sign_in(client, "root")
    page = text(client.get("/-/dashboard"))
    for expected in (
        "Workers",
        "Queues",
        "Throughput",
        "Failed tasks",
        "Recent tasks",
        "broken-1.0.tar.gz",
        "widgets-2.0-py3-none-any.whl",
        "Retry",
    ):
        assert expected in page
    data = client.get("/-/dashboard/data.json").json
    assert data["counts"] == {"processing": 0, "default": 4, "error": 1}
    assert [f["filename"] for f in data["failed"]] == ["broken-1.0.tar.gz"]
    failed = data["failed"][0]
    assert failed["attempts"] == 1 and failed["state"] == "error" and failed["error_reason"]
    assert failed["duration"] is not None
    assert len(data["throughput"]) == 60 and sum(b["done"] for b in data["throughput"]) == 4
    assert data["throughput"][-1]["failed"] + data["throughput"][-2]["failed"] == 1
    assert data["queues"] == {"packyard": 0}
    assert set(data["html"]) == {
        "workers", "queues", "counts", "chart", "upstream", "recent", "failed",
    }  # fmt: skip
    only_failed = client.get("/-/dashboard/data.json?state=error").json["recent"]
    assert [f["filename"] for f in only_failed] == ["broken-1.0.tar.gz"]


def outage_failure(registry, world) -> PackageFile:
    """A good file whose every processing attempt found its stored bytes unreadable: it
    fails as retryable (the bytes are back when this returns)."""
    from app.runtime import storage
    from workers.tasks.files import process_file

    file = db.session.query(PackageFile).filter_by(filename="widgets-2.0-py3-none-any.whl").one()
    path = storage().local_path(file.storage_key)
    hidden = path.with_name("hidden")
    path.rename(hidden)
    file.state = "processing"
    db.session.commit()
    process_file.delay(file.id)  # eager: all its retries run now, and fail
    hidden.rename(path)
    db.session.refresh(file)
    assert (file.state, file.retryable, file.attempts) == ("error", True, 10)
    assert "retry once it is back" in file.error_reason
    return file


def test_retry_runs_a_file_failed_by_an_outage_again(app, registry, world):
    file = outage_failure(registry, world)
    client = app.test_client()
    sign_in(client, "root")
    page = text(client.get("/-/dashboard"))
    assert f'aria-label="Retry {file.filename}"' in page
    assert client.post(f"/-/dashboard/files/{file.id}/retry").status_code == 400  # no CSRF token
    response = post_form(client, f"/-/dashboard/files/{file.id}/retry", token_page="/-/dashboard")
    assert response.status_code == 303 and response.location == "/-/dashboard#failed"
    db.session.refresh(file)
    assert (file.state, file.retryable, file.attempts) == ("default", False, 11)
    done = db.session.query(PackageFile).filter_by(state="default").first()
    post_form(client, f"/-/dashboard/files/{done.id}/retry", token_page="/-/dashboard")
    page = text(client.get("/-/dashboard"))
    assert "has not failed" in page
    db.session.refresh(done)
    assert done.state == "default"


def test_a_file_the_worker_rejected_is_not_offered_a_retry(app, registry, world):
    file = broken_upload(registry, world)
    assert (file.state, file.retryable) == ("error", False)
    client = app.test_client()
    sign_in(client, "root")
    page = text(client.get("/-/dashboard"))
    assert "Retry cannot fix" in page and f'aria-label="Retry {file.filename}"' not in page
    post_form(client, f"/-/dashboard/files/{file.id}/retry", token_page="/-/dashboard")
    assert "cannot pass on a retry" in text(client.get("/-/dashboard"))
    db.session.refresh(file)
    assert (file.state, file.attempts) == ("error", 1)


def test_admins_delete_a_failed_file_from_the_dashboard(app, registry, world):
    from app.models import AuditEvent, StorageDeletion
    from app.runtime import storage

    file = broken_upload(registry, world)
    file_id, key = file.id, file.storage_key
    assert storage().exists(key)
    client = app.test_client()
    sign_in(client, "root")
    page = text(client.get("/-/dashboard"))
    assert f'action="/-/dashboard/files/{file_id}/delete"' in page
    assert client.post(f"/-/dashboard/files/{file_id}/delete").status_code == 400  # no CSRF
    done = db.session.query(PackageFile).filter_by(state="default").first()
    post_form(client, f"/-/dashboard/files/{done.id}/delete", token_page="/-/dashboard")
    assert "has not failed" in text(client.get("/-/dashboard"))
    assert db.session.get(PackageFile, done.id) is not None
    response = post_form(client, f"/-/dashboard/files/{file_id}/delete", token_page="/-/dashboard")
    assert response.status_code == 303 and response.location == "/-/dashboard#failed"
    db.session.expire_all()
    assert db.session.get(PackageFile, file_id) is None
    assert not storage().exists(key)  # the worker (eager here) removed the bytes
    assert db.session.query(StorageDeletion).count() == 0
    event = db.session.query(AuditEvent).filter_by(action="package_file_deleted").one()
    assert event.target_id == file_id
    registry.user("plain")
    plain = app.test_client()
    sign_in(plain, "plain")
    assert post_form(plain, "/-/dashboard/files/1/delete").status_code == 404  # admins only


def test_retry_resets_the_file_before_sending_its_task(app, registry, world, monkeypatch):
    from app.domain.dashboard import retry_file

    file = outage_failure(registry, world)
    retried = retry_file(db.session, file.id, "tester")
    assert (retried.state, retried.error_reason, retried.processed_at) == ("processing", None, None)
    assert retried.enqueued_at is not None
    from app.domain.errors import InvalidInput

    with pytest.raises(InvalidInput):
        retry_file(db.session, file.id, "tester")  # no longer failed: a second click is a no-op


def test_throughput_buckets_per_minute(app, registry, world):
    from app.domain.dashboard import throughput

    now = datetime(2030, 1, 1, 12, 30, 20, tzinfo=UTC)
    files = db.session.query(PackageFile).order_by(PackageFile.id).all()
    moments = [now - timedelta(seconds=5), now - timedelta(minutes=10), now - timedelta(hours=2)]
    for file, moment in zip(files, moments, strict=False):
        file.processed_at = moment
    files[0].state = "error"
    db.session.commit()
    buckets = throughput(db.session, now=now)
    assert len(buckets) == 60 and buckets[-1].start == datetime(2030, 1, 1, 12, 30, tzinfo=UTC)
    assert (buckets[-1].done, buckets[-1].failed) == (0, 1)
    assert buckets[-11].done == 1
    assert sum(b.total for b in buckets) == 2


def test_workers_from_heartbeats_and_queue_depth_of_the_embedded_broker(app, tmp_path):
    from workers.heartbeat import beat, heartbeat_dir
    from workers.monitoring import queue_depths, workers_online

    celery = app.extensions["celery"]
    config = {"BROKER_URL": "embedded", "DATA_DIR": str(tmp_path / "data")}
    directory = heartbeat_dir(config["DATA_DIR"])
    beat(directory / "w1.json", {"hostname": "celery@w1", "pid": 1, "concurrency": 3})
    beat(directory / "old.json", {"hostname": "celery@old", "pid": 2, "concurrency": 1})
    stale = (directory / "old.json").read_text().replace('"at": ', '"at": 1, "was": ')
    (directory / "old.json").write_text(stale)
    report = workers_online(celery, config)
    assert report.available and report.source == "heartbeat"
    assert [(w.name, w.concurrency) for w in report.workers] == [("celery@w1", 3)]
    if app.config["BROKER_URL"] == "embedded":
        assert queue_depths(celery) == {"packyard": 0}


@pytest.mark.e2e
def test_workers_and_queue_depth_over_redis(tmp_path):
    """With Redis, the dashboard asks the workers themselves (Celery inspect)."""
    import subprocess
    import time

    from app import create_app
    from tests.services import BIN, LiveProcess, packyard_env, redis_url
    from workers.monitoring import queue_depths, workers_online

    broker = redis_url(db=7)
    env = packyard_env(tmp_path, BROKER_URL=broker)
    subprocess.run([str(BIN / "packyard"), "db", "upgrade"], env=env, check=True)
    worker = LiveProcess(
        [str(BIN / "packyard"), "worker", "--concurrency=3", "--without-mingle"],
        env,
        tmp_path / "worker.log",
    )
    try:
        app = create_app({"DATA_DIR": str(tmp_path), "BROKER_URL": broker})
        celery = app.extensions["celery"]
        assert queue_depths(celery) == {"packyard": 0}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = workers_online(celery, app.config)
            if report.workers:
                break
            time.sleep(6)  # past the report cache
        assert report.available and report.source == "inspect", worker.output()
        assert [w.concurrency for w in report.workers] == [3]
    finally:
        worker.stop()


def test_descriptions_render_safely_by_content_type():
    from app.domain.readme import render_description

    markdown = render_description(
        '# Title\n\n<script>alert(1)</script> <img src=x onerror="alert(1)">', "text/markdown"
    )
    assert "<h1" in markdown and "<script" not in markdown and "onerror" not in markdown
    rst = render_description("Title\n=====\n\n.. raw:: html\n\n   <script>alert(1)</script>\n", "")
    assert "Title" in rst and "<script" not in rst
    assert render_description("a <b>", "text/plain; charset=UTF-8") == "a &lt;b&gt;"
    assert render_description("plain <i>", "text/x-unknown") == "plain &lt;i&gt;"
    assert render_description("  ", "text/markdown") is None
    assert render_description("UNKNOWN", None) is None


def test_dashboard_counters_agree_with_its_chart(app, registry, world):
    """The counters and the chart count the same files: those settled in the chart's hour
    (older ones are counted apart), and files processing now."""
    broken_upload(registry, world)
    old = db.session.query(PackageFile).filter_by(state="default").order_by(PackageFile.id)
    for package_file in old.limit(2):  # settled before the chart's hour
        package_file.processed_at = datetime.now(UTC) - timedelta(hours=3)
    db.session.commit()
    client = app.test_client()
    sign_in(client, "root")
    data = client.get("/-/dashboard/data.json").json
    charted = {
        "default": sum(b["done"] for b in data["throughput"]),
        "error": sum(b["failed"] for b in data["throughput"]),
    }
    assert charted == {"default": 2, "error": 1}
    counters = data["html"]["counts"]
    for state, count in charted.items():
        shown = re.search(rf'class="count-{state}".*?<strong>(\d+)</strong>', counters, re.S)
        assert shown and int(shown.group(1)) == count, counters
    assert "4 done and 1 failed in all" in counters
