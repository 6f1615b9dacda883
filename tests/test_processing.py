"""The worker's processing of a stored file: app.domain.processing.process_file, on SQLite
and PostgreSQL. Files are recorded with accept_upload and processed directly."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from app.domain.archives import ArchiveLimits
from app.domain.hashing import MultiDigest
from app.domain.processing import process_file
from app.domain.uploads import ReceivedFile, UploadForm, accept_upload, new_storage_key
from app.extensions import db
from app.models import PackageFile
from app.runtime import storage
from tests.conftest import Registry
from tests.dists import make_sdist, make_wheel, metadata_text


@pytest.fixture
def project(registry: Registry):
    return registry.project(registry.group("team"), "lib")


def record(project, filename: str, content: bytes, **form: str) -> int:
    """Store and record ``content`` as an upload of ``filename``, state "processing"."""
    store = storage()
    writer = store.writer(new_storage_key(project.id, filename))
    writer.write(content)
    digest = MultiDigest()
    digest.update(content)
    name = form.pop("name", filename.split("-")[0])
    version = form.pop(
        "version", filename.split("-")[1].removesuffix(".tar.gz").removesuffix(".zip")
    )
    upload = UploadForm(name=name, version=version, filename=filename, **form)
    package_file = accept_upload(
        db.session, store, project, upload, ReceivedFile(writer, digest, content[:4]), "t"
    ).package_file
    assert package_file.state == "processing"
    return package_file.id


def process(file_id: int, limits: ArchiveLimits | None = None) -> PackageFile:
    state = process_file(db.session, storage(), file_id, limits)
    db.session.expire_all()
    package_file = db.session.get(PackageFile, file_id)
    assert package_file is not None
    assert package_file.state == state
    assert package_file.processed_at is not None
    return package_file


def assert_error(package_file: PackageFile, match: str) -> None:
    assert package_file.state == "error"
    assert match in (package_file.error_reason or ""), package_file.error_reason
    assert package_file.core_metadata is None
    assert package_file.metadata_bytes is None
    assert package_file.metadata_sha256 is None


def zip_sdist(root: str, pkg_info: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{root}/setup.py", b"")
        archive.writestr(f"{root}/PKG-INFO", pkg_info)
    return buffer.getvalue()


def raw_metadata(metadata_version: str, name: str = "demo-pkg", version: str = "1.0") -> bytes:
    return f"Metadata-Version: {metadata_version}\nName: {name}\nVersion: {version}\n".encode()


# -- accepted ------------------------------------------------------------------------------


def test_wheel_is_processed(project):
    filename, content = make_wheel(
        "demo-pkg", "1.0", requires_python=">=3.8", requires_dist=("requests>=2",)
    )
    package_file = process(record(project, filename, content))
    assert package_file.state == "default"
    assert package_file.error_reason is None
    raw = metadata_text(
        "demo-pkg", "1.0", requires_python=">=3.8", requires_dist=("requests>=2",)
    ).encode()
    assert package_file.metadata_bytes == raw
    assert package_file.metadata_sha256 == hashlib.sha256(raw).hexdigest()
    assert package_file.core_metadata["name"] == "demo-pkg"
    assert package_file.core_metadata["requires_dist"] == ["requests>=2"]
    assert package_file.requires_python == ">=3.8"  # taken from the metadata


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_sdist("demo-pkg", "1.0", metadata_version="2.2"),
        lambda: ("demo_pkg-1.0.zip", zip_sdist("demo_pkg-1.0", raw_metadata("1.0"))),
    ],
    ids=["tar.gz", "zip"],
)
def test_sdists_are_processed(project, make):
    filename, content = make()
    package_file = process(record(project, filename, content))
    assert package_file.state == "default", package_file.error_reason
    assert package_file.core_metadata["version"] == "1.0"


def test_requires_python_of_the_form_is_kept(project):
    filename, content = make_wheel("demo-pkg", "1.0", requires_python=">=3.8")
    package_file = process(record(project, filename, content, requires_python=">=3.10"))
    assert package_file.requires_python == ">=3.10"


def test_equivalent_name_and_version_are_accepted(project):
    filename, content = make_wheel(
        "demo-pkg", "1.0", metadata=raw_metadata("2.1", "Demo.Pkg", "1.0.0")
    )
    package_file = process(record(project, filename, content, name="demo_pkg", version="1.0"))
    assert package_file.state == "default", package_file.error_reason


def test_processing_is_idempotent(project):
    filename, content = make_wheel("demo-pkg", "1.0")
    file_id = record(project, filename, content)
    first = process(file_id)
    processed_at = first.processed_at
    again = process(file_id)
    assert (again.state, again.processed_at) == ("default", processed_at)


def test_a_missing_file_row_is_none(app):
    assert process_file(db.session, storage(), 12345) is None


# -- refused -------------------------------------------------------------------------------


def test_metadata_of_another_name_is_an_error(project):
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw_metadata("2.1", "evil"))
    assert_error(process(record(project, filename, content)), "Metadata name 'evil'")


def test_metadata_of_another_version_is_an_error(project):
    filename, content = make_sdist("demo-pkg", "1.0", metadata=raw_metadata("2.1", version="1.1"))
    assert_error(process(record(project, filename, content)), "Metadata version '1.1'")


def test_non_utf_8_metadata_is_an_error(project):
    raw = raw_metadata("2.1") + b"Author: Jos\xe9\n"
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw)
    assert_error(process(record(project, filename, content)), "not valid UTF-8")


@pytest.mark.parametrize("metadata_version", ["3.0", "x" * 300])
def test_unsupported_metadata_version_is_an_error(project, metadata_version):
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw_metadata(metadata_version))
    assert_error(process(record(project, filename, content)), "Unsupported Metadata-Version")


def test_a_requires_python_too_long_for_its_column_is_an_error(project):
    """PostgreSQL refused the UPDATE (varchar 255): the task failed, the file stayed put."""
    raw = raw_metadata("2.1") + b"Requires-Python: " + b">=3.8," * 60 + b"\n"
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw)
    assert_error(process(record(project, filename, content)), "Requires-Python is longer")


def test_a_nul_quoted_in_the_error_is_stored(project):
    """PostgreSQL text refuses NUL: the error used to fail the commit instead."""
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw_metadata("3\x00"))
    assert_error(process(record(project, filename, content)), "Unsupported Metadata-Version: 3")


def test_nul_and_non_ascii_in_metadata_fields_are_stored(project):
    raw = raw_metadata("2.1") + "Summary: naïve \x00 ✓\n".encode()
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw)
    package_file = process(record(project, filename, content))
    assert package_file.state == "default", package_file.error_reason
    assert package_file.core_metadata["summary"] == "naïve \x00 ✓"
    assert package_file.metadata_bytes == raw


def test_a_corrupted_stored_file_is_an_error(project):
    filename, content = make_wheel("demo-pkg", "1.0")
    file_id = record(project, filename, content)
    package_file = db.session.get(PackageFile, file_id)
    path = storage().local_path(package_file.storage_key)
    path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    assert_error(process(file_id), "Stored file is corrupted")


def test_a_tar_with_an_unsafe_member_is_an_error(project):
    filename, content = make_sdist("demo-pkg", "1.0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as source:
            for info in source:
                archive.addfile(info, source.extractfile(info))
        evil = tarfile.TarInfo("../../evil.pth")
        archive.addfile(evil, io.BytesIO(b""))
    assert_error(process(record(project, filename, buffer.getvalue())), "Unsafe member path")


def test_a_wheel_with_a_corrupt_metadata_stream_is_an_error(project):
    """A zlib.error used to escape: the task failed and the file stayed "processing"."""
    filename, content = make_wheel("demo-pkg", "1.0", metadata=raw_metadata("2.1") * 40)
    data = bytearray(content)
    at = data.find(b"METADATA") + len(b"METADATA")
    data[at : at + 16] = b"\xff" * 16
    assert_error(process(record(project, filename, bytes(data))), "Cannot read")


def test_archive_limits_apply(project):
    filename, content = make_wheel("demo-pkg", "1.0")
    package_file = process(record(project, filename, content), ArchiveLimits(max_members=2))
    assert_error(package_file, "more than 2 members")


def test_processing_moves_the_cache_generation_once_and_reads_its_row_once(project):
    """Starting an attempt (its count, its start) changes nothing a page or an access
    decision is made of: only the settled state drops the caches of every process. And
    the row is read at the start and after the attempt's commit, not again to answer."""
    from sqlalchemy import event

    from app.caching.generation import current_generation

    file_id = record(project, *make_wheel("demo-pkg", "1.0"))
    db.session.commit()
    db.session.expire_all()
    before = current_generation(db.engine)
    reads: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT package_files."):
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert process_file(db.session, storage(), file_id) == "default"
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert current_generation(db.engine) == (before.data + 1, before.access)
    assert len(reads) == 2, reads
