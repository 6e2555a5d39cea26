"""Creates of unknown outcome, held: a create whose answer never came (the process died while it
was in flight, or its connection broke) may or may not have made a provider task. Its price stays
*held*, counted with what is reserved (so the budget stays safe: spent + reserved never passes the
limit) but not as spent, until something decides it: the provider's own usage record
(tasks/spend.py `settle_unknown_creates`), or a later lookup that finds the task or proves there
was none (`note_resolved`). A held entry has no lease: it does not expire, and it is never taken
over by a rerun of the same work (that rerun holds nothing more for the same create).
"""

from __future__ import annotations

import sqlalchemy as sa

from blocks.ledger.schema import Entry, budgets_table, credits_of, entries_table, to_units


class HeldUnknowns:
    """The held-entry half of `Ledger` (needs its `_settle`, `_drop`, `_move` and `engine`)."""

    def hold_unknown(self, entry_id: str, task: str, note: str) -> float:
        """Turn a reservation into a held unknown create named `task` ('<provider>:<work>:unknown@<when>');
        the credits held. Released instead (0) when another entry already holds or counts that create."""
        with self.engine.begin() as db:
            row = db.execute(sa.select(entries_table).where(entries_table.c.id == entry_id)).first()
            if row is not None:  # PostgreSQL: one change per budget at a time (SQLite: BEGIN IMMEDIATE)
                db.execute(sa.select(budgets_table.c.name).where(budgets_table.c.name == row.budget)
                           .with_for_update())
            other = db.execute(sa.select(entries_table.c.id).where(
                entries_table.c.task_id == task, entries_table.c.id != entry_id,
                entries_table.c.status.in_(("held", "committed", "expired")))).first()
            if other is None and row is not None and row.status in ("reserved", "expired"):
                db.execute(entries_table.update().where(entries_table.c.id == entry_id).values(
                    status="held", task_id=task, note=note, settled_at=None))
                if row.status == "expired":  # counted as spent when its lease lapsed: held again instead
                    self._move(db, row.budget, row.period, spent=-row.units, reserved=row.units)
                self._drop(entry_id)
                return credits_of(row.units)
        self._settle(entry_id, "released", 0, f"{note}; the same create is held by entry {other.id[:8]}"
                     if other is not None else note, task)
        return 0.0

    def held(self, provider: str | None = None) -> list[Entry]:
        """Held unknown creates (of `provider`'s tasks), oldest first."""
        where = entries_table.c.status == "held"
        if provider is not None:
            where = sa.and_(where, entries_table.c.task_id.startswith(f"{provider}:"))
        return self.entries(where=where)

    def settle_held(self, entry: Entry, charged: bool, note: str) -> None:
        """Decide a held create: charged (committed at what was held) or not (released)."""
        self._settle(entry.id, "committed" if charged else "released", to_units(entry.credits) if charged else 0,
                     note)

    def touching(self, moment: float) -> list[Entry]:
        """Every entry reserved at or after `moment`, or still unsettled then: those whose provider
        charges a usage record from `moment` on may hold."""
        return self.entries(where=sa.or_(entries_table.c.created_at >= moment, entries_table.c.settled_at.is_(None),
                                         entries_table.c.settled_at >= moment))


def claimed_at(task: str) -> float:
    """When the create of a held task ref ('…:unknown@<when>') was about to be sent."""
    return float(task.rpartition("unknown@")[2])


__all__ = ["HeldUnknowns", "claimed_at"]
