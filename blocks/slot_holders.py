"""Who holds which provider concurrency slot: a row per Prefect lease, in the shared state database.

Prefect's lease is renewed by the process that holds it; when that process dies the slot stays
counted until someone revokes the lease. This table names the holder (host, pid, start time) so
the next run can tell a dead holder from a live one and return the slot at once, instead of
waiting on a server that may never do it (tasks/provider_slots.py says when that happens).

The row is written *before* the slot is asked for, under a token of its own that goes to the
server as the lease's holder, and the lease id is added once the server's answer is in. So a
process killed between the server granting the lease and learning its id still leaves a row
(pending: a token, no lease id). The next run finds the lease by that holder token over the
server's API and revokes it at once (tasks/provider_slots.py: Prefect does that for `tag:` limits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import sqlalchemy as sa

from blocks.home import state_engine
from blocks.journal import alive, me

metadata = sa.MetaData()
holders = sa.Table(
    "slot_lease_holders", metadata,
    sa.Column("token", sa.String(36), primary_key=True),  # the lease's holder id on the server
    sa.Column("lease_id", sa.String(36), nullable=True, index=True),  # None until the grant is in
    sa.Column("server", sa.String(1024), nullable=False),
    sa.Column("limit_name", sa.String(256), nullable=False),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
_ready: set[sa.Engine] = set()


@dataclass(frozen=True)
class Orphans:
    """What dead holders of one limit left: leases by id, and tokens of requests whose answer
    (a lease, or a refusal) the holder never read."""

    leases: list[UUID]
    pending: list[UUID]


def _engine() -> sa.Engine:
    engine = state_engine()
    if engine not in _ready:
        metadata.create_all(engine)
        _ready.add(engine)
    return engine


def server_id(api_url: str) -> str:
    """The Prefect server a lease belongs to. The embedded server gets a new port every run but
    keeps its database (and, with run_guard, its leases) in PREFECT_HOME, so that names it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    return api_url if PREFECT_API_URL.value() else f"embedded:{PREFECT_HOME.value()}"


def pending(api_url: str, name: str, seconds: float) -> UUID:
    """Note that this process is about to ask for a slot of `name`; returns the holder token to
    send with the request. Until `granted` or `abandoned`, refresh it with `still_pending`."""
    token = uuid4()
    with _engine().begin() as conn:
        conn.execute(holders.insert().values(token=str(token), lease_id=None, server=server_id(api_url),
                                             limit_name=name, owner=me(), expires_at=time.time() + seconds))
    return token


def still_pending(token: UUID, seconds: float) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.update().where(holders.c.token == str(token))
                     .values(expires_at=time.time() + seconds))


def granted(token: UUID, lease: UUID, seconds: float) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.update().where(holders.c.token == str(token))
                     .values(lease_id=str(lease), expires_at=time.time() + seconds))


def abandoned(token: UUID) -> None:
    """The request under `token` got no lease (refused, failed) or its row is not needed."""
    with _engine().begin() as conn:
        conn.execute(holders.delete().where(holders.c.token == str(token)))


def renewed(lease: UUID, seconds: float) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.update().where(holders.c.lease_id == str(lease))
                     .values(expires_at=time.time() + seconds))


def released(lease: UUID) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.delete().where(holders.c.lease_id == str(lease)))


def orphaned(api_url: str, name: str) -> Orphans:
    """Take the rows of `name` whose holder is dead (gone from this host, or silent past its
    lease); each is handed to exactly one caller, which must return the leases and revoke any
    lease the server granted to the pending tokens."""
    now, leases, tokens = time.time(), [], []
    with _engine().begin() as conn:
        rows = conn.execute(sa.select(holders).where(holders.c.server == server_id(api_url),
                                                     holders.c.limit_name == name)).all()
        for row in rows:
            if now > row.expires_at or not alive(row.owner, now, window=float("inf")):
                conn.execute(holders.delete().where(holders.c.token == row.token))
                (leases if row.lease_id else tokens).append(UUID(row.lease_id or row.token))
    return Orphans(leases, tokens)


def forget_limit(api_url: str, name: str) -> None:
    """Drop the rows of a limit that no longer exists (its leases went with it)."""
    with _engine().begin() as conn:
        conn.execute(holders.delete().where(holders.c.server == server_id(api_url), holders.c.limit_name == name))


def expired_on_embedded_server() -> list[UUID]:
    """Leases past their expiry in the embedded server's filesystem lease storage (in PREFECT_HOME,
    flows/run_guard.py configures it), which no repossessor revokes there: e.g. one granted to a
    request whose holder died, but after its pending row had been reclaimed. Expired leases are not
    listed over the server's API, so they are read from the files; a standalone server's own
    repossessor revokes them."""
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.context import get_current_settings

    if PREFECT_API_URL.value() or not get_current_settings().server.concurrency.lease_storage.endswith(".filesystem"):
        return []
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage
    from prefect.utilities.asyncutils import run_coro_as_sync

    return list(run_coro_as_sync(ConcurrencyLeaseStorage().read_expired_lease_ids()) or [])
