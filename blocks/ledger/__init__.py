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

A create whose outcome nobody can know (its answer never came) is *held*: its price stays counted
with what is reserved, not spent, until the provider's usage record or a lookup decides it
(held.py).

Amounts are stored as integer 1/10000 credits, so totals are exact sums of entries.

The package: schema.py (tables, records, checks), books.py (budgets, totals, expiry, reading),
reservations.py (reserve, commit, release, leases; `Ledger`), held.py (creates of unknown outcome),
holds.py (a take's reservation).
"""

from blocks.ledger.books import Books
from blocks.ledger.holds import Hold, holding, note_resolved, note_task
from blocks.ledger.reservations import Ledger, ledger_for
from blocks.ledger.schema import (
    LEASE_SECONDS,
    NAME_PATTERN,
    PERIODS,
    SCALE,
    BudgetError,
    BudgetStatus,
    Entry,
    OverBudget,
    Period,
    budgets_table,
    check_name,
    entries_table,
    metadata,
    parse_credits,
    period_key,
    to_units,
    totals_table,
)

__all__ = ["Books", "Hold", "holding", "note_resolved", "note_task", "Ledger", "ledger_for", "LEASE_SECONDS",
           "NAME_PATTERN", "PERIODS", "SCALE", "BudgetError", "BudgetStatus", "Entry", "OverBudget", "Period",
           "budgets_table", "check_name", "entries_table", "metadata", "parse_credits", "period_key", "to_units",
           "totals_table"]
