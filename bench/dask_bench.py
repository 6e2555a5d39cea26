"""Benchmark: takes scored per minute on a Dask cluster of 1 vs 2 worker processes (goal: >= 1.7x with 2).

Run: python bench/dask_bench.py [--clips N] [--rounds R] [--corpus DIR]
     (two to four minutes with the defaults: 12 clips, 2 rounds, 6 configurations)

The takes are real AI-generated clips from the corpus (../shared/corpus, or $TAKEFLOW_CORPUS),
scored by the produce flow's own `score-take` task, submitted through the produce flow's task
runner (flows/runners.py) pointed at a `distributed.LocalCluster` of single-threaded worker
processes on this machine, as `TAKEFLOW_DASK_ADDRESS` would point it at a real cluster. The
runner installs flows/dask_worker.OneCoreWorker on the workers: one thread for OpenCV and the
BLAS pools, and, in the *pinned* rows (TAKEFLOW_DASK_PIN_CORES=1), one core per worker for the
worker and the ffmpeg it decodes with. The same batch also runs without Dask, on the runner's
threads in the flow's process (1 and 2 threads): a plain in-process run, the check that the
1-worker baseline is not slowed artificially.

Every configuration scores the same clips with the cache refreshed, so each take is measured
again; configurations alternate round by round, so a change in the machine's load (other work
on it) falls on all of them alike. The best round of each is reported, with the 1-minute load
average at its start and end, and *cores busy*: CPU seconds of the workers (or, without Dask, of
the flow's process), their ffmpeg decoders included, per wall second. The CPU seconds of the flow's
process itself (submitting and collecting; in the thread rows, the scoring too) and of the Prefect
server it reports to are shown beside: on a machine with as many cores as workers they share the
workers' cores, so the 2-worker row can score at most (2 cores x the 1-worker wall) / (all CPU
seconds of the 2-worker batch) times the takes per minute of 1, the *CPU cap* printed at the end
(meaningful on an otherwise idle machine only: other work lengthens the 1-worker wall, not the CPU).
A pinned 1-worker batch is one core's worth: the pinned rows are also compared with the unpinned
single worker, so that a slower 1-worker baseline cannot flatter their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def corpus_clips(corpus: Path, count: int) -> list[Path]:
    """The `count` largest MP4 clips of the corpus: the nearest to real takes (seconds of HD video)."""
    clips = sorted((corpus / "clips").glob("*.mp4"), key=lambda p: p.stat().st_size, reverse=True)
    if len(clips) < count:
        raise SystemExit(f"--clips: the corpus at {corpus} has {len(clips)} MP4 clips, not {count}; "
                         "ask for fewer or point --corpus at a fuller one")
    return clips[:count]


def score_batch(clips: list[Path], dask_address: str | None, threads: int, pin: bool = False,
                sample: Callable[[], tuple[float, ...]] = tuple) -> tuple[float, tuple[float, ...]]:
    """Wall seconds to score every clip in one flow run of the produce flow's task runner, and
    how much each of `sample()`'s CPU counters grew meanwhile (the batch only, not the run's start)."""
    from prefect import flow

    from blocks.media import probe
    from flows.runners import TakeflowTaskRunner
    from tasks.metrics import Expectation
    from tasks.score import score_take

    expectations = []
    for clip in clips:
        info = probe(clip)
        expectations.append(Expectation(width=info.width, height=info.height, fps=info.fps,
                                        duration=info.duration, motion_amount=0.5))
    scoring = score_take.with_options(refresh_cache=True)  # every round measures again

    @flow(name="dask-bench", task_runner=TakeflowTaskRunner(threads, dask_address=dask_address, pin_cores=pin))
    def score_all() -> tuple[float, tuple[float, ...]]:
        before, started = sample(), time.perf_counter()
        futures = [scoring.submit(clip, expected) for clip, expected in zip(clips, expectations)]
        for future in futures:
            future.result()
        wall = time.perf_counter() - started
        return wall, tuple(after - at_start for after, at_start in zip(sample(), before))

    return score_all()


def _warm() -> None:
    import tasks.score  # noqa: F401


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its finished children (the ffmpeg decoders the scorer runs)."""
    import psutil  # a dependency of distributed

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _cpu_sample(scoring_pids: list[int]) -> tuple[float, float, float]:
    """CPU seconds of the processes that score (the workers, or the flow's with threads), of the
    flow's process itself and of the Prefect server. Process ids only: the flow that calls it is
    pickled into every task it sends to Dask, so it must not hold a client."""
    return sum(_cpu_seconds(pid) for pid in scoring_pids), *_flow_and_server_cpu()


def _flow_and_server_cpu() -> tuple[float, float]:
    """CPU seconds of this process (the flow's, its children not counted) and of the Prefect server it started."""
    import psutil

    me = psutil.Process()
    server = 0.0
    for child in me.children(recursive=True):
        try:
            if any("prefect.server" in part for part in child.cmdline()):
                server += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    own = me.cpu_times()
    return own.user + own.system, server


CONFIGS = [("Dask", 1), ("Dask", 2), ("Dask pinned", 1), ("Dask pinned", 2), ("threads, no Dask", 1),
           ("threads, no Dask", 2)]


def run(clips: list[Path], rounds: int) -> list[dict]:
    from distributed import Client, LocalCluster

    measured: dict[tuple[str, int], list[tuple[float, ...]]] = {c: [] for c in CONFIGS}
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
                for n in (1, 2)}
    # not default clients: prefect-dask would send every batch to the default client's cluster
    clients = {n: Client(cluster, set_as_default=False) for n, cluster in clusters.items()}
    try:
        for workers, cluster in clusters.items():  # imports and each worker's first task run are not timed
            clients[workers].run(_warm)
            score_batch(clips[:2 * workers], cluster.scheduler_address, workers)
        score_batch(clips[:2], None, 2)
        for _ in range(rounds):
            for kind, workers in CONFIGS:
                on_dask = kind.startswith("Dask")

                scoring_pids = list(clients[workers].run(os.getpid).values()) if on_dask else [os.getpid()]
                load_before = os.getloadavg()[0]
                address = clusters[workers].scheduler_address if on_dask else None
                wall, (scoring_cpu, flow_cpu, server_cpu) = score_batch(clips, address, workers,
                                                                        pin=kind == "Dask pinned",
                                                                        sample=partial(_cpu_sample, scoring_pids))
                measured[kind, workers].append((wall, scoring_cpu, load_before, os.getloadavg()[0], flow_cpu,
                                                server_cpu))
    finally:
        for workers, cluster in clusters.items():
            clients[workers].close()
            cluster.close()
    best = {config: min(rounds_measured) for config, rounds_measured in measured.items()}
    in_process = best["threads, no Dask", 1][0]
    rows = []
    for (kind, workers), rounds_measured in measured.items():
        wall, scoring_cpu, before, after, flow_cpu, server_cpu = best[kind, workers]
        rows.append({"runner": kind, "workers": workers, "takes": len(clips), "wall": wall,
                     "cores": scoring_cpu / wall, "flow_cpu": flow_cpu, "server_cpu": server_cpu,
                     "cpu": scoring_cpu + flow_cpu + server_cpu,  # all of it on Dask (in threads, the flow's twice)
                     "all": [m[0] for m in rounds_measured], "per_min": len(clips) * 60 / wall,
                     "speedup": best[kind, 1][0] / wall, "vs_plain": in_process / wall,
                     "load": f"{before:.2f} → {after:.2f}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12, help="corpus clips per batch")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per configuration (best is kept)")
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("TAKEFLOW_CORPUS")
                                                          or ROOT.parent / "shared" / "corpus"))
    args = parser.parse_args()
    clips = corpus_clips(args.corpus, args.clips)

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_RESULTS_LOCAL_STORAGE_PATH, \
        temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as results, prefect_test_harness(server_startup_timeout=120), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}):
        rows = run(clips, args.rounds)
    print(f"\n{len(clips)} corpus clips per batch, {args.rounds} rounds, {os.cpu_count()} cores; best round shown\n")
    print("| runner | worker processes / threads | takes | wall s (best) | every round s | takes scored / min "
          "| vs 1 of the same runner | vs plain in-process (1 thread) | cores busy | flow process CPU s "
          "| Prefect server CPU s | load avg 1 min, start → end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runner']} | {r['workers']} | {r['takes']} | {r['wall']:.1f} | "
              f"{', '.join(f'{w:.1f}' for w in r['all'])} | {r['per_min']:.1f} | {r['speedup']:.2f}× | "
              f"{r['vs_plain']:.2f}× | {r['cores']:.2f} | {r['flow_cpu']:.1f} | {r['server_cpu']:.1f} | {r['load']} |")
    row = {(r["runner"], r["workers"]): r for r in rows}
    for kind in ("Dask", "Dask pinned"):
        print(f"\n{kind}: 2 workers score {row[kind, 2]['speedup']:.2f}× the takes per minute of 1 (goal ≥ 1.7×); "
              f"1 worker runs at {row[kind, 1]['vs_plain']:.2f}× the plain in-process run "
              f"(below 1: the Dask overhead{' and the one-core cap' if 'pinned' in kind else ''}); CPU cap on "
              f"{os.cpu_count()} cores: {os.cpu_count() * row[kind, 1]['wall'] / row[kind, 2]['cpu']:.2f}×"
              + (f"; 2 pinned workers score {row['Dask', 1]['wall'] / row[kind, 2]['wall']:.2f}× the takes per "
                 "minute of 1 unpinned worker" if "pinned" in kind else ""))


if __name__ == "__main__":
    main()
