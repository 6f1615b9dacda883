"""Reading one metadata member out of an untrusted archive, with bounded cost.

Nothing is extracted to disk and no link is followed. Limits apply to what the
archive declares (member count, total uncompressed size, compression ratio) before
anything is decompressed, and to the bytes actually read from the metadata member.
"""

from __future__ import annotations

import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from app.domain.errors import InvalidInput

T = TypeVar("T")
NameFilter = Callable[[str], bool]


class UnsafeArchive(InvalidInput):
    """The archive breaks a safety limit or is malformed."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 50_000
    max_uncompressed: int = 2 * 1024**3
    max_ratio: int = 200
    max_metadata: int = 4 * 1024 * 1024


# Reading a member can also fail on a corrupt deflate or lzma stream (zlib.error,
# LZMAError; bzip2 raises OSError) or on an encrypted one (RuntimeError).
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error,
    lzma.LZMAError,
)  # fmt: skip
# tarfile reads a GNU long name or a pax header whole, into memory, before the member
# it describes is seen; real ones are a few hundred bytes.
_MAX_EXTENDED_HEADER = 1024 * 1024
_EXTENDED_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)  # fmt: skip


class _BoundedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _EXTENDED_HEADER_TYPES and self.size > _MAX_EXTENDED_HEADER:
            raise UnsafeArchive(f"Extended tar header larger than {_MAX_EXTENDED_HEADER} bytes")
        return super()._proc_member(tarfile)  # type: ignore[misc]


# What a distribution's first bytes must be, by filename suffix: a zip starts with a local
# file header, a .tar.gz with gzip's magic.  Checked at upload, as the bytes arrive; all
# the rest is the worker's to check.
SIGNATURES = {
    ".whl": (b"PK\x03\x04", "a zip archive"),
    ".zip": (b"PK\x03\x04", "a zip archive"),
    ".tar.gz": (b"\x1f\x8b", "gzip-compressed"),
}
SIGNATURE_SIZE = max(len(magic) for magic, _ in SIGNATURES.values())


def check_signature(filename: str, head: bytes) -> None:
    """Refuse a file whose first bytes (``head``, up to SIGNATURE_SIZE of them) already
    prove it is not the archive its name says; other names are not checked here."""
    for suffix, (magic, kind) in SIGNATURES.items():
        if filename.endswith(suffix):
            if not head.startswith(magic):
                raise InvalidInput(f"Invalid file: {filename} is not {kind}")
            return


def _check_member_name(name: str) -> None:
    if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/"):
        raise UnsafeArchive(f"Unsafe member path in archive: {name!r}")
    if ":" in name.split("/")[0]:
        raise UnsafeArchive(f"Unsafe member path in archive: {name!r}")


def _zip_entry_count(fh: BinaryIO, limit: int) -> int:
    """An upper bound on the entries zipfile will build objects for, counted before it does.

    The count an end record declares is not what zipfile uses: it parses every record of
    the central directory, however many the end record claims. So the directory is found
    the way zipfile finds it (the end record, a zip64 record just before it, and the
    directory just before that) and its record signatures are counted, in bounded chunks,
    stopping once past ``limit``."""
    fh.seek(0, 2)
    size = fh.tell()
    tail_start = max(size - 65536 - 22, 0)
    fh.seek(tail_start)
    tail = fh.read()
    pos = len(tail) - 22
    if pos < 0 or tail[pos : pos + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        pos = tail.rfind(b"PK\x05\x06")  # an archive comment follows the end record
    if pos < 0 or len(tail) - pos < 22:
        raise UnsafeArchive("Not a zip archive (no end of central directory)")
    (directory_size,) = struct.unpack("<I", tail[pos + 12 : pos + 16])
    end = tail_start + pos
    if end >= 76:
        fh.seek(end - 20)
        if fh.read(4) == b"PK\x06\x07":
            fh.seek(end - 76)
            record = fh.read(56)
            if record[:4] == b"PK\x06\x06":
                (directory_size,) = struct.unpack("<Q", record[40:48])
                end -= 76
    fh.seek(max(end - directory_size, 0))
    remaining = min(directory_size, end)
    count = 0
    carry = b""
    while remaining > 0 and count <= limit:
        chunk = fh.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        remaining -= len(chunk)
        data = carry + chunk
        count += data.count(b"PK\x01\x02")
        carry = data[-3:]  # a signature split across two chunks
    fh.seek(0)
    return count


def read_zip_member(fh: BinaryIO, wanted: NameFilter, limits: ArchiveLimits) -> tuple[str, bytes]:
    """Read the single member whose name ``wanted(name)`` accepts."""
    if _zip_entry_count(fh, limits.max_members) > limits.max_members:
        raise UnsafeArchive(f"Archive has more than {limits.max_members} members")
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnsafeArchive(f"Not a valid zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchive(f"Archive has more than {limits.max_members} members")
        _check_totals(sum(i.file_size for i in infos), sum(i.compress_size for i in infos), limits)
        matches = []
        for info in infos:
            _check_member_name(info.filename)
            if wanted(info.filename):
                matches.append(info)
        info = _single(matches, [m.filename for m in matches])
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchive(f"Metadata member {info.filename!r} is a symlink")
        if info.file_size > limits.max_metadata:
            raise UnsafeArchive(f"Metadata member is larger than {limits.max_metadata} bytes")
        try:
            with archive.open(info) as member:
                data = member.read(limits.max_metadata + 1)
        except _ZIP_READ_ERRORS as exc:
            raise UnsafeArchive(f"Cannot read {info.filename!r}: {exc}") from None
    if len(data) > limits.max_metadata:
        raise UnsafeArchive(f"Metadata member is larger than {limits.max_metadata} bytes")
    return info.filename, data


def read_tar_member(fh: BinaryIO, wanted: NameFilter, limits: ArchiveLimits) -> tuple[str, bytes]:
    """Stream through a gzipped tar once, checking every header, keeping one member."""
    fh.seek(0, 2)
    compressed = fh.tell()
    fh.seek(0)
    found: list[tuple[str, bytes]] = []
    declared = members = 0
    try:
        with tarfile.open(fileobj=fh, mode="r|gz", tarinfo=_BoundedTarInfo) as archive:
            for info in archive:
                members += 1
                declared += info.size
                if members > limits.max_members:
                    raise UnsafeArchive(f"Archive has more than {limits.max_members} members")
                # archive.offset: the tar stream up to this member's end, headers included.
                _check_totals(max(declared, archive.offset), compressed, limits)
                _check_member_name(info.name)
                archive.members.clear()  # streaming: keep no per-member history
                if not wanted(info.name):
                    continue
                if not info.isfile():
                    raise UnsafeArchive(f"Metadata member {info.name!r} is not a regular file")
                if info.size > limits.max_metadata:
                    raise UnsafeArchive(
                        f"Metadata member is larger than {limits.max_metadata} bytes"
                    )
                member = archive.extractfile(info)
                found.append((info.name, member.read() if member else b""))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise UnsafeArchive(f"Not a valid tar.gz archive: {exc}") from None
    return _single(found, [name for name, _ in found])


def _check_totals(uncompressed: int, compressed: int, limits: ArchiveLimits) -> None:
    if uncompressed > limits.max_uncompressed:
        raise UnsafeArchive(f"Archive expands to more than {limits.max_uncompressed} bytes")
    if uncompressed > 1024 * 1024 and uncompressed > limits.max_ratio * max(compressed, 1):
        raise UnsafeArchive(
            f"Archive compression ratio is over {limits.max_ratio}:1 (a decompression bomb?)"
        )


def _single(matches: Sequence[T], names: list[str]) -> T:
    if not matches:
        raise UnsafeArchive("No metadata file found in the archive")
    if len(matches) > 1:
        raise UnsafeArchive(f"More than one metadata file in the archive: {sorted(names)}")
    return matches[0]


def top_level_file(name: str, basename: str) -> bool:
    """``name`` is ``<one dir>/<basename>``."""
    parts = name.strip("/").split("/")
    return len(parts) == 2 and parts[1] == basename


def dist_info_metadata(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA"
