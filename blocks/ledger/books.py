"""The ledger's books: budgets (create, set, status), the totals every change moves, the expiry
of reservations whose lease lapsed, and reading entries back. blocks/ledger/reservations.py adds
reserving, settling and the leases on top."""

from __future__ import annotations

import time
from typing import Literal

import sqlalchemy as sa

from blocks.home import state_engine, state_url
from blocks.ledger.schema import (
    BudgetError,
    BudgetStatus,
    Entry,
    budgets_table,
    check_name,
    check_period,
    credits_of,
    entries_table,
    limit_units,
    metadata,
    period_key,
    totals_table,
)


class Books:
    """Budgets and their entries in the shared state database (`TAKEFLOW_STATE_URL`)."""

    def __init__(self, url: str | None = None):
        self.url = url or state_url()
        self.engine = state_engine(self.url)
        metadata.create_all(self.engine, checkfirst=True)

    # ---- budgets ----------------------------------------------------------------------------

    def create_budget(self, name: str, limit: float | None, period: str | None = None, description: str = "",
                      exist_ok: bool = False) -> BudgetStatus:
        check_name(name)
        units, period = limit_units(limit), check_period(period)
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
            values["limit_units"] = limit_units(limit)
        if period != "keep":
            values["period"] = check_period(period)
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
        if limit_units(limit) != limit_units(current.limit) or current.period != period:
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
        limit = None if row.limit_units is None else credits_of(row.limit_units)
        return BudgetStatus(name, limit, row.period, key,
                            credits_of(totals.spent_units if totals else 0),
                            credits_of(totals.reserved_units if totals else 0), row.description, row.updated_at)

    def budgets(self) -> list[BudgetStatus]:
        with self.engine.connect() as db:
            names = db.execute(sa.select(budgets_table.c.name).order_by(budgets_table.c.name)).scalars().all()
        return [self.status(name) for name in names]

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

    # ---- reading ----------------------------------------------------------------------------

    def entries(self, budget: str | None = None, project: str | None = None, keys: list[str] | None = None,
                limit: int | None = None, where=None) -> list[Entry]:
        query = sa.select(entries_table).order_by(entries_table.c.created_at)
        if where is not None:
            query = query.where(where)
        if budget is not None:
            query = query.where(entries_table.c.budget == budget)
        if project is not None:
            query = query.where(entries_table.c.project == project)
        if keys is not None:
            query = query.where(entries_table.c.key.in_(keys))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        found = [Entry(r.id, r.budget, r.period, r.key, r.label, r.project, r.run_id, r.status,
                       credits_of(r.estimate_units), credits_of(r.units), r.task_id, r.note, r.created_at,
                       r.settled_at, r.owner) for r in rows]
        return found[-limit:] if limit else found

    def paid_keys(self, keys: list[str], held: bool = False) -> dict[str, float]:
        """Credits already charged per content key (committed or counted as charged); with `held`,
        also what creates of unknown outcome hold: work an estimate must not count as still to pay."""
        counted = ("committed", "expired", "held") if held else ("committed", "expired")
        paid: dict[str, float] = {}
        for chunk in range(0, len(keys), 500):
            for entry in self.entries(keys=keys[chunk:chunk + 500]):
                if entry.status in counted:
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
        reserved = (summed.get("reserved") or 0) + (summed.get("held") or 0)  # held unknowns count as reserved
        return (int(totals[0]), int(totals[1])), (int(spent), int(reserved))

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

