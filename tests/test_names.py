"""Package names, versions and distribution filenames: app.domain.names."""

from __future__ import annotations

import pytest
from packaging.version import Version

from app.domain.errors import InvalidFilename, InvalidInput
from app.domain.names import (
    APP_TOP_LEVEL_ROUTES,
    RESERVED_TOP_LEVEL,
    DistFilename,
    check_filename_matches,
    normalize,
    parse_filename,
    parse_version,
    validate_email,
    validate_name,
    validate_path,
    validate_top_level,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo", "demo"),
        ("Demo", "demo"),
        ("demo-pkg", "demo-pkg"),
        ("demo_pkg", "demo-pkg"),
        ("demo.pkg", "demo-pkg"),
        ("Demo__Pkg", "demo-pkg"),
        ("demo-._-pkg", "demo-pkg"),
        ("Zope.Interface", "zope-interface"),
        ("a1-B2_c3.D4", "a1-b2-c3-d4"),
    ],
)
def test_normalize_is_pep_503(name, expected):
    assert normalize(name) == expected
    assert normalize(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "name", ["a", "Z", "7", "demo", "Demo-Pkg", "demo_pkg", "demo.pkg", "a1", "1a", "a" * 255]
)
def test_valid_names_are_returned(name):
    assert validate_name(name) == name


def test_name_is_stripped():
    assert validate_name("  demo-pkg \n") == "demo-pkg"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        None,
        "-demo",
        "demo-",
        ".demo",
        "demo.",
        "_demo",
        "demo_",
        "demo pkg",
        "demo/pkg",
        "demo\\pkg",
        "demo@1",
        "demo+pkg",
        "demo\npkg",
        "demo\x00",
        "a" * 256,
        "naïve",
        "démo",
        "\u017fetuptools",  # LATIN SMALL LETTER LONG S: matched [A-Z] under IGNORECASE
        "\u0131nfo",  # LATIN SMALL LETTER DOTLESS I
        "\u212aelvin",  # KELVIN SIGN, which lower()s to an ASCII "k"
        "\uff44\uff45\uff4d\uff4f",  # fullwidth "demo"
    ],
)
def test_invalid_names_are_rejected(name):
    with pytest.raises(InvalidInput, match="Invalid package name"):
        validate_name(name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.0", "1.0"),
        (" 1.0 ", "1.0"),
        ("1.0\n", "1.0"),
        ("v1.0", "1.0"),
        ("1.0.0", "1.0.0"),
        ("1!2.0", "1!2.0"),
        ("1.0a1", "1.0a1"),
        ("1.0-alpha.1", "1.0a1"),
        ("1.0rc2", "1.0rc2"),
        ("1.0.post3", "1.0.post3"),
        ("1.0-3", "1.0.post3"),
        ("1.0.dev4", "1.0.dev4"),
        ("1.0+local.7", "1.0+local.7"),
        ("2024.01.05", "2024.1.5"),
    ],
)
def test_parse_version_accepts_pep_440(raw, expected):
    assert str(parse_version(raw)) == expected


def test_parse_version_compares_by_pep_440():
    assert parse_version("1.0") == parse_version("1.0.0") == parse_version("v1.0")
    assert parse_version("1.0a1") < parse_version("1.0") < parse_version("1.0.post1")


@pytest.mark.parametrize(
    "raw", ["", "   ", None, "abc", "1.0-foo", "1..0", "1.0 beta", "=1.0", "1" * 256]
)
def test_parse_version_rejects_non_pep_440(raw):
    with pytest.raises(InvalidInput, match="Invalid version"):
        parse_version(raw)


@pytest.mark.parametrize(
    ("filename", "name", "version", "kind"),
    [
        ("demo_pkg-1.0-py3-none-any.whl", "demo-pkg", "1.0", "bdist_wheel"),
        ("Demo_Pkg-1.0.post1-py2.py3-none-any.whl", "demo-pkg", "1.0.post1", "bdist_wheel"),
        ("demo-2.0-1-cp311-cp311-manylinux_2_17_x86_64.whl", "demo", "2.0", "bdist_wheel"),
        ("demo_pkg-1.0.tar.gz", "demo-pkg", "1.0", "sdist"),
        ("demo-pkg-1.0.tar.gz", "demo-pkg", "1.0", "sdist"),
        ("Demo.Pkg-1.0rc1.tar.gz", "demo-pkg", "1.0rc1", "sdist"),
        ("demo_pkg-1.0.zip", "demo-pkg", "1.0", "sdist"),
    ],
)
def test_parse_filename(filename, name, version, kind):
    dist = parse_filename(filename)
    assert dist == DistFilename(filename, name, Version(version), kind)


@pytest.mark.parametrize(
    "filename",
    [
        "",
        ".demo-1.0.tar.gz",
        "dir/demo-1.0.tar.gz",
        "dir\\demo-1.0.tar.gz",
        "../demo-1.0.tar.gz",
        "demo-1.0.tar.gz\x00.exe",
        "demo\n-1.0.tar.gz",
        "d" * 250 + "-1.0.tar.gz",
        "demo-1.0.tar.bz2",
        "demo-1.0.tgz",
        "demo-1.0.egg",
        "demo-1.0.exe",
        "demo-1.0.tar.gz ",
        "demo.tar.gz",
        "-1.0.tar.gz",
        "demo-not.a.version.tar.gz",
        "demo-1.0.whl",
        "demo-1.0-py3-none.whl",
        "demo-bad-py3-none-any.whl",
        "demo-1.0-x-py3-none-any.whl",  # a build tag must start with a digit
        "de mo-1.0-py3-none-any.whl",
    ],
)
def test_invalid_filenames_are_rejected(filename):
    with pytest.raises(InvalidFilename, match="Invalid filename"):
        parse_filename(filename)


@pytest.mark.parametrize(
    ("filename", "name", "version"),
    [
        ("demo_pkg-1.0-py3-none-any.whl", "demo-pkg", "1.0"),
        ("demo_pkg-1.0-py3-none-any.whl", "Demo.Pkg", "1.0.0"),
        ("demo-pkg-1.0.tar.gz", "DEMO_PKG", "v1.0"),
        ("demo_pkg-1.0.zip", "demo--pkg", "1.0"),
    ],
)
def test_filename_matching_the_form_passes(filename, name, version):
    check_filename_matches(parse_filename(filename), name, parse_version(version))


def test_filename_with_another_name_is_rejected():
    dist = parse_filename("other-1.0-py3-none-any.whl")
    with pytest.raises(InvalidFilename, match="does not match the package name 'demo'"):
        check_filename_matches(dist, "demo", parse_version("1.0"))


def test_filename_with_another_version_is_rejected():
    dist = parse_filename("demo-1.0.tar.gz")
    with pytest.raises(InvalidFilename, match=r"does not match the version 1\.0\.1"):
        check_filename_matches(dist, "demo", parse_version("1.0.1"))


def test_filename_with_a_confusable_name_is_rejected():
    dist = parse_filename("\u017fetuptools-1.0.tar.gz")  # parses: packaging lets it through
    with pytest.raises(InvalidFilename):
        check_filename_matches(dist, "setuptools", parse_version("1.0"))


# --- usernames, group and project paths, emails (GitLab's rules) ------------------


@pytest.mark.parametrize(
    "path", ["a", "7", "alice", "Alice", "alice.smith", "a-b_c.d", "team2", "x" * 255, "my.git2"]
)
def test_valid_paths_are_returned(path):
    assert validate_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        None,
        42,
        "al ice",
        "alice ",
        " alice",
        "-alice",
        "_alice",
        ".alice",
        "alice-",
        "alice_",
        "alice.",
        "al..ice",
        "al-_ice",
        "al._ice",
        "al/ice",
        "al@ice",
        "al+ice",
        "al\nice",
        "alice.git",
        "alice.GIT",
        "alice.atom",
        "ålice",
        "\u212aelvin",  # KELVIN SIGN, which lower()s to an ASCII "k"
        "\uff41lice",  # fullwidth "a"
        "x" * 256,
    ],
)
def test_invalid_paths_are_rejected(path):
    with pytest.raises(InvalidInput, match="can contain only letters, digits"):
        validate_path(path)


@pytest.mark.parametrize(
    "word", ["api", "API", "users", "static", "help", "explore", "dashboard", "admin", "health"]
)
def test_top_level_routes_are_reserved(word):
    with pytest.raises(InvalidInput, match="reserved"):
        validate_top_level(word, "username")
    assert validate_path(word) == word  # fine one level down (team/api)


def test_reserved_words_include_the_apps_own_routes_and_gitlabs():
    assert APP_TOP_LEVEL_ROUTES <= RESERVED_TOP_LEVEL
    assert {"api", "users", "static", "-", "_", "admin", "help", "explore"} <= RESERVED_TOP_LEVEL


@pytest.mark.parametrize(
    "email",
    [
        "a@example.com",
        "Alice.Smith@Example.COM",
        "first.last+tag@mail.example.co.uk",
        "o'brien@example.ie",
        "x_y-z@sub-domain.example.org",
        "a@xn--bcher-kva.example",
        "a@b.xn--p1ai",
        " padded@example.com ",
    ],
)
def test_valid_emails_are_returned_stripped(email):
    assert validate_email(email) == email.strip()


@pytest.mark.parametrize(
    "email",
    [
        "e",
        "",
        None,
        "@example.com",
        "alice@",
        "alice@example",
        "alice@localhost",
        "alice@@example.com",
        "al ice@example.com",
        "alice@exa mple.com",
        "alice@.example.com",
        "alice@example..com",
        "alice@-example.com",
        "alice@example-.com",
        ".alice@example.com",
        "alice.@example.com",
        "al..ice@example.com",
        "alice@example.c",
        "alice@example.c0m",
        "alice@example.com.",
        "alice\n@example.com",
        "<alice@example.com>",
        "Alice <alice@example.com>",
        "ålice@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "a@" + "b" * 64 + ".com",  # a DNS label has at most 63 characters
    ],
)
def test_invalid_emails_are_rejected(email):
    with pytest.raises(InvalidInput, match="email is invalid"):
        validate_email(email)
