"""The ledger's tables and records: budgets, per-period totals and entries, amounts stored as
integer 1/10000 credits (so totals are exact sums of entries), and the checks every amount,
name and period passes before it reaches the database (one-line BudgetError otherwise)."""

from __future__ import annotations

import math
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import sqlalchemy as sa

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
    sa.Column("status", sa.String(12), nullable=False),  # reserved, committed, released, expired, held
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


def credits_of(units: int | None) -> float:
    return round((units or 0) / SCALE, 4)


def limit_units(limit: float | None) -> int | None:
    return None if limit is None else to_units(limit, "limit")


def check_period(period: str | None) -> str | None:
    if period in (None, "", "none"):
        return None
    if period not in PERIODS:
        raise BudgetError(f"period '{period}': use one of {', '.join(PERIODS)}, or none")
    return period



def process_start() -> str:
    try:  # field 22 of /proc/<pid>/stat: start time in clock ticks; tells a reused pid apart
        return open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "0"


def owner_alive(owner: str) -> bool:
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

