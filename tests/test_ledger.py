"""The credit ledger under concurrency: threads and processes reserving, committing and releasing
random amounts against one budget never take spent + reserved above its limit, and its totals
always equal the sum of its entries; on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocks.ledger import BudgetError, Ledger, OverBudget, parse_credits
from tests.postgres_server import postgres_url  # noqa: F401  (fixture)

# one operation: reserve `amount`, then commit a share of it (0 releases), or leave it open
operation = st.tuples(st.floats(0, 40, allow_nan=False).map(lambda x: round(x, 2)),
                      st.sampled_from(["commit", "commit-less", "release", "open"]))
workloads = st.lists(st.lists(operation, min_size=1, max_size=12), min_size=2, max_size=6)


def _run_ops(url: str, budget: str, ops: list[tuple[float, str]]) -> None:
    ledger = Ledger(url)
    for amount, outcome in ops:
        try:
            entry = ledger.reserve(budget, amount, key=uuid.uuid4().hex, label="take")
        except OverBudget:
            continue
        if outcome == "commit":
            ledger.commit(entry, amount)
        elif outcome == "commit-less":
            ledger.commit(entry, round(amount / 3, 4))
        elif outcome == "release":
            ledger.release(entry)


def _process_worker(url: str, budget: str, ops: list[tuple[float, str]]) -> None:
    _run_ops(url, budget, ops)


class Watch:
    """Reads the budget while workers run; records any moment spent + reserved passed the limit."""

    def __init__(self, ledger: Ledger, budget: str):
        self.ledger, self.budget, self.worst, self.stop = ledger, budget, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self.stop.is_set():
            status = self.ledger.status(self.budget)
            self.worst = max(self.worst, status.spent + status.reserved)
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _check(ledger: Ledger, budget: str, limit: float, watch: Watch) -> None:
    status = ledger.status(budget)
    assert status.spent + status.reserved <= limit + 1e-9
    assert watch.worst <= limit + 1e-9
    totals, summed = ledger.check_totals(budget)
    assert totals == summed
    charged = sum(e.credits for e in ledger.entries(budget) if e.status == "committed")
    assert math.isclose(charged, status.spent, abs_tol=1e-4)


def _threads(url: str, data, limit: float) -> None:
    ledger, budget = Ledger(url), f"t-{uuid.uuid4().hex[:12]}"
    ledger.create_budget(budget, limit)
    workers = [threading.Thread(target=_run_ops, args=(url, budget, ops)) for ops in data]
    with Watch(ledger, budget) as watch:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    _check(ledger, budget, limit, watch)


def _processes(url: str, data, limit: float) -> None:
    ledger, budget = Ledger(url), f"p-{uuid.uuid4().hex[:12]}"
    ledger.create_budget(budget, limit)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_process_worker, args=(url, budget, ops)) for ops in data[:4]]
    with Watch(ledger, budget) as watch:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
    assert all(w.exitcode == 0 for w in workers)
    _check(ledger, budget, limit, watch)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path_factory):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'state.db'}"
    return request.getfixturevalue("postgres_url")


_settings = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.too_slow])


@settings(max_examples=25, **_settings)
@given(data=workloads, limit=st.floats(10, 200).map(lambda x: round(x, 2)))
def test_threads_never_pass_the_limit(url, data, limit):
    _threads(url, data, limit)


@settings(max_examples=4, **_settings)
@given(data=workloads, limit=st.floats(10, 120).map(lambda x: round(x, 2)))
def test_processes_never_pass_the_limit(url, data, limit):
    _processes(url, data, limit)


def test_reservation_at_the_limit_is_refused_with_what_is_left(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 's.db'}")
    ledger.create_budget("team", 100)
    first = ledger.reserve("team", 60, key="a")
    with pytest.raises(OverBudget, match="needs 50 credits but budget 'team' has 40 left"):
        ledger.reserve("team", 50, key="b")
    ledger.commit(first, 55)
    assert ledger.status("team").left == 45
    ledger.release(ledger.reserve("team", 45, key="b"))
    assert (ledger.status("team").spent, ledger.status("team").reserved) == (55, 0)


def test_a_lapsed_lease_expires_as_charged_unless_the_work_was_settled_since(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    ledger = Ledger(url, lease=0.05)
    ledger.create_budget("team", 100)
    ledger.reserve("team", 30, key="take-1")
    ledger._held.clear()  # the holder died: nobody renews its lease
    time.sleep(0.1)
    status = ledger.status("team")
    assert (status.spent, status.reserved) == (30, 0)
    [entry] = ledger.entries("team")
    assert entry.status == "expired" and "counted as charged" in entry.note
    # a rerun of the same work takes the expired entry over and settles it at the real charge
    again = Ledger(url).reserve("team", 30, key="take-1")
    assert again == entry.id
    Ledger(url).commit(again, 12)
    assert Ledger(url).status("team").spent == 12
    assert Ledger(url).check_totals("team")[0] == Ledger(url).check_totals("team")[1]


def test_a_dead_holders_reservation_is_taken_over_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Ledger(url).create_budget("team", 50)
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=_reserve_and_die, args=(url,))
    worker.start()
    worker.join(60)
    ledger = Ledger(url)
    assert ledger.status("team").reserved == 40
    entry = ledger.reserve("team", 40, key="take-1")  # no OverBudget: the same work, taken over
    assert ledger.status("team").reserved == 40
    ledger.commit(entry, 40)
    assert [e.status for e in ledger.entries("team")] == ["committed"]


def _reserve_and_die(url: str) -> None:
    import os
    Ledger(url).reserve("team", 40, key="take-1")
    os._exit(0)  # no release, no commit: as if killed


@pytest.mark.parametrize("text", ["-5", "nan", "NaN", "inf", "lots", ""])
def test_bad_amounts_are_one_line_errors(text):
    with pytest.raises(BudgetError) as info:
        parse_credits(text)
    assert "\n" not in str(info.value) and "budget" in str(info.value)


def test_unknown_budget_names_the_fix(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 's.db'}")
    ledger.create_budget("team-monthly", 10, "monthly")
    with pytest.raises(BudgetError, match="unknown budget 'team'; create it with takeflow budget create team"):
        ledger.reserve("team", 1)
    with pytest.raises(BudgetError, match="period 'yearly'"):
        ledger.create_budget("x", 1, "yearly")
    with pytest.raises(BudgetError, match="budget name 'Team Budget'"):
        ledger.create_budget("Team Budget", 1)


def test_a_period_starts_afresh(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 's.db'}")
    ledger.create_budget("daily", 10, "daily")
    day = 1_790_000_000.0
    ledger.commit(ledger.reserve("daily", 10, now=day), 10)
    with pytest.raises(OverBudget):
        ledger.reserve("daily", 1, now=day + 60)
    ledger.reserve("daily", 10, now=day + 86_400)
    assert ledger.status("daily", now=day + 86_400).reserved == 10


def test_a_provider_task_is_charged_once_whichever_entry_commits_it(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 's.db'}")
    ledger.create_budget("team", 100)
    first = ledger.reserve("team", 24, key="take-1")
    again = ledger.reserve("team", 24, key="take-1-elsewhere")  # a rerun, a waiter: the same task
    assert ledger.commit(first, 24, task="runway:w:t-1") == 24
    assert ledger.commit(again, 24, task="runway:w:t-1") == 0
    other = ledger.reserve("team", 24, key="take-1")  # a new task of the same work is charged again
    assert ledger.commit(other, 24, task="runway:w:t-2") == 24
    assert ledger.status("team").spent == 48 and ledger.status("team").reserved == 0
    released = next(e for e in ledger.entries("team") if e.id == again)
    assert released.status == "released" and "already counted" in released.note
    assert ledger.check_totals("team")[0] == ledger.check_totals("team")[1]


def test_orphans_name_their_task_and_are_settled_only_if_nobody_took_them_over(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Ledger(url).create_budget("team", 200)
    context = multiprocessing.get_context("spawn")
    for key, task in (("take-1", "kling:w1:text2video/a"), ("take-2", "kling:w2:text2video/b"),
                      ("take-3", "runway:w3:unknown@1.0")):
        worker = context.Process(target=_reserve_note_and_die, args=(url, key, task))
        worker.start()
        worker.join(60)
    ledger = Ledger(url)
    orphans = {e.key: e for e in ledger.orphans("team")}
    assert set(orphans) == {"take-1", "take-2"}  # an unknown create has no task to ask about
    assert ledger.settle_orphan(orphans["take-1"], 30, "reconciled: succeeded")
    taken = ledger.reserve("team", 40, key="take-2")  # a rerun took take-2 over before the restart settled it
    assert taken == orphans["take-2"].id and not ledger.settle_orphan(orphans["take-2"], 0, "reconciled")
    ledger.commit(taken, 40)
    status = ledger.status("team")
    assert (status.spent, status.reserved) == (70, 40) and ledger.orphans("team") == []


def _reserve_note_and_die(url: str, key: str, task: str) -> None:
    import os
    ledger = Ledger(url)
    ledger.attach_task(ledger.reserve("team", 40, key=key), task)
    os._exit(0)
