"""The s3:// storage plugin against a real S3-compatible server (``rclone serve s3``):
the backend's own contract, then the registry on it (uploads streamed to the bucket,
processing through ranged reads, downloads streamed or redirected, deletions)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from app import create_app
from app.domain.storage import StorageError
from app.extensions import db
from app.models import PackageFile
from plugins.storage_s3 import PART_SIZE, S3Storage
from tests.conftest import Registry, basic
from tests.dists import make_wheel
from tests.s3server import S3Server

MIB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.bucket(f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3Storage:
    return S3Storage.from_url(s3_server.url(bucket, "pre/fix"))


def multipart_uploads(store: S3Storage) -> list[str]:
    answer = store.client().list_multipart_uploads(Bucket=store.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def read_all(store: S3Storage, key: str) -> bytes:
    with store.open(key) as fh:
        return fh.read()


# -- the backend ------------------------------------------------------------------------


def test_the_url_names_bucket_prefix_endpoint_and_region():
    store = S3Storage.from_url(
        "s3://packages/team/files?endpoint_url=http://s3.lan:9000&region=eu-1"
    )
    assert (store.bucket, store.prefix) == ("packages", "team/files/")
    assert (store.endpoint_url, store.region) == ("http://s3.lan:9000", "eu-1")
    assert S3Storage.from_url("s3://packages").prefix == ""
    with pytest.raises(ValueError, match="endpoint"):
        S3Storage.from_url("s3://packages?endpoint=http://s3.lan")
    with pytest.raises(ValueError, match="no bucket"):
        S3Storage.from_url("s3:///files")


def test_a_large_file_is_sent_in_parts_as_it_is_written_and_appears_on_commit(
    store, s3_server, bucket
):
    content = os.urandom(2 * PART_SIZE + 12345)
    writer = store.writer("1/abc/big.whl")
    for offset in range(0, len(content), 64 * 1024):
        writer.write(content[offset : offset + 64 * 1024])
    # Two parts are in the bucket already, as an unfinished multipart upload.
    assert multipart_uploads(store) == ["pre/fix/1/abc/big.whl"]
    assert s3_server.objects(bucket) == []
    writer.commit()
    assert s3_server.objects(bucket) == ["pre/fix/1/abc/big.whl"]
    assert multipart_uploads(store) == []
    assert read_all(store, "1/abc/big.whl") == content


def test_an_aborted_write_leaves_no_object_and_no_upload(store, s3_server, bucket):
    writer = store.writer("1/abc/big.whl")
    writer.write(os.urandom(PART_SIZE + 1))
    assert multipart_uploads(store)
    writer.abort()
    writer.abort()  # twice is fine
    assert multipart_uploads(store) == []
    assert s3_server.objects(bucket) == []
    assert s3_server.leftovers(bucket) == []


def test_a_writer_block_commits_or_aborts(store, s3_server, bucket):
    with store.writer("small.whl") as out:
        out.write(b"small")
    with pytest.raises(RuntimeError), store.writer("failed.whl") as out:
        out.write(os.urandom(PART_SIZE))
        raise RuntimeError("the client went away")
    assert s3_server.objects(bucket) == ["pre/fix/small.whl"]
    assert multipart_uploads(store) == []


def test_open_is_seekable_with_ranged_reads(store):
    filename, wheel = make_wheel("ranged", "1.0", payload=os.urandom(3 * MIB))
    with store.writer(filename) as out:
        out.write(wheel)
    with store.open(filename) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(wheel).hexdigest()
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == wheel[-10:]
        fh.seek(5)
        assert fh.read(7) == wheel[5:12]
        with zipfile.ZipFile(fh) as archive:  # reads from the end, then seeks back
            assert b"Name: ranged" in archive.read("ranged-1.0.dist-info/METADATA")
    with pytest.raises(FileNotFoundError):
        store.open("missing.whl")


def test_exists_delete_and_keys_stay_in_the_prefix(store, s3_server, bucket):
    other = S3Storage.from_url(s3_server.url(bucket))
    with other.writer("outside") as out:
        out.write(b"not ours")
    for key in ("1/a/x.whl", "2/b/y.tar.gz"):
        with store.writer(key) as out:
            out.write(key.encode())
    assert sorted(store.keys()) == ["1/a/x.whl", "2/b/y.tar.gz"]
    assert store.exists("1/a/x.whl") and not store.exists("outside")
    store.delete("1/a/x.whl")
    store.delete("1/a/x.whl")  # a missing file is not an error
    assert not store.exists("1/a/x.whl")
    assert s3_server.objects(bucket) == ["outside", "pre/fix/2/b/y.tar.gz"]


def test_a_presigned_url_serves_the_file_and_cannot_be_altered(store):
    with store.writer("1/a/demo-1.0.tar.gz") as out:
        out.write(b"signed bytes")
    url = store.presigned_url("1/a/demo-1.0.tar.gz", "demo-1.0.tar.gz", 60)
    assert url is not None
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b"signed bytes"
    assert requests.get(url.replace("1/a/", "1/b/"), timeout=10).status_code in (400, 403)


def test_check_names_a_missing_bucket_and_an_unreachable_server(store, s3_server, tmp_path):
    store.check()
    with pytest.raises(StorageError, match="does not exist"):
        S3Storage.from_url(s3_server.url("no-such-bucket")).check()
    gone = S3Server(tmp_path / "gone")
    gone.stop()
    with pytest.raises(StorageError, match="S3"):
        S3Storage.from_url(gone.url("bucket")).check()


# -- the registry on S3 -------------------------------------------------------------------


def s3_app(tmp_path: Path, sqlite_template: Path, storage_url: str, **config: object) -> Flask:
    shutil.copy(sqlite_template, tmp_path / "packyard.db")
    app = create_app({
        "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": f"sqlite:///{tmp_path}/packyard.db",
        "STORAGE_URL": storage_url, "LOAD_ENTRYPOINT_PLUGINS": False, **config,
    })  # fmt: skip
    app.extensions["celery"].conf.task_always_eager = True
    return app


@pytest.fixture
def s3_registry(tmp_path, sqlite_template, s3_server, bucket) -> Iterator[Registry]:
    app = s3_app(tmp_path, sqlite_template, s3_server.url(bucket, "files"))
    with app.app_context():
        yield Registry(app, app.test_client())
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def project_token(s3_registry: Registry) -> tuple[object, str]:
    admin = s3_registry.user("root", admin=True)
    return s3_registry.project(s3_registry.group("team"), "lib"), s3_registry.token(admin)


def test_an_upload_goes_to_the_bucket_is_processed_and_downloads(
    s3_registry, project_token, s3_server, bucket
):
    project, token = project_token
    filename, content = make_wheel("demo-pkg", "1.0", payload=os.urandom(PART_SIZE + MIB))
    assert s3_registry.upload(project, filename, content, token=token).status_code == 201
    row = db.session.query(PackageFile).one()
    assert row.state == "default" and row.metadata_bytes  # the worker read it back
    assert s3_server.objects(bucket) == [f"files/{row.storage_key}"]
    assert not (Path(s3_registry.app.config["DATA_DIR"]) / "files").exists()  # no local copy
    sha = hashlib.sha256(content).hexdigest()
    url = f"/api/v4/projects/{project.id}/packages/pypi/files/{sha}/{filename}"
    response = s3_registry.client.get(url, headers=basic(token))
    assert response.status_code == 200 and response.data == content
    assert int(response.headers["Content-Length"]) == len(content)
    assert response.headers["ETag"].strip('"') == sha
    partial = s3_registry.client.get(url, headers={**basic(token), "Range": "bytes=100-199"})
    assert partial.status_code == 206 and partial.data == content[100:200]
    cached = s3_registry.client.get(url, headers={**basic(token), "If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304
    head = s3_registry.client.head(url, headers=basic(token))
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(content)


def test_a_refused_upload_leaves_nothing_in_the_bucket(
    s3_registry, project_token, s3_server, bucket
):
    project, token = project_token
    filename, content = make_wheel("demo-pkg", "1.0", payload=os.urandom(PART_SIZE + MIB))
    wrong = s3_registry.upload(project, filename, content, token=token, sha256_digest="0" * 64)
    assert wrong.status_code == 400
    s3_registry.app.config["MAX_UPLOAD_SIZE"] = PART_SIZE + 1024  # crossed after one part
    too_big = s3_registry.upload(project, filename, content, token=token)
    assert too_big.status_code == 413
    assert s3_server.objects(bucket) == [] and s3_server.leftovers(bucket) == []
    store = s3_registry.app.extensions["packyard.storage"]
    assert multipart_uploads(store) == []
    assert db.session.query(PackageFile).count() == 0


def test_a_repeated_upload_keeps_one_object(s3_registry, project_token, s3_server, bucket):
    project, token = project_token
    filename, content = make_wheel("demo-pkg", "1.0")
    assert s3_registry.upload(project, filename, content, token=token).status_code == 201
    assert s3_registry.upload(project, filename, content, token=token).status_code == 400
    assert len(s3_server.objects(bucket)) == 1


def test_deleting_a_file_removes_its_object(s3_registry, project_token, s3_server, bucket):
    project, token = project_token
    filename, content = make_wheel("demo-pkg", "1.0")
    s3_registry.upload(project, filename, content, token=token)
    row = db.session.query(PackageFile).one()
    response = s3_registry.client.delete(
        f"/api/v4/projects/{project.id}/packages/{row.package_id}/package_files/{row.id}",
        headers={"PRIVATE-TOKEN": token},
    )
    assert response.status_code == 204, response.text
    assert s3_server.objects(bucket) == []


def test_with_redirects_a_download_answers_a_short_lived_signed_url(
    tmp_path, sqlite_template, s3_server, bucket
):
    app = s3_app(tmp_path, sqlite_template, s3_server.url(bucket), STORAGE_REDIRECT=True)
    with app.app_context():
        registry = Registry(app, app.test_client())
        project = registry.project(registry.group("team", "public"), "lib", "public")
        token = registry.token(registry.user("root", admin=True))
        filename, content = make_wheel("demo-pkg", "1.0")
        registry.upload(project, filename, content, token=token)
        sha = hashlib.sha256(content).hexdigest()
        url = f"/api/v4/projects/{project.id}/packages/pypi/files/{sha}/{filename}"
        response = registry.client.get(url)
        assert response.status_code == 307
        assert "X-Amz-Expires=300" in response.location
        assert "no-store" in response.headers["Cache-Control"]
        assert requests.get(response.location, timeout=10).content == content
        assert registry.client.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code == 304
        assert registry.client.head(url).status_code == 200  # a signed URL is for GET only
        db.session.remove()
        db.engine.dispose()


def test_an_interrupted_upload_aborts_its_multipart_upload(
    s3_registry, project_token, s3_server, bucket
):
    from tests.test_storage_failures import multipart

    project, token = project_token
    filename, content = make_wheel("demo-pkg", "1.0", payload=os.urandom(2 * PART_SIZE))
    body, content_type = multipart(filename, content)
    cut = body[: PART_SIZE + MIB]  # the client goes away after one part reached the bucket
    response = s3_registry.client.post(
        f"/api/v4/projects/{project.id}/packages/pypi", input_stream=io.BytesIO(cut),
        content_type=content_type, content_length=len(body), headers=basic(token),
    )  # fmt: skip
    assert response.status_code == 400
    store = s3_registry.app.extensions["packyard.storage"]
    assert multipart_uploads(store) == []
    assert s3_server.objects(bucket) == [] and db.session.query(PackageFile).count() == 0
