"""The reservation a take holds while its provider call runs, and how provider clients name the
task it pays for (`note_task`) without being handed the ledger."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from blocks.ledger.reservations import Ledger

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

    def keep_unknown(self, note: str) -> float:
        """The call's create is of unknown outcome: hold its price until the provider's usage record
        or a lookup decides it (blocks/ledger/held.py); the credits held."""
        self.settled = True
        if self.task is None or ":unknown@" not in self.task:  # no create to name: counted as charged
            return self.ledger.commit(self.id, self.credits, f"{note}; counted as charged", self.task)
        return self.ledger.hold_unknown(self.id, self.task, note)

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

