"""Reserve, commit, release: every paid submission holds its price first, checked against the
limit and written in one transaction, and is settled at what the provider charged. Reservations
are leases renewed by a thread of the holding process; what dead holders left is taken over by
the same work's next reservation or reconciled by a restart (blocks/ledger/__init__.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import weakref

import sqlalchemy as sa

from blocks.home import state_url
from blocks.ledger.books import Books
from blocks.ledger.held import HeldUnknowns
from blocks.ledger.schema import (
    LEASE_SECONDS,
    BudgetError,
    Entry,
    OverBudget,
    budgets_table,
    credits_of,
    entries_table,
    owner_alive,
    period_key,
    process_start,
    to_units,
)


class Ledger(HeldUnknowns, Books):
    """Budgets, their entries, this process's open reservations and held creates of unknown outcome."""

    def __init__(self, url: str | None = None, lease: float = LEASE_SECONDS):
        super().__init__(url)
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{process_start()}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    # ---- reserve, commit, release -----------------------------------------------------------

    def reserve(self, budget: str, credits: float, *, key: str = "", label: str = "", project: str = "",
                run_id: str = "", now: float | None = None) -> str:
        """Hold `credits` on `budget` for one paid submission; its id, or OverBudget.

        An open reservation of the same `key` whose holder is gone is taken over instead of
        holding the amount twice (a rerun resuming a take that a killed run had submitted).
        """
        units = to_units(credits, "reservation")
        now = time.time() if now is None else now
        key = key or uuid.uuid4().hex
        with self.engine.begin() as db:
            row = db.execute(sa.select(budgets_table).where(budgets_table.c.name == budget)
                             .with_for_update()).first()
            if row is None:
                raise self._unknown(db, budget)
            self._expire(db, budget, now)
            period = period_key(row.period, now)
            orphan = self._orphan(db, budget, key, now)
            totals = self._totals(db, budget, period)
            held = orphan.units if orphan is not None and orphan.period == period else 0
            if row.limit_units is not None and \
                    totals.spent_units + totals.reserved_units - held + units > row.limit_units:
                left = row.limit_units - totals.spent_units - totals.reserved_units
                raise OverBudget(budget, credits, credits_of(max(0, left)), label)
            if orphan is not None:  # taken over: its old hold is replaced by this one
                self._move(db, orphan.budget, orphan.period, reserved=-orphan.units)
                db.execute(entries_table.update().where(entries_table.c.id == orphan.id).values(
                    period=period, units=units, estimate_units=units, owner=self.owner, run_id=run_id,
                    expires_at=now + self.lease, note=f"taken over from {orphan.owner}"))
                entry_id = orphan.id
            else:
                entry_id = str(uuid.uuid4())
                db.execute(entries_table.insert().values(
                    id=entry_id, budget=budget, period=period, key=key, label=label, project=project,
                    run_id=run_id, status="reserved", estimate_units=units, units=units, owner=self.owner,
                    note="", created_at=now, expires_at=now + self.lease))
            self._move(db, budget, period, reserved=units)
        self._hold(entry_id)
        return entry_id

    def commit(self, entry_id: str, credits: float, note: str = "", task: str | None = None) -> float:
        """Settle a reservation at what the provider charged (may differ from what was held); the
        credits committed. A provider task is charged once: when `task` (or the task attached to
        the entry) is already counted by another entry, this one is released instead and 0 returned."""
        units = to_units(credits, "charge")
        return credits_of(self._settle(entry_id, "committed", units, note, task))

    def release(self, entry_id: str, note: str = "") -> None:
        """Give a reservation back: the provider charged nothing for it."""
        self._settle(entry_id, "released", 0, note)

    def attach_task(self, entry_id: str, task_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(entries_table.update().where(entries_table.c.id == entry_id).values(task_id=task_id))

    def _settle(self, entry_id: str, status: str, units: int, note: str, task: str | None = None,
                owner: str | None = None) -> int:
        with self.engine.begin() as db:
            row = db.execute(sa.select(entries_table).where(entries_table.c.id == entry_id)).first()
            if row is None:
                raise BudgetError(f"ledger entry {entry_id} does not exist")
            if owner is not None and (row.owner != owner or row.status not in ("reserved", "expired")):
                return -1  # reconciling an orphan that a live run took over (or settled) meanwhile
            if row.status in ("committed", "released"):
                raise BudgetError(f"ledger entry {entry_id} is already {row.status}")
            db.execute(sa.select(budgets_table.c.name).where(budgets_table.c.name == row.budget)
                       .with_for_update())  # PostgreSQL: one settle per budget at a time (SQLite: BEGIN IMMEDIATE)
            task = task or row.task_id
            if status == "committed" and task:
                counted = db.execute(sa.select(entries_table.c.id).where(
                    entries_table.c.task_id == task, entries_table.c.id != entry_id,
                    entries_table.c.status.in_(("committed", "expired")))).first()
                if counted is not None:  # a rerun, a waiter or a restart's reconciliation counted it
                    status, units, note = "released", 0, f"{note}; task already counted by entry {counted.id[:8]}"
            done = db.execute(entries_table.update().where(
                entries_table.c.id == entry_id, entries_table.c.status == row.status).values(
                status=status, units=units, settled_at=time.time(), note=note or row.note, task_id=task))
            if done.rowcount != 1:
                raise BudgetError(f"ledger entry {entry_id} was settled concurrently")
            if row.status in ("reserved", "held"):
                self._move(db, row.budget, row.period, reserved=-row.units, spent=units)
            else:  # an expired entry (counted as spent) settled after all by whoever took it over
                self._move(db, row.budget, row.period, spent=units - row.units)
        self._drop(entry_id)
        return units

    def withdraw(self, task: str, note: str) -> int:
        """Release what entries held or counted for `task` (a create of unknown outcome, shown not to
        be what was assumed); how many."""
        with self.engine.begin() as db:
            rows = db.execute(sa.select(entries_table).where(
                entries_table.c.task_id == task, entries_table.c.status.in_(("held", "committed", "expired")))).all()
            for row in rows:
                db.execute(entries_table.update().where(entries_table.c.id == row.id).values(
                    status="released", units=0, note=f"{row.note}; {note}", settled_at=time.time()))
                if row.status == "held":
                    self._move(db, row.budget, row.period, reserved=-row.units)
                else:
                    self._move(db, row.budget, row.period, spent=-row.units)
        return len(rows)

    # ---- reconciling what dead runs left ----------------------------------------------------

    def orphans(self, budget: str, now: float | None = None) -> list[Entry]:
        """Open reservations nobody holds any more (holder dead, or lease lapsed) and expired ones,
        that name the provider task they paid for: a restart settles them by that task's status."""
        now = time.time() if now is None else now
        with self.engine.connect() as db:
            rows = db.execute(sa.select(entries_table).where(
                entries_table.c.budget == budget, entries_table.c.status.in_(("reserved", "expired")),
                entries_table.c.task_id.is_not(None))).all()
        found = [r for r in rows if ":unknown@" not in r.task_id and (
            r.status == "expired" or r.expires_at < now or (r.owner != self.owner and not owner_alive(r.owner)))]
        return [e for e in self.entries(budget=budget) if e.id in {r.id for r in found}]

    def settle_orphan(self, entry: Entry, credits: float, note: str) -> bool:
        """Settle an orphan found by `orphans` (committed at `credits`, released at 0), unless a live
        run took it over meanwhile; True when this call settled it."""
        units = to_units(credits, "charge")
        return self._settle(entry.id, "committed" if units else "released", units, note,
                            owner=entry.owner) >= 0

    def _orphan(self, db, budget: str, key: str, now: float):
        """An unsettled entry of the same work whose holder is gone (lease lapsed or process dead)."""
        rows = db.execute(sa.select(entries_table).where(
            entries_table.c.budget == budget, entries_table.c.key == key,
            entries_table.c.status.in_(("reserved", "expired"))).order_by(entries_table.c.created_at)).all()
        for row in rows:
            mine = row.owner == self.owner
            if row.status == "expired" or row.expires_at < now or (mine and row.id not in self._held) or (
                    not mine and not owner_alive(row.owner)):
                if row.status == "expired":  # back to reserved: its charge is redone on settle
                    db.execute(entries_table.update().where(entries_table.c.id == row.id)
                               .values(status="reserved", settled_at=None))
                    self._move(db, row.budget, row.period, spent=-row.units, reserved=row.units)
                return row
        return None

    # ---- leases -----------------------------------------------------------------------------

    def _hold(self, entry_id: str) -> None:
        with self._lock:
            self._held.add(entry_id)
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=_renew, args=(weakref.ref(self),),
                                                 name="ledger-lease", daemon=True)
                self._renewer.start()

    def abandon(self, entry_id: str) -> None:
        """Stop holding a reservation without settling it: the next reservation of the same work
        (a retry, a rerun) takes it over; if none comes, its lease lapses and it expires."""
        self._drop(entry_id)

    def _drop(self, entry_id: str) -> None:
        with self._lock:
            self._held.discard(entry_id)

    def renew(self) -> int:
        with self._lock:
            held = list(self._held)
        if not held:
            return 0
        with self.engine.begin() as db:
            return db.execute(entries_table.update().where(
                entries_table.c.id.in_(held), entries_table.c.status == "reserved").values(
                expires_at=time.time() + self.lease)).rowcount


def _renew(ref: weakref.ref) -> None:
    """Renew the leases of a ledger's open reservations until it is gone or holds none."""
    while True:
        ledger = ref()
        if ledger is None:
            return
        pause = ledger.lease / 4
        try:
            ledger.renew()
        except sa.exc.SQLAlchemyError:
            pass  # the database is briefly unreachable: the next round renews
        with ledger._lock:
            if not ledger._held:
                ledger._renewer = None
                return
        del ledger
        time.sleep(pause)



def ledger_for(url: str | None = None) -> Ledger:
    """One Ledger per database URL and process (its lease thread and engine are shared)."""
    url = url or state_url()
    with _ledgers_lock:
        if url not in _ledgers:
            _ledgers[url] = Ledger(url)
        return _ledgers[url]


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()
