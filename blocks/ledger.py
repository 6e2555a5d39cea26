"""The credit ledger: named budgets that every run drawing on them shares, across threads,
processes and (on PostgreSQL) hosts.

Every paid submission first *reserves* its quoted price; when the provider has answered, the
reservation is *committed* at what the provider charged (its own cost report where it gives
one, else the catalogue price) or *released* when it charged nothing. A reservation takes
effect only if spent + reserved stays within the budget's limit, checked and written in one
database transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the budget row locked FOR UPDATE),
so two runs together can never pass the limit.

A reservation is a lease, renewed by a thread of the process holding it. One whose holder died
is taken over by the next reservation of the same work (its content key) – at once on the same
host (the holder's pid is gone), else once its lease lapses – so a rerun settles it against the
provider's task instead of paying again. A lapsed lease nobody took over *expires*: it is then
counted as spent at its reserved amount (the provider may have billed a create that was in
flight), unless the same work was committed since, which shows it was settled elsewhere.

Amounts are stored as integer 1/10000 credits, so totals are exact sums of entries.
"""

from __future__ import annotations

import contextvars
import math
import os
import re
import socket
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Literal

import sqlalchemy as sa

from blocks.home import state_engine, state_url

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = ("daily", "weekly", "monthly")
SCALE = 10_000  # stored units per credit: the catalogue prices to 4 decimals
LEASE_SECONDS = 60.0
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

metadata = sa.MetaData()
budgets_table = sa.Table(
    "ledger_budgets", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("limit_units", sa.BigInteger, nullable=True),  # NULL: no cap, spend is only recorded
    sa.Column("period", sa.String(16), nullable=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("updated_at", sa.Float, nullable=False),
)
totals_table = sa.Table(
    "ledger_totals", metadata,
    sa.Column("budget", sa.String(64), sa.ForeignKey("ledger_budgets.name"), primary_key=True),
    sa.Column("period", sa.String(16), primary_key=True),
    sa.Column("spent_units", sa.BigInteger, nullable=False, default=0),
    sa.Column("reserved_units", sa.BigInteger, nullable=False, default=0),
)
entries_table = sa.Table(
    "ledger_entries", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("budget", sa.String(64), sa.ForeignKey("ledger_budgets.name"), nullable=False),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("label", sa.Text, nullable=False, default=""),
    sa.Column("project", sa.String(128), nullable=False, default=""),
    sa.Column("run_id", sa.String(64), nullable=False, default=""),
    sa.Column("status", sa.String(12), nullable=False),  # reserved, committed, released, expired
    sa.Column("estimate_units", sa.BigInteger, nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),  # held while reserved; charged once settled
    sa.Column("task_id", sa.String(200), nullable=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("settled_at", sa.Float, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ledger_entries_open", "budget", "status", "expires_at"),
    sa.Index("ledger_entries_key", "key", "status"),
    sa.Index("ledger_entries_project", "project"),
)


class BudgetError(ValueError):
    """Bad budget input (a name, a limit, a period): the message is one line naming the fix."""


class OverBudget(Exception):
    """A reservation would take spent + reserved past the budget's limit; nothing was reserved."""

    def __init__(self, budget: str, needed: float, left: float, label: str = ""):
        what = f"{label}: " if label else ""
        super().__init__(f"{what}needs {needed:g} credits but budget '{budget}' has {left:g} left")
        self.budget, self.needed, self.left, self.label = budget, needed, left, label

    def __reduce__(self):
        return type(self), (self.budget, self.needed, self.left, self.label)


@dataclass(frozen=True)
class BudgetStatus:
    name: str
    limit: float | None
    period: str | None
    period_key: str
    spent: float
    reserved: float
    description: str
    updated_at: float

    @property
    def left(self) -> float | None:
        return None if self.limit is None else round(self.limit - self.spent - self.reserved, 4)


@dataclass(frozen=True)
class Entry:
    id: str
    budget: str
    period: str
    key: str
    label: str
    project: str
    run_id: str
    status: str
    estimate: float
    credits: float
    task_id: str | None
    note: str
    created_at: float
    settled_at: float | None
    owner: str = ""


def to_units(credits: float, what: str = "amount") -> int:
    """Credits as stored units; refuses NaN, infinities and negatives with a one-line error."""
    if isinstance(credits, bool) or not isinstance(credits, (int, float)):
        raise BudgetError(f"{what}: '{credits}' is not a number of credits; give a number, 0 or more")
    if math.isnan(credits) or math.isinf(credits) or credits < 0:
        raise BudgetError(f"{what}: {credits} is not a usable number of credits; give a finite number, 0 or more")
    return int(round(credits * SCALE))


def parse_credits(text: str, what: str = "budget") -> float:
    """A credit amount typed by a user ('150', '12.5'); BudgetError otherwise."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise BudgetError(f"{what}: '{text}' is not a number of credits; give a number, 0 or more") from None
    to_units(value, what)
    return value


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BudgetError(f"budget name '{name}': use 1-63 lowercase letters, digits and dashes, e.g. team-monthly")
    return name


def period_key(period: str | None, now: float | None = None) -> str:
    """The accounting period `now` falls in: 'all', '2026-12-02', '2026-W49' or '2026-12' (UTC)."""
    if period is None:
        return "all"
    day = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).date()
    if period == "daily":
        return day.isoformat()
    if period == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def _credits(units: int | None) -> float:
    return round((units or 0) / SCALE, 4)


def _process_start() -> str:
    try:  # field 22 of /proc/<pid>/stat: start time in clock ticks; tells a reused pid apart
        return open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "0"


def _owner_alive(owner: str) -> bool:
    """Whether the process that holds a reservation still runs; unknowable for other hosts (True)."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[19] == started or started == "0"


_current = contextvars.ContextVar("takeflow_reservation", default=None)


def note_task(task: str, credits: float | None = None) -> None:
    """Record which provider task the calling take's reservation (if any) pays for, and what that
    task cost once known. `task` names the provider and the work ('runway:<work>:<task id>'), or
    a create whose outcome nobody can know ('runway:<work>:unknown@<when>'). Called by provider clients the
    moment a create returns or a journalled task is found: a restart then reconciles the
    reservation against that task's status, and the commit counts each task once."""
    hold = _current.get()
    if hold is not None:
        hold.task, hold.task_credits = task, credits
        hold.ledger.attach_task(hold.id, task)


def note_resolved(unknown: str, found: str | None) -> None:
    """A create counted as of unknown outcome (`unknown`, see `note_task`) turned out to be the
    provider task `found`, or (None) never to have reached the provider: its assumed charge is
    withdrawn, and the calling take's reservation, which now names `found`, counts what it cost."""
    hold = _current.get()
    if hold is not None:
        if found is not None:
            note_task(found)
        hold.ledger.withdraw(unknown, f"resolved by a lookup: {found or 'never reached the provider'}")


class Ledger:
    """Budgets and their entries in the shared state database (`TAKEFLOW_STATE_URL`)."""

    def __init__(self, url: str | None = None, lease: float = LEASE_SECONDS):
        self.url = url or state_url()
        self.engine = state_engine(self.url)
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{_process_start()}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        metadata.create_all(self.engine, checkfirst=True)

    # ---- budgets ----------------------------------------------------------------------------

    def create_budget(self, name: str, limit: float | None, period: str | None = None, description: str = "",
                      exist_ok: bool = False) -> BudgetStatus:
        check_name(name)
        units, period = _limit_units(limit), _check_period(period)
        with self.engine.begin() as db:
            row = db.execute(sa.select(budgets_table.c.name).where(budgets_table.c.name == name)).first()
            if row is not None and not exist_ok:
                raise BudgetError(f"budget '{name}' already exists; change it with takeflow budget set {name}")
            if row is None:
                db.execute(budgets_table.insert().values(name=name, limit_units=units, period=period,
                                                         description=description, updated_at=time.time()))
        return self.status(name)

    def set_budget(self, name: str, limit: float | None | Literal["keep"] = "keep",
                   period: str | None | Literal["keep"] = "keep", description: str | None = None) -> BudgetStatus:
        values: dict = {"updated_at": time.time()}
        if limit != "keep":
            values["limit_units"] = _limit_units(limit)
        if period != "keep":
            values["period"] = _check_period(period)
        if description is not None:
            values["description"] = description
        with self.engine.begin() as db:
            done = db.execute(budgets_table.update().where(budgets_table.c.name == name).values(**values))
            if done.rowcount == 0:
                raise self._unknown(db, name)
        return self.status(name)

    def ensure_budget(self, name: str, limit: float | None, period: str | None = None) -> BudgetStatus:
        """Create the budget, or set its limit and period when they changed."""
        try:
            current = self.status(name)
        except BudgetError:
            return self.create_budget(name, limit, period, exist_ok=True)
        if _limit_units(limit) != _limit_units(current.limit) or current.period != period:
            return self.set_budget(name, limit, period)
        return current

    def status(self, name: str, now: float | None = None) -> BudgetStatus:
        self.expire_stale(name, now)
        with self.engine.connect() as db:
            row = db.execute(sa.select(budgets_table).where(budgets_table.c.name == name)).first()
            if row is None:
                raise self._unknown(db, name)
            key = period_key(row.period, now)
            totals = db.execute(sa.select(totals_table).where(
                totals_table.c.budget == name, totals_table.c.period == key)).first()
        limit = None if row.limit_units is None else _credits(row.limit_units)
        return BudgetStatus(name, limit, row.period, key,
                            _credits(totals.spent_units if totals else 0),
                            _credits(totals.reserved_units if totals else 0), row.description, row.updated_at)

    def budgets(self) -> list[BudgetStatus]:
        with self.engine.connect() as db:
            names = db.execute(sa.select(budgets_table.c.name).order_by(budgets_table.c.name)).scalars().all()
        return [self.status(name) for name in names]

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
                raise OverBudget(budget, credits, _credits(max(0, left)), label)
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
        return _credits(self._settle(entry_id, "committed", units, note, task))

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
            if row.status == "reserved":
                self._move(db, row.budget, row.period, reserved=-row.units, spent=units)
            else:  # an expired entry (counted as spent) settled after all by whoever took it over
                self._move(db, row.budget, row.period, spent=units - row.units)
        self._drop(entry_id)
        return units

    def withdraw(self, task: str, note: str) -> int:
        """Release what entries counted for `task` (an assumed charge shown to be wrong); how many."""
        with self.engine.begin() as db:
            rows = db.execute(sa.select(entries_table).where(
                entries_table.c.task_id == task, entries_table.c.status.in_(("committed", "expired")))).all()
            for row in rows:
                db.execute(entries_table.update().where(entries_table.c.id == row.id).values(
                    status="released", units=0, note=f"{row.note}; {note}", settled_at=time.time()))
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
            r.status == "expired" or r.expires_at < now or (r.owner != self.owner and not _owner_alive(r.owner)))]
        return [e for e in self.entries(budget=budget) if e.id in {r.id for r in found}]

    def settle_orphan(self, entry: Entry, credits: float, note: str) -> bool:
        """Settle an orphan found by `orphans` (committed at `credits`, released at 0), unless a live
        run took it over meanwhile; True when this call settled it."""
        units = to_units(credits, "charge")
        return self._settle(entry.id, "committed" if units else "released", units, note,
                            owner=entry.owner) >= 0

    # ---- expiry -----------------------------------------------------------------------------

    def expire_stale(self, budget: str | None = None, now: float | None = None) -> int:
        with self.engine.begin() as db:
            return self._expire(db, budget, time.time() if now is None else now)

    def _expire(self, db, budget: str | None, now: float) -> int:
        query = sa.select(entries_table).where(entries_table.c.status == "reserved",
                                               entries_table.c.expires_at < now)
        if budget is not None:
            query = query.where(entries_table.c.budget == budget)
        count = 0
        for row in db.execute(query).all():
            settled = db.execute(sa.select(sa.func.count()).select_from(entries_table).where(
                entries_table.c.key == row.key, entries_table.c.status == "committed",
                entries_table.c.created_at >= row.created_at)).scalar()
            if settled:
                status, units, note = "released", 0, "lease lapsed; the same work was committed since"
            else:
                status, units = "expired", row.units
                note = ("lease lapsed with nobody to settle it: counted as charged"
                        + (f" (provider task {row.task_id})" if row.task_id else ""))
            done = db.execute(entries_table.update().where(
                entries_table.c.id == row.id, entries_table.c.status == "reserved").values(
                status=status, units=units, note=note, settled_at=now))
            if done.rowcount:
                self._move(db, row.budget, row.period, reserved=-row.units, spent=units)
                count += 1
        return count

    def _orphan(self, db, budget: str, key: str, now: float):
        """An unsettled entry of the same work whose holder is gone (lease lapsed or process dead)."""
        rows = db.execute(sa.select(entries_table).where(
            entries_table.c.budget == budget, entries_table.c.key == key,
            entries_table.c.status.in_(("reserved", "expired"))).order_by(entries_table.c.created_at)).all()
        for row in rows:
            mine = row.owner == self.owner
            if row.status == "expired" or row.expires_at < now or (mine and row.id not in self._held) or (
                    not mine and not _owner_alive(row.owner)):
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

    # ---- reading ----------------------------------------------------------------------------

    def entries(self, budget: str | None = None, project: str | None = None, keys: list[str] | None = None,
                limit: int | None = None) -> list[Entry]:
        query = sa.select(entries_table).order_by(entries_table.c.created_at)
        if budget is not None:
            query = query.where(entries_table.c.budget == budget)
        if project is not None:
            query = query.where(entries_table.c.project == project)
        if keys is not None:
            query = query.where(entries_table.c.key.in_(keys))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        found = [Entry(r.id, r.budget, r.period, r.key, r.label, r.project, r.run_id, r.status,
                       _credits(r.estimate_units), _credits(r.units), r.task_id, r.note, r.created_at,
                       r.settled_at, r.owner) for r in rows]
        return found[-limit:] if limit else found

    def paid_keys(self, keys: list[str]) -> dict[str, float]:
        """Credits already charged per content key (committed or counted as charged)."""
        paid: dict[str, float] = {}
        for chunk in range(0, len(keys), 500):
            for entry in self.entries(keys=keys[chunk:chunk + 500]):
                if entry.status in ("committed", "expired"):
                    paid[entry.key] = round(paid.get(entry.key, 0.0) + entry.credits, 4)
        return paid

    def check_totals(self, budget: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """(spent, reserved) units from the totals, and summed from the entries, over all periods."""
        with self.engine.connect() as db:
            totals = db.execute(sa.select(sa.func.coalesce(sa.func.sum(totals_table.c.spent_units), 0),
                                          sa.func.coalesce(sa.func.sum(totals_table.c.reserved_units), 0))
                                .where(totals_table.c.budget == budget)).one()
            summed = {status: units for status, units in db.execute(
                sa.select(entries_table.c.status, sa.func.sum(entries_table.c.units))
                .where(entries_table.c.budget == budget).group_by(entries_table.c.status)).all()}
        spent = (summed.get("committed") or 0) + (summed.get("expired") or 0)
        return (int(totals[0]), int(totals[1])), (int(spent), int(summed.get("reserved") or 0))

    # ---- internals --------------------------------------------------------------------------

    def _totals(self, db, budget: str, period: str):
        row = db.execute(sa.select(totals_table).where(totals_table.c.budget == budget,
                                                       totals_table.c.period == period)).first()
        if row is None:
            db.execute(totals_table.insert().values(budget=budget, period=period, spent_units=0, reserved_units=0))
            row = db.execute(sa.select(totals_table).where(totals_table.c.budget == budget,
                                                           totals_table.c.period == period)).first()
        return row

    def _move(self, db, budget: str, period: str, reserved: int = 0, spent: int = 0) -> None:
        self._totals(db, budget, period)
        db.execute(totals_table.update().where(totals_table.c.budget == budget, totals_table.c.period == period)
                   .values(reserved_units=totals_table.c.reserved_units + reserved,
                           spent_units=totals_table.c.spent_units + spent))

    def _unknown(self, db, name: str) -> BudgetError:
        names = db.execute(sa.select(budgets_table.c.name).order_by(budgets_table.c.name)).scalars().all()
        known = f"; budgets: {', '.join(names)}" if names else ""
        return BudgetError(f"unknown budget '{name}'; create it with takeflow budget create {name} "
                           f"--limit CREDITS{known}")


def _limit_units(limit: float | None) -> int | None:
    return None if limit is None else to_units(limit, "limit")


def _check_period(period: str | None) -> str | None:
    if period in (None, "", "none"):
        return None
    if period not in PERIODS:
        raise BudgetError(f"period '{period}': use one of {', '.join(PERIODS)}, or none")
    return period


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


@dataclass
class Hold:
    """One reservation held by a take while its provider call runs (see `Ledger.holding`)."""

    ledger: Ledger
    id: str
    credits: float
    settled: bool = False
    task: str | None = None  # the provider task it pays for (`note_task`)
    task_credits: float | None = None  # what that task cost, where the client knows it

    def commit(self, credits: float, note: str = "") -> float:
        """Commit at `credits`, or at the noted task's cost when this call reused that task's output
        (reported 0): the task is charged once, by whichever entry commits it first."""
        if self.task_credits is not None:
            credits = max(credits, self.task_credits)
        committed = self.ledger.commit(self.id, credits, note, self.task)
        self.settled = True
        return committed

    def release(self, note: str = "") -> None:
        self.ledger.release(self.id, note)
        self.settled = True


@contextmanager
def holding(ledger: Ledger, entry_id: str, credits: float) -> Iterator[Hold]:
    """Make `entry_id` the calling context's reservation (for `note_task`) while the body runs."""
    hold = Hold(ledger, entry_id, credits)
    token = _current.set(hold)
    try:
        yield hold
    finally:
        _current.reset(token)


def ledger_for(url: str | None = None) -> Ledger:
    """One Ledger per database URL and process (its lease thread and engine are shared)."""
    url = url or state_url()
    with _ledgers_lock:
        if url not in _ledgers:
            _ledgers[url] = Ledger(url)
        return _ledgers[url]


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()
