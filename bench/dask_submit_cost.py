"""Timing: what sending one task to Dask costs the flow's process and the worker, beside a thread.

Run: python bench/dask_submit_cost.py [--tasks N]   (about a minute)

The flow submits N tasks through the produce flow's task runner (flows/runners.py) to a
`distributed.LocalCluster` of one single-threaded worker process, and N more to the runner's
threads. The task is named `score-take`, so the runner routes it as it routes the scorer, but
does nothing (a sleep of 0 s), so the times are the overhead alone:

  submit ms     the runner's `submit` in the flow's process: serial, paid once per task whatever
                the number of workers (the part that caps scaling out)
  round trip ms the batch's wall time from the first submit to the last result, per task
                (on Dask: the worker's task engine, state reports, result shipping)

and, in the same flow run, two parts of a Dask submit that are Prefect's work, timed alone with
the flow's own settings context (what every submit paid before the runner built and serialised the
settings it ships once per run; now it pays the first line without its settings part):

  serialize_context  prefect-dask serialises the flow-run, task-run, tags and settings contexts
                     with every task (prefect.context.serialize_context)
  settings copy      a settings object with PREFECT_API_URL replaced
                     (what `temporary_settings({PREFECT_API_URL: ...})` builds on each enter)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_ms(action, repeat: int) -> float:
    """Median milliseconds of `action()` over `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(dask_address: str, tasks: int) -> dict[str, float]:
    from prefect import flow, task
    from prefect.context import serialize_context
    from prefect.settings import PREFECT_API_URL, get_current_settings

    from flows.runners import TakeflowTaskRunner

    @task(name="score-take")  # routed to Dask by this name, as the scorer is
    def idle(index: int) -> int:
        time.sleep(0)
        return index

    def batch(runner: TakeflowTaskRunner) -> tuple[float, float]:
        """Median submit ms and round-trip ms per task of one batch on `runner`."""
        submits, futures = [], []
        started = time.perf_counter()
        for index in range(tasks):
            before = time.perf_counter()
            futures.append(runner.submit(idle, {"index": index}))
            submits.append((time.perf_counter() - before) * 1000)
        for future in futures:
            future.result()
        return statistics.median(submits), (time.perf_counter() - started) * 1000 / tasks

    @flow(name="dask-submit-cost", task_runner=TakeflowTaskRunner(1, dask_address=dask_address))
    def on_dask() -> dict[str, float]:
        from prefect.context import FlowRunContext

        runner = FlowRunContext.get().task_runner
        batch(runner)  # the worker's first task run (imports, client) is not timed
        submit, trip = batch(runner)
        return {"submit ms": submit, "round trip ms": trip,
                "serialize_context ms": timed_ms(lambda: serialize_context(
                    {"task": idle, "task_run_id": None, "task_inputs": {}, "copy_to_child_ctx": True}), tasks),
                "settings copy ms": timed_ms(lambda: get_current_settings().copy_with_update(
                    updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}), tasks)}

    @flow(name="thread-submit-cost", task_runner=TakeflowTaskRunner(1))
    def on_threads() -> dict[str, float]:
        from prefect.context import FlowRunContext

        submit, trip = batch(FlowRunContext.get().task_runner)
        return {"submit ms": submit, "round trip ms": trip}

    return {**{f"Dask {k}": v for k, v in on_dask().items()},
            **{f"thread {k}": v for k, v in on_threads().items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12, help="tasks per batch")
    args = parser.parse_args()

    import os

    from distributed import LocalCluster
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        load = os.getloadavg()[0]
        measured = measure(cluster.scheduler_address, args.tasks)
    print(f"\n{args.tasks} idle score-take tasks per batch, median per task; load avg 1 min {load:.2f} → "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| measure | ms |\n|---|---|")
    for name, value in measured.items():
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
