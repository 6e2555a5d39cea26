"""Where takeflow keeps the state that every run on a machine (or a team) shares: the credit
ledger, the take journal and the store of paid outputs.

`TAKEFLOW_HOME` (default `~/.takeflow`) is the folder; `TAKEFLOW_STATE_URL` (default SQLite in
that folder) is the database, any SQLAlchemy URL, e.g. `postgresql+psycopg://user@host/takeflow`
for several workers on several hosts.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event


def takeflow_home() -> Path:
    """The folder for shared state; created on first use."""
    home = Path(os.environ.get("TAKEFLOW_HOME") or Path.home() / ".takeflow").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def state_url() -> str:
    return os.environ.get("TAKEFLOW_STATE_URL") or f"sqlite:///{takeflow_home() / 'state.db'}"


def state_engine(url: str | None = None) -> sa.Engine:
    """One engine per URL and process. On SQLite every transaction takes the write lock at BEGIN
    (BEGIN IMMEDIATE), so read-check-write sequences such as a reservation are atomic across
    threads and processes; WAL lets readers proceed meanwhile."""
    return _engine(url or state_url())


@lru_cache(maxsize=None)
def _engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let BEGIN below be the only transaction start
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
