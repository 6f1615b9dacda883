"""Simple index pages (PEP 503, 691, 629, 700, 592, 658/714) and file downloads."""

from __future__ import annotations

import hashlib
import re

import pytest

from app.extensions import db
from app.models import Package
from tests.conftest import basic
from tests.dists import make_sdist, make_wheel

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


@pytest.fixture
def published(registry):
    admin = registry.user("root", admin=True)
    token = registry.token(admin)
    group = registry.group("team", "public")
    project = registry.project(group, "lib", "public")
    uploads = [
        make_wheel("Demo.Pkg", "1.0", requires_python=">=3.8,<4"),
        make_sdist("Demo.Pkg", "1.0", requires_python=">=3.8,<4"),
        make_wheel("Demo.Pkg", "2.0rc1"),
        make_wheel("other", "0.1"),
    ]
    for filename, content in uploads:
        response = registry.upload(
            project, filename, content, token=token,
            name="other" if filename.startswith("other") else "Demo.Pkg",
            version=filename.split("-")[1].removesuffix(".tar.gz"),
            requires_python=">=3.8,<4" if "1.0" in filename else "",
        )  # fmt: skip
        assert response.status_code == 201, response.text
    base = f"/api/v4/projects/{project.id}/packages/pypi"
    return {"project": project, "token": token, "base": base, "uploads": dict(uploads)}


def test_root_index_html_and_json(registry, published):
    base = published["base"]
    html = registry.client.get(f"{base}/simple/")
    assert html.status_code == 200
    assert html.mimetype == "text/html"
    assert '<meta name="pypi:repository-version" content="1.1">' in html.text
    assert '<a href="demo-pkg/">Demo.Pkg</a>' in html.text
    as_json = registry.client.get(f"{base}/simple/", headers={"Accept": JSON})
    assert as_json.mimetype == JSON
    assert as_json.json == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "Demo.Pkg"}, {"name": "other"}],
    }
    assert "Accept" in html.headers["Vary"]


def test_project_page_html(registry, published):
    page = registry.client.get(f"{published['base']}/simple/demo-pkg/")
    assert page.status_code == 200
    wheel = published["uploads"]["demo_pkg-1.0-py3-none-any.whl"]
    sha = hashlib.sha256(wheel).hexdigest()
    anchor = re.search(r'<a href="([^"]+)"([^>]*)>demo_pkg-1\.0-py3-none-any\.whl</a>', page.text)
    assert anchor is not None
    assert anchor.group(1) == f"../../files/{sha}/demo_pkg-1.0-py3-none-any.whl#sha256={sha}"
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in anchor.group(2)
    assert re.search(r'data-core-metadata="sha256=[0-9a-f]{64}"', anchor.group(2))
    assert "data-dist-info-metadata" in anchor.group(2)
    sdist = re.search(r"<a ([^>]*)>demo_pkg-1\.0\.tar\.gz</a>", page.text)
    assert sdist is not None and "data-core-metadata" not in sdist.group(1)


def test_project_page_json_has_pep_700_fields(registry, published):
    page = registry.client.get(f"{published['base']}/simple/demo-pkg/", headers={"Accept": JSON})
    body = page.json
    assert body["meta"] == {"api-version": "1.1"}
    assert body["name"] == "demo-pkg"  # PEP 691: the normalized name
    assert body["versions"] == ["1.0", "2.0rc1"]
    by_name = {f["filename"]: f for f in body["files"]}
    wheel = by_name["demo_pkg-1.0-py3-none-any.whl"]
    content = published["uploads"]["demo_pkg-1.0-py3-none-any.whl"]
    assert wheel["hashes"] == {"sha256": hashlib.sha256(content).hexdigest()}
    assert wheel["size"] == len(content)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", wheel["upload-time"])
    assert wheel["requires-python"] == ">=3.8,<4"
    assert wheel["yanked"] is False
    assert wheel["core-metadata"] == wheel["dist-info-metadata"]
    assert set(wheel["core-metadata"]) == {"sha256"}
    assert by_name["demo_pkg-1.0.tar.gz"]["core-metadata"] is False
    assert wheel["url"].startswith("../../files/")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (JSON, JSON),
        (HTML, HTML),
        ("text/html", "text/html"),
        (f"{JSON}, {HTML};q=0.2, text/html;q=0.01", JSON),  # pip's header
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("*/*", "text/html"),
        (None, "text/html"),
    ],
)
def test_content_negotiation(registry, published, accept, expected):
    headers = {"Accept": accept} if accept else {}
    page = registry.client.get(f"{published['base']}/simple/demo-pkg/", headers=headers)
    assert page.mimetype == expected


def test_unsupported_accept_is_406(registry, published):
    page = registry.client.get(
        f"{published['base']}/simple/demo-pkg/", headers={"Accept": "application/xml"}
    )
    assert page.status_code == 406


def test_non_normalized_name_redirects_301(registry, published):
    from urllib.parse import urljoin

    url = f"{published['base']}/simple/Demo.Pkg/"
    page = registry.client.get(url)
    assert page.status_code == 301
    # Relative, so it stays right behind a proxy that adds a path prefix.
    assert urljoin(url, page.headers["Location"]) == f"{published['base']}/simple/demo-pkg/"


def test_unknown_name_is_404(registry, published):
    registry.app.config["UPSTREAM_MODE"] = "off"  # else redirected: tests/test_forwarding.py
    assert registry.client.get(f"{published['base']}/simple/nothing-here/").status_code == 404


def test_etag_and_304(registry, published):
    url = f"{published['base']}/simple/demo-pkg/"
    first = registry.client.get(url)
    assert first.headers["ETag"]
    assert "no-cache" in first.headers["Cache-Control"]
    again = registry.client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    as_json = registry.client.get(url, headers={"Accept": JSON})
    assert as_json.headers["ETag"] != first.headers["ETag"]


def test_yanked_release_is_marked_and_still_downloadable(registry, published):
    package = db.session.query(Package).filter_by(version="2.0rc1").one()
    package.yanked, package.yanked_reason = True, 'broken "build"'
    db.session.commit()
    url = f"{published['base']}/simple/demo-pkg/"
    html = registry.client.get(url).text
    assert 'data-yanked="broken &quot;build&quot;"' in html
    files = {
        f["filename"]: f for f in registry.client.get(url, headers={"Accept": JSON}).json["files"]
    }
    assert files["demo_pkg-2.0rc1-py3-none-any.whl"]["yanked"] == 'broken "build"'
    href = re.search(r'href="\.\./\.\./files/([^"#]+)#[^"]*"[^>]*data-yanked', html).group(1)
    assert registry.client.get(f"{published['base']}/files/{href}").status_code == 200


def test_download_headers_ranges_and_conditionals(registry, published):
    content = published["uploads"]["demo_pkg-1.0.tar.gz"]
    sha = hashlib.sha256(content).hexdigest()
    url = f"{published['base']}/files/{sha}/demo_pkg-1.0.tar.gz"
    response = registry.client.get(url)
    assert response.status_code == 200
    assert response.data == content
    assert response.mimetype == "application/gzip"
    assert int(response.headers["Content-Length"]) == len(content)
    assert response.headers["ETag"].strip('"') == sha
    assert response.cache_control.max_age == 365 * 24 * 3600 and response.cache_control.immutable
    assert not response.cache_control.no_cache
    assert "Expires" not in response.headers  # max-age says it; HTTP/1.1 ignores Expires then
    partial = registry.client.get(url, headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206
    assert partial.data == content[:10]
    assert registry.client.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    head = registry.client.head(url)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(content)


def test_wheel_download_type_and_wrong_hash(registry, published):
    content = published["uploads"]["other-0.1-py3-none-any.whl"]
    sha = hashlib.sha256(content).hexdigest()
    ok = registry.client.get(f"{published['base']}/files/{sha}/other-0.1-py3-none-any.whl")
    assert ok.mimetype == "application/zip"
    wrong = registry.client.get(f"{published['base']}/files/{'0' * 64}/other-0.1-py3-none-any.whl")
    assert wrong.status_code == 404


def test_core_metadata_is_the_wheels_metadata_file_unchanged(registry, published):
    import io
    import zipfile

    content = published["uploads"]["demo_pkg-1.0-py3-none-any.whl"]
    sha = hashlib.sha256(content).hexdigest()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        expected = archive.read("demo_pkg-1.0.dist-info/METADATA")
    url = f"{published['base']}/files/{sha}/demo_pkg-1.0-py3-none-any.whl.metadata"
    response = registry.client.get(url)
    assert response.status_code == 200
    assert response.data == expected
    page = registry.client.get(f"{published['base']}/simple/demo-pkg/", headers={"Accept": JSON})
    advertised = {f["filename"]: f for f in page.json["files"]}["demo_pkg-1.0-py3-none-any.whl"]
    assert advertised["core-metadata"]["sha256"] == hashlib.sha256(expected).hexdigest()
    sdist_sha = hashlib.sha256(published["uploads"]["demo_pkg-1.0.tar.gz"]).hexdigest()
    no_sdist_metadata = f"{published['base']}/files/{sdist_sha}/demo_pkg-1.0.tar.gz.metadata"
    assert registry.client.get(no_sdist_metadata).status_code == 404


def test_every_path_works_with_a_trailing_slash(registry, published):
    content = published["uploads"]["other-0.1-py3-none-any.whl"]
    sha = hashlib.sha256(content).hexdigest()
    url = f"{published['base']}/files/{sha}/other-0.1-py3-none-any.whl/"
    assert registry.client.get(url).status_code == 200


def test_group_index_spans_subgroups(registry, published):
    admin_token = published["token"]
    team = published["project"].group
    sub = registry.group("sub", "public", parent=team)
    deep = registry.project(sub, "deep", "public")
    filename, content = make_wheel("deep-pkg", "1.0")
    response = registry.upload(deep, filename, content, token=admin_token, name="deep-pkg")
    assert response.status_code == 201
    root = registry.client.get(
        "/api/v4/groups/team/-/packages/pypi/simple/", headers={"Accept": JSON}
    )
    names = [p["name"] for p in root.json["projects"]]
    assert names == ["deep-pkg", "Demo.Pkg", "other"]
    page = registry.client.get("/api/v4/groups/team%2Fsub/-/packages/pypi/simple/deep-pkg/")
    assert page.status_code == 200 and filename in page.text


def test_group_project_page_json_names_the_normalized_name(registry, published):
    page = registry.client.get(
        "/api/v4/groups/team/-/packages/pypi/simple/demo-pkg/", headers={"Accept": JSON}
    )
    assert page.json["name"] == "demo-pkg"
    assert (
        "<title>Links for Demo.Pkg</title>"
        in registry.client.get("/api/v4/groups/team/-/packages/pypi/simple/demo-pkg/").text
    )  # HTML keeps the display name for people


def test_same_filename_in_two_projects_newest_upload_wins_in_group_index(registry, published):
    token = published["token"]
    team = published["project"].group
    second = registry.project(team, "fork", "public")
    filename, content = make_wheel("other", "0.1", summary="the fork's build")
    assert registry.upload(second, filename, content, token=token).status_code == 201
    page = registry.client.get(
        "/api/v4/groups/team/-/packages/pypi/simple/other/", headers={"Accept": JSON}
    )
    files = page.json["files"]
    assert [f["filename"] for f in files] == [filename]
    assert files[0]["hashes"]["sha256"] == hashlib.sha256(content).hexdigest()


def test_credentials_do_not_change_links(registry, published):
    anonymous = registry.client.get(f"{published['base']}/simple/demo-pkg/").text
    signed = registry.client.get(
        f"{published['base']}/simple/demo-pkg/", headers=basic(published["token"])
    ).text
    assert anonymous == signed
