"""Start a real ``qoima serve`` subprocess on free ports and wait until it answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLES = SHARED_DATA / "dicom-samples"


def well_formed_samples() -> list[Path]:
    """Every sample file outside ``malformed/``; none where ../shared is missing."""
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.rglob("*.dcm") if "malformed" not in p.parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class QoimaServer:
    data_dir: Path
    dicom_port: int
    http_port: int
    database_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ae_title: str = "QOIMA"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicomweb"

    def cli_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def start(self, timeout_s: float = 30.0) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        command = [sys.executable, "-m", "qoima", "serve", *self.cli_args(),
                   "--ae-title", self.ae_title, "--dicom-port", str(self.dicom_port),
                   "--http-port", str(self.http_port), "--host", "127.0.0.1", *self.extra_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qoima serve exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"qoima serve not ready in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def qoima(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``qoima`` CLI command against this server's data dir."""
        command = [sys.executable, "-m", "qoima", *args]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120,
                              env={**os.environ, **self.env})


@contextlib.contextmanager
def running_server(data_dir: Path, **kwargs: object) -> Iterator[QoimaServer]:
    server = QoimaServer(data_dir, free_port(), free_port(), **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
