"""Reading one member out of an untrusted archive with bounded cost: app.domain.archives.

The malicious archives are generated here, streamed to temporary files where they are
big; each must be refused in well under a few seconds without a large allocation."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pytest

from app.domain.archives import (
    ArchiveLimits,
    UnsafeArchive,
    dist_info_metadata,
    read_tar_member,
    read_zip_member,
    top_level_file,
)
from app.domain.errors import InvalidInput

MB = 1024 * 1024
LIMITS = ArchiveLimits()
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
# CPU seconds of this process: other processes and a virtual machine's stolen time do not
# count, so a busy CI box cannot fail a test that is about work done, not about speed.
MAX_SECONDS = 3.0
MAX_PEAK = 50 * MB


def pkg_info(name: str) -> bool:
    return top_level_file(name, "PKG-INFO")


# -- builders ------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], **kw: Any) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, **kw) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_member(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tar_gz_bytes(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def sdist_tar(*extra: tuple[tarfile.TarInfo, bytes]) -> bytes:
    return tar_gz_bytes(tar_member("demo-1.0/PKG-INFO", METADATA), *extra)


def zero_chunks(total: int, chunk: int = MB) -> Iterator[bytes]:
    zeros = bytes(chunk)
    for _ in range(total // chunk):
        yield zeros


def big_zip(name: str, size: int, extra: dict[str, bytes] | None = None) -> BinaryIO:
    """A zip (on disk) whose member ``name`` is ``size`` zero bytes, deflated."""
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for member, data in (extra or {}).items():
            archive.writestr(member, data)
        with archive.open(name, "w", force_zip64=True) as out:
            for chunk in zero_chunks(size):
                out.write(chunk)
    fh.seek(0)
    return fh


def raw_zip(count: int, *, declared: int | None = None, zip64: bool = False) -> bytes:
    """``count`` empty stored members plus a METADATA, built directly (zipfile is slow at
    100k members). ``declared``: the entry count the end record claims."""
    local, central = [], []
    offset = 0
    names = [f"f{i}".encode() for i in range(count)] + [b"demo-1.0.dist-info/METADATA"]
    for name in names:
        data = METADATA if name.endswith(b"METADATA") else b""
        crc = zlib.crc32(data)
        header = struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(name), 0
        )
        local.append(header + name + data)
        entry = struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, len(data), len(data),
            len(name), 0, 0, 0, 0, 0o100644 << 16, offset,
        )  # fmt: skip
        central.append(entry + name)
        offset += len(local[-1])
    directory = b"".join(central)
    entries = len(names) if declared is None else declared
    tail = b""
    if zip64:
        eocd64 = struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries,
            len(directory), offset,
        )  # fmt: skip
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
        tail = eocd64 + locator
        entries = 0xFFFF
    eocd = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, min(entries, 0xFFFF), min(entries, 0xFFFF),
        len(directory), offset, 0,
    )  # fmt: skip
    return b"".join(local) + directory + tail + eocd


def gz_stream(parts: Iterator[bytes], level: int = 9) -> BinaryIO:
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=level, mtime=0) as out:
        for part in parts:
            out.write(part)
    fh.seek(0)
    return fh


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def empty_members(count: int) -> bytes:
    """``count`` headers of empty files with distinct names, faster than ``tobuf`` each."""
    template = bytearray(header("demo-1.0/f0000000", 0))
    template[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
    out = []
    for i in range(count):
        block = template.copy()
        block[10:17] = b"%07d" % i
        block[148:156] = b"%06o\0 " % sum(block)
        out.append(bytes(block))
    return b"".join(out)


def pad(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def tar_end() -> bytes:
    return bytes(2 * tarfile.BLOCKSIZE)


@contextmanager
def bounded(seconds: float = MAX_SECONDS, peak: int | None = MAX_PEAK) -> Iterator[None]:
    """The block must use less than ``seconds`` of CPU and allocate at most ``peak`` bytes
    (``None``: not traced, tracemalloc slowing allocation-heavy code several times)."""
    if peak is not None:
        tracemalloc.start()
    started = time.process_time()
    try:
        yield
    finally:
        elapsed = time.process_time() - started
        top = tracemalloc.get_traced_memory()[1] if peak is not None else 0
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert peak is None or top < peak, f"peak allocation {top / MB:.1f} MB"


def rejects(
    read: Callable[..., Any],
    fh: BinaryIO,
    wanted: Callable[[str], bool],
    match: str,
    peak: int | None = MAX_PEAK,
    seconds: float = MAX_SECONDS,
    **kw: Any,
) -> None:
    fh.seek(0)
    with bounded(seconds, peak), pytest.raises(UnsafeArchive, match=match):
        read(fh, wanted, ArchiveLimits(**kw))


# -- name filters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo-1.0/PKG-INFO", True),
        ("demo-1.0/PKG-INFO/", True),
        ("PKG-INFO", False),
        ("demo-1.0/src/demo.egg-info/PKG-INFO", False),
        ("demo-1.0/pkg-info", False),
        ("demo-1.0/PKG-INFO.bak", False),
    ],
)
def test_top_level_file(name, expected):
    assert top_level_file(name, "PKG-INFO") is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo-1.0.dist-info/METADATA", True),
        ("demo-1.0.dist-info/RECORD", False),
        ("METADATA", False),
        ("demo/METADATA", False),
        ("demo-1.0.data/demo-1.0.dist-info/METADATA", False),
        ("demo-1.0.dist-info/METADATA/", False),
    ],
)
def test_dist_info_metadata(name, expected):
    assert dist_info_metadata(name) is expected


def test_unsafe_archive_is_invalid_input():
    assert issubclass(UnsafeArchive, InvalidInput)
    assert UnsafeArchive("x").status == 400


# -- zip: what is read ---------------------------------------------------------------------


def test_zip_metadata_member_is_read():
    data = zip_bytes(
        {"demo/__init__.py": b"", "demo-1.0.dist-info/METADATA": METADATA, "x.bin": b"1" * 999}
    )
    assert read_zip_member(io.BytesIO(data), dist_info_metadata, LIMITS) == (
        "demo-1.0.dist-info/METADATA",
        METADATA,
    )


def test_zip_with_a_comment_is_read():
    data = zip_bytes({"demo-1.0.dist-info/METADATA": METADATA})
    with zipfile.ZipFile(buffer := io.BytesIO(data), "a") as archive:
        archive.comment = b"a comment " * 1000
    _, raw = read_zip_member(io.BytesIO(buffer.getvalue()), dist_info_metadata, LIMITS)
    assert raw == METADATA


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_compression_methods(compression):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("demo-1.0.dist-info/METADATA", METADATA)
    _, raw = read_zip_member(io.BytesIO(buffer.getvalue()), dist_info_metadata, LIMITS)
    assert raw == METADATA


def test_zip64_archive_is_read():
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w") as archive,
        archive.open("demo-1.0.dist-info/METADATA", "w", force_zip64=True) as out,
    ):
        out.write(METADATA)
    _, raw = read_zip_member(io.BytesIO(buffer.getvalue()), dist_info_metadata, LIMITS)
    assert raw == METADATA


def test_hand_built_zip_is_read():
    """The raw builder below makes archives zipfile accepts, zip64 or not."""
    for zip64 in (False, True):
        _, raw = read_zip_member(io.BytesIO(raw_zip(10, zip64=zip64)), dist_info_metadata, LIMITS)
        assert raw == METADATA


def test_zip_metadata_member_at_the_size_limit_is_read():
    data = zip_bytes({"demo-1.0.dist-info/METADATA": b"x" * 1000})
    _, raw = read_zip_member(io.BytesIO(data), dist_info_metadata, ArchiveLimits(max_metadata=1000))
    assert raw == b"x" * 1000


# -- zip: what is refused ------------------------------------------------------------------


def test_zip_without_metadata_is_refused():
    data = zip_bytes({"demo/__init__.py": b""})
    with pytest.raises(UnsafeArchive, match="No metadata file"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, LIMITS)


def test_zip_with_two_metadata_files_is_refused():
    data = zip_bytes({"a-1.dist-info/METADATA": METADATA, "b-1.dist-info/METADATA": METADATA})
    with pytest.raises(UnsafeArchive, match="More than one metadata file"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, LIMITS)


def test_zip_with_a_duplicated_metadata_entry_is_refused():
    buffer = io.BytesIO()
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(buffer, "w") as archive,
    ):
        archive.writestr("demo-1.0.dist-info/METADATA", METADATA)
        archive.writestr("demo-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: evil\n")
    with pytest.raises(UnsafeArchive, match="More than one metadata file"):
        read_zip_member(io.BytesIO(buffer.getvalue()), dist_info_metadata, LIMITS)


@pytest.mark.parametrize(
    "member",
    [
        "../evil.py",
        "demo/../../evil.py",
        "demo/..",
        "/etc/passwd",
        "\\windows\\evil.py",
        "demo\\..\\evil.py",
        "C:/evil.py",
        "C:evil.py",
    ],
)
def test_zip_with_an_unsafe_member_path_is_refused(member):
    data = zip_bytes({"demo-1.0.dist-info/METADATA": METADATA, member: b"x"})
    with pytest.raises(UnsafeArchive, match="Unsafe member path"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, LIMITS)


def test_zip_metadata_symlink_is_refused():
    info = zipfile.ZipInfo("demo-1.0.dist-info/METADATA")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, "../../../../etc/passwd")
    with pytest.raises(UnsafeArchive, match="is a symlink"):
        read_zip_member(io.BytesIO(buffer.getvalue()), dist_info_metadata, LIMITS)


def test_zip_with_more_members_than_the_limit_is_refused():
    data = zip_bytes({f"f{i}": b"" for i in range(5)} | {"d-1.dist-info/METADATA": METADATA})
    with pytest.raises(UnsafeArchive, match="more than 5 members"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, ArchiveLimits(max_members=5))
    _, raw = read_zip_member(io.BytesIO(data), dist_info_metadata, ArchiveLimits(max_members=6))
    assert raw == METADATA


def test_zip_over_the_uncompressed_limit_is_refused():
    data = zip_bytes({"d-1.dist-info/METADATA": METADATA, "big": b"x" * 5000})
    with pytest.raises(UnsafeArchive, match="expands to more than 4096 bytes"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, ArchiveLimits(max_uncompressed=4096))


def test_zip_metadata_over_the_size_limit_is_refused():
    data = zip_bytes({"d-1.dist-info/METADATA": METADATA + b"x" * 1000})
    with pytest.raises(UnsafeArchive, match="larger than 1000 bytes"):
        read_zip_member(io.BytesIO(data), dist_info_metadata, ArchiveLimits(max_metadata=1000))


def test_zip_metadata_lying_about_its_size_is_refused():
    """The directory says 100 bytes; the member inflates to 10 MB. Only 100 are read."""
    data = bytearray(zip_bytes({"d-1.dist-info/METADATA": bytes(10 * MB)}))
    for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature) + field
        data[at : at + 4] = struct.pack("<L", 100)
    rejects(read_zip_member, io.BytesIO(bytes(data)), dist_info_metadata, "Cannot read|CRC")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100), b"junk PK\x05\x06", b"PK\x05\x06"],
)
def test_not_a_zip_is_refused(content):
    with pytest.raises(UnsafeArchive):
        read_zip_member(io.BytesIO(content), dist_info_metadata, LIMITS)


def test_truncated_zip_is_refused():
    data = zip_bytes({"d-1.dist-info/METADATA": METADATA})
    for cut in (10, len(data) // 2, len(data) - 10):
        with pytest.raises(UnsafeArchive):
            read_zip_member(io.BytesIO(data[:cut]), dist_info_metadata, LIMITS)


def test_zip_with_a_corrupt_deflate_stream_is_refused():
    """zlib.error escaped before: the worker crashed instead of settling the file."""
    data = bytearray(zip_bytes({"d-1.dist-info/METADATA": METADATA * 50}))
    start = data.find(b"METADATA") + len(b"METADATA")
    data[start : start + 16] = b"\xff" * 16
    with pytest.raises(UnsafeArchive, match="Cannot read"):
        read_zip_member(io.BytesIO(bytes(data)), dist_info_metadata, LIMITS)


def test_zip_with_an_encrypted_metadata_member_is_refused():
    """RuntimeError (password required) escaped before."""
    data = bytearray(zip_bytes({"d-1.dist-info/METADATA": METADATA}))
    data[6] |= 1  # general purpose flag: encrypted, in the local header...
    data[data.find(b"PK\x01\x02") + 8] |= 1  # ...and in the central directory
    with pytest.raises(UnsafeArchive, match="Cannot read"):
        read_zip_member(io.BytesIO(bytes(data)), dist_info_metadata, LIMITS)


# -- zip: malicious and big ----------------------------------------------------------------


def test_zip_bomb_is_refused_quickly():
    """400 MB of zeros deflated to ~400 KB, next to a genuine METADATA."""
    with big_zip("demo/data.bin", 400 * MB, {"demo-1.0.dist-info/METADATA": METADATA}) as fh:
        assert fh.seek(0, 2) < 1 * MB
        rejects(read_zip_member, fh, dist_info_metadata, "compression ratio")


def test_wheel_with_a_200_mb_metadata_is_refused_quickly():
    with big_zip("demo-1.0.dist-info/METADATA", 200 * MB) as fh:
        rejects(read_zip_member, fh, dist_info_metadata, "compression ratio")
        # Without the ratio limit, the member's own size limit refuses it, unread.
        rejects(read_zip_member, fh, dist_info_metadata, "larger than", max_ratio=10**9)


def test_zip_with_100k_members_is_refused_quickly():
    data = raw_zip(100_000, zip64=True)
    rejects(read_zip_member, io.BytesIO(data), dist_info_metadata, "more than 50000 members")


def test_zip_with_100k_members_declaring_one_is_refused_quickly():
    """zipfile parses every directory record whatever the end record declares: a count
    of 1 used to let 100k members through to zipfile, ~500 bytes of objects each."""
    data = raw_zip(100_000, declared=1)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[-1].filename.endswith("METADATA")
    rejects(read_zip_member, io.BytesIO(data), dist_info_metadata, "more than 50000 members")


def test_zip64_with_100k_members_declaring_one_is_refused_quickly():
    data = raw_zip(100_000, declared=1, zip64=True)
    rejects(read_zip_member, io.BytesIO(data), dist_info_metadata, "more than 50000 members")


# -- tar.gz: what is read ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_pkg_info_is_read(fmt):
    data = tar_gz_bytes(
        tar_member("demo-1.0", type=tarfile.DIRTYPE),
        tar_member("demo-1.0/setup.py", b"from setuptools import setup\n"),
        tar_member("demo-1.0/src/demo.egg-info/PKG-INFO", b"not this one"),
        tar_member("demo-1.0/PKG-INFO", METADATA),
        tar_member("demo-1.0/" + "long/" * 30 + "name.py", b"x"),
        fmt=fmt,
    )
    assert read_tar_member(io.BytesIO(data), pkg_info, LIMITS) == ("demo-1.0/PKG-INFO", METADATA)


def test_tar_with_a_harmless_symlink_elsewhere_is_read():
    data = sdist_tar(tar_member("demo-1.0/link", type=tarfile.SYMTYPE, linkname="setup.py"))
    assert read_tar_member(io.BytesIO(data), pkg_info, LIMITS)[1] == METADATA


# -- tar.gz: what is refused ---------------------------------------------------------------


def test_tar_without_pkg_info_is_refused():
    data = tar_gz_bytes(tar_member("demo-1.0/setup.py", b""))
    with pytest.raises(UnsafeArchive, match="No metadata file"):
        read_tar_member(io.BytesIO(data), pkg_info, LIMITS)


def test_tar_with_two_pkg_infos_is_refused():
    data = sdist_tar(tar_member("other-1.0/PKG-INFO", METADATA))
    with pytest.raises(UnsafeArchive, match="More than one metadata file"):
        read_tar_member(io.BytesIO(data), pkg_info, LIMITS)


@pytest.mark.parametrize(
    "member",
    ["../evil", "../demo-1.0/PKG-INFO", "demo-1.0/../../evil", "/etc/cron.d/evil", "a\\..\\b"],
)
def test_tar_with_an_unsafe_member_path_is_refused(member):
    data = sdist_tar(tar_member(member, b"x"))
    with bounded(), pytest.raises(UnsafeArchive, match="Unsafe member path"):
        read_tar_member(io.BytesIO(data), pkg_info, LIMITS)


@pytest.mark.parametrize(
    "kind",
    [
        {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"type": tarfile.SYMTYPE, "linkname": "../../../../etc/shadow"},
        {"type": tarfile.LNKTYPE, "linkname": "demo-1.0/setup.py"},
        {"type": tarfile.DIRTYPE},
        {"type": tarfile.FIFOTYPE},
        {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
    ],
)
def test_tar_pkg_info_that_is_not_a_regular_file_is_refused(kind):
    data = tar_gz_bytes(
        tar_member("demo-1.0/setup.py", b""), tar_member("demo-1.0/PKG-INFO", **kind)
    )
    with bounded(), pytest.raises(UnsafeArchive, match="not a regular file"):
        read_tar_member(io.BytesIO(data), pkg_info, LIMITS)


def test_tar_with_more_members_than_the_limit_is_refused():
    members = [tar_member(f"demo-1.0/f{i}") for i in range(5)]
    data = sdist_tar(*members)
    with pytest.raises(UnsafeArchive, match="more than 5 members"):
        read_tar_member(io.BytesIO(data), pkg_info, ArchiveLimits(max_members=5))
    assert read_tar_member(io.BytesIO(data), pkg_info, ArchiveLimits(max_members=6))[1]


def test_tar_over_the_uncompressed_limit_is_refused():
    data = sdist_tar(tar_member("demo-1.0/big", b"x" * 5000))
    with pytest.raises(UnsafeArchive, match="expands to more than 4096 bytes"):
        read_tar_member(io.BytesIO(data), pkg_info, ArchiveLimits(max_uncompressed=4096))


def test_tar_pkg_info_over_the_size_limit_is_refused():
    data = tar_gz_bytes(tar_member("demo-1.0/PKG-INFO", METADATA + b"x" * 1000))
    with pytest.raises(UnsafeArchive, match="larger than 1000 bytes"):
        read_tar_member(io.BytesIO(data), pkg_info, ArchiveLimits(max_metadata=1000))


@pytest.mark.parametrize("cut", [0, 10, 100, -30])
def test_truncated_or_invalid_tar_gz_is_refused(cut):
    data = sdist_tar(tar_member("demo-1.0/setup.py", bytes(range(256)) * 100))
    with pytest.raises(UnsafeArchive):
        read_tar_member(io.BytesIO(data[:cut]), pkg_info, LIMITS)


@pytest.mark.parametrize(
    "content", [b"not gzip", gzip.compress(b"not a tar" * 100), zip_bytes({"a": b"b"})]
)
def test_not_a_tar_gz_is_refused(content):
    with pytest.raises(UnsafeArchive):
        read_tar_member(io.BytesIO(content), pkg_info, LIMITS)


def test_uncompressed_tar_is_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info, data = tar_member("demo-1.0/PKG-INFO", METADATA)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchive, match=r"Not a valid tar\.gz"):
        read_tar_member(io.BytesIO(buffer.getvalue()), pkg_info, LIMITS)


# -- tar.gz: malicious and big -------------------------------------------------------------


def test_tar_bomb_is_refused_quickly():
    """A 400 MB member of zeros: refused at its header, before it is decompressed."""
    size = 400 * MB
    parts = [header("demo-1.0/PKG-INFO", len(METADATA)), METADATA, pad(len(METADATA))]
    with gz_stream(iter([*parts, header("demo-1.0/data.bin", size), *zero_chunks(size)])) as fh:
        assert fh.seek(0, 2) < 1 * MB
        rejects(read_tar_member, fh, pkg_info, "compression ratio")


def test_tar_pkg_info_of_200_mb_is_refused_quickly():
    size = 200 * MB
    with gz_stream(iter([header("demo-1.0/PKG-INFO", size), *zero_chunks(size)])) as fh:
        rejects(read_tar_member, fh, pkg_info, "compression ratio")
        rejects(read_tar_member, fh, pkg_info, "larger than", max_ratio=10**9)


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_tar_with_a_huge_extended_header_is_refused_quickly(kind):
    """tarfile reads a long-name or pax header whole before yielding the member: 300 MB
    of them once cost 600 MB of memory, past every size and ratio check."""
    size = 300 * MB
    parts = [header("././@LongLink", size, kind), *zero_chunks(size), tar_end()]
    with gz_stream(iter(parts)) as fh:
        rejects(read_tar_member, fh, pkg_info, "Extended tar header larger than")


def test_tar_of_many_large_pax_headers_is_refused_by_the_ratio():
    """Each pax header is under the per-header bound, but together they expand the tar
    stream far past the compression ratio while declaring only empty members."""
    record_size = 900 * 1024
    body = b"comment=" + b"a" * (record_size - 8 - 8) + b"\n"
    record = b"%d " % record_size + body
    assert len(record) == record_size
    parts: list[bytes] = []
    for i in range(120):
        parts += [header("pax", len(record), tarfile.XHDTYPE), record, pad(len(record))]
        parts += [header(f"demo-1.0/f{i}", 0)]
    with gz_stream(iter([*parts, tar_end()])) as fh:
        rejects(read_tar_member, fh, pkg_info, "compression ratio")


def tarfile_pace(fh: BinaryIO) -> float:
    """CPU seconds tarfile itself takes to list the stream's members."""
    fh.seek(0)
    started = time.process_time()
    with tarfile.open(fileobj=fh, mode="r|gz") as archive:
        for _ in archive:
            pass
    return time.process_time() - started


def test_tar_with_too_many_members_is_refused_quickly():
    """Every one of the 50,001 headers must be parsed, which takes tarfile itself about a
    second: the bound is a multiple of its pace here, measured on the same stream."""
    with gz_stream(iter([empty_members(50_001), tar_end()]), level=6) as fh:
        bound = 3 * tarfile_pace(fh)
        rejects(read_tar_member, fh, pkg_info, "more than 50000", peak=None, seconds=bound)
        # Streamed: no per-member history is kept (traced on fewer, tracing being slow).
        rejects(read_tar_member, fh, pkg_info, "more than 3000", peak=5 * MB, max_members=3000)
