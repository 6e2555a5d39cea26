"""A process SIGKILLed after the server granted it a provider slot but before it read the answer:
the lease id never reached it, yet the next run on a limit of 1 gets the slot back at once, not at
lease expiry, on any server.

The kill is real and lands exactly in that window: the process talks to a real `prefect server
start` through a loopback proxy here, which forwards the slot request, reads the server's grant,
kills the process and drops the answer. The server keeps its leases in memory (a standalone
server's default) or in Prefect's filesystem lease storage (as the embedded server does under
`takeflow produce`, flows/run_guard.py); either way the rerun finds the lease over the server's
API by the holder token the dead run sent, and revokes it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from blocks import slot_holders
from flows.run_guard import FILESYSTEM_LEASES

ROOT = Path(__file__).resolve().parents[1]
INCREMENT = "/v2/concurrency_limits/increment-with-lease"
VICTIM = """
import sys, time
from tasks.provider_slots import provider_slot
with provider_slot(sys.argv[1]):
    time.sleep(600)
"""


class GrantKillingProxy:
    """Forwards every request to `upstream`; the first granted slot request kills `victim`
    instead of being answered, and the lease it carried is kept in `lost_lease`."""

    def __init__(self, upstream: str):
        self.upstream, self.victim, self.lost_lease, self.granted_at = upstream.rstrip("/"), None, None, None
        self.killed = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                path = self.path.removeprefix("/api")
                response = httpx.request(self.command, proxy.upstream + path, content=body, headers=headers,
                                         timeout=60)
                if path == INCREMENT and response.status_code == 200 and proxy.victim and not proxy.killed.is_set():
                    proxy.lost_lease = uuid.UUID(response.json()["lease_id"])
                    proxy.granted_at = time.monotonic()
                    os.kill(proxy.victim.pid, signal.SIGKILL)  # granted on the server, never read
                    proxy.killed.set()
                    self.close_connection = True
                    return
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module", params=["memory", "filesystem"])
def standalone_server(request, tmp_path_factory):
    """A `prefect server start` with its default lease storage (memory) or the embedded server's."""
    from tests.prefect_server import prefect_server

    settings = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": FILESYSTEM_LEASES} if request.param == "filesystem" else {}
    with prefect_server(tmp_path_factory.mktemp(f"leases-{request.param}"), settings=settings) as server:
        yield server


class Said(logging.Handler):
    """The messages logged to the logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def holders_of(client, name: str) -> list[uuid.UUID]:
    """The holders of the active leases on the `tag:` limit `name`, as the server lists them."""
    return list(client.read_concurrency_limit_by_tag(name.removeprefix("tag:")).active_slots)


def test_a_run_killed_between_the_grant_and_reading_it_gives_the_slot_back_at_once(
        standalone_server, own_takeflow_home):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks import provider_slots

    name = f"tag:grant-kill-{uuid.uuid4().hex[:8]}"
    proxy = GrantKillingProxy(standalone_server.api_url)
    try:
        with temporary_settings({PREFECT_API_URL: proxy.url}), get_client(sync_client=True) as client:
            client.upsert_global_concurrency_limit_by_name(name, 1)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": proxy.url,
                   "TAKEFLOW_HOME": str(own_takeflow_home)}
            proxy.victim = subprocess.Popen([sys.executable, "-c", VICTIM, name], env=env, cwd=ROOT)
            assert proxy.victim.wait(timeout=120) == -signal.SIGKILL and proxy.killed.is_set()

            # What the dead run left: the limit's one slot taken on the server under a lease it never
            # learnt, held by the token of its pending row.
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
            with slot_holders._engine().connect() as conn:
                rows = conn.execute(sa.select(slot_holders.holders)
                                    .where(slot_holders.holders.c.limit_name == name)).all()
            assert [row.lease_id for row in rows] == [None]
            assert holders_of(client, name) == [uuid.UUID(rows[0].token)]

            said = Said()
            logging.getLogger("takeflow.slots").addHandler(said)  # Prefect's logging setup may swap root's
            try:
                with provider_slots.provider_slot(name) as lease:
                    # the rerun holds the only slot, and the dead run's lease was revoked, not expired
                    assert lease != proxy.lost_lease
                    assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
                    assert uuid.UUID(rows[0].token) not in holders_of(client, name)
                    assert time.monotonic() - proxy.granted_at < provider_slots.LEASE_SECONDS
            finally:
                logging.getLogger("takeflow.slots").removeHandler(said)
            assert f"returned 1 slot(s) of {name} held by runs that died" in said.lines
            provider_slots.return_held_slots()
    finally:
        proxy.close()


def test_a_dead_holders_pending_row_is_handed_to_one_reclaim_only(own_takeflow_home):
    """A pending row whose holder died is taken by exactly one reclaim, which looks its token up;
    a live holder's pending row is left alone."""
    api = "http://127.0.0.1:9/api"
    live = slot_holders.pending(api, "grant-none", 60)
    dead = slot_holders.pending(api, "grant-none", 60)
    with slot_holders._engine().begin() as conn:  # as a process on this host that has exited leaves it
        conn.execute(slot_holders.holders.update().where(slot_holders.holders.c.token == str(dead))
                     .values(owner=f"{socket.gethostname()}:999999999:?"))
    orphans = slot_holders.orphaned(api, "grant-none")
    assert orphans.leases == [] and orphans.pending == [dead]
    assert slot_holders.orphaned(api, "grant-none").pending == []
    slot_holders.abandoned(live)
