"""Object storage for ``s3://BUCKET[/PREFIX]`` URLs: AWS S3 and S3-compatible services
(MinIO, Ceph, R2...), through boto3.

``PACKYARD_STORAGE_URL=s3://BUCKET[/PREFIX]?endpoint_url=URL&region=REGION``: both
query options may be left out (AWS then picks the endpoint). Credentials come from
boto3's standard chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``
and the shared files, web identity, container and instance roles.

- Writes stream: bytes are gathered into 8 MiB parts and sent as a multipart upload
  while they arrive (a file smaller than one part is one PUT at commit). Abort, or a
  failed commit, aborts the multipart upload: nothing appears under the key.
- Reads are seekable: ``open`` answers a buffered reader over ranged GETs. Reading
  straight through is one GET; a seek starts a new one where it lands (zip archives
  are read from their central directory at the end).
- Failures of the service or the network are ``StorageError`` (503 on the web,
  retried by the workers); a missing object is ``FileNotFoundError``.

This module uses only the public plugin API (``packyard``), like a third party's.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from packyard import StorageBackend, StorageError, StorageWriter, hookimpl

# boto3 is imported by S3Storage, not here: it costs about 25 MiB and half a second per
# process, which deployments on other storage should not pay.

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3 wants parts of 5 MiB or more (but the last)
READ_BUFFER = 256 * 1024
URL_OPTIONS = ("endpoint_url", "region")
_MISSING = ("NoSuchKey", "404", "NotFound")


class S3Storage(StorageBackend):
    """One bucket, and a key prefix in it."""

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:  # fmt: skip
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self._clients: dict[int, Any] = {}  # by process id: a client never crosses a fork
        self._lock = threading.Lock()
        # Imported now, not on first use: a worker's pool processes then share the
        # imported modules with their parent, and no request waits a second for them.
        import boto3  # noqa: F401

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"Storage URL {url!r} names no bucket: s3://BUCKET[/PREFIX]")
        options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(options) - set(URL_OPTIONS))
        if unknown:
            raise ValueError(
                f"Storage URL {url!r}: unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(URL_OPTIONS)})"
            )
        return cls(
            parts.netloc, unquote(parts.path), endpoint_url=options.get("endpoint_url"),
            region=options.get("region"),
        )  # fmt: skip

    # -- the client ---------------------------------------------------------------------

    def client(self) -> Any:
        """This process's boto3 client (thread-safe; made on first use)."""
        pid = os.getpid()
        client = self._clients.get(pid)
        if client is None:
            with self._lock:
                client = self._clients.get(pid) or self._new_client()
                self._clients = {pid: client}
        return client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",  # presigned URLs too: S3-compatible servers want v4
            # Custom endpoints (MinIO, Ceph, rclone) name the bucket in the path.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
            # Packyard checks its own sha256; the newer default checksums (CRC trailers)
            # are refused by several S3-compatible servers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()  # sessions are not thread-safe: one per client
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def object_key(self, key: str) -> str:
        return self.prefix + key

    # -- the backend ----------------------------------------------------------------------

    def store(self, key: str, source: Path) -> None:
        with source.open("rb") as fh, self.writer(key) as out:
            while chunk := fh.read(1024 * 1024):
                out.write(chunk)
        source.unlink()

    def writer(self, key: str) -> StorageWriter:
        return S3Writer(self, key)

    def open(self, key: str) -> BinaryIO:
        with translated(f"open {key}"):
            head = self.client().head_object(Bucket=self.bucket, Key=self.object_key(key))
        raw = RangedReader(self, key, int(head["ContentLength"]))
        return io.BufferedReader(raw, buffer_size=READ_BUFFER)  # type: ignore[return-value]

    def delete(self, key: str) -> None:
        with translated(f"delete {key}"):
            self.client().delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        try:
            with translated(f"exists {key}"):
                self.client().head_object(Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:
            return False
        return True

    def presigned_url(self, key: str, filename: str, expires_in: int) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self.object_key(key),
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        with translated(f"sign {key}"):
            url = self.client().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        return str(url)

    def keys(self) -> Iterator[str]:
        pages = self.client().get_paginator("list_objects_v2")
        with translated("list"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def check(self) -> None:
        try:
            with translated(f"bucket {self.bucket}"):
                self.client().head_bucket(Bucket=self.bucket)
        except FileNotFoundError:
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from None


class S3Writer(StorageWriter):
    """Gathers writes into parts and sends each as it fills: memory stays at one part."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__(key)
        self._storage = storage
        self._target = {"Bucket": storage.bucket, "Key": storage.object_key(key)}
        self._part = io.BytesIO()
        self._upload_id: str | None = None
        self._sent: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._part.write(data)
        if self._part.tell() >= PART_SIZE:
            self._send_part()
        return len(data)

    def _send_part(self) -> None:
        client = self._storage.client()
        with translated(f"upload {self.key}"):
            if self._upload_id is None:
                self._upload_id = client.create_multipart_upload(**self._target)["UploadId"]
            number = len(self._sent) + 1
            self._part.seek(0)
            answer = client.upload_part(
                **self._target, UploadId=self._upload_id, PartNumber=number, Body=self._part
            )
        self._sent.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._part.seek(0)
        self._part.truncate()

    def _commit(self) -> None:
        client = self._storage.client()
        if self._upload_id is None:  # smaller than a part: one PUT
            self._part.seek(0)
            with translated(f"upload {self.key}"):
                client.put_object(**self._target, Body=self._part)
        else:
            if self._part.tell():
                self._send_part()
            with translated(f"upload {self.key}"):
                client.complete_multipart_upload(
                    **self._target, UploadId=self._upload_id, MultipartUpload={"Parts": self._sent}
                )
        self._part = io.BytesIO()

    def _abort(self) -> None:
        self._part = io.BytesIO()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            with translated(f"abort {self.key}"):
                self._storage.client().abort_multipart_upload(**self._target, UploadId=upload_id)
        except (StorageError, FileNotFoundError) as exc:
            # The service is gone: the parts stay until a bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) removes them. No object was made.
            log.warning("could not abort the multipart upload of %s: %s", self.key, exc)


class RangedReader(io.RawIOBase):
    """A seekable view of one object: reads come from a GET that starts where the
    position is; a seek elsewhere drops it, and the next read starts a new one."""

    def __init__(self, storage: S3Storage, key: str, size: int) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._size = size
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._pos:
            self._drop()
            self._pos = position
        return position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._pos)
        if wanted <= 0:
            return 0
        with translated(f"read {self._key}"):
            if self._body is None:
                self._body = self._storage.client().get_object(
                    Bucket=self._storage.bucket, Key=self._storage.object_key(self._key),
                    Range=f"bytes={self._pos}-",
                )["Body"]  # fmt: skip
            data = self._body.read(wanted)
        if not data:
            raise StorageError(f"S3 read {self._key}: the object ended early")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()  # an unfinished body closes its connection
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()


@contextmanager
def translated(action: str) -> Iterator[None]:
    """botocore's errors as the storage contract's: FileNotFoundError, StorageError."""
    import urllib3.exceptions
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _MISSING:
            raise FileNotFoundError(f"S3 {action}: no such object") from None
        raise StorageError(f"S3 {action}: {code} {error.get('Message', '')}".strip()) from exc
    except (BotoCoreError, urllib3.exceptions.HTTPError) as exc:
        raise StorageError(f"S3 {action}: {exc}") from exc


@hookimpl
def register_storage_backends(
    register: Callable[[str, Callable[[str], StorageBackend]], None],
) -> None:
    register("s3", S3Storage.from_url)
