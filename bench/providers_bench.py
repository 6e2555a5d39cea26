"""Benchmark: 24 takes against the Runway simulator, takeflow's fan-out vs the official SDK in a loop.

Run: python bench/providers_bench.py [--takes 24] [--latency 2] [--fault-rate 0.05] [--concurrency 8]
                                     [--postgres]

Prefect runs on the test harness's SQLite server by default; `--postgres` starts PostgreSQL
(the local `initdb`/`postgres`, run as the `postgres` user) and a `prefect server start` on it.

1. Wall time. The simulator runs every task for a fixed `--latency` seconds and answers 5 % of
   requests with a transient fault (429 with or without Retry-After, 503, a dropped poll or
   download connection; creates are never dropped, since a dropped create is ambiguous to any
   client). takeflow submits the takes as Prefect `generate-take` tasks (8 threads, as in the
   produce flow, under the `provider-runway` concurrency limit set to `--concurrency`); the
   baseline is a plain loop over `runwayml.RunwayML`: `image_to_video.create(...)`,
   `.wait_for_task_output()`, then an httpx download of the output, one take after another.
2. HTTP requests per take, as the simulator counted them, against the bound: one create, the
   polls the polling schedule allows within the latency, one download.
3. Orchestration overhead with zero latency: the same takes through Prefect tasks vs the same
   provider calls on a plain thread pool of the same size, one take at a time. The per-take cost
   is timed from the first submit to the last result; the flow run's own start and finish happen
   once per run whatever its size, so they are printed on their own line.

The simulator's videos are rendered once in a warm-up so neither side waits on rendering.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks.providers import GenerationRequest  # noqa: E402
from blocks.runway import RunwayProvider  # noqa: E402
from simulators.runway import RunwaySimulator  # noqa: E402

MODEL, RATIO, DURATION = "gen4.5", "1280:720", 2


def requests_for(takes: int, image: Path) -> list[GenerationRequest]:
    return [GenerationRequest(prompt=f"a red kite over a meadow, take {n}; slow pan left; morning light",
                              model=MODEL, seed=1000 + n, duration=DURATION, fps=24, aspect_ratio="16:9",
                              reference_image=image) for n in range(takes)]


def takeflow_fan_out(provider: RunwayProvider, requests: list[GenerationRequest], folder: Path,
                     workers: int) -> tuple[float, float]:
    """Wall seconds of the whole flow run, and of its takes alone (first submit to last result)."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks.generate import ensure_limits, generate_take

    @flow(name="bench-fan-out", task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def fan_out() -> float:
        ensure_limits({"runway": provider})
        task = generate_take.with_options(refresh_cache=True, persist_result=False)
        started = time.perf_counter()
        futures = [task.submit(provider, r, "bench", n, folder / f"take{n}.mp4") for n, r in enumerate(requests)]
        for future in futures:
            future.result()
        return time.perf_counter() - started

    started = time.perf_counter()
    takes = fan_out()
    return time.perf_counter() - started, takes


def sdk_loop(sim: RunwaySimulator, key: str, requests: list[GenerationRequest], folder: Path,
             image_uri: str) -> float:
    from runwayml import RunwayML

    client = RunwayML(api_key=key, base_url=sim.url)
    started = time.perf_counter()
    for n, request in enumerate(requests):
        task = client.image_to_video.create(model=MODEL, prompt_image=image_uri, prompt_text=request.prompt,
                                            ratio=RATIO, duration=DURATION, seed=request.seed)
        done = task.wait_for_task_output()
        with httpx.stream("GET", done.output[0], timeout=60) as response, \
                open(folder / f"sdk{n}.mp4", "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    return time.perf_counter() - started


def plain_threads(provider: RunwayProvider, requests: list[GenerationRequest], folder: Path,
                  workers: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda nr: provider.generate(nr[1], folder / f"plain{nr[0]}.mp4"), enumerate(requests)))
    return time.perf_counter() - started


def poll_bound(provider: RunwayProvider, latency: float) -> int:
    """Status checks the polling schedule makes before a task of `latency` seconds can be done
    (at the longest jittered waits), plus the one that sees it done."""
    delay, elapsed, polls = provider.first_poll, 0.0, 0
    while elapsed < latency:
        elapsed += delay * 0.8
        polls += 1
        delay = min(provider.poll_interval, delay * 1.5)
    return polls + 1


@contextlib.contextmanager
def postgres_prefect(folder: Path):
    """A Prefect server on a throwaway PostgreSQL cluster, as PREFECT_API_URL for this process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import start_server

    data = folder / "pgdata"
    os.chmod(folder, 0o755)  # the postgres user must reach its data directory
    data.mkdir()
    shutil.chown(data, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_postgres + ["initdb", "-D", str(data), "-A", "trust"], check=True,
                   stdout=subprocess.DEVNULL)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pg = subprocess.Popen(as_postgres + ["postgres", "-D", str(data), "-p", str(port), "-k", str(data),
                                         "-h", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"),
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"}
    server = None
    try:
        time.sleep(2)
        server, url = start_server(env)
        with temporary_settings({PREFECT_API_URL: url}):
            yield
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        pg.terminate()
        pg.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=24)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="run Prefect on PostgreSQL instead of SQLite")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from blocks.remote import data_uri

    key = "key_" + secrets.token_hex(64)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        stack.enter_context(postgres_prefect(folder) if args.postgres
                            else prefect_test_harness(server_startup_timeout=120))
        image = Path(__file__).resolve().parents[1] / "examples" / "references" / "kite-meadow.jpg"
        requests = requests_for(args.takes, image)
        sim = RunwaySimulator(latency=0.0, api_key=key, concurrency=args.concurrency).start()
        provider = RunwayProvider(base_url=sim.url, api_key=key, max_concurrency=args.concurrency,
                                  first_poll=1.0)
        try:
            plain_threads(provider, requests, folder, args.concurrency)  # warm-up: renders every clip once

            # 3. zero latency, one take at a time: Prefect's cost per take
            quick = provider.model_copy(update={"first_poll": 0.02})
            plain = plain_threads(quick, requests, folder, 1)
            run_wall, prefect = takeflow_fan_out(quick.model_copy(update={"max_concurrency": 1}), requests, folder, 1)

            # 1 + 2. fixed latency and transient faults
            sim.latency, sim.fault_rate = args.latency, args.fault_rate
            sim.requests.clear()
            sim.peak_active, creates_before = 0, sim.creates
            fan_out, _ = takeflow_fan_out(provider, requests, folder, 8)
            counted = {e: sim.count(e) / args.takes for e in ("create", "poll", "download")}
            creates = (sim.creates - creates_before) / args.takes
            peak = sim.peak_active
            sdk = sdk_loop(sim, key, requests, folder, data_uri(image))
        finally:
            sim.stop()

    print(f"\n{args.takes} takes of {MODEL} ({DURATION} s, {RATIO}), simulator latency {args.latency:g} s, "
          f"{args.fault_rate:.0%} transient faults, concurrency limit {args.concurrency}, Prefect on "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}\n")
    print("| run | wall s | per take s |\n|---|---|---|")
    print(f"| takeflow: Prefect fan-out | {fan_out:.1f} | {fan_out / args.takes:.2f} |")
    print(f"| runwayml SDK, sequential loop | {sdk:.1f} | {sdk / args.takes:.2f} |")
    print(f"| **speed-up** | **{sdk / fan_out:.1f}x** | |")
    bound = poll_bound(provider, args.latency)
    print("\n| HTTP requests per take (takeflow) | measured | bound |\n|---|---|---|")
    print(f"| create requests (incl. retried 429/503) | {counted['create']:.2f} | 1 + retries |")
    print(f"| creates the simulator handled | {creates:.2f} | 1 |")
    print(f"| status polls | {counted['poll']:.2f} | {bound} + retries |")
    print(f"| downloads | {counted['download']:.2f} | 1 + retries |")
    print(f"| most tasks in flight at the provider | {peak} | {args.concurrency} |")
    overhead = (prefect - plain) / args.takes * 1000
    print("\n| zero latency, one take at a time | wall s | per take ms |\n|---|---|---|")
    print(f"| provider.generate on a plain thread | {plain:.2f} | {plain / args.takes * 1000:.0f} |")
    print(f"| generate-take Prefect tasks, first submit to last result | {prefect:.2f} | "
          f"{prefect / args.takes * 1000:.0f} |")
    print(f"| **orchestration overhead per take** | | **{overhead:.0f}** |")
    print(f"| flow run start and finish (once per run, not per take) | {run_wall - prefect:.2f} | |")
    if not math.isfinite(overhead):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
