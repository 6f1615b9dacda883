"""Which S3 client for the storage plugin: boto3 against obstore, measured.

Starts ``rclone serve s3`` (the test server) on a loopback port, then, for each client in
a fresh process, streams a 45 MiB object up as a multipart upload fed in 64 KiB writes
(as an upload arrives from the network) and streams it down in 64 KiB reads. Reports the
wall time and the peak resident memory above the process's RSS just before each
transfer (sampled from /proc every 5 ms). Both clients use 8 MiB parts.

Run from the repository root: ``.venv/bin/python bench/s3_clients.py`` (needs the test
extra and ``obstore``, which is not a dependency: ``uv pip install obstore``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20
SIZE = 45 * MIB
CHUNK = 64 * 1024
PART = 8 * MIB
ROUNDS = 5


class PeakRss:
    """Samples this process's RSS in a thread; ``peak`` above the value at start."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def above_start_mib(self) -> float:
        return (self.peak - self.start) / MIB


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _chunks() -> Iterator[bytes]:
    """64 KiB pieces, each a new object (slicing copies), as a request body arrives."""
    block = os.urandom(MIB)
    for offset in range(0, SIZE, CHUNK):
        yield block[offset % MIB : offset % MIB + CHUNK]


# --- the two clients, as the plugin would use them -------------------------------------


def boto3_round(endpoint: str, bucket: str, key: str) -> dict[str, float]:
    import io

    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )  # fmt: skip
    client.head_bucket(Bucket=bucket)  # warm: connection, credentials, endpoint rules
    chunks = _chunks()
    started = time.perf_counter()
    with PeakRss() as up:
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        buffer, parts = io.BytesIO(), []

        def flush() -> None:
            number = len(parts) + 1
            buffer.seek(0)
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=buffer
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            buffer.seek(0)
            buffer.truncate()

        for chunk in chunks:
            buffer.write(chunk)
            if buffer.tell() >= PART:
                flush()
        if buffer.tell():
            flush()
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as down:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        total = 0
        while data := body.read(CHUNK):
            total += len(data)
    assert total == SIZE
    return _figures(upload_s, up, time.perf_counter() - started, down)


def obstore_round(endpoint: str, bucket: str, key: str) -> dict[str, float]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket, endpoint=endpoint, region="us-east-1", client_options={"allow_http": True}
    )
    obstore.put(store, "warm", b"x")
    chunks = _chunks()
    started = time.perf_counter()
    writer = obstore.open_writer(store, key, buffer_size=PART, max_concurrency=2)
    with PeakRss() as up, writer as out:
        for chunk in chunks:
            out.write(chunk)
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as down:
        total = 0
        for data in obstore.get(store, key).stream(min_chunk_size=CHUNK):
            total += len(data)
    assert total == SIZE
    return _figures(upload_s, up, time.perf_counter() - started, down)


def _figures(upload_s: float, up: PeakRss, download_s: float, down: PeakRss) -> dict[str, float]:
    return {
        "upload_mib_s": SIZE / MIB / upload_s,
        "upload_rss_mib": up.above_start_mib,
        "download_mib_s": SIZE / MIB / download_s,
        "download_rss_mib": down.above_start_mib,
    }


ROUNDS_BY_CLIENT = {"boto3": boto3_round, "obstore": obstore_round}


def main() -> None:
    if len(sys.argv) == 5:  # a child: one client, one round
        _, client, endpoint, bucket, key = sys.argv
        print(json.dumps(ROUNDS_BY_CLIENT[client](endpoint, bucket, key)))
        return
    from tests.s3server import S3Server, credentials_env

    with tempfile.TemporaryDirectory() as tmp:
        server = S3Server(Path(tmp) / "s3")
        bucket = server.bucket("bench")
        env = {**os.environ, **credentials_env()}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in ROUNDS_BY_CLIENT}
        try:
            for round_ in range(ROUNDS):
                for name in ROUNDS_BY_CLIENT:  # alternate, so drift hits both
                    key = f"{name}/{round_}"
                    args = [sys.executable, __file__, name, server.endpoint, bucket, key]
                    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
                    results[name].append(json.loads(out.stdout))
        finally:
            server.stop()
    print(f"45 MiB through rclone serve s3 on loopback, median of {ROUNDS} rounds")
    print(f"{'client':8} {'up MiB/s':>9} {'up +RSS':>8} {'down MiB/s':>11} {'down +RSS':>10}")
    for name, rounds in results.items():
        med = {k: sorted(r[k] for r in rounds)[len(rounds) // 2] for k in rounds[0]}
        print(f"{name:8} {med['upload_mib_s']:9.0f} {med['upload_rss_mib']:7.1f}M "
              f"{med['download_mib_s']:11.0f} {med['download_rss_mib']:9.1f}M")  # fmt: skip


if __name__ == "__main__":
    main()
