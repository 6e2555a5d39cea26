"""Benchmark: 24 takes per provider, takeflow's fan-out vs each official SDK in a loop: the Runway
simulator (runwayml SDK) and the fal.ai aggregator simulator (fal-client SDK).

Run: python bench/providers_bench.py [--takes 24] [--latency 2] [--fault-rate 0.05] [--concurrency 8]
                                     [--targets runway,fal] [--postgres]

Prefect runs on the test harness's SQLite server by default; `--postgres` starts PostgreSQL
(the local `initdb`/`postgres`, run as the `postgres` user) and a `prefect server start` on it.

For each target:
1. Wall time. The simulator runs every task for a fixed `--latency` seconds and answers 5 % of
   requests with a transient fault (429 with or without Retry-After, 503, a dropped poll or
   download connection; creates are never dropped, since a dropped create is ambiguous to any
   client). takeflow submits the takes as Prefect `generate-take` tasks (`--threads`, by default
   the produce flow's 8, under the `tag:provider-<name>` concurrency limit set to `--concurrency`); the
   baseline is a plain loop over the provider's own SDK, one take after another, then an httpx
   download of the output: `runwayml.RunwayML().image_to_video.create(...).wait_for_task_output()`,
   and `fal_client.SyncClient().subscribe(endpoint, arguments)` (fal-client has no base-URL
   setting: its queue host constant is pointed at the simulator). fal-client retries 429 and
   dropped connections itself but raises on a 503, so the loop submits such a take again, as a
   user's script would, and counts it.
2. HTTP requests per take, as the simulator counted them, against the bound: one create, the
   polls the polling schedule allows within the latency, one download; and how late, by the
   simulator's clock, the polling schedule saw each finished task.
3. Orchestration overhead with zero latency: the same takes through Prefect tasks vs the same
   provider calls on a plain thread pool of the same size, one take at a time. The per-take cost
   is timed from the first submit to the last result; the flow run's own start and finish happen
   once per run whatever its size, so they are printed on their own line.

The simulators' videos are rendered once in a warm-up so neither side waits on rendering.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks.providers import GenerationRequest  # noqa: E402
from blocks.runway import RunwayProvider  # noqa: E402
from flows.produce import MAX_PARALLEL_TASKS  # noqa: E402
from simulators.runway import RunwaySimulator  # noqa: E402

MODEL, RATIO, DURATION = "gen4.5", "1280:720", 2
FAL_MODEL, FAL_DURATION = "kling-v2.5-turbo-pro", 5  # Kling's shortest clip, through fal's queue


def requests_for(takes: int, image: Path, model: str = MODEL, duration: float = DURATION) -> list[GenerationRequest]:
    return [GenerationRequest(prompt=f"a red kite over a meadow, take {n}; slow pan left; morning light",
                              model=model, seed=1000 + n, duration=duration, fps=24, aspect_ratio="16:9",
                              reference_image=image) for n in range(takes)]


@dataclass
class Target:
    """One provider to fan out to: its simulator, takeflow's block for it and its SDK's loop."""

    label: str
    sim: Any
    provider: Any
    requests: list[GenerationRequest]
    sdk: Callable[..., int]
    key: str


def targets(names: list[str], args: argparse.Namespace, image: Path) -> list[Target]:
    from blocks.fal import FalProvider
    from simulators.fal import FalSimulator

    found = []
    for name in names:
        key = "key_" + secrets.token_hex(64)
        if name == "runway":
            sim = RunwaySimulator(latency=0.0, api_key=key, concurrency=args.concurrency).start()
            provider = RunwayProvider(base_url=sim.url, api_key=key, max_concurrency=args.concurrency, first_poll=1.0)
            found.append(Target(f"{args.takes} takes of runway {MODEL} ({DURATION} s, {RATIO}), runwayml SDK",
                                sim, provider, requests_for(args.takes, image), runway_sdk_loop, key))
        elif name == "fal":
            sim = FalSimulator(latency=0.0, concurrency=args.concurrency).start()
            key = sim.api_key  # fal's own key shape
            provider = FalProvider(base_url=sim.url, api_key=key, max_concurrency=args.concurrency, first_poll=1.0)
            found.append(Target(f"{args.takes} takes of fal {FAL_MODEL} ({FAL_DURATION} s, image to video), "
                                "fal-client SDK", sim, provider,
                                requests_for(args.takes, image, FAL_MODEL, FAL_DURATION), fal_sdk_loop, key))
        else:
            raise SystemExit(f"--targets: unknown target {name}; use runway and/or fal")
    return found


def takeflow_fan_out(provider, requests: list[GenerationRequest], folder: Path,
                     workers: int) -> tuple[float, float]:
    """Wall seconds of the whole flow run, and of its takes alone (first submit to last result)."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks.generate import ensure_limits, generate_take

    @flow(name="bench-fan-out", task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def fan_out() -> float:
        ensure_limits({provider.provider_name: provider})
        task = generate_take.with_options(refresh_cache=True, persist_result=False)
        started = time.perf_counter()
        futures = [task.submit(provider, r, "bench", n, folder / f"take{n}.mp4") for n, r in enumerate(requests)]
        for future in futures:
            future.result()
        return time.perf_counter() - started

    started = time.perf_counter()
    takes = fan_out()
    return time.perf_counter() - started, takes


def runway_sdk_loop(sim, key: str, requests: list[GenerationRequest], folder: Path, image: Path) -> int:
    """The runwayml SDK, one take after another; returns the takes submitted again (none: it retries)."""
    from runwayml import RunwayML

    from blocks.remote import data_uri

    client, image_uri = RunwayML(api_key=key, base_url=sim.url), data_uri(image)
    for n, request in enumerate(requests):
        task = client.image_to_video.create(model=MODEL, prompt_image=image_uri, prompt_text=request.prompt,
                                            ratio=RATIO, duration=DURATION, seed=request.seed)
        download(task.wait_for_task_output().output[0], folder / f"sdk{n}.mp4")
    return 0


def fal_sdk_loop(sim, key: str, requests: list[GenerationRequest], folder: Path, image: Path) -> int:
    """fal-client's subscribe (submit, poll, result), one take after another."""
    import fal_client
    import fal_client.client

    from blocks.fal import FalProvider

    fal_client.client.QUEUE_URL_FORMAT = sim.url + "/"  # the SDK's queue host, here the simulator
    client, bodies, again = fal_client.SyncClient(key=key), FalProvider(api_key=key), 0
    for n, request in enumerate(requests):
        endpoint, arguments = bodies.body(request)
        while True:
            try:
                output = client.subscribe(endpoint, arguments=arguments)
                break
            except (httpx.HTTPStatusError, fal_client.client.FalClientHTTPError) as exc:
                if getattr(exc, "status_code", getattr(getattr(exc, "response", None), "status_code", 0)) < 500:
                    raise
                again += 1  # a 5xx fal-client does not retry
        download(output["video"]["url"], folder / f"sdk{n}.mp4")
    return again


def download(url: str, dest: Path, attempts: int = 5) -> None:
    """The output, fetched again after a dropped connection or a 5xx, as a careful script would."""
    for attempt in range(attempts):
        try:
            with httpx.stream("GET", url, timeout=60) as response, open(dest, "wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    out.write(chunk)
            return
        except (httpx.TransportError, httpx.HTTPStatusError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def plain_threads(provider, requests: list[GenerationRequest], folder: Path,
                  workers: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda nr: provider.generate(nr[1], folder / f"plain{nr[0]}.mp4"), enumerate(requests)))
    return time.perf_counter() - started


def poll_bound(provider, latency: float) -> int:
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


def measure(target: Target, args: argparse.Namespace, folder: Path, image: Path) -> dict[str, Any]:
    sim, provider, requests = target.sim, target.provider, target.requests
    plain_threads(provider, requests, folder, args.concurrency)  # warm-up: renders every clip once

    # 3. zero latency, one take at a time: Prefect's cost per take
    quick = provider.model_copy(update={"first_poll": 0.02})
    forget_takes()
    plain = plain_threads(quick, requests, folder, 1)
    forget_takes()
    run_wall, prefect = takeflow_fan_out(quick.model_copy(update={"max_concurrency": 1}), requests, folder, 1)
    forget_takes()

    # 1 + 2. fixed latency and transient faults
    sim.latency, sim.fault_rate = args.latency, args.fault_rate
    sim.requests.clear()
    sim.peak_active, creates_before, seen_before = 0, sim.creates, set(sim.tasks)
    fan_out, _ = takeflow_fan_out(provider, requests, folder, args.threads)
    lag = seen_late(sim, seen_before)
    counted = {e: sim.count(e) / args.takes for e in ("create", "poll", "download")}
    creates, peak = (sim.creates - creates_before) / args.takes, sim.peak_active
    started = time.perf_counter()
    again = target.sdk(sim, target.key, requests, folder, image)
    sdk = time.perf_counter() - started
    return dict(plain=plain, run_wall=run_wall, prefect=prefect, fan_out=fan_out, counted=counted,
                creates=creates, peak=peak, sdk=sdk, again=again, lag=lag)


def seen_late(sim, before: set[str]) -> float:
    """Mean seconds, by the simulator's own clock, from a task's end (its start plus the latency)
    to the first request that saw it ended: the cost of the polling schedule."""
    lags = [t.extra["finished"] - t.started - t.extra.get("latency", sim.latency)
            for t in list(sim.tasks.values()) if t.id not in before and t.started is not None
            and "finished" in t.extra]
    return sum(lags) / len(lags) if lags else math.nan


def forget_takes() -> None:
    """Empty the take journal, so the next phase pays for (and times) every take again instead of
    reusing the outputs the journal knows were already paid for."""
    from blocks import journal

    for entry in journal.all_entries():
        journal.forget(entry.key)


def report(target: Target, m: dict[str, Any], args: argparse.Namespace) -> float:
    print(f"\n### {target.label}\n\nsimulator latency {args.latency:g} s, {args.fault_rate:.0%} transient "
          f"faults, concurrency limit {args.concurrency}, {args.threads} threads, "
          f"Prefect on {'PostgreSQL' if args.postgres else 'SQLite'}\n")
    print("| run | wall s | per take s |\n|---|---|---|")
    print(f"| takeflow: Prefect fan-out | {m['fan_out']:.1f} | {m['fan_out'] / args.takes:.2f} |")
    again = f" ({m['again']} takes submitted again after a 5xx)" if m["again"] else ""
    print(f"| SDK, sequential loop{again} | {m['sdk']:.1f} | {m['sdk'] / args.takes:.2f} |")
    print(f"| **speed-up** | **{m['sdk'] / m['fan_out']:.1f}x** | |")
    counted, bound = m["counted"], poll_bound(target.provider, args.latency)
    print("\n| HTTP requests per take (takeflow) | measured | bound |\n|---|---|---|")
    print(f"| create requests (incl. retried 429/503) | {counted['create']:.2f} | 1 + retries |")
    print(f"| creates the simulator handled | {m['creates']:.2f} | 1 |")
    print(f"| status polls | {counted['poll']:.2f} | {bound} + retries |")
    print(f"| downloads | {counted['download']:.2f} | 1 + retries |")
    print(f"| most tasks in flight at the provider | {m['peak']} | {args.concurrency} |")
    print(f"| seconds from a task's end to the poll that saw it, mean | {m['lag']:.2f} | |")
    overhead = (m["prefect"] - m["plain"]) / args.takes * 1000
    print("\n| zero latency, one take at a time | wall s | per take ms |\n|---|---|---|")
    print(f"| provider.generate on a plain thread | {m['plain']:.2f} | {m['plain'] / args.takes * 1000:.0f} |")
    print(f"| generate-take Prefect tasks, first submit to last result | {m['prefect']:.2f} | "
          f"{m['prefect'] / args.takes * 1000:.0f} |")
    print(f"| **orchestration overhead per take** | | **{overhead:.0f}** |")
    print(f"| flow run start and finish (once per run, not per take) | {m['run_wall'] - m['prefect']:.2f} | |")
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=24)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--targets", default="runway,fal", help="comma-separated: runway, fal")
    parser.add_argument("--threads", type=int, default=MAX_PARALLEL_TASKS,
                        help="task runner threads of the fan-out (the produce flow's, by default)")
    parser.add_argument("--postgres", action="store_true", help="run Prefect on PostgreSQL instead of SQLite")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    image = Path(__file__).resolve().parents[1] / "examples" / "references" / "kite-meadow.jpg"
    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        # the bench's takes go in a journal of their own, never the user's ~/.takeflow
        os.environ["TAKEFLOW_HOME"] = str(folder / "takeflow-home")
        os.environ.pop("TAKEFLOW_STATE_URL", None)
        stack.enter_context(postgres_prefect(folder) if args.postgres
                            else prefect_test_harness(server_startup_timeout=120))
        for target in targets(args.targets.split(","), args, image):
            try:
                results.append((target, measure(target, args, folder, image)))
            finally:
                target.sim.stop()
    overheads = [report(target, m, args) for target, m in results]
    if not all(math.isfinite(o) for o in overheads):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
