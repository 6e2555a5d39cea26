"""A real `prefect server start` for tests: a subprocess on a free loopback port with a
PREFECT_HOME of its own (and, optionally, a database URL such as PostgreSQL's), started the way
`takeflow server start` starts it (flows/server.py).

    with prefect_server(tmp_path) as server:
        server.api_url, server.env  # env: for clients, workers and `prefect` CLI subprocesses
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flows.server import spawn_server, stop_group, wait_healthy

# Services a platform test waits for, made quick: the scheduler's loops, late runs and the
# triggers' periodic evaluation. Everything else keeps Prefect's defaults.
FAST_SERVICES = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class RunningServer:
    api_url: str
    home: Path
    log: Path
    env: dict[str, str]  # the environment a client of this server runs with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prefect_server(root: Path, database_url: str | None = None, ui: bool = False,
                   settings: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """Start the server under `root`, wait for /api/health, yield it, stop it and its children."""
    home = root / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), **FAST_SERVICES, **(settings or {}))
    if ui:
        env["PREFECT_SERVER_UI_ENABLED"] = "true"
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    log = root / "prefect-server.log"
    proc = spawn_server("127.0.0.1", port, log, env)
    try:
        wait_healthy(api_url, proc, log)
        client_env = {k: v for k, v in env.items() if k not in FAST_SERVICES}
        client_env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(home))
        yield RunningServer(api_url=api_url, home=home, log=log, env=client_env)
    finally:
        stop_group(proc.pid)
        proc.wait(timeout=30)
