"""Accepting an uploaded distribution: validate, record, publish the file atomically.

A filename is taken once per project, unless its earlier upload ended in ``error``, or
the project's duplicate policy (``app.domain.duplicates``) allows it again: the new upload
then replaces the earlier file, in the same transaction (its stored bytes go once that
commits), so a broken upload never blocks its filename.  A replacement is stored under a
new key and has a new row: every index, ETag and cache moves with the one commit, and a
page never links a sha256 to other bytes (the old link answers 404 once replaced).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.version import Version
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.archives import check_signature
from app.domain.audit import Actor, record
from app.domain.duplicates import duplicate_policy
from app.domain.errors import DigestMismatch, FileExists, InvalidFilename, InvalidInput
from app.domain.hashing import MultiDigest
from app.domain.limits import check_storage_quota
from app.domain.names import (
    check_filename_matches,
    normalize,
    parse_filename,
    parse_version,
    release_key,
    validate_name,
    validate_requires_python,
)
from app.domain.packages import schedule_deletions
from app.domain.reserved_names import reserve
from app.domain.sql import insert_or_skip
from app.domain.storage import StorageBackend, StorageWriter
from app.models import Package, PackageFile, Project
from app.models.base import utcnow


@dataclass(frozen=True)
class UploadForm:
    """What the client said about the file (twine's legacy upload fields)."""

    name: str
    version: str
    filename: str
    sha256_digest: str = ""
    md5_digest: str = ""
    blake2_256_digest: str = ""
    requires_python: str = ""
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedFile:
    """The received bytes, written but not yet published (``writer.commit``), and their
    digests and first bytes. The writer's key is where the file will live."""

    writer: StorageWriter
    digest: MultiDigest
    head: bytes  # at least archives.SIGNATURE_SIZE bytes, unless the file is shorter


@dataclass(frozen=True)
class AcceptedUpload:
    package_file: PackageFile  # expired by the commit: reading it costs a query
    file_id: int
    # Stored files to remove now that the upload is committed (a replaced file's).
    storage_deletions: list[int] = field(default_factory=list)


def new_storage_key(project_id: int, filename: str) -> str:
    """A fresh key for an upload to the project; it names the file when the name is a
    valid distribution filename (an invalid one is refused before anything is kept)."""
    try:
        name = parse_filename(filename).filename
    except InvalidFilename:
        name = "upload"
    return f"{project_id}/{uuid.uuid4().hex}/{name}"


def accept_upload(
    session: Session,
    store: StorageBackend,
    project: Project,
    form: UploadForm,
    received: ReceivedFile,
    uploader: str,
    *,
    actor: Actor = None,
) -> AcceptedUpload:
    """Record and store one file, atomically: both the row and the file, or neither.

    The row is flushed first, so the database's unique constraint picks exactly one
    winner when two uploads of the same filename race; only the winner's bytes are
    published (the caller aborts the writer of every other outcome), and they are
    removed again if the commit fails.
    """
    name = validate_name(form.name)
    version = parse_version(form.version)
    dist = parse_filename(form.filename)
    check_filename_matches(dist, name, version)
    requires_python = validate_requires_python(form.requires_python)
    _verify_digests(form, received.digest)
    check_signature(dist.filename, received.head)
    replaced, deletions = _remove_replaced_file(
        session, project, dist.filename, lambda: _duplicate_allowed(session, project, form)
    )
    check_storage_quota(session, project, received.digest.size)  # without the replaced file

    package = _get_or_create_package(session, project, name, form.version.strip(), version)
    reserve(session, package.normalized_name)  # never forwarded upstream from now on
    package_file = PackageFile(
        package_id=package.id,
        project_id=project.id,
        filename=dist.filename,
        size=received.digest.size,
        sha256=received.digest.sha256,
        md5=received.digest.md5,
        blake2_256=received.digest.blake2_256,
        storage_key=received.writer.key,
        requires_python=requires_python,
        uploaded_by=uploader,
        state="processing",
        enqueued_at=utcnow(),  # the caller sends the task after commit; the sweeper backs it up
    )
    session.add(package_file)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()  # the whole upload: nothing of it is kept
        raise FileExists(dist.filename) from None
    record(
        session, actor if actor is not None else uploader, "package_file_uploaded", project,
        "PackageFile", package_file.id,
        f"{project.full_path}/{package.name}/{package.version}/{dist.filename}",
        {"package_id": package.id, "sha256": package_file.sha256, "size": package_file.size,
         **replaced},
    )  # fmt: skip
    file_id = package_file.id  # known since the flush; after the commit it is a query
    try:
        received.writer.commit()  # the storage failing here (503) keeps no row either
        session.commit()
    except BaseException:
        session.rollback()
        if received.writer.committed:
            store.delete(package_file.storage_key)
        raise
    return AcceptedUpload(package_file, file_id, deletions)


def _duplicate_allowed(session: Session, project: Project, form: UploadForm) -> bool:
    return duplicate_policy(session, project).allows(form.name.strip(), form.version.strip())


def _remove_replaced_file(
    session: Session, project: Project, filename: str, duplicate_allowed: Callable[[], bool]
) -> tuple[dict[str, object], list[int]]:
    """Delete the row of this filename if its processing failed, or if the duplicate
    policy allows a new upload of it, and schedule its stored bytes for removal; returns
    what the audit event says of it (its id and sha256) and the storage deletions.

    The DELETE is conditional, so a replacement racing this one (or a retry that set the
    file processing again) leaves it 0 rows: the insert that follows then fails as
    ``File already exists``, and this transaction keeps nothing.
    """
    existing = session.execute(
        select(PackageFile).where(
            PackageFile.project_id == project.id, PackageFile.filename == filename
        )
    ).scalar_one_or_none()
    if existing is None:
        return {}, []
    condition = PackageFile.id == existing.id
    if existing.state == "error":  # unless a retry set it processing meanwhile
        condition &= PackageFile.state == "error"
    elif not duplicate_allowed():
        return {}, []
    removed = session.execute(
        delete(PackageFile).where(condition).execution_options(synchronize_session=False)
    )
    if removed.rowcount != 1:  # type: ignore[attr-defined]
        return {}, []
    deletions = schedule_deletions(session, [existing])
    session.expunge(existing)
    return {"replaced_file_id": existing.id, "replaced_sha256": existing.sha256}, deletions


def _verify_digests(form: UploadForm, digest: MultiDigest) -> None:
    if digest.size == 0:
        raise InvalidInput("Invalid file: the uploaded file is empty")
    expected = {
        "sha256_digest": (form.sha256_digest, digest.sha256),
        "md5_digest": (form.md5_digest, digest.md5),
        "blake2_256_digest": (form.blake2_256_digest, digest.blake2_256),
    }
    for field_name, (claimed, actual) in expected.items():
        claimed = (claimed or "").strip().lower()
        if claimed and not hmac.compare_digest(claimed, actual):
            raise DigestMismatch(f"Digest mismatch: {field_name} does not match the uploaded file")


def _get_or_create_package(
    session: Session, project: Project, name: str, spelling: str, version: Version
) -> Package:
    """The release of this PEP 440 version, or a new one with these spellings.

    A new release is inserted with ``ON CONFLICT DO NOTHING``, not in a savepoint: on
    SQLite a savepoint outside a transaction is the outermost one, and its release would
    commit the release on its own, before its file (and with an fsync more). A release
    that a racing upload (a wheel and an sdist) created meanwhile is then read."""
    normalized = normalize(name)
    canonical = release_key(version)
    query = select(Package).where(
        Package.project_id == project.id,
        Package.normalized_name == normalized,
        Package.canonical_version == canonical,
    )
    package = session.execute(query).scalar_one_or_none()
    if package is not None:
        return package
    insert = insert_or_skip(session, Package, "project_id", "normalized_name", "canonical_version")
    created = session.execute(
        insert.values(
            project_id=project.id,
            name=name,
            normalized_name=normalized,
            version=spelling,
            canonical_version=canonical,
        ).returning(Package)
    ).scalar_one_or_none()
    return created if created is not None else session.execute(query).scalar_one()
