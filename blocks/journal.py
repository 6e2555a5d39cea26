"""The take journal: which paid provider task belongs to which piece of work, shared by every run,
output folder and worker that uses the same state database (`blocks.home.state_url()`).

One row per work key (the content hash of provider settings and request):

    intent  -> the create is about to be sent (written BEFORE it is sent)
    created -> the create returned: `task_id` is the provider's task, to poll on resume
    unknown -> the create's connection broke after sending: the task may exist
    done    -> the output was downloaded, decoded to the end and stored under `output`

A row leaves the journal only when its task ended without an output (failed, refused, cancelled),
so that the next attempt creates afresh. A `done` row stays: with the stored output it is the
proof that the work was paid for, whatever happened to Prefect's cache record or the output folder.
Every transition is one transaction (BEGIN IMMEDIATE on SQLite), so of two processes racing for
the same key exactly one inserts the intent and exactly one reports a task's credits.

`python -m blocks.journal` lists the entries; `python -m blocks.journal forget KEY` removes one
(after checking the provider's dashboard for an `unknown` create).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from blocks.home import state_engine

metadata = sa.MetaData()
entries = sa.Table(
    "take_journal", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("task_id", sa.String(256)),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("output", sa.String(1024)),
    sa.Column("size", sa.BigInteger),
    sa.Column("credits", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Entry:
    key: str
    provider: str
    state: str
    task_id: str | None
    owner: str
    claimed_at: float
    output: str | None
    size: int | None
    credits: float | None


def _engine() -> sa.Engine:
    engine = state_engine()
    if engine not in _ready:
        metadata.create_all(engine)
        _ready.add(engine)
    return engine


_ready: set[sa.Engine] = set()


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot), so a reused pid is not mistaken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def me() -> str:
    """This process, as journal owners and slot holders name it: host:pid:start."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def alive(owner: str, claimed_at: float, window: float) -> bool:
    """Whether the process named `owner` may still be working: on this host, its pid still runs
    with the same start time; on another host, it claimed less than `window` seconds ago."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return time.time() - claimed_at < window
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started in ("?", _start_time(int(pid)))


def _entry(row) -> Entry | None:
    return None if row is None else Entry(**{c: row._mapping[c] for c in Entry.__dataclass_fields__})


def get(key: str) -> Entry | None:
    with _engine().connect() as conn:
        return _entry(conn.execute(sa.select(entries).where(entries.c.key == key)).first())


def all_entries() -> list[Entry]:
    with _engine().connect() as conn:
        return [_entry(row) for row in conn.execute(sa.select(entries).order_by(entries.c.updated_at))]


def claim(key: str, provider: str, take_over: str | None = None) -> tuple[Entry, bool]:
    """The key's entry, and whether this call made it an intent owned by this process (the caller
    must then send the create). With `take_over`, an entry still in that state is re-owned."""
    now = time.time()
    with _engine().begin() as conn:
        row = _entry(conn.execute(sa.select(entries).where(entries.c.key == key)).first())
        if row is not None and (take_over is None or row.state != take_over):
            return row, False
        values = dict(provider=provider, state="intent", task_id=None, owner=me(), claimed_at=now,
                      output=None, size=None, credits=None, updated_at=now)
        if row is None:
            conn.execute(entries.insert().values(key=key, **values))
        else:
            conn.execute(entries.update().where(entries.c.key == key).values(**values))
        return get_in(conn, key), True


def get_in(conn: sa.Connection, key: str) -> Entry:
    return _entry(conn.execute(sa.select(entries).where(entries.c.key == key)).first())


def _update(key: str, where_state: tuple[str, ...], **values) -> bool:
    with _engine().begin() as conn:
        result = conn.execute(entries.update().where(entries.c.key == key, entries.c.state.in_(where_state))
                              .values(updated_at=time.time(), **values))
        return result.rowcount == 1


def created(key: str, task_id: str) -> None:
    """The create returned `task_id`."""
    _update(key, ("intent", "unknown"), state="created", task_id=task_id)


def unknown(key: str) -> None:
    """The create may have reached the provider; nobody knows its task id."""
    _update(key, ("intent",), state="unknown")


def finish(key: str, output: Path, credits: float) -> bool:
    """The task's output is verified and stored. True for the one call that moved it to done (that
    caller reports the credits); False when another process or thread finished it first."""
    return _update(key, ("intent", "created", "unknown"), state="done", output=str(output),
                   size=output.stat().st_size, credits=credits)


def reopen(key: str) -> None:
    """A done entry whose stored output is gone: poll its task again for a fresh copy."""
    _update(key, ("done",), state="created", output=None, size=None)


def forget(key: str, state: str | None = None) -> bool:
    """Remove the entry (its task ended without output); True for the one call that removed it."""
    with _engine().begin() as conn:
        where = [entries.c.key == key] + ([entries.c.state == state] if state else [])
        return conn.execute(entries.delete().where(*where)).rowcount == 1


def _main(argv: list[str]) -> int:
    if argv[:1] == ["forget"] and len(argv) == 2:
        print("forgotten" if forget(argv[1]) else f"no entry {argv[1]}")
        return 0
    if argv:
        print("usage: python -m blocks.journal [forget KEY]", file=sys.stderr)
        return 2
    for e in all_entries():
        print(f"{e.key[:16]}  {e.provider:9} {e.state:8} {e.task_id or '-':40} {e.credits if e.credits is not None else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
