"""The pull-through cache in process: pages, files, metadata, offline answers, the
dependency-confusion rules and the modes, against a local upstream served from a thread
(tests/upstream.py). The real clients drive it in tests/test_e2e_upstream.py."""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin

import pytest
from sqlalchemy import select, update

from app.domain.upstream.files import UpstreamMismatch
from app.extensions import db
from app.models import UpstreamFile, UpstreamProject
from app.models.base import utcnow
from tests.conftest import Registry, basic
from tests.dists import make_sdist, make_wheel
from tests.upstream import UpstreamTree, serve_in_thread

JSON = "application/vnd.pypi.simple.v1+json"
# What depends on no database feature runs on SQLite only: the suite's time matters.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def upstream(tmp_path):
    tree = UpstreamTree(tmp_path / "upstream")
    tree.add("shiny", make_wheel("shiny", "1.0", requires_python=">=3.8"), requires_python=">=3.8")
    tree.add("shiny", make_sdist("shiny", "1.0"))
    tree.add("shiny", make_wheel("shiny", "0.9"), yanked="broken build")
    tree.add("acme-internal", make_wheel("acme-internal", "99.0"))
    tree.add("acme-public", make_wheel("acme-public", "1.0"))
    with serve_in_thread(tree.root) as server:
        yield tree, server


@pytest.fixture
def world(registry: Registry, upstream):
    """team (cache mode) > team/lib; secret/vault holds ``acme-internal`` 1.0."""
    tree, server = upstream
    admin = registry.user("root", admin=True)
    admin_token = registry.token(admin)
    team = registry.group("team")
    lib = registry.project(team, "lib")
    vault = registry.project(registry.group("secret"), "vault")
    uploaded = registry.upload(vault, *make_wheel("acme-internal", "1.0"), token=admin_token)
    assert uploaded.status_code == 201
    reader = registry.user("reader")
    registry.member(reader, 20, group=team)
    registry.app.config.update(UPSTREAM_URL=server.url, UPSTREAM_MODE="cache", UPSTREAM_TTL=600)
    return {
        "tree": tree, "server": server, "team": team, "lib": lib,
        "token": registry.token(reader), "admin_token": admin_token, "admin": admin,
    }  # fmt: skip


def group_page(world, name: str) -> str:
    return f"/api/v4/groups/{world['team'].id}/-/packages/pypi/simple/{name}/"


def project_page(world, name: str) -> str:
    return f"/api/v4/projects/{world['lib'].id}/packages/pypi/simple/{name}/"


def get(registry, url: str, token: str, accept: str | None = None):
    headers = basic(token)
    if accept:
        headers["Accept"] = accept
    return registry.client.get(url, headers=headers)


def page_json(registry, world, name: str, url: str | None = None) -> dict:
    response = get(registry, url or group_page(world, name), world["token"], JSON)
    assert response.status_code == 200, response.text
    return response.json


def file_url(world, name: str, filename: str, page_url: str | None = None) -> str:
    page = page_url or group_page(world, name)
    tree_dist = next(d for d in world["tree"].projects[name] if d.filename == filename)
    return urljoin(page, f"../../files/{tree_dist.sha256}/{filename}")


def flush_hits(registry) -> None:
    """Write the hits counted so far (a thread of the process does it every second)."""
    from app.web.pypi import HITS

    counter = registry.app.extensions.get(HITS)
    if counter is not None:
        counter.flush(db.session)


def upstream_requests(world, fragment: str) -> list[str]:
    return [line for line in world["server"].requests if fragment in line]


# Pages -----------------------------------------------------------------------------


def test_the_upstream_page_is_served_with_every_field_and_local_file_urls(registry, world):
    data = page_json(registry, world, "shiny")
    files = {f["filename"]: f for f in data["files"]}
    wheel = next(
        d for d in world["tree"].projects["shiny"] if d.filename.endswith("1.0-py3-none-any.whl")
    )
    entry = files[wheel.filename]
    assert entry["url"] == f"../../files/{wheel.sha256}/{wheel.filename}"
    assert entry["hashes"] == {"sha256": hashlib.sha256(wheel.content).hexdigest()}
    assert entry["requires-python"] == ">=3.8"
    assert entry["yanked"] is False
    assert entry["size"] == len(wheel.content)
    assert entry["upload-time"] == "2024-01-02T03:04:05.678901Z"
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(wheel.metadata).hexdigest()}
    assert files["shiny-0.9-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["shiny-1.0.tar.gz"]["core-metadata"] is False
    assert data["versions"] == ["0.9", "1.0"]
    assert data["meta"]["api-version"] == "1.1"

    html = get(registry, group_page(world, "shiny"), world["token"]).text
    assert f'href="../../files/{wheel.sha256}/{wheel.filename}#sha256={wheel.sha256}"' in html
    assert 'data-requires-python="&gt;=3.8"' in html
    assert 'data-yanked="broken build"' in html
    assert f'data-core-metadata="sha256={hashlib.sha256(wheel.metadata).hexdigest()}"' in html
    # One upstream request: the HTML answer was rendered from the kept page.
    assert len(upstream_requests(world, "/simple/shiny/")) == 1


@sqlite_only
def test_an_html_only_upstream_is_parsed(registry, world):
    tree = world["tree"]
    tree.html_only.add("plain")
    tree.add("plain", make_wheel("plain", "2.0"), requires_python=">=3.9", yanked="")
    data = page_json(registry, world, "plain")
    (entry,) = data["files"]
    assert entry["requires-python"] == ">=3.9" and entry["yanked"] is True
    assert entry["core-metadata"]["sha256"]
    assert "size" not in entry and data["meta"]["api-version"] == "1.0"
    assert data["versions"] == ["2.0"]


@sqlite_only
def test_a_project_index_serves_upstream_pages_too(registry, world):
    data = page_json(registry, world, "shiny", project_page(world, "shiny"))
    assert {f["filename"] for f in data["files"]} >= {"shiny-1.0.tar.gz"}


@sqlite_only
def test_a_name_the_upstream_lacks_is_404_and_remembered_for_the_ttl(registry, world):
    for _ in range(2):
        assert get(registry, group_page(world, "nowhere"), world["token"]).status_code == 404
    assert len(upstream_requests(world, "/simple/nowhere/")) == 1
    registry.app.config["UPSTREAM_TTL"] = 0  # then asked again: it may have appeared
    world["tree"].add("nowhere", make_wheel("nowhere", "1.0"))
    assert get(registry, group_page(world, "nowhere"), world["token"]).status_code == 200


def test_a_stale_page_is_served_and_refreshed_by_a_task(registry, world):
    registry.app.config["UPSTREAM_TTL"] = 1
    page_json(registry, world, "shiny")
    world["tree"].add("shiny", make_wheel("shiny", "2.0"))
    assert "2.0" not in page_json(registry, world, "shiny")["versions"]  # within the TTL
    time.sleep(1.1)
    # Stale: the kept page answers, and the refresh (run inline in these tests) follows.
    assert "2.0" not in page_json(registry, world, "shiny")["versions"]
    assert "2.0" in page_json(registry, world, "shiny")["versions"]
    assert len(upstream_requests(world, "/simple/shiny/")) == 2


@sqlite_only
def test_an_unchanged_page_is_revalidated_with_its_etag(registry, world):
    registry.app.config["UPSTREAM_TTL"] = 1
    page_json(registry, world, "shiny")
    row = db.session.execute(select(UpstreamProject)).scalar_one()
    digest, fetched_at = row.digest, row.fetched_at
    time.sleep(1.1)
    page_json(registry, world, "shiny")
    db.session.refresh(row)
    assert row.digest == digest and row.fetched_at > fetched_at and row.etag
    assert len(upstream_requests(world, "/simple/shiny/")) == 2


@sqlite_only
def test_a_fresh_page_and_metadata_are_gzipped(registry, world):
    headers = {**basic(world["token"]), "Accept": JSON, "Accept-Encoding": "gzip"}
    first = registry.client.get(group_page(world, "shiny"), headers=headers)
    again = registry.client.get(group_page(world, "shiny"), headers=headers)
    identity = {**basic(world["token"]), "Accept": JSON}  # no gzip: the kept page as is
    plain = registry.client.get(group_page(world, "shiny"), headers=identity)
    assert first.headers["Content-Encoding"] == again.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(first.data) == gzip.decompress(again.data) == plain.data
    wheel = world["tree"].add("roomy", make_wheel("roomy", "1.0", extra="Long text. " * 200))
    page_json(registry, world, "roomy")
    url = file_url(world, "roomy", wheel.filename) + ".metadata"
    metadata = registry.client.get(url, headers=headers)
    assert metadata.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(metadata.data) == wheel.metadata
    assert metadata.headers["ETag"].startswith("W/")


# Files -----------------------------------------------------------------------------


def test_a_file_is_fetched_once_verified_stored_then_served_from_storage(registry, world):
    page_json(registry, world, "shiny")
    url = file_url(world, "shiny", "shiny-1.0.tar.gz")
    content = world["tree"].projects["shiny"][1].content
    for _ in range(3):  # streamed as fetched, then from storage
        response = get(registry, url, world["token"])
        assert response.status_code == 200 and response.data == content
        assert response.cache_control.max_age == 365 * 24 * 3600
        assert response.cache_control.immutable and not response.cache_control.no_cache
        assert "Expires" not in response.headers  # max-age says it
    assert len(upstream_requests(world, "/files/shiny-1.0.tar.gz")) == 1
    flush_hits(registry)
    row = db.session.execute(select(UpstreamFile)).scalar_one()
    assert row.stored and row.size == len(content) and row.hit_count == 2
    assert row.requested_by == "team" and row.fetch_owner is None
    # Any cache-mode index may serve it: the project index too.
    project_url = file_url(world, "shiny", "shiny-1.0.tar.gz", project_page(world, "shiny"))
    assert get(registry, project_url, world["token"]).data == content


def test_metadata_is_fetched_verified_and_kept(registry, world):
    page_json(registry, world, "shiny")
    wheel = world["tree"].projects["shiny"][0]
    url = file_url(world, "shiny", wheel.filename) + ".metadata"
    for _ in range(2):
        response = get(registry, url, world["token"])
        assert response.status_code == 200 and response.data == wheel.metadata
    assert len(upstream_requests(world, ".metadata")) == 1
    assert not upstream_requests(world, f"{wheel.filename} ")  # the wheel itself: not needed


def test_a_tampered_small_file_is_refused_and_nothing_is_stored(registry, world):
    page_json(registry, world, "shiny")
    world["tree"].tamper("shiny-1.0.tar.gz", b"x" * len(world["tree"].projects["shiny"][1].content))
    response = get(registry, file_url(world, "shiny", "shiny-1.0.tar.gz"), world["token"])
    assert response.status_code == 502
    assert "failed verification" in response.text
    row = db.session.execute(select(UpstreamFile)).scalar_one()
    assert not row.stored and row.failures == 1 and row.fetch_owner is None
    assert stored_files(registry) == []


def stored_files(registry) -> list[str]:
    """Everything in storage but uploads: cached files, and leftovers in the temp dir."""
    root = Path(registry.app.config["DATA_DIR"]) / "files"
    return [p.name for p in root.rglob("*") if p.is_file() and "upstream" in str(p)]


@sqlite_only
def test_a_tampered_large_file_is_cut_short_and_nothing_is_stored(registry, world):
    big = make_wheel("bulky", "1.0", payload=b"\x01" * (3 * 256 * 1024))
    world["tree"].add("bulky", big)
    page_json(registry, world, "bulky")
    world["tree"].tamper(big[0], big[1][:-1] + bytes([big[1][-1] ^ 1]))  # the last byte only
    response = registry.client.get(
        file_url(world, "bulky", big[0]), headers=basic(world["token"]), buffered=False
    )
    assert response.status_code == 200  # sent as it arrived: the end is withheld
    assert response.content_length == len(big[1])
    received = bytearray()
    with pytest.raises(UpstreamMismatch):
        for chunk in response.response:
            received += chunk
    assert 0 < len(received) < len(big[1])
    row = db.session.execute(select(UpstreamFile)).scalar_one()
    assert not row.stored and row.failures == 1
    assert stored_files(registry) == []


@sqlite_only
def test_a_file_no_kept_page_lists_is_404(registry, world):
    page_json(registry, world, "shiny")
    url = urljoin(group_page(world, "shiny"), f"../../files/{'0' * 64}/shiny-1.0.tar.gz")
    assert get(registry, url, world["token"]).status_code == 404


@sqlite_only
def test_a_private_upstream_gets_the_credentials_of_its_url(registry, world):
    url = world["server"].url.replace("http://", "http://mirror:s3cret%40x@")
    registry.app.config["UPSTREAM_URL"] = url
    page_json(registry, world, "shiny")
    assert (
        get(registry, file_url(world, "shiny", "shiny-1.0.tar.gz"), world["token"]).status_code
        == 200
    )
    expected = "Basic " + base64.b64encode(b"mirror:s3cret@x").decode()
    assert world["server"].authorizations == [expected, expected]


# Offline ---------------------------------------------------------------------------


@sqlite_only
def test_with_the_upstream_down_what_was_fetched_is_served_and_the_rest_fails_fast(registry, world):
    registry.app.config["UPSTREAM_TTL"] = 1
    wheel = world["tree"].projects["shiny"][0]
    page_json(registry, world, "shiny")
    for url in (
        file_url(world, "shiny", wheel.filename),
        file_url(world, "shiny", wheel.filename) + ".metadata",
    ):
        assert get(registry, url, world["token"]).status_code == 200
    world["server"].stop()
    time.sleep(1.1)  # stale: served, and the refresh fails quietly
    started = time.monotonic()
    assert page_json(registry, world, "shiny")["files"]
    assert (
        get(registry, file_url(world, "shiny", wheel.filename), world["token"]).data
        == wheel.content
    )
    metadata = get(registry, file_url(world, "shiny", wheel.filename) + ".metadata", world["token"])
    assert metadata.data == wheel.metadata
    never = get(registry, group_page(world, "never-fetched"), world["token"])
    assert never.status_code == 502 and "Upstream unreachable" in never.text
    sdist = get(registry, file_url(world, "shiny", "shiny-1.0.tar.gz"), world["token"])
    assert sdist.status_code == 502
    assert time.monotonic() - started < 5
    db.session.commit()  # a fresh snapshot: the refresh task ran in its own session
    row = db.session.execute(select(UpstreamProject)).scalar_one()
    assert row.failures >= 1 and row.digest is not None


# Dependency confusion --------------------------------------------------------------


def test_a_name_the_instance_holds_is_never_served_from_the_upstream(registry, world):
    """The attack: the upstream publishes acme-internal 99.0 while secret/vault (which the
    reader cannot read) holds 1.0. Neither index offers anything of the upstream's."""
    for url in (group_page(world, "acme-internal"), project_page(world, "acme-internal")):
        for accept in (JSON, None):
            response = get(registry, url, world["token"], accept)
            assert response.status_code == 404
            assert "99.0" not in response.text
    assert not upstream_requests(world, "acme-internal")
    # Even the exact URL of the upstream's file is refused.
    wheel = world["tree"].projects["acme-internal"][0]
    url = urljoin(
        group_page(world, "acme-internal"), f"../../files/{wheel.sha256}/{wheel.filename}"
    )
    assert get(registry, url, world["token"]).status_code == 404
    assert not upstream_requests(world, "acme-internal")


def test_a_name_published_after_its_upstream_page_was_kept_shadows_it(registry, world):
    page_json(registry, world, "acme-public")
    wheel = world["tree"].projects["acme-public"][0]
    url = file_url(world, "acme-public", wheel.filename)
    assert get(registry, url, world["token"]).status_code == 200  # cached
    mine = registry.upload(
        world["lib"], *make_wheel("acme-public", "0.1"), token=world["admin_token"]
    )
    assert mine.status_code == 201
    data = page_json(registry, world, "acme-public")
    assert [f["filename"] for f in data["files"]] == ["acme_public-0.1-py3-none-any.whl"]
    assert get(registry, url, world["token"]).status_code == 404  # not even from storage


@sqlite_only
def test_a_name_once_held_then_deleted_is_never_served_from_the_upstream(registry, world):
    admin = {"PRIVATE-TOKEN": world["admin_token"]}
    vault_packages = registry.client.get("/api/v4/projects/secret%2Fvault/packages", headers=admin)
    for package in vault_packages.json:
        deleted = registry.client.delete(
            f"/api/v4/projects/secret%2Fvault/packages/{package['id']}", headers=admin
        )
        assert deleted.status_code == 204
    assert get(registry, group_page(world, "acme-internal"), world["token"]).status_code == 404
    assert not upstream_requests(world, "acme-internal")


def put(registry, world, path: str, **settings):
    response = registry.client.put(
        f"/api/v4/{path}", json=settings, headers={"PRIVATE-TOKEN": world["admin_token"]}
    )
    assert response.status_code == 200, response.text
    return response.json


def test_deny_patterns_keep_names_from_the_upstream_at_every_level(registry, world):
    sub = registry.group("sub", parent=world["team"])
    put(registry, world, f"groups/{world['team'].id}", upstream_deny=["ACME_*"])
    for group in (world["team"], sub):
        url = f"/api/v4/groups/{group.id}/-/packages/pypi/simple/acme-public/"
        assert get(registry, url, world["token"]).status_code == 404
    assert get(registry, project_page(world, "acme-public"), world["token"]).status_code == 404
    assert not upstream_requests(world, "acme-public")
    # A subgroup cannot lift its parent's deny list with its own lists.
    put(registry, world, f"groups/{sub.id}", upstream_deny=None, upstream_allow=["*"])
    url = f"/api/v4/groups/{sub.id}/-/packages/pypi/simple/acme-public/"
    assert get(registry, url, world["token"]).status_code == 404
    assert get(registry, group_page(world, "shiny"), world["token"]).status_code == 200


def test_allow_lists_restrict_what_goes_upstream_and_add_up_down_the_chain(registry, world):
    put(registry, world, f"groups/{world['team'].id}", upstream_allow="shiny, acme-*")
    assert get(registry, group_page(world, "shiny"), world["token"]).status_code == 200
    assert get(registry, group_page(world, "acme-public"), world["token"]).status_code == 200
    assert get(registry, group_page(world, "other"), world["token"]).status_code == 404
    assert not upstream_requests(world, "/simple/other/")
    # The project narrows it further; it cannot widen it.
    put(registry, world, f"projects/{world['lib'].id}", upstream_allow=["shiny", "other"])
    assert get(registry, project_page(world, "shiny"), world["token"]).status_code == 200
    assert get(registry, project_page(world, "acme-public"), world["token"]).status_code == 404
    assert get(registry, project_page(world, "other"), world["token"]).status_code == 404


@sqlite_only
def test_deny_applies_to_files_already_cached(registry, world):
    page_json(registry, world, "acme-public")
    url = file_url(world, "acme-public", world["tree"].projects["acme-public"][0].filename)
    assert get(registry, url, world["token"]).status_code == 200
    put(registry, world, f"groups/{world['team'].id}", upstream_deny=["acme-public"])
    assert get(registry, url, world["token"]).status_code == 404


# Modes -----------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(
    ("instance", "group", "project", "expected"),
    [
        ("cache", None, None, 200),
        ("redirect", None, None, 307),
        ("off", None, None, 404),
        ("off", "cache", None, 200),  # the group overrides the instance
        ("cache", "redirect", None, 307),
        ("cache", "cache", "off", 404),  # the project overrides its group
        ("off", "off", "cache", 200),
    ],
)
def test_the_mode_comes_from_the_project_then_the_groups_then_the_instance(
    registry, world, instance, group, project, expected
):
    registry.app.config["UPSTREAM_MODE"] = instance
    world["team"].upstream_mode = group
    world["lib"].upstream_mode = project
    db.session.commit()
    response = get(registry, project_page(world, "shiny"), world["token"])
    assert response.status_code == expected
    if expected == 307:
        assert response.headers["Location"] == world["server"].url + "shiny/"
    if expected != 200:
        assert not upstream_requests(world, "/simple/shiny/")


@sqlite_only
def test_files_are_only_served_from_the_cache_in_cache_mode(registry, world):
    page_json(registry, world, "shiny")
    url = file_url(world, "shiny", "shiny-1.0.tar.gz")
    assert get(registry, url, world["token"]).status_code == 200
    put(registry, world, f"groups/{world['team'].id}", upstream_mode="redirect")
    assert get(registry, url, world["token"]).status_code == 404


@sqlite_only
def test_callers_who_may_not_read_the_index_get_nothing_upstream(registry, world):
    stranger = registry.token(registry.user("stranger"))
    assert get(registry, group_page(world, "shiny"), stranger).status_code == 404
    assert registry.client.get(group_page(world, "shiny")).status_code == 401
    assert not upstream_requests(world, "/simple/shiny/")


# Settings --------------------------------------------------------------------------


def test_upstream_settings_through_the_api(registry, world):
    group = put(
        registry, world, f"groups/{world['team'].id}",
        upstream_mode="cache", upstream_allow=["Foo.Bar", "baz_*"], upstream_deny="acme-*",
    )  # fmt: skip
    assert group["upstream_mode"] == "cache" and group["forwarding"] is True
    assert group["upstream_allow"] == ["foo-bar", "baz-*"]
    assert group["upstream_deny"] == ["acme-*"]
    project = put(registry, world, f"projects/{world['lib'].id}", upstream_mode="off")
    assert project["upstream_mode"] == "off" and project["upstream_allow"] is None
    cleared = put(registry, world, f"groups/{world['team'].id}", upstream_allow=None)
    assert cleared["upstream_allow"] is None
    events = registry.client.get(
        "/api/v4/audit_events?entity_type=Group", headers={"PRIVATE-TOKEN": world["admin_token"]}
    ).json
    assert any(e["details"].get("upstream_mode") == "cache" for e in events)


def test_forwarding_is_read_and_written_as_upstream_mode(registry, world):
    off = put(registry, world, f"groups/{world['team'].id}", forwarding=False)
    assert off["upstream_mode"] == "off" and off["forwarding"] is False
    on = put(registry, world, f"groups/{world['team'].id}", forwarding=True)
    assert on["upstream_mode"] == "redirect"
    put(registry, world, f"groups/{world['team'].id}", upstream_mode="cache")
    kept = put(registry, world, f"groups/{world['team'].id}", forwarding=True)
    assert kept["upstream_mode"] == "cache"  # true already: cache forwards
    both = put(
        registry, world, f"groups/{world['team'].id}", forwarding=True, upstream_mode="redirect"
    )
    assert both["upstream_mode"] == "redirect"


@sqlite_only
@pytest.mark.parametrize(
    "settings",
    [
        {"upstream_mode": "mirror"},
        {"upstream_deny": ["a/b"]},
        {"upstream_allow": ["ok", "no spaces allowed"]},
        {"forwarding": False, "upstream_mode": "cache"},
    ],
)
def test_invalid_upstream_settings_are_refused(registry, world, settings):
    response = registry.client.put(
        f"/api/v4/groups/{world['team'].id}", json=settings,
        headers={"PRIVATE-TOKEN": world["admin_token"]},
    )  # fmt: skip
    assert response.status_code == 400 and response.json["message"]


@sqlite_only
def test_maintainers_set_upstream_settings_and_reporters_may_not(registry, world):
    maintainer = registry.user("keeper")
    registry.member(maintainer, 40, group=world["team"])
    headers = {"PRIVATE-TOKEN": registry.token(maintainer)}
    url = f"/api/v4/groups/{world['team'].id}"
    assert (
        registry.client.put(url, json={"upstream_mode": "off"}, headers=headers).status_code == 200
    )
    reader = {"PRIVATE-TOKEN": world["token"]}
    assert (
        registry.client.put(url, json={"upstream_mode": "cache"}, headers=reader).status_code == 403
    )


# Operators -------------------------------------------------------------------------


def fetch_all(registry, world, name: str) -> None:
    page_json(registry, world, name)
    for dist in world["tree"].projects[name]:
        assert (
            get(registry, file_url(world, name, dist.filename), world["token"]).status_code == 200
        )


def admin_api(registry, world, method: str, path: str):
    headers = {"PRIVATE-TOKEN": world["admin_token"]}
    return registry.client.open(f"/api/v4{path}", method=method, headers=headers)


def test_admins_list_and_purge_cached_files_through_the_api(registry, world):
    fetch_all(registry, world, "shiny")
    fetch_all(registry, world, "acme-public")
    listed = admin_api(registry, world, "GET", "/upstream/files")
    assert listed.status_code == 200 and listed.headers["X-Total"] == "4"
    entry = next(f for f in listed.json if f["filename"] == "shiny-1.0.tar.gz")
    assert entry["name"] == "shiny" and entry["stored"] and entry["size"] > 0
    assert entry["requested_by"] == "team" and entry["fetched_at"] and entry["last_used_at"]
    assert entry["url"].startswith(world["server"].url.removesuffix("simple/"))
    only = admin_api(registry, world, "GET", "/upstream/files?name=Shiny")
    assert {f["name"] for f in only.json} == {"shiny"} and len(only.json) == 3
    names = admin_api(registry, world, "GET", "/upstream/projects").json
    assert {n["name"]: n["stored_files"] for n in names} == {"shiny": 3, "acme-public": 1}
    reader = registry.client.get(
        "/api/v4/upstream/files", headers={"PRIVATE-TOKEN": world["token"]}
    )
    assert reader.status_code == 403

    purged = admin_api(registry, world, "DELETE", "/upstream/files?name=shiny")
    assert purged.status_code == 200
    assert purged.json["files"] == 3 and purged.json["pages"] == 1 and purged.json["bytes"] > 0
    assert admin_api(registry, world, "GET", "/upstream/files").headers["X-Total"] == "1"
    assert not [name for name in stored_files(registry) if name.startswith("shiny")]
    page_json(registry, world, "shiny")  # fetched again
    assert len(upstream_requests(world, "/simple/shiny/")) == 2

    (remaining,) = admin_api(registry, world, "GET", "/upstream/files").json
    assert (
        admin_api(registry, world, "DELETE", f"/upstream/files/{remaining['id']}").status_code
        == 204
    )
    assert (
        admin_api(registry, world, "DELETE", f"/upstream/files/{remaining['id']}").status_code
        == 404
    )
    assert stored_files(registry) == []
    events = admin_api(registry, world, "GET", "/audit_events?entity_type=Instance").json
    assert [e["event_name"] for e in events] == ["upstream_file_purged", "upstream_cache_purged"]
    assert events[1]["details"]["files"] == 3 and events[1]["details"]["target_details"] == "shiny"


def test_the_cli_lists_and_purges_with_progress(registry, world, database_url, tmp_path):
    from click.testing import CliRunner

    from app.cli import main

    fetch_all(registry, world, "shiny")
    db.session.commit()
    env = {
        "PACKYARD_DATA_DIR": registry.app.config["DATA_DIR"],
        "PACKYARD_DATABASE_URL": database_url,
    }
    runner = CliRunner()
    listed = runner.invoke(main, ["upstream", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "shiny-1.0.tar.gz" in listed.output and "3 files fetched" in listed.output
    refused = runner.invoke(main, ["upstream", "purge"], env=env, input="n\n")
    assert refused.exit_code != 0
    purged = runner.invoke(main, ["upstream", "purge", "--yes"], env=env)
    assert purged.exit_code == 0, purged.output
    assert "purged 3 files" in purged.output and "1 pages" in purged.output
    assert stored_files(registry) == []


def test_files_unused_for_the_keep_period_are_removed(registry, world):
    from workers.sweeper import sweep_upstream_cache

    fetch_all(registry, world, "shiny")
    fetch_all(registry, world, "acme-public")
    long_ago = utcnow() - timedelta(days=91)
    db.session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.normalized_name == "shiny")
        .values(last_used_at=long_ago)
    )
    db.session.execute(update(UpstreamProject).values(last_used_at=long_ago))
    db.session.commit()
    assert sweep_upstream_cache(registry.app) == 3
    db.session.execute(update(UpstreamFile).values(last_used_at=long_ago))
    db.session.commit()
    assert sweep_upstream_cache(registry.app) == 0  # it looks at most hourly
    left = db.session.execute(select(UpstreamFile.normalized_name)).scalars().all()
    assert left == ["acme-public"]
    assert [p for p in stored_files(registry)] == [
        world["tree"].projects["acme-public"][0].filename
    ]
    assert db.session.execute(select(UpstreamProject)).first() is None


@sqlite_only
def test_the_dashboard_shows_fetches_hits_bytes_and_failures(registry, world):
    from tests.test_ui import sign_in

    fetch_all(registry, world, "shiny")
    wheel = world["tree"].projects["shiny"][0]
    get(registry, file_url(world, "shiny", wheel.filename), world["token"])  # a hit
    world["tree"].tamper("acme_public-1.0-py3-none-any.whl", b"tampered")
    page_json(registry, world, "acme-public")
    get(
        registry, file_url(world, "acme-public", "acme_public-1.0-py3-none-any.whl"), world["token"]
    )
    flush_hits(registry)
    client = registry.app.test_client()
    assert sign_in(client, "root").status_code == 303
    page = client.get("/-/dashboard").get_data(as_text=True)
    assert "Upstream cache" in page and "shiny-1.0.tar.gz" in page
    assert "Failed fetches" in page and "its page says" in page
    data = client.get("/-/dashboard/data.json").json["upstream"]
    assert (data["fetches"], data["hits"], data["failures"]) == (3, 1, 1)
    assert data["hit_ratio"] == 0.25 and data["bytes_stored"] > 0
    assert "upstream" in client.get("/-/dashboard/data.json").json["html"]


@sqlite_only
def test_maintainers_set_the_upstream_settings_on_the_group_page(registry, world):
    from tests.test_ui import post_form, sign_in

    keeper = registry.user("keeper")
    registry.member(keeper, 40, group=world["team"])
    client = registry.app.test_client()
    assert sign_in(client, "keeper").status_code == 303
    page = client.get("/team").get_data(as_text=True)
    assert 'name="upstream_mode"' in page and "Applies here: <strong" in page
    saved = post_form(
        client, "/team/-/settings/upstream",
        {"upstream_mode": "redirect", "upstream_allow": "", "upstream_deny": "acme-*, Internal_X"},
        token_page="/team",
    )  # fmt: skip
    assert saved.status_code == 303
    db.session.refresh(world["team"])
    assert world["team"].upstream_mode == "redirect"
    assert world["team"].upstream_deny == ["acme-*", "internal-x"]
    bad = post_form(client, "/team/-/settings/upstream", {"upstream_mode": "bogus"}, "/team")
    assert bad.status_code == 303 and "must be one of" in client.get("/team").get_data(as_text=True)
    assert (
        client.post("/team/-/settings/upstream", data={"upstream_mode": "off"}).status_code == 400
    )

    reader = registry.app.test_client()
    assert sign_in(reader, "reader").status_code == 303
    assert 'name="upstream_mode"' not in reader.get("/team").get_data(as_text=True)
    refused = post_form(reader, "/team/-/settings/upstream", {"upstream_mode": "off"}, "/team")
    assert refused.status_code == 403
