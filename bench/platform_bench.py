"""Benchmark: takeflow on a running local Prefect server.

Run: python bench/platform_bench.py [--files N]   (prints markdown tables; about ten minutes)

1. Cached rerun as a fraction of the first run, per example, with `takeflow server start`
   running and `takeflow produce` finding it by itself (PREFECT_API_URL unset), beside the same
   cached rerun in embedded mode (no server: Prefect starts a temporary one for the command).
2. Inbox to animate: the README's platform commands (work pool, `prefect deploy --all`, one
   `PREFECT_WORKER_QUERY_SECONDS=2 prefect worker start --pool takeflow`), then N images dropped
   into the inbox one at a time at a random phase of the sensor's schedule; for each, seconds
   from the file landing (its atomic rename into the inbox, taken before the rename) to its
   animate run starting (the run's start time on the server), split into where the time went:
   waiting for the next sensor run, the sensor's listing up to its event, the trigger creating
   the run, the worker picking it up (its poll), and the run's process starting (Python,
   Prefect and the flow's imports). The goal is computed from the sensor interval that
   deployments/prefect.yaml configures.

Everything gets a TAKEFLOW_HOME, PREFECT_HOME and result store of its own, and a free port.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.server import stop_group  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.stem != "simulated-providers")
WORKER_QUERY_SECONDS = 2.0  # the README's `prefect worker start` command
PHASES = ("next sensor run", "sensor listing → event", "event → run created", "created → worker picks up",
          "process start → running")


def sensor_interval_s() -> float:
    """The inbox sensor's schedule interval, as deployments/prefect.yaml configures it."""
    config = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    sensor = next(d for d in config["deployments"] if d["entrypoint"].endswith("sensor.py:sense_inbox"))
    return float(sensor["schedules"][0]["interval"])


def _time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def breakdown(api: str, run: dict, key: str, landed: float) -> dict[str, float]:
    """Seconds of each phase from the file landing to its animate run running, from the server's
    records: the event the sensor emitted (and the sensor run it names), the run's states."""
    events = httpx.post(f"{api}/events/filter", timeout=30, json={
        "filter": {"event": {"name": ["takeflow.asset.uploaded"]}}, "limit": 50}).json()["events"]
    event = next(e for e in events if e["resource"].get("takeflow.key") == key)
    sensor_run = next(r["prefect.resource.id"].removeprefix("prefect.flow-run.") for r in event["related"]
                      if r["prefect.resource.id"].startswith("prefect.flow-run."))
    sensor_started = _time(httpx.get(f"{api}/flow_runs/{sensor_run}", timeout=30).json()["start_time"])
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run["id"]}, timeout=30).json()
    pending = min(_time(s["timestamp"]) for s in states if s["type"] == "PENDING")
    running = min(_time(s["timestamp"]) for s in states if s["type"] == "RUNNING")
    marks = [landed, sensor_started, _time(event["occurred"]), _time(run["created"]), pending, running]
    return dict(zip(PHASES, (b - a for a, b in zip(marks, marks[1:]))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(command: list[str], env: dict, cwd: Path = ROOT) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def _takeflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def bench_reruns(env: dict, work: Path) -> list[dict]:
    rows = []
    for example in EXAMPLES:
        out = work / "out" / example.stem
        first = _timed(_takeflow("produce", str(example), "--out", str(out)), env)
        rerun = _timed(_takeflow("produce", str(example), "--out", str(out)), env)
        rows.append({"example": example.stem, "first": first, "rerun": rerun})
        print(f"{example.stem}: first {first:.1f} s, cached rerun {rerun:.1f} s", file=sys.stderr)
    return rows


def bench_embedded_reruns(env: dict, work: Path, rows: list[dict]) -> None:
    for row in rows:  # same caches, server stopped: what the rerun costs without one
        out = work / "out" / row["example"]
        row["embedded"] = _timed(_takeflow("produce", str(ROOT / "examples" / f"{row['example']}.yaml"),
                                           "--out", str(out)), env)


def _animate_runs(api: str) -> dict[str, dict]:
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flows": {"name": {"any_": ["animate"]}}}, timeout=30).json()
    return {r["parameters"]["key"]: r for r in runs}


def bench_inbox(env: dict, work: Path, api: str, files: int) -> list[dict[str, float]]:
    prefect = [sys.executable, "-m", "prefect"]
    _timed([*prefect, "work-pool", "create", "takeflow", "--type", "process"], env)
    _timed([*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env)
    deployment = httpx.get(f"{api}/deployments/name/animate/on-upload", timeout=30).json()
    # Clips as short as the tests': the bench measures the delay until the run starts, and a
    # long render would only make the next file wait for CPU on two cores.
    httpx.patch(f"{api}/deployments/{deployment['id']}", timeout=30, json={"parameters": {
        "takes": 1, "duration": 1, "delivery": "720p", "out_dir": str(work / "animated")}}).raise_for_status()
    log = open(work / "worker.log", "wb")
    worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "takeflow"], cwd=work, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    inbox = Path(env["TAKEFLOW_HOME"]) / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    image = ROOT / "examples" / "references" / "kite-meadow.jpg"
    delays, interval = [], sensor_interval_s()
    try:
        time.sleep(10)  # the worker's start-up, as when a user starts it before dropping files
        for n in range(files):
            time.sleep(random.uniform(0, interval))  # land at any phase of the sensor
            staged = inbox / f".upload-{n}.jpg"
            shutil.copy(image, staged)
            os.utime(staged)
            landed = time.time()
            os.replace(staged, inbox / f"bench-{n}.jpg")
            key = f"inbox/bench-{n}.jpg"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                run = _animate_runs(api).get(key)
                if run and run.get("start_time") and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                    run = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
                    delays.append({"total": _time(run["start_time"]) - landed, **breakdown(api, run, key, landed)})
                    print(f"{key}: animate run started {delays[-1]['total']:.1f} s after the file landed",
                          file=sys.stderr)
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"no animate run for {key} within 180 s; see {work / 'worker.log'}")
    finally:
        stop_group(worker.pid)  # a worker waits for its runs on SIGTERM: SIGKILL after a while
        worker.wait(timeout=60)
        log.close()
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5, help="images dropped into the inbox")
    parser.add_argument("--inbox-only", action="store_true", help="only the inbox to animate delay")
    parser.add_argument("--query-seconds", type=float, default=WORKER_QUERY_SECONDS,
                        help="the worker's PREFECT_WORKER_QUERY_SECONDS (default: the README's, "
                        f"{WORKER_QUERY_SECONDS:g}; 0: Prefect's own default, 10)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="takeflow-platform-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TAKEFLOW_"))}
    env.update(PYTHONPATH=str(ROOT), TAKEFLOW_HOME=str(work / "takeflow-home"),
               PREFECT_HOME=str(work / "prefect-home"), PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(work / "results"))
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    start_s = _timed(_takeflow("server", "start", "--port", str(port)), env)
    try:
        rows = [] if args.inbox_only else bench_reruns(env, work)
        worker_env = {**env, "PREFECT_API_URL": api}
        if args.query_seconds:
            worker_env["PREFECT_WORKER_QUERY_SECONDS"] = str(args.query_seconds)
        delays = bench_inbox(worker_env, work, api, args.files)
    finally:
        subprocess.run(_takeflow("server", "stop"), env=env, capture_output=True)
    bench_embedded_reruns(env, work, rows)

    print(f"`takeflow server start` (fresh Prefect database): {start_s:.1f} s\n")
    if rows:
        print("| example | first run s | cached rerun s | rerun / first | embedded cached rerun s "
              "| embedded rerun / first | goal |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['example']} | {row['first']:.1f} | {row['rerun']:.1f} | {row['rerun'] / row['first']:.0%} "
              f"| {row['embedded']:.1f} | {row['embedded'] / row['first']:.0%} | ≤ 15% |")
    interval = sensor_interval_s()
    polling = f"{args.query_seconds:g} s" if args.query_seconds else "Prefect's default, 10 s"
    print(f"\nInbox → animate: sensor every {interval:g} s (deployments/prefect.yaml), worker polling {polling}, "
          f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| inbox file | landed → animate run started s | " + " | ".join(PHASES) + " |")
    print("|---|---|" + "---|" * len(PHASES))
    for n, delay in enumerate(delays):
        print(f"| bench-{n}.jpg | {delay['total']:.1f} | " + " | ".join(f"{delay[p]:.1f}" for p in PHASES) + " |")
    print(f"| **median** of {len(delays)} | **{statistics.median(d['total'] for d in delays):.1f}** | "
          + " | ".join(f"{statistics.median(d[p] for d in delays):.1f}" for p in PHASES) + " |")
    print(f"\ngoal: median ≤ one sensor interval + 5 s = {interval + 5:g} s; "
          f"min / max {min(d['total'] for d in delays):.1f} / {max(d['total'] for d in delays):.1f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
