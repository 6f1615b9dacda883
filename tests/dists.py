"""Build real, small wheels and sdists in memory: the fixtures of the test suite and benches."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import time
import zipfile

from packaging.utils import canonicalize_name


def metadata_text(
    name: str,
    version: str,
    *,
    metadata_version: str = "2.1",
    summary: str = "A test package",
    requires_python: str | None = None,
    requires_dist: tuple[str, ...] = (),
    extra: str = "",
) -> str:
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires_dist]
    return "\n".join(lines) + "\n" + extra + "\n"


def dist_stem(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    name: str,
    version: str,
    *,
    metadata: str | bytes | None = None,
    payload: bytes = b"",
    **metadata_fields: object,
) -> tuple[str, bytes]:
    """A pure-Python wheel whose module ``<stem>`` defines VERSION; returns (filename, bytes).

    ``payload`` (random bytes for size tests) is stored uncompressed in a data file."""
    stem = dist_stem(name)
    dist_info = f"{stem}-{version}.dist-info"
    if metadata is None:
        metadata = metadata_text(name, version, **metadata_fields)  # type: ignore[arg-type]
    raw_metadata = metadata.encode() if isinstance(metadata, str) else metadata
    files = {
        f"{stem}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": raw_metadata,
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: packyard-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if payload:
        files[f"{stem}/payload.bin"] = payload
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = (
                zipfile.ZIP_STORED if path.endswith(".bin") else zipfile.ZIP_DEFLATED
            )
            archive.writestr(info, data)
    return f"{stem}-{version}-py3-none-any.whl", buffer.getvalue()


def make_sdist(
    name: str, version: str, *, metadata: str | bytes | None = None, **metadata_fields: object
) -> tuple[str, bytes]:
    """A buildable setuptools sdist (``.tar.gz``); returns (filename, bytes)."""
    stem = dist_stem(name)
    root = f"{stem}-{version}"
    if metadata is None:
        metadata = metadata_text(name, version, **metadata_fields)  # type: ignore[arg-type]
    raw_metadata = metadata.encode() if isinstance(metadata, str) else metadata
    requires_python = metadata_fields.get("requires_python")
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        + (f'requires-python = "{requires_python}"\n' if requires_python else "")
    )
    files = {
        f"{root}/PKG-INFO": raw_metadata,
        f"{root}/pyproject.toml": pyproject.encode(),
        f"{root}/{stem}/__init__.py": f"VERSION = {version!r}\n".encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = int(time.mktime((2024, 1, 1, 0, 0, 0, 0, 0, 0)))
            archive.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buffer.getvalue()


def multipart_upload(
    name: str, version: str, filename: str, content: bytes, boundary: str = "packyard-test"
) -> tuple[bytes, str]:
    """A legacy upload's body, fields before the file as twine sends them, and its type."""
    fields = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        for key, value in (("name", name), ("version", version))
    )
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content";'
        f' filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body = (fields + file_head).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
