"""Core metadata: located in a stored distribution, parsed, matched against the upload."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
import tracemalloc
import zipfile

import pytest

from app.domain.archives import ArchiveLimits, UnsafeArchive
from app.domain.errors import InvalidInput
from app.domain.metadata import (
    FIELDS,
    CoreMetadata,
    InvalidMetadata,
    check_matches,
    parse_metadata,
    read_metadata_bytes,
)
from tests.dists import make_sdist, make_wheel, metadata_text

MB = 1024 * 1024
LIMITS = ArchiveLimits()

HEAD = "Name: demo-pkg\nVersion: 1.0\n"
V1_0 = (
    HEAD + "Summary: A demo package\n"
    "Description: First line.\n"
    "        Second line.\n"
    "        \n"
    "        Fourth line.\n"
    "Keywords: demo,test\n"
    "Home-page: https://example.com/demo\n"
    "Author: Ann Author\n"
    "Author-email: ann@example.com\n"
    "License: MIT\n"
    "Platform: linux\n"
    "Platform: win32\n"
)
V1_1 = (
    V1_0 + "Classifier: License :: OSI Approved :: MIT License\n"
    "Classifier: Programming Language :: Python :: 3\n"
    "Download-URL: https://example.com/demo-1.0.tar.gz\n"
    "Requires: os\n"
    "Provides: demo\n"
    "Obsoletes: olddemo\n"
)
V1_2 = (
    V1_1 + "Maintainer: Max Maintainer\n"
    "Maintainer-email: Max <max@example.com>\n"
    "Requires-Python: >=3.9\n"
    "Requires-Dist: requests (>=2.0)\n"
    "Requires-Dist: tomli; python_version < '3.11'\n"
    "Requires-External: libpq\n"
    "Provides-Dist: demo-pkg\n"
    "Obsoletes-Dist: old-demo\n"
    "Project-URL: Homepage, https://example.com\n"
    "Project-URL: Bug Tracker, https://example.com/issues\n"
)
BODY = "\n# Demo ✓\n\nA *markdown* description: naïve café, 日本語.\n"
V2_1 = V1_2.replace("Requires-Python", "Provides-Extra: test\nRequires-Python").replace(
    "Description: First line.\n        Second line.\n        \n        Fourth line.\n", ""
) + ("Requires-Dist: pytest>=8; extra == 'test'\nDescription-Content-Type: text/markdown\n")
V2_2 = V2_1 + "Dynamic: Requires-Dist\nDynamic: Classifier\n"
V2_3 = V2_2.replace("Provides-Extra: test", "Provides-Extra: test-all")
V2_4 = (
    V2_3.replace("License: MIT\n", "")
    + "License-Expression: MIT OR Apache-2.0\nLicense-File: LICENSE\nLicense-File: NOTICE\n"
)
V1_0_FIELDS = {
    "name": "demo-pkg",
    "version": "1.0",
    "summary": "A demo package",
    "keywords": "demo,test",
    "home_page": "https://example.com/demo",
    "author": "Ann Author",
    "author_email": "ann@example.com",
    "license": "MIT",
    "platforms": ["linux", "win32"],
}
V1_1_FIELDS = V1_0_FIELDS | {
    "classifiers": [
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
    ],
    "download_url": "https://example.com/demo-1.0.tar.gz",
    "requires": ["os"],
    "provides": ["demo"],
    "obsoletes": ["olddemo"],
}
V1_2_FIELDS = V1_1_FIELDS | {
    "maintainer": "Max Maintainer",
    "maintainer_email": "Max <max@example.com>",
    "requires_python": ">=3.9",
    "requires_dist": ["requests (>=2.0)", "tomli; python_version < '3.11'"],
    "requires_external": ["libpq"],
    "provides_dist": ["demo-pkg"],
    "obsoletes_dist": ["old-demo"],
    "project_urls": ["Homepage, https://example.com", "Bug Tracker, https://example.com/issues"],
}
V2_1_FIELDS = V1_2_FIELDS | {
    "description": BODY.lstrip("\n"),
    "description_content_type": "text/markdown",
    "provides_extras": ["test"],
    "requires_dist": [*V1_2_FIELDS["requires_dist"], "pytest>=8; extra == 'test'"],
}
V2_2_FIELDS = V2_1_FIELDS | {"dynamic": ["Requires-Dist", "Classifier"]}
V2_3_FIELDS = V2_2_FIELDS | {"provides_extras": ["test-all"]}
V2_4_FIELDS = V2_3_FIELDS | {
    "license": None,
    "license_expression": "MIT OR Apache-2.0",
    "license_file": ["LICENSE", "NOTICE"],
}
EMPTY_LIST_FIELDS = (
    "classifiers", "requires_dist", "requires_external", "provides_extras", "provides_dist",
    "obsoletes_dist", "project_urls", "platforms", "supported_platforms", "dynamic",
    "requires", "provides", "obsoletes", "license_file",
)  # fmt: skip


def metadata(version: str, text: str, body: str = "") -> bytes:
    return (f"Metadata-Version: {version}\n{text}{body}").encode()


@pytest.mark.parametrize(
    ("version", "text", "body", "expected"),
    [
        pytest.param("1.0", V1_0, "", V1_0_FIELDS, id="1.0"),
        pytest.param("1.1", V1_1, "", V1_1_FIELDS, id="1.1"),
        pytest.param("1.2", V1_2, "", V1_2_FIELDS, id="1.2"),
        pytest.param("2.1", V2_1, BODY, V2_1_FIELDS, id="2.1"),
        pytest.param("2.2", V2_2, BODY, V2_2_FIELDS, id="2.2"),
        pytest.param("2.3", V2_3, BODY, V2_3_FIELDS, id="2.3"),
        pytest.param("2.4", V2_4, BODY, V2_4_FIELDS, id="2.4"),
    ],
)
def test_every_metadata_version_is_parsed(version, text, body, expected):
    raw = metadata(version, text, body)
    meta = parse_metadata(raw)
    assert meta.raw == raw
    assert meta.sha256 == hashlib.sha256(raw).hexdigest()
    assert set(meta.fields) == set(FIELDS)
    assert meta.fields["metadata_version"] == version
    for field, value in expected.items():
        assert meta.fields[field] == value, field
    skip = {*expected, "metadata_version", "description"}
    untouched = {f: meta.fields[f] for f in FIELDS if f not in skip}
    for field, value in untouched.items():
        assert value == ([] if field in EMPTY_LIST_FIELDS else None), field
    json.dumps(meta.fields)  # stored in a JSON column as it is


def test_1_x_description_header_keeps_its_lines():
    meta = parse_metadata(metadata("1.0", V1_0))
    assert meta.fields["description"] == "First line.\nSecond line.\n\nFourth line."


def test_fields_of_a_later_version_are_ignored_under_an_earlier_one():
    meta = parse_metadata(metadata("1.0", V2_4, BODY))
    assert meta.fields["classifiers"] == []
    assert meta.fields["requires_dist"] == []
    assert meta.fields["requires_python"] is None
    assert meta.fields["license_expression"] is None
    assert meta.fields["dynamic"] == []


@pytest.mark.parametrize("version", ["2.0", "2.5"])
def test_other_known_versions_are_accepted(version):
    meta = parse_metadata(metadata(version, V1_2))
    assert meta.fields["requires_python"] == ">=3.9"


def test_unknown_placeholders_are_dropped():
    meta = parse_metadata(metadata("2.1", HEAD + "Summary: UNKNOWN\nHome-page: UNKNOWN\n"))
    assert meta.fields["summary"] is None
    assert meta.fields["home_page"] is None


def test_crlf_line_endings_are_parsed():
    raw = metadata("2.1", HEAD + "Requires-Python: >=3.8\n").replace(b"\n", b"\r\n")
    meta = parse_metadata(raw)
    assert (meta.fields["name"], meta.fields["requires_python"]) == ("demo-pkg", ">=3.8")


def test_sha256_is_of_the_raw_bytes():
    raw = metadata("2.1", HEAD)
    assert CoreMetadata(raw, {}).sha256 == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nAuthor: Jos\xe9\n",  # latin-1
        b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: \x93quoted\x94\n",
        b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n\n\xed\xa0\x80 surrogate\n",
        b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: \xc0\xaf overlong\n",
        b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nSummary: cut \xe2\x82\n",
        "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n".encode("utf-16"),
    ],
)
def test_metadata_that_is_not_utf_8_is_refused(raw):
    with pytest.raises(InvalidMetadata, match="not valid UTF-8"):
        parse_metadata(raw)


@pytest.mark.parametrize("version", ["3.0", "3.1", "4.0", "10.0", "0.9", "abc", "", "-1.0"])
def test_unsupported_metadata_versions_are_refused(version):
    with pytest.raises(InvalidMetadata, match="Unsupported Metadata-Version"):
        parse_metadata(metadata(version, HEAD))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"Name: demo-pkg\nVersion: 1.0\n",
        b"\nMetadata-Version: 2.1\nName: demo-pkg\n",  # all body, no headers
        b'{"metadata_version": "2.1", "name": "demo-pkg"}',
    ],
)
def test_metadata_without_a_version_header_is_refused(raw):
    with pytest.raises(InvalidMetadata, match="Unsupported Metadata-Version: missing"):
        parse_metadata(raw)


def test_invalid_metadata_is_invalid_input():
    assert issubclass(InvalidMetadata, InvalidInput)


# -- check_matches -------------------------------------------------------------------------


def meta_of(text: str) -> CoreMetadata:
    return parse_metadata(metadata("2.1", text))


@pytest.mark.parametrize(
    ("name", "version"),
    [("demo-pkg", "1.0"), ("Demo_Pkg", "1.0"), ("demo.pkg", "1.0.0"), ("DEMO--PKG", "v1.0")],
)
def test_matching_name_and_version_pass(name, version):
    check_matches(meta_of(HEAD), name, version)


def test_another_name_is_refused():
    with pytest.raises(InvalidMetadata, match=r"Metadata name 'demo-pkg' does not match .*'other'"):
        check_matches(meta_of(HEAD), "other", "1.0")


def test_another_version_is_refused():
    with pytest.raises(
        InvalidMetadata, match=r"Metadata version '1\.0' does not match .*'1\.0\.1'"
    ):
        check_matches(meta_of(HEAD), "demo-pkg", "1.0.1")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Version: 1.0\n", "Metadata name ''"),
        ("Name: demo-pkg\n", "Metadata version ''"),
        ("Name: demo-pkg\nVersion: not-a-version\n", "Metadata version 'not-a-version'"),
        ("Name: demo-pkg\nVersion: " + "1" * 300 + "\n", "Metadata version"),
    ],
)
def test_missing_or_invalid_name_or_version_is_refused(text, match):
    with pytest.raises(InvalidMetadata, match=match):
        check_matches(meta_of(text), "demo-pkg", "1.0")


# -- read_metadata_bytes -------------------------------------------------------------------


def test_wheel_metadata_is_read():
    filename, content = make_wheel("demo-pkg", "1.0", requires_python=">=3.8")
    raw = read_metadata_bytes(io.BytesIO(content), filename, LIMITS)
    assert raw == metadata_text("demo-pkg", "1.0", requires_python=">=3.8").encode()


def test_sdist_tar_gz_pkg_info_is_read():
    filename, content = make_sdist("demo-pkg", "1.0", metadata_version="2.2")
    raw = read_metadata_bytes(io.BytesIO(content), filename, LIMITS)
    assert raw == metadata_text("demo-pkg", "1.0", metadata_version="2.2").encode()


def zip_sdist(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_sdist_zip_pkg_info_is_read():
    raw = metadata("2.1", HEAD)
    content = zip_sdist(
        {
            "demo_pkg-1.0/setup.py": b"",
            "demo_pkg-1.0/demo_pkg.egg-info/PKG-INFO": b"not this one",
            "demo_pkg-1.0/PKG-INFO": raw,
        }
    )
    assert read_metadata_bytes(io.BytesIO(content), "demo_pkg-1.0.zip", LIMITS) == raw


def test_wheel_without_dist_info_metadata_is_refused():
    content = zip_sdist({"demo_pkg-1.0/PKG-INFO": metadata("2.1", HEAD)})
    with pytest.raises(UnsafeArchive, match="No metadata file"):
        read_metadata_bytes(io.BytesIO(content), "demo_pkg-1.0-py3-none-any.whl", LIMITS)


def test_sdist_with_the_wrong_archive_format_is_refused():
    _filename, content = make_wheel("demo-pkg", "1.0")
    with pytest.raises(UnsafeArchive, match=r"Not a valid tar\.gz"):
        read_metadata_bytes(io.BytesIO(content), "demo_pkg-1.0.tar.gz", LIMITS)


@pytest.mark.parametrize("filename", ["demo-1.0.egg", "demo-1.0.tar.bz2", "demo-1.0.exe", ""])
def test_unsupported_archive_types_are_refused(filename):
    with pytest.raises(UnsafeArchive, match="Unsupported archive type"):
        read_metadata_bytes(io.BytesIO(b"x"), filename, LIMITS)


def test_wheel_with_a_200_mb_metadata_is_refused_quickly():
    with tempfile.TemporaryFile() as fh:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("demo_pkg/__init__.py", b"")
            with archive.open("demo_pkg-1.0.dist-info/METADATA", "w", force_zip64=True) as out:
                out.write(metadata("2.1", HEAD))
                zeros = bytes(MB)
                for _ in range(200):
                    out.write(zeros)
        for limits in (LIMITS, ArchiveLimits(max_ratio=10**9)):
            fh.seek(0)
            tracemalloc.start()
            started = time.process_time()  # CPU: a busy box cannot fail it
            with pytest.raises(UnsafeArchive, match=r"compression ratio|larger than"):
                read_metadata_bytes(fh, "demo_pkg-1.0-py3-none-any.whl", limits)
            elapsed = time.process_time() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert elapsed < 2
            assert peak < 50 * MB


# -- end to end: archive, parse, match -----------------------------------------------------


@pytest.mark.parametrize("make", [make_wheel, make_sdist])
def test_a_dist_whose_metadata_names_another_project_is_refused(make):
    raw = metadata("2.1", "Name: evil\nVersion: 1.0\n")
    filename, content = make("demo-pkg", "1.0", metadata=raw)
    meta = parse_metadata(read_metadata_bytes(io.BytesIO(content), filename, LIMITS))
    with pytest.raises(InvalidMetadata, match="Metadata name 'evil'"):
        check_matches(meta, "demo-pkg", "1.0")


@pytest.mark.parametrize("make", [make_wheel, make_sdist])
def test_a_dist_whose_metadata_has_another_version_is_refused(make):
    raw = metadata("2.1", "Name: demo-pkg\nVersion: 2.0\n")
    filename, content = make("demo-pkg", "1.0", metadata=raw)
    meta = parse_metadata(read_metadata_bytes(io.BytesIO(content), filename, LIMITS))
    with pytest.raises(InvalidMetadata, match=r"Metadata version '2\.0'"):
        check_matches(meta, "demo-pkg", "1.0")
