"""Units of the pull-through cache without a database: reading upstream pages (PEP 691
JSON, PEP 503 HTML), the allow/deny rules, the settings' parsing and the configuration."""

from __future__ import annotations

import json

import pytest

from app import create_app
from app.domain.errors import InvalidInput
from app.domain.indexes import render_project_html, render_project_json
from app.domain.upstream.client import Upstream
from app.domain.upstream.pages import (
    InvalidPage,
    UpstreamPage,
    as_project_page,
    name_candidates,
    parse_page,
)
from app.domain.upstream.policy import UpstreamPolicy, parse_mode, parse_patterns

A, B, C = "a" * 64, "b" * 64, "c" * 64
PAGE_URL = "https://mirror.example/simple/demo-pkg/"


def json_page(*files: dict, **extra: object) -> bytes:
    return json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "demo-pkg", "files": list(files), **extra}
    ).encode()


def test_json_files_keep_every_field_and_resolve_their_urls():
    body = json_page(
        {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "../../files/demo_pkg-1.0.whl",
         "hashes": {"sha256": A.upper(), "md5": "x"}, "requires-python": ">=3.9", "yanked": "bad",
         "size": 123, "upload-time": "2024-05-06T07:08:09.123Z", "core-metadata": {"sha256": B}},
        {"filename": "demo-pkg-1.0.tar.gz", "url": "https://files.example/x/demo-pkg-1.0.tar.gz",
         "hashes": {"sha256": C}, "yanked": True, "dist-info-metadata": True},
        versions=["1.0", "2.0"],
    )  # fmt: skip
    page = parse_page(body, "application/vnd.pypi.simple.v1+json", PAGE_URL, "demo-pkg")
    wheel, sdist = page.files
    assert wheel.url == "https://mirror.example/files/demo_pkg-1.0.whl"
    assert (wheel.sha256, wheel.requires_python, wheel.yanked, wheel.yanked_reason) == (
        A, ">=3.9", True, "bad",
    )  # fmt: skip
    assert (wheel.size, wheel.upload_time, wheel.metadata_sha256) == (
        123, "2024-05-06T07:08:09.123Z", B,
    )  # fmt: skip
    assert sdist.url == "https://files.example/x/demo-pkg-1.0.tar.gz"
    assert sdist.yanked and sdist.yanked_reason is None
    assert sdist.metadata_sha256 is None  # "true" without a hash: cannot be verified
    assert page.versions == ("1.0", "2.0")  # the upstream's list, with versions lacking files


def test_unverifiable_and_foreign_files_are_left_out():
    body = json_page(
        {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "a.whl", "hashes": {"md5": "x"}},
        {"filename": "demo_pkg-1.1-py3-none-any.whl", "url": "b.whl", "hashes": {"sha256": "xyz"}},
        {"filename": "evil-1.0-py3-none-any.whl", "url": "c.whl", "hashes": {"sha256": A}},
        {"filename": "../demo_pkg-1.2.tar.gz", "url": "d", "hashes": {"sha256": A}},
        {"filename": "demo_pkg-1.2#x.tar.gz", "url": "e", "hashes": {"sha256": A}},
        {"filename": "demo_pkg-1.3.tar.gz", "url": "file:///etc/passwd", "hashes": {"sha256": A}},
        {"filename": "demo_pkg-1.4.tar.gz", "url": "ok.tar.gz", "hashes": {"sha256": A},
         "size": True},
        "not a file",
    )  # fmt: skip
    page = parse_page(body, "application/vnd.pypi.simple.v1+json", PAGE_URL, "demo-pkg")
    assert [f.filename for f in page.files] == ["demo_pkg-1.4.tar.gz"]
    assert page.files[0].size is None
    assert page.versions == ("1.4",)  # none given: derived from the files kept


def test_html_anchors_keep_every_attribute():
    body = f"""<!DOCTYPE html><html><body>
      <a href="../../files/demo_pkg-1.0-py3-none-any.whl#sha256={A}"
         data-requires-python="&gt;=3.8" data-core-metadata="sha256={B}"
         >demo_pkg-1.0-py3-none-any.whl</a>
      <a href="https://files.example/demo-pkg-0.9.tar.gz#sha256={C}"
         data-yanked="">demo-pkg-0.9.tar.gz</a>
      <a href="/f/demo_pkg-0.8-py3-none-any.whl#sha256={C}" data-yanked="gone &amp; bad"
         data-dist-info-metadata="true"></a>
      <a href="/f/demo_pkg-0.7.tar.gz#md5=0123">demo_pkg-0.7.tar.gz</a>
      <a href="/f/demo_pkg-0.6.tar.gz">demo_pkg-0.6.tar.gz</a>
      <a>no href</a>
    </body></html>""".encode()  # fmt: skip
    page = parse_page(body, "text/html", PAGE_URL, "demo-pkg")
    wheel, sdist, old = page.files
    assert wheel.url == "https://mirror.example/files/demo_pkg-1.0-py3-none-any.whl"
    assert (wheel.requires_python, wheel.metadata_sha256, wheel.yanked) == (">=3.8", B, False)
    assert (sdist.url, sdist.yanked, sdist.yanked_reason) == (
        "https://files.example/demo-pkg-0.9.tar.gz", True, None,
    )  # fmt: skip
    assert old.filename == "demo_pkg-0.8-py3-none-any.whl"  # from the URL: no anchor text
    assert (old.yanked_reason, old.metadata_sha256) == ("gone & bad", None)
    assert page.name == "demo-pkg" and page.versions == ("1.0", "0.9", "0.8")


def test_broken_pages_are_refused():
    with pytest.raises(InvalidPage):
        parse_page(b"{not json", "application/vnd.pypi.simple.v1+json", PAGE_URL, "demo-pkg")
    with pytest.raises(InvalidPage):
        parse_page(b'{"files": 3}', "application/json", PAGE_URL, "demo-pkg")


def test_a_kept_page_renders_through_the_local_renderers():
    body = json_page(
        {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "x.whl", "hashes": {"sha256": A},
         "size": 5, "upload-time": "2024-05-06T07:08:09+02:00", "core-metadata": {"sha256": B},
         "yanked": "why"},
    )  # fmt: skip
    page = parse_page(body, "application/vnd.pypi.simple.v1+json", PAGE_URL, "demo-pkg")
    kept = UpstreamPage.from_json(json.loads(json.dumps(page.to_json())))
    assert kept == page
    rendered = json.loads(render_project_json(as_project_page(kept, "../../files/")))
    (entry,) = rendered["files"]
    assert entry["url"] == f"../../files/{A}/demo_pkg-1.0-py3-none-any.whl"
    assert entry["upload-time"] == "2024-05-06T05:08:09.000000Z"
    assert entry["core-metadata"] == {"sha256": B} and entry["yanked"] == "why"
    html = render_project_html(as_project_page(kept, "../../files/"))
    assert f'href="../../files/{A}/demo_pkg-1.0-py3-none-any.whl#sha256={A}"' in html


@pytest.mark.parametrize(
    ("filename", "names"),
    [
        ("Foo.Bar-1.0-py3-none-any.whl", ["foo-bar"]),
        ("foo-bar-1.0.tar.gz", ["foo", "foo-bar"]),
        ("foo_bar-1.0.zip", ["foo-bar"]),
    ],
)
def test_name_candidates(filename, names):
    assert name_candidates(filename) == names


# Rules and settings ----------------------------------------------------------------


def test_deny_wins_and_every_allow_list_must_match():
    policy = UpstreamPolicy("cache", deny=("acme-*",), allow=(("*",), ("requests", "acme-*")))
    assert policy.admits("requests")
    assert not policy.admits("acme-tools")  # allowed by both lists, denied by one
    assert not policy.admits("flask")  # not in the nearer allow list
    assert UpstreamPolicy("cache").admits("anything")
    assert not UpstreamPolicy("cache", allow=((),)).admits("anything")  # an empty allow list


def test_patterns_are_normalized_like_names():
    assert parse_patterns("upstream_deny", "Acme_*, internal.thing  other") == [
        "acme-*", "internal-thing", "other",
    ]  # fmt: skip
    assert parse_patterns("upstream_deny", ["a", "A", "b?"]) == ["a", "b?"]
    assert parse_patterns("upstream_deny", None) is None
    assert parse_patterns("upstream_deny", " ") is None
    assert parse_patterns("upstream_allow", []) == []
    for bad in (["a/b"], "x y;", ["é"]):
        with pytest.raises(InvalidInput):
            parse_patterns("upstream_deny", bad)


def test_modes_are_parsed():
    assert parse_mode("upstream_mode", "Cache") == "cache"
    assert parse_mode("upstream_mode", "") is None
    with pytest.raises(InvalidInput):
        parse_mode("upstream_mode", "mirror")


def test_credentials_stay_with_the_index_host():
    upstream = Upstream.from_config(
        {"UPSTREAM_URL": "https://user:p%40ss@index.example:8443/simple", "UPSTREAM_TIMEOUT": 3,
         "UPSTREAM_READ_TIMEOUT": 30}
    )  # fmt: skip
    assert upstream.url == "https://index.example:8443/simple/"
    assert upstream.auth_for("https://index.example:8443/files/x.whl") == ("user", "p@ss")
    assert upstream.auth_for("https://files.example/x.whl") is None
    assert upstream.auth_for("http://index.example:8443/x.whl") is None  # not over plain HTTP


@pytest.mark.parametrize(
    "settings",
    [{"UPSTREAM_MODE": "mirror"}, {"UPSTREAM_TTL": -1}, {"UPSTREAM_TIMEOUT": "soon"},
     {"UPSTREAM_KEEP_DAYS": 0}],
)  # fmt: skip
def test_invalid_configuration_is_refused_at_start(tmp_path, settings):
    with pytest.raises(ValueError, match="PACKYARD_UPSTREAM"):
        create_app({"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False, **settings})


def test_upstream_mode_wins_over_forwarding(tmp_path):
    app = create_app(
        {"DATA_DIR": str(tmp_path), "LOAD_ENTRYPOINT_PLUGINS": False, "FORWARDING": False,
         "UPSTREAM_MODE": "cache"}
    )  # fmt: skip
    assert app.config["UPSTREAM_MODE"] == "cache"
