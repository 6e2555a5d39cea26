"""Who holds which provider concurrency slot: a row per Prefect lease, in the shared state database.

Prefect's lease is renewed by the process that holds it; when that process dies the slot stays
counted until someone revokes the lease. This table names the holder (host, pid, start time) so
the next run can tell a dead holder from a live one and return the slot at once, instead of
waiting on a server that may never do it (tasks/provider_slots.py says when that happens).
"""

from __future__ import annotations

import time
from uuid import UUID

import sqlalchemy as sa

from blocks.home import state_engine
from blocks.journal import alive, me

metadata = sa.MetaData()
holders = sa.Table(
    "slot_holders", metadata,
    sa.Column("lease_id", sa.String(36), primary_key=True),
    sa.Column("server", sa.String(1024), nullable=False),
    sa.Column("limit_name", sa.String(256), nullable=False),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
_ready: set[sa.Engine] = set()


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


def acquired(lease: UUID, api_url: str, name: str, seconds: float) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.insert().values(lease_id=str(lease), server=server_id(api_url), limit_name=name,
                                             owner=me(), expires_at=time.time() + seconds))


def renewed(lease: UUID, seconds: float) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.update().where(holders.c.lease_id == str(lease))
                     .values(expires_at=time.time() + seconds))


def released(lease: UUID) -> None:
    with _engine().begin() as conn:
        conn.execute(holders.delete().where(holders.c.lease_id == str(lease)))


def held(api_url: str, name: str) -> list[tuple[UUID, str]]:
    """(lease, holder) of every slot of `name` the table knows to be held."""
    with _engine().connect() as conn:
        rows = conn.execute(sa.select(holders.c.lease_id, holders.c.owner).where(
            holders.c.server == server_id(api_url), holders.c.limit_name == name)).all()
    return [(UUID(lease), owner) for lease, owner in rows]


def orphaned(api_url: str, name: str) -> list[UUID]:
    """Take the rows of `name`'s leases whose holder is dead (gone from this host, or silent past
    its lease); each is returned to exactly one caller, which must release the lease."""
    now, taken = time.time(), []
    with _engine().begin() as conn:
        rows = conn.execute(sa.select(holders).where(holders.c.server == server_id(api_url),
                                                     holders.c.limit_name == name)).all()
        for row in rows:
            if now > row.expires_at or not alive(row.owner, now, window=float("inf")):
                conn.execute(holders.delete().where(holders.c.lease_id == row.lease_id))
                taken.append(UUID(row.lease_id))
    return taken


def expired_on_embedded_server() -> list[UUID]:
    """Leases past their expiry in the embedded server's filesystem lease storage, which no
    repossessor revokes there (e.g. one whose holder died between acquiring it and writing its row)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.context import get_current_settings

    if PREFECT_API_URL.value() or not get_current_settings().server.concurrency.lease_storage.endswith(".filesystem"):
        return []
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage
    from prefect.utilities.asyncutils import run_coro_as_sync

    return list(run_coro_as_sync(ConcurrencyLeaseStorage().read_expired_lease_ids()) or [])
