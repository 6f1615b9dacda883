"""Web-process memory during one large streaming upload.

Starts ``packyard serve --workers 1 --no-worker`` on a free loopback port with a fresh
data directory, creates a group and a project through the REST API, then uploads a
45 MiB wheel as a streamed multipart body while sampling the resident set size of the
uWSGI worker process(es) from /proc. Exits 1 when the peak exceeds the idle RSS by
more than the budget (20 MiB): an upload must be spooled to disk, not held in memory.

Run from the repository root: ``.venv/bin/python bench/upload_memory.py``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dists import make_wheel  # noqa: E402
from tests.services import LiveServer, packyard_env  # noqa: E402  (needs the repository root on sys.path)

MIB = 2**20
BIN = Path(sys.executable).parent
SAMPLE_INTERVAL = 0.01


# --- /proc ----------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes (0 when it is gone)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, found by scanning /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on (not ``pid`` itself)."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of some processes every 10 ms; keeps the maximum."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = sum(proc_status(pid)["VmRSS"] for pid in self.pids)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop_event.wait(SAMPLE_INTERVAL)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


# --- the server -----------------------------------------------------------------------


def web_workers(server: LiveServer) -> list[int]:
    """The uWSGI processes (its master and workers) under the serve process; no embedded
    worker runs."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(pids := descendants(server.process.proc.pid)) > 1:  # the master and a worker
            return pids
        time.sleep(0.1)
    raise RuntimeError("no uWSGI worker process found")


@contextmanager
def running_server(data_dir: Path, max_upload: int) -> Iterator[LiveServer]:
    env = packyard_env(data_dir, MAX_UPLOAD_SIZE=str(max_upload))
    server = LiveServer(data_dir, env, worker=False, web_workers=1)
    try:
        yield server
    finally:
        server.stop()


# --- the upload -----------------------------------------------------------------------


class MultipartBody:
    """A multipart/form-data body read from disk piece by piece, with a known length.

    requests sends a file-like object with ``__len__`` as a Content-Length body in
    small blocks, so neither side of the client holds the file in memory.
    """

    def __init__(self, fields: dict[str, str], filename: str, path: Path) -> None:
        self.boundary = f"packyard-bench-{uuid.uuid4().hex}"
        head = b"".join(self._field(name, value) for name, value in fields.items())
        head += (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file: BinaryIO = path.open("rb")
        self._parts: list[bytes | BinaryIO] = [head, self._file, tail]
        self._length = len(head) + path.stat().st_size + len(tail)
        self._head_offset = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field(self, name: str, value: str) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{name}"'
        return f"--{self.boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode()

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        size = 64 * 1024 if size is None or size < 0 else size
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                chunk = part[self._head_offset : self._head_offset + size]
                self._head_offset += len(chunk)
                if self._head_offset >= len(part):
                    self._parts.pop(0)
                    self._head_offset = 0
            else:
                chunk = part.read(size)
                if not chunk:
                    self._parts.pop(0)
                    continue
            if chunk:
                return chunk
        return b""

    def close(self) -> None:
        self._file.close()


def upload(
    server: LiveServer,
    token: str,
    project_id: int,
    path: Path,
    name: str,
    version: str,
    chunked: bool = False,
) -> requests.Response:
    """POST the file with twine's legacy fields; ``chunked`` sends it without a length."""
    sha256 = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            sha256.update(chunk)
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": name,
        "version": version,
        "filetype": "bdist_wheel",
        "pyversion": "py3",
        "sha256_digest": sha256.hexdigest(),
    }
    body = MultipartBody(fields, path.name, path)
    # A generator has no length: requests sends it with Transfer-Encoding: chunked.
    data = iter(lambda: body.read(64 * 1024), b"") if chunked else body
    try:
        return requests.post(
            f"{server.url}/api/v4/projects/{project_id}/packages/pypi",
            data=data,
            headers={"PRIVATE-TOKEN": token, "Content-Type": body.content_type},
            timeout=300,
        )
    finally:
        body.close()


def create_project(server: LiveServer, token: str) -> int:
    headers = {"PRIVATE-TOKEN": token}
    api = f"{server.url}/api/v4"
    group = requests.post(
        f"{api}/groups",
        headers=headers,
        json={"name": "Bench", "path": "bench", "visibility": "private"},
        timeout=30,
    )
    group.raise_for_status()
    project = requests.post(
        f"{api}/projects",
        headers=headers,
        json={"name": "Big", "path": "big", "namespace_id": group.json()["id"]},
        timeout=30,
    )
    project.raise_for_status()
    return int(project.json()["id"])


def write_wheel(directory: Path, name: str, version: str, payload_mib: int) -> Path:
    filename, data = make_wheel(name, version, payload=os.urandom(payload_mib * MIB))
    path = directory / filename
    path.write_bytes(data)
    return path


# --- main -----------------------------------------------------------------------------


def fmt(n: int) -> str:
    return f"{n / MIB:8.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=45, help="wheel payload, MiB (default 45)")
    parser.add_argument("--budget", type=float, default=20, help="allowed growth, MiB")
    parser.add_argument(
        "--chunked", action="store_true", help="send the body chunked, without Content-Length"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="packyard-bench-") as tmp:
        tmp_path = Path(tmp)
        data_dir, dists = tmp_path / "data", tmp_path / "dists"
        data_dir.mkdir()
        dists.mkdir()
        warmup = write_wheel(dists, "bench-warmup", "1.0", 1)
        big = write_wheel(dists, "bench-big", "1.0", args.size)
        size = big.stat().st_size
        max_upload = (args.size + 64) * MIB

        with running_server(data_dir, max_upload) as server:
            token = server.admin_token
            project_id = create_project(server, token)
            workers = web_workers(server)

            # One small upload first, so one-time imports and caches are not counted.
            response = upload(server, token, project_id, warmup, "bench-warmup", "1.0")
            if response.status_code != 201:
                print(f"warm-up upload failed: {response.status_code} {response.text}")
                return 2
            time.sleep(0.5)

            idle = sum(proc_status(pid)["VmRSS"] for pid in workers)
            hwm_reset = all(reset_peak(pid) for pid in workers)
            sampler = RssSampler(workers)
            sampler.start()
            started = time.perf_counter()
            response = upload(server, token, project_id, big, "bench-big", "1.0", args.chunked)
            seconds = time.perf_counter() - started
            sampled_peak = sampler.stop()
            after = sum(proc_status(pid)["VmRSS"] for pid in workers)
            hwm = sum(proc_status(pid)["VmHWM"] for pid in workers)

        if response.status_code != 201:
            print(f"upload failed: {response.status_code} {response.text}")
            return 2

    peak = max(sampled_peak, hwm) if hwm_reset else sampled_peak
    delta = peak - idle
    print(f"web worker pids      {' '.join(map(str, workers))}")
    transfer = "chunked" if args.chunked else "Content-Length"
    print(f"wheel                {big.name} ({size / MIB:.1f} MiB, {transfer})")
    print(f"idle RSS             {fmt(idle)}")
    print(f"peak RSS (sampled)   {fmt(sampled_peak)}  ({sampler.samples} samples, 10 ms)")
    if hwm_reset:
        print(f"peak RSS (VmHWM)     {fmt(hwm)}  (reset just before the upload)")
    print(f"RSS after upload     {fmt(after)}")
    print(f"delta (peak - idle)  {fmt(delta)}  (budget {args.budget:.0f} MiB)")
    print(f"upload               {seconds:.2f} s, {size / MIB / seconds:.1f} MiB/s")
    if delta > args.budget * MIB:
        print("FAIL: the web process grew by more than the budget during the upload")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
