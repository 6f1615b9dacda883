"""A 45 MiB upload and download through ``file://`` and through ``s3://``: time, and the
web process's memory.

For each storage, starts ``packyard serve --workers 1 --no-worker`` on a fresh data
directory (for S3, against ``rclone serve s3`` on loopback, the tests' server), warms
it up with a small upload and download, then uploads a 45 MiB wheel (streamed, with a
Content-Length) and downloads it (streamed, 64 KiB reads) while sampling the RSS of
the uWSGI processes. Rounds alternate between the storages; medians are reported.

Targets: the web RSS stays within 20 MiB of idle during both, on both storages; and
S3's throughput is at least 60 % of file://'s, both ways. Exits 1 when one is missed.

Run from the repository root: ``.venv/bin/python bench/storage.py [--rounds N]``
(``make bench`` runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from upload_memory import (
    MIB,
    RssSampler,
    create_project,
    proc_status,
    reset_peak,
    upload,
    web_workers,
    write_wheel,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3server import S3Server, credentials_env  # noqa: E402
from tests.services import LiveServer, packyard_env  # noqa: E402

RSS_BUDGET = 20 * MIB
THROUGHPUT_SHARE = 0.6


@contextmanager
def packyard_on(storage_url: str | None, data_dir: Path, max_upload: int) -> Iterator[LiveServer]:
    settings = {"MAX_UPLOAD_SIZE": str(max_upload)}
    if storage_url:
        settings["STORAGE_URL"] = storage_url
    env = {**packyard_env(data_dir, **settings), **credentials_env()}
    server = LiveServer(data_dir, env, worker=False, web_workers=1)
    try:
        yield server
    finally:
        server.stop()


class Sampled:
    """The RSS of the web processes above idle, while the block runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def __enter__(self) -> Sampled:
        self.idle = sum(proc_status(pid)["VmRSS"] for pid in self.pids)
        self.hwm_reset = all(reset_peak(pid) for pid in self.pids)
        self.sampler = RssSampler(self.pids)
        self.sampler.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        peak = self.sampler.stop()
        if self.hwm_reset:
            peak = max(peak, sum(proc_status(pid)["VmHWM"] for pid in self.pids))
        self.growth = peak - self.idle


def download(server: LiveServer, project_id: int, path: Path) -> str:
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"{server.url}/api/v4/projects/{project_id}/packages/pypi/files/{sha256}/{path.name}"
    digest = hashlib.sha256()
    with requests.get(url, headers={"PRIVATE-TOKEN": server.admin_token}, stream=True) as r:
        r.raise_for_status()
        for chunk in r.iter_content(64 * 1024):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"{path.name}: the download differs from the upload")
    return sha256


def one_round(storage_url: str | None, tmp: Path, dists: list[Path]) -> dict[str, float]:
    warmup, big = dists
    data_dir = tmp / f"data-{time.monotonic_ns()}"
    data_dir.mkdir()
    with packyard_on(storage_url, data_dir, big.stat().st_size + 64 * MIB) as server:
        token = server.admin_token
        project_id = create_project(server, token)
        pids = web_workers(server)
        # Imports, clients and caches are made by the first transfer, not counted.
        name, version = warmup.name.split("-")[0], warmup.name.split("-")[1]
        if upload(server, token, project_id, warmup, name, version).status_code != 201:
            raise RuntimeError("warm-up upload failed")
        download(server, project_id, warmup)
        time.sleep(0.5)
        with Sampled(pids) as up:
            response = upload(server, token, project_id, big, "bench-big", "1.0")
        if response.status_code != 201:
            raise RuntimeError(f"upload failed: {response.status_code} {response.text}")
        with Sampled(pids) as down:
            download(server, project_id, big)
    mib = big.stat().st_size / MIB
    return {
        "upload_mib_s": mib / up.seconds,
        "upload_growth_mib": up.growth / MIB,
        "download_mib_s": mib / down.seconds,
        "download_growth_mib": down.growth / MIB,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=45, help="wheel payload, MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packyard-bench-storage-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "dists").mkdir()
        dists = [write_wheel(tmp / "dists", "bench-warmup", "1.0", 1),
                 write_wheel(tmp / "dists", "bench-big", "1.0", args.size)]  # fmt: skip
        s3 = S3Server(tmp / "s3")
        results: dict[str, list[dict[str, float]]] = {"file://": [], "s3://": []}
        try:
            for number in range(args.rounds):
                bucket = s3.bucket(f"bench-{number}")
                urls = {"file://": None, "s3://": s3.url(bucket)}
                for label, url in urls.items():
                    results[label].append(one_round(url, tmp, dists))
        finally:
            s3.stop()
    return report(results, args.size, args.rounds)


def report(results: dict[str, list[dict[str, float]]], size: int, rounds: int) -> int:
    med = {label: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for label, rs in results.items()}  # fmt: skip
    print(f"{size} MiB wheel, packyard serve --workers 1, median of {rounds} rounds")
    print(f"{'storage':8} {'upload':>12} {'web +RSS':>9} {'download':>12} {'web +RSS':>9}")
    for label, m in med.items():
        print(f"{label:8} {m['upload_mib_s']:7.1f} MiB/s {m['upload_growth_mib']:7.1f}M "
              f"{m['download_mib_s']:7.1f} MiB/s {m['download_growth_mib']:7.1f}M")  # fmt: skip
    failures = []
    for label, m in med.items():
        for way in ("upload", "download"):
            if m[f"{way}_growth_mib"] * MIB > RSS_BUDGET:
                failures.append(f"{label} {way}: web RSS grew {m[f'{way}_growth_mib']:.1f} MiB")
    for way in ("upload", "download"):
        share = med["s3://"][f"{way}_mib_s"] / med["file://"][f"{way}_mib_s"]
        print(f"s3:// {way} throughput: {share:.0%} of file://'s (target 60 %)")
        if share < THROUGHPUT_SHARE:
            failures.append(f"s3:// {way} at {share:.0%} of file://")
    for failure in failures:
        print(f"MISSED: {failure}")
    print("OK" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
