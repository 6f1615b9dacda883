"""The upload table of the contract: every answer, and nothing left behind on refusal."""

from __future__ import annotations

import hashlib
import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, update

from app.domain.storage import FileStorage, StorageError
from app.extensions import db
from app.models import Package, PackageFile, ReservedName
from tests.conftest import Registry, basic
from tests.dists import make_sdist, make_wheel, multipart_upload


@pytest.fixture
def setup(registry: Registry):
    admin = registry.user("root", admin=True)
    group = registry.group("team")
    project = registry.project(group, "lib")
    return project, registry.token(admin)


def stored_files(app) -> list[Path]:
    root = Path(app.config["DATA_DIR"]) / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_left(app) -> None:
    assert db.session.execute(select(func.count()).select_from(PackageFile)).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(Package)).scalar_one() == 0
    assert stored_files(app) == []


def test_wheel_and_sdist_are_created_and_stored(registry, setup, wheel, sdist):
    project, token = setup
    for filename, content in (wheel, sdist):
        response = registry.upload(project, filename, content, token=token)
        assert response.status_code == 201, response.text
    files = db.session.execute(select(PackageFile).order_by(PackageFile.id)).scalars().all()
    assert [f.filename for f in files] == [wheel[0], sdist[0]]
    assert files[0].sha256 == hashlib.sha256(wheel[1]).hexdigest()
    assert files[0].md5 == hashlib.md5(wheel[1]).hexdigest()
    assert files[0].blake2_256 == hashlib.blake2b(wheel[1], digest_size=32).hexdigest()
    assert files[0].state == "default"  # the (eager) worker processed it
    assert len(stored_files(registry.app)) == 2
    assert len({f.package_id for f in files}) == 1  # one release, two files


def test_an_upload_the_storage_fails_keeps_no_release_either(registry, setup, wheel, monkeypatch):
    """A new release and its first file are one transaction: when publishing the bytes
    fails (503), the release is not left behind without a file (on SQLite a savepoint
    around the release's insert used to commit it on its own)."""
    project, token = setup

    def failing_store(self, key, source):
        raise StorageError("the disk is gone")

    monkeypatch.setattr(FileStorage, "store", failing_store)
    response = registry.upload(project, *wheel, token=token)
    assert response.status_code == 503, response.text
    db.session.expire_all()
    assert db.session.execute(select(Package)).scalars().all() == []
    assert db.session.execute(select(PackageFile)).scalars().all() == []
    assert stored_files(registry.app) == []


@pytest.mark.parametrize("suffix", ["", "/"])
def test_upload_answers_201_with_or_without_trailing_slash(registry, setup, wheel, suffix):
    _project, token = setup
    response = registry.client.post(
        f"/api/v4/projects/team%2Flib/packages/pypi{suffix}",
        data={"content": (__import__("io").BytesIO(wheel[1]), wheel[0]), "name": "demo-pkg",
              "version": "1.0"},
        headers=basic(token),
    )  # fmt: skip
    assert response.status_code == 201, response.text


def test_client_digests_are_accepted_when_they_match(registry, setup, wheel):
    project, token = setup
    filename, content = wheel
    response = registry.upload(
        project, filename, content, token=token,
        sha256_digest=hashlib.sha256(content).hexdigest(),
        md5_digest=hashlib.md5(content).hexdigest(),
        blake2_256_digest=hashlib.blake2b(content, digest_size=32).hexdigest(),
    )  # fmt: skip
    assert response.status_code == 201


def test_another_file_of_the_same_version_is_accepted(registry, setup, wheel, sdist):
    project, token = setup
    assert registry.upload(project, *wheel, token=token).status_code == 201
    assert registry.upload(project, *sdist, token=token).status_code == 201
    zip_name, zip_content = "demo_pkg-1.0.zip", make_wheel("demo-pkg", "1.0")[1]
    assert registry.upload(project, zip_name, zip_content, token=token).status_code == 201


def test_pep_440_equal_versions_are_one_release(registry, setup):
    """6.0, 6.0.0 and 6 are one version (Version(a) == Version(b)): one release, which
    keeps the first spelling."""
    project, token = setup
    for version in ("6.0", "6.0.0", "6"):
        response = registry.upload(project, *make_wheel("demo-pkg", version), token=token)
        assert response.status_code == 201, response.status
    assert (
        registry.upload(project, *make_sdist("demo-pkg", "6.0.0"), token=token).status_code == 201
    )
    packages = db.session.execute(select(Package)).scalars().all()
    assert [(p.version, len(p.files)) for p in packages] == [("6.0", 4)]
    page = registry.client.get(
        f"/api/v4/projects/{project.id}/packages/pypi/simple/demo-pkg/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json", **basic(token)},
    )
    assert page.json["versions"] == ["6.0"]
    listed = registry.client.get(
        f"/api/v4/projects/{project.id}/packages", query_string={"package_version": "6.0.0"},
        headers=basic(token),
    )  # fmt: skip
    assert [p["version"] for p in listed.json] == ["6.0"]
    other = registry.upload(project, *make_wheel("demo-pkg", "6.0.1"), token=token)
    assert other.status_code == 201  # a different version is another release
    assert db.session.execute(select(func.count()).select_from(Package)).scalar_one() == 2


def test_second_upload_of_a_filename_is_refused(registry, setup, wheel):
    project, token = setup
    assert registry.upload(project, *wheel, token=token).status_code == 201
    again = registry.upload(project, *wheel, token=token)
    assert again.status_code == 400
    assert again.text.strip() == f"File already exists: {wheel[0]}"
    assert "File already exists" in again.status  # twine shows the reason phrase
    assert db.session.execute(select(func.count()).select_from(PackageFile)).scalar_one() == 1
    assert len(stored_files(registry.app)) == 1


BAD_UPLOADS = {
    "invalid name": dict(name="-bad name-"),
    "invalid version": dict(version="not a version"),
    "wrong extension": dict(filename="demo_pkg-1.0.exe"),
    "egg": dict(filename="demo_pkg-1.0-py3.11.egg"),
    "a path": dict(filename="../demo_pkg-1.0.tar.gz"),
    "a windows path": dict(filename="C:\\tmp\\demo_pkg-1.0.tar.gz"),
    "name disagrees": dict(name="other-pkg"),
    "version disagrees": dict(version="2.0"),
    "bad wheel name": dict(filename="demo_pkg-1.0.whl"),
    "sha256 mismatch": dict(sha256_digest="0" * 64),
    "md5 mismatch": dict(md5_digest="0" * 32),
    "blake2 mismatch": dict(blake2_256_digest="0" * 64),
    "empty file": dict(content=b""),
    "missing name": dict(name=""),
    "bad requires_python": dict(requires_python=">=3.8,,<"),
    "huge requires_python": dict(requires_python=">=3." + "9" * 300),
}


@pytest.mark.parametrize("case", BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_input_is_400_and_leaves_nothing_behind(registry, setup, case):
    project, token = setup
    filename, content = make_sdist("demo-pkg", "1.0")
    case = dict(case)
    response = registry.upload(
        project,
        case.pop("filename", filename),
        case.pop("content", content),
        token=token,
        name=case.pop("name", "demo-pkg"),
        version=case.pop("version", "1.0"),
        **case,
    )
    assert response.status_code == 400, response.text
    assert response.mimetype == "text/plain"
    assert response.text.strip()  # a reason twine can show
    assert_nothing_left(registry.app)
    assert list((Path(registry.app.config["DATA_DIR"]) / "files" / ".tmp").glob("*")) == []


def test_missing_content_is_400(registry, setup):
    project, token = setup
    response = registry.client.post(
        f"/api/v4/projects/{project.id}/packages/pypi",
        data={"name": "demo-pkg", "version": "1.0"},
        headers=basic(token),
    )
    assert response.status_code == 400
    assert "content" in response.text


def test_file_over_the_limit_is_413_and_not_stored(registry, setup):
    project, token = setup
    registry.app.config["MAX_UPLOAD_SIZE"] = 4096
    filename, content = make_wheel("demo-pkg", "1.0", payload=b"x" * 10_000)
    response = registry.upload(project, filename, content, token=token)
    assert response.status_code == 413
    assert "4096" in response.text
    assert_nothing_left(registry.app)
    assert list((Path(registry.app.config["DATA_DIR"]) / "files" / ".tmp").glob("*")) == []


def test_limit_applies_to_the_file_not_the_whole_request(registry, setup):
    project, token = setup
    filename, content = make_wheel("demo-pkg", "1.0")
    registry.app.config["MAX_UPLOAD_SIZE"] = len(content)
    big_description = "d" * (len(content) * 4)
    response = registry.upload(project, filename, content, token=token, description=big_description)
    assert response.status_code == 201, response.text


NOT_ITS_KIND = {
    "text as a wheel": ("demo_pkg-1.0-py3-none-any.whl", b"this is not a zip archive"),
    "gzip as a wheel": ("demo_pkg-1.0-py3-none-any.whl", b"\x1f\x8b\x08" + bytes(40)),
    "zip end record as a wheel": ("demo_pkg-1.0-py3-none-any.whl", b"PK\x05\x06" + bytes(18)),
    "shorter than a signature": ("demo_pkg-1.0-py3-none-any.whl", b"PK"),
    "text as a zip sdist": ("demo_pkg-1.0.zip", b"<html>not found</html>"),
    "text as a tar.gz": ("demo_pkg-1.0.tar.gz", b"this is not gzip"),
    "zip as a tar.gz": ("demo_pkg-1.0.tar.gz", b"PK\x03\x04" + bytes(40)),
    "one byte as a tar.gz": ("demo_pkg-1.0.tar.gz", b"\x1f"),
}
KIND_REASONS = {".whl": "is not a zip archive", ".zip": "is not a zip archive",
                ".gz": "is not gzip-compressed"}  # fmt: skip


@pytest.mark.parametrize(("filename", "content"), NOT_ITS_KIND.values(), ids=NOT_ITS_KIND.keys())
def test_a_file_whose_first_bytes_disprove_its_kind_is_400(registry, setup, filename, content):
    project, token = setup
    response = registry.upload(project, filename, content, token=token, name="demo-pkg",
                               version="1.0")  # fmt: skip
    assert response.status_code == 400, response.status
    reason = KIND_REASONS[Path(filename).suffix]
    assert response.text.strip() == f"Invalid file: {filename} {reason}"
    assert_nothing_left(registry.app)
    assert list((Path(registry.app.config["DATA_DIR"]) / "files" / ".tmp").glob("*")) == []


def test_a_wrong_file_is_refused_at_its_first_bytes_not_after_the_whole_body(registry, setup):
    project, token = setup
    junk = b"MZ" + b"\x00" * (8 * MiB)  # a Windows executable named as a wheel
    body, content_type = multipart_upload("demo-pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl", junk)
    stream = io.BytesIO(body)
    response = registry.client.post(
        f"/api/v4/projects/{project.id}/packages/pypi",
        input_stream=stream,
        content_length=len(body),
        content_type=content_type,
        headers=basic(token),
    )
    assert response.status_code == 400, response.status
    assert "is not a zip archive" in response.text
    assert stream.tell() < MiB  # the server stopped reading at the first chunk, not 8 MiB on
    assert_nothing_left(registry.app)


def broken_wheel() -> tuple[str, bytes]:
    """A real zip whose metadata names another version: the worker settles it in error."""
    return make_wheel("demo-pkg", "1.0", metadata="Metadata-Version: 2.1\nName: demo-pkg\n"
                      "Version: 9.9\n")  # fmt: skip


def test_a_filename_whose_upload_failed_may_be_uploaded_again(registry, setup):
    project, token = setup
    filename, broken = broken_wheel()
    assert registry.upload(project, filename, broken, token=token).status_code == 201
    failed = db.session.execute(select(PackageFile)).scalar_one()
    assert failed.state == "error"  # the (eager) worker refused it
    failed_id, failed_blob = failed.id, failed.storage_key
    _, good = make_wheel("demo-pkg", "1.0")

    response = registry.upload(project, filename, good, token=token)
    assert response.status_code == 201, response.status
    db.session.expire_all()
    replaced = db.session.execute(select(PackageFile)).scalar_one()  # the failed row is gone
    assert replaced.filename == filename and replaced.storage_key != failed_blob
    assert replaced.state == "default" and replaced.sha256 == hashlib.sha256(good).hexdigest()
    assert [p.read_bytes() for p in stored_files(registry.app)] == [good]  # old blob removed
    assert not (Path(registry.app.config["DATA_DIR"]) / "files" / failed_blob).exists()
    assert db.session.execute(select(func.count()).select_from(Package)).scalar_one() == 1
    events = registry.client.get(
        "/api/v4/audit_events", headers={"PRIVATE-TOKEN": token}
    ).json  # fmt: skip
    uploaded = [e for e in events if e["event_name"] == "package_file_uploaded"]
    assert uploaded[0]["details"]["replaced_file_id"] == failed_id  # newest first

    again = registry.upload(project, filename, good, token=token)  # now it is a real file
    assert again.status_code == 400 and again.text.strip() == f"File already exists: {filename}"


def test_a_file_still_processing_is_not_replaced(registry, setup, wheel):
    project, token = setup
    assert registry.upload(project, *wheel, token=token).status_code == 201
    db.session.execute(update(PackageFile).values(state="processing"))
    db.session.commit()
    again = registry.upload(project, *wheel, token=token)
    assert again.status_code == 400 and "File already exists" in again.text
    assert len(stored_files(registry.app)) == 1


def test_a_rejected_replacement_keeps_the_failed_file(registry, setup):
    project, token = setup
    filename, broken = broken_wheel()
    assert registry.upload(project, filename, broken, token=token).status_code == 201
    refused = registry.upload(project, filename, make_wheel("demo-pkg", "1.0")[1], token=token,
                              sha256_digest="0" * 64)  # fmt: skip
    assert refused.status_code == 400
    db.session.expire_all()
    kept = db.session.execute(select(PackageFile)).scalar_one()
    assert kept.state == "error"
    assert [p.read_bytes() for p in stored_files(registry.app)] == [broken]


MiB = 1024 * 1024


@pytest.mark.parametrize("size", [600_000, 4 * MiB])
def test_a_description_up_to_4_mib_is_accepted(registry, setup, size):
    """Flask 3.1's own 500 kB form-field limit used to win: 413 for a long README."""
    project, token = setup
    filename, content = make_wheel("demo-pkg", "1.0")
    registry.app.config["MAX_UPLOAD_SIZE"] = len(content)  # the file at the limit, too
    response = registry.upload(project, filename, content, token=token, description="d" * size)
    assert response.status_code == 201, response.status


def test_a_text_field_over_4_mib_is_400_with_a_reason(registry, setup):
    project, token = setup
    filename, content = make_wheel("demo-pkg", "1.0")
    response = registry.upload(
        project, filename, content, token=token, description="d" * (4 * MiB + 1)
    )
    assert response.status_code == 400, response.status
    assert response.text.startswith(
        f"Form field too large: text fields such as the description may have at most {4 * MiB}"
        " bytes"
    )
    assert "Form field too large" in response.status  # twine shows the reason phrase
    assert_nothing_left(registry.app)
    assert list((Path(registry.app.config["DATA_DIR"]) / "files" / ".tmp").glob("*")) == []


def test_a_body_larger_than_any_acceptable_upload_is_413_before_it_is_read(registry, setup):
    project, token = setup
    filename, content = make_wheel("demo-pkg", "1.0")
    registry.app.config["MAX_UPLOAD_SIZE"] = len(content)
    response = registry.upload(
        project, filename, content, token=token, description="d" * (16 * MiB + 1)
    )
    assert response.status_code == 413
    assert response.text.startswith(f"Request too large: the limit is {len(content) + 16 * MiB}")
    assert_nothing_left(registry.app)


def test_no_credentials_is_401_with_a_basic_challenge(registry, setup, wheel):
    project, _ = setup
    response = registry.upload(project, *wheel, token=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Packyard"'
    assert_nothing_left(registry.app)


@pytest.mark.parametrize("kind", ["wrong", "expired", "revoked"])
def test_bad_tokens_are_401(registry, setup, wheel, kind):
    from app.models import PersonalAccessToken

    project, _ = setup
    user = registry.user("dev")
    registry.member(user, 30, project=project)
    token = registry.token(user)
    if kind == "wrong":
        token = token[:-4] + "AAAA"
    row = db.session.execute(
        select(PersonalAccessToken).where(PersonalAccessToken.user_id == user.id)
    ).scalar_one()
    if kind == "expired":
        row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    if kind == "revoked":
        row.revoked = True
    db.session.commit()
    response = registry.upload(project, *wheel, token=token)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_reader_may_not_upload(registry, setup, wheel):
    project, _ = setup
    reporter = registry.user("reporter")
    registry.member(reporter, 20, project=project)
    response = registry.upload(project, *wheel, token=registry.token(reporter))
    assert response.status_code == 403
    assert_nothing_left(registry.app)


def test_developer_may_upload_through_a_group_membership(registry, setup, wheel):
    project, _ = setup
    dev = registry.user("dev")
    registry.member(dev, 30, group=project.group)
    assert registry.upload(project, *wheel, token=registry.token(dev)).status_code == 201


def test_invisible_or_missing_project_is_404(registry, setup, wheel):
    project, _ = setup
    stranger = registry.token(registry.user("stranger"))
    assert registry.upload(project, *wheel, token=stranger).status_code == 404
    assert registry.upload("team%2Fnope", *wheel, token=stranger).status_code == 404
    assert registry.upload("99999", *wheel, token=stranger).status_code == 404


def test_same_filename_race_has_exactly_one_winner(registry, setup, wheel):
    _project, token = setup
    barrier = threading.Barrier(6)
    statuses: list[int] = []
    app = registry.app

    def upload() -> None:
        client = app.test_client()
        racer = Registry(app, client)
        barrier.wait()
        statuses.append(racer.upload("team%2Flib", *wheel, token=token).status_code)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [400] * 5
    assert db.session.execute(select(func.count()).select_from(PackageFile)).scalar_one() == 1
    assert len(stored_files(registry.app)) == 1


def test_a_wheel_and_an_sdist_of_a_new_name_racing_share_one_release(registry, setup, wheel, sdist):
    """Both create the release and reserve the name at once: one inserts each, the other
    finds them (``INSERT ... ON CONFLICT DO NOTHING``), and both files are accepted."""
    _project, token = setup
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    app = registry.app

    def upload(dist: tuple[str, bytes]) -> None:
        racer = Registry(app, app.test_client())
        barrier.wait()
        statuses.append(racer.upload("team%2Flib", *dist, token=token).status_code)

    threads = [threading.Thread(target=upload, args=(dist,)) for dist in (wheel, sdist)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201, 201]
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(Package)).scalar_one() == 1
    files = db.session.execute(select(PackageFile.package_id)).scalars().all()
    assert len(files) == 2 and len(set(files)) == 1
    assert db.session.execute(select(func.count()).select_from(ReservedName)).scalar_one() == 1


def test_replacing_a_failed_file_race_has_exactly_one_winner(registry, setup):
    project, token = setup
    filename, broken = broken_wheel()
    assert registry.upload(project, filename, broken, token=token).status_code == 201
    _, good = make_wheel("demo-pkg", "1.0")
    barrier = threading.Barrier(4)
    statuses: list[int] = []
    app = registry.app

    def upload() -> None:
        racer = Registry(app, app.test_client())
        barrier.wait()
        statuses.append(racer.upload("team%2Flib", filename, good, token=token).status_code)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [400] * 3
    db.session.expire_all()
    assert db.session.execute(select(PackageFile.state)).scalars().all() == ["default"]
    assert [p.read_bytes() for p in stored_files(registry.app)] == [good]


def statements_of_upload(registry, project, dist, token) -> list[str]:
    """The SQL statements one upload runs on the database (its task queued, not run)."""
    registry.app.extensions["celery"].conf.task_always_eager = False
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        response = registry.upload(project, *dist, token=token)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert response.status_code == 201, response.text
    return statements


def test_an_upload_reads_nothing_back_after_recording_its_file(registry, setup, wheel):
    """Each statement is a round trip (a network one on PostgreSQL) in the upload's time:
    once the file's row is inserted, only the audit event and the commit follow; the
    task is sent with the id the flush gave, not one read again after the commit."""
    project, token = setup
    statements = statements_of_upload(registry, project, wheel, token)
    file_row = "INSERT INTO package_files"
    after = statements[next(i for i, s in enumerate(statements) if s.startswith(file_row)) + 1 :]
    # Then, after the commit, only whether a webhook listens (by ids known before it).
    hooks_check = [s for s in after[1:] if s.startswith(("SELECT web_hooks", "SELECT groups."))]
    assert [s.split(" (")[0] for s in after[:1]] == ["INSERT INTO audit_events"], after
    assert after[1:] == hooks_check, after


def test_an_upload_loads_the_token_with_its_user_and_the_group_chain_without_the_group(
    registry, setup, wheel
):
    """The token's user comes in the token's query; the limit and the quota find the
    project's groups by its path, without loading its group first."""
    project, token = setup
    statements = statements_of_upload(registry, project, wheel, token)
    assert not any(s.startswith("SELECT users.") for s in statements)
    by_id = [s for s in statements if s.startswith("SELECT groups.id") and "groups.id = " in s]
    assert by_id == [], by_id


def test_an_upload_reads_its_group_chain_once_whatever_its_depth(registry, wheel):
    """The access check, the size limit, the quota and the webhook check all need the
    project's groups: one query loads them, and the others find them in the session
    (each walking the chain by itself cost a query per group and check)."""
    admin = registry.user("root", admin=True)
    parent = None
    for path in ("org", "dept", "team"):
        parent = registry.group(path, parent=parent)
    project = registry.project(parent, "lib")
    token = registry.token(admin)
    statements = statements_of_upload(registry, project, wheel, token)
    from_groups = [s for s in statements if " FROM groups" in s.split(" WHERE")[0]]
    assert len(from_groups) == 1, from_groups
