"""Benchmark: the credit ledger.

Run: python bench/ledger_bench.py        (prints markdown tables; about a minute)

1. Throughput: 8 worker processes reserve and commit against one budget as fast as they can, on
   SQLite (the default, one file) and on a throwaway PostgreSQL 15 cluster on loopback.
2. Overhead per take: a take's ledger work (reserve before the provider call, commit after, in
   `tasks.spend.paying`) timed against the same call without a budget, sequentially and with 8
   threads, as the produce flow's thread pool runs takes.
3. Credits: a 6-shot x 4-take storyboard at delivery quality (LTX-2.5 Pro, 8 s at 1080p) costed
   all-premium and draft-then-final (drafts on LTX-2.5 Fast at 2 s, the winner rendered on Pro at
   8 s), with the estimate function the gate and `takeflow estimate` use; the simulators charge
   these catalogue prices, so a run spends exactly this when each shot's drafts yield a winner.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKERS = 8
PER_WORKER = 150
TAKES = 200


def _worker(url: str, budget: str, count: int, start, done) -> None:
    from blocks.ledger import Ledger

    ledger = Ledger(url)
    start.wait()
    for _ in range(count):
        ledger.commit(ledger.reserve(budget, 1.5, key=uuid.uuid4().hex, label="bench"), 1.25)
    done.put(count)


def throughput(url: str) -> float:
    from blocks.ledger import Ledger

    budget = f"bench-{uuid.uuid4().hex[:8]}"
    Ledger(url).create_budget(budget, 10 ** 9)
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(url, budget, PER_WORKER, start, done)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    time.sleep(3)  # let every worker import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    total = sum(done.get(timeout=600) for _ in workers)
    elapsed = time.perf_counter() - began
    for worker in workers:
        worker.join()
    totals, summed = Ledger(url).check_totals(budget)
    assert totals == summed, "ledger totals differ from its entries"
    return total / elapsed


def overhead(url: str | None, threads: int) -> float:
    """Milliseconds per take of `paying` (reserve + commit) around an empty provider call."""
    from tasks.spend import BudgetDraw, paying

    draw = None
    if url:
        from blocks.ledger import Ledger
        budget = f"take-{uuid.uuid4().hex[:8]}"
        Ledger(url).create_budget(budget, 10 ** 9)
        draw = BudgetDraw(budget=budget, state_url=url, project="bench")

    def one() -> None:
        with paying(draw, "runway", uuid.uuid4().hex, 24.0, "bench take") as hold:
            if hold is not None:
                hold.commit(24.0)

    def run(count: int) -> None:
        for _ in range(count):
            one()

    one()  # warm: engine, tables, lease thread
    pool = [threading.Thread(target=run, args=(TAKES // threads,)) for _ in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return 1000 * (time.perf_counter() - began) / (TAKES // threads * threads)


def credits() -> tuple[float, float]:
    from blocks.registry import load_provider
    from tasks.estimate import estimate_run
    from tasks.plan import plan_storyboard
    from tasks.storyboard import parse_storyboard

    def board(draft: dict | None) -> dict:
        defaults = {"provider": "ltx", "model": "ltx-2-5-pro", "duration": 8, "takes": 4, "delivery": "1080p",
                    "resolution": "1080p"}
        return {"title": "Bench Reel", "defaults": {**defaults, **({"draft": draft} if draft else {})},
                "shots": [{"brief": f"shot {n}: a lighthouse at dusk; slow dolly in; warm low sun"} for n in range(6)]}

    totals = []
    for draft in (None, {"model": "ltx-2-5-fast", "duration": 2}):
        storyboard = parse_storyboard(board(draft))
        plans = plan_storyboard(storyboard, None)
        providers = {"ltx": load_provider("ltx", saved=False)}
        totals.append(estimate_run(storyboard, plans, providers).total)
    return totals[0], totals[1]


def main() -> None:
    from tests.postgres_server import NoPostgres, postgres_cluster

    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'state.db'}"
        rows = [("SQLite (WAL, BEGIN IMMEDIATE)", sqlite)]
        try:
            with postgres_cluster() as pg:
                rows.append(("PostgreSQL 15 (loopback)", pg))
                results = [(name, throughput(url), overhead(url, 1), overhead(url, 8)) for name, url in rows]
        except NoPostgres as exc:
            print(f"PostgreSQL skipped: {exc}")
            results = [(name, throughput(url), overhead(url, 1), overhead(url, 8)) for name, url in rows]
        off1, off8 = overhead(None, 1), overhead(None, 8)

    print(f"| ledger | reservations/s, {WORKERS} processes (reserve + commit each) |")
    print("|---|---|")
    for name, rate, _, _ in results:
        print(f"| {name} | {rate:.0f} |")
    print(f"\n| per take ({TAKES} takes) | ledger off, ms | ledger on, ms | overhead, ms | goal |")
    print("|---|---|---|---|---|")
    for name, _, on1, on8 in results:
        print(f"| {name}, sequential | {off1:.2f} | {on1:.2f} | {on1 - off1:.2f} | ≤ 20 |")
        print(f"| {name}, 8 threads | {off8:.2f} | {on8:.2f} | {on8 - off8:.2f} | ≤ 20 |")
    premium, drafted = credits()
    print("\n| 6 shots x 4 takes, LTX-2.5 at 1080p | credits | saved | goal |")
    print("|---|---|---|---|")
    print(f"| all-premium (24 takes on Pro, 8 s) | {premium:g} | | |")
    print(f"| draft-then-final (24 drafts on Fast at 2 s, 6 finals on Pro at 8 s) | {drafted:g} | "
          f"{100 * (1 - drafted / premium):.1f} % | ≥ 50 % |")


if __name__ == "__main__":
    main()
