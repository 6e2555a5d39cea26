"""A real `prefect server start` on PostgreSQL, and `prefect worker start` processes, for tests.

The server gets a database of its own in the throwaway cluster of tests/postgres_server.py, a
PREFECT_HOME of its own, and a loopback port; it is stopped (and its workers with it) on exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.postgres_server import _free_port

PREFECT = str(Path(sys.executable).parent / "prefect")


def create_database(url: str, name: str) -> str:
    """Create database `name` in the cluster of `url` (a psycopg URL); its asyncpg URL for Prefect."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return url.replace("+psycopg://", "+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def prefect_server(database_url: str, home: Path, timeout: float = 180):
    """`prefect server start` on `database_url` until the block ends; yields its PREFECT_API_URL."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_DATABASE_MIGRATION_TIMEOUT": "120"}
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "w")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited with {server.returncode}: see {home / 'server.log'}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not answer within {timeout:g} s: see {home / 'server.log'}")
            time.sleep(0.5)
        yield api
    finally:
        stop(server)
        log.close()


def start_worker(pool: str, name: str, env: dict[str, str], log: Path, limit: int = 1) -> subprocess.Popen:
    """`prefect worker start` on `pool`, running at most `limit` flow runs at once."""
    return subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--name", name, "--limit", str(limit)],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group (the server's or worker's children too), SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
