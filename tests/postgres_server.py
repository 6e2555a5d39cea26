"""A throwaway PostgreSQL cluster for tests: initdb in a temp folder, served on a loopback port.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` (or `nobody`)
user. Tests needing it are skipped, with the reason, when no PostgreSQL binaries are installed
(`.ci/run` installs them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoPostgres(RuntimeError):
    pass


@contextmanager
def postgres_cluster():
    """A fresh cluster for the block's duration; its SQLAlchemy URL (psycopg 3)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise NoPostgres("PostgreSQL binaries (initdb, pg_ctl) are not installed; apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="takeflow-pg-"))
    data, port = root / "data", _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user)
        prefix = ["runuser", "-u", user, "--"]
    try:
        subprocess.run(prefix + [initdb, "-D", str(data), "-U", "takeflow", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"],
                       check=True, capture_output=True)
        _wait(port)
        yield f"postgresql+psycopg://takeflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    try:
        with postgres_cluster() as url:
            yield url
    except NoPostgres as exc:
        pytest.skip(str(exc))


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _wait(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL did not start on port {port}")
