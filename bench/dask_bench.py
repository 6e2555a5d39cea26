"""Benchmark: takes scored per minute on a Dask cluster of 1 vs 2 worker processes (goal: >= 1.7x with 2).

Run: python bench/dask_bench.py [--clips N] [--rounds R] [--corpus DIR]
     (about two minutes with the defaults: 12 clips, 2 rounds)

The takes are real AI-generated clips from the corpus (../shared/corpus, or $TAKEFLOW_CORPUS),
scored by the produce flow's own `score-take` task, submitted through the produce flow's task
runner (flows/runners.py) pointed at a `distributed.LocalCluster` of single-threaded worker
processes on this machine, as `TAKEFLOW_DASK_ADDRESS` would point it at a real cluster. For
reference, the same batch also runs without Dask, on the runner's threads in the flow's process.

Every configuration scores the same clips with the cache refreshed, so each take is measured
again; configurations alternate round by round, so a change in the machine's load (other work
on it) falls on all of them alike. The best round of each is reported, with the 1-minute load
average at its start and end, and *cores busy*: CPU seconds of the workers (or, without Dask, of
the flow's process), their ffmpeg decoders included, per wall second. One scoring worker already
keeps more than one core busy (ffmpeg decodes while Python measures), so on 2 cores the 2-worker
speed-up is capped below 2x, and on a busy machine by the cores that are free.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def corpus_clips(corpus: Path, count: int) -> list[Path]:
    """The `count` largest MP4 clips of the corpus: the nearest to real takes (seconds of HD video)."""
    clips = sorted((corpus / "clips").glob("*.mp4"), key=lambda p: p.stat().st_size, reverse=True)
    if len(clips) < count:
        raise SystemExit(f"--clips: the corpus at {corpus} has {len(clips)} MP4 clips, not {count}; "
                         "ask for fewer or point --corpus at a fuller one")
    return clips[:count]


def score_batch(clips: list[Path], dask_address: str | None, threads: int) -> float:
    """Wall seconds to score every clip in one flow run of the produce flow's task runner."""
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

    @flow(name="dask-bench", task_runner=TakeflowTaskRunner(threads, dask_address=dask_address))
    def score_all() -> float:
        started = time.perf_counter()
        futures = [scoring.submit(clip, expected) for clip, expected in zip(clips, expectations)]
        for future in futures:
            future.result()
        return time.perf_counter() - started

    return score_all()


def _warm() -> None:
    import tasks.score  # noqa: F401


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the ffmpeg decoders the scorer runs)."""
    import psutil  # a dependency of distributed

    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run(clips: list[Path], rounds: int) -> list[dict]:
    from distributed import Client, LocalCluster

    configs = [("Dask", 1), ("Dask", 2), ("threads, no Dask", 2)]
    measured: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {c: [] for c in configs}
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
            for kind, workers in configs:
                def cpu() -> float:  # the workers' CPU on Dask, the flow process's in threads
                    return sum(clients[workers].run(_cpu_seconds).values()) if kind == "Dask" else _cpu_seconds()
                load_before, cpu_before, started = os.getloadavg()[0], cpu(), time.perf_counter()
                address = clusters[workers].scheduler_address if kind == "Dask" else None
                wall = score_batch(clips, address, workers)
                cores = (cpu() - cpu_before) / (time.perf_counter() - started)
                measured[kind, workers].append((wall, cores, load_before, os.getloadavg()[0]))
    finally:
        for workers, cluster in clusters.items():
            clients[workers].close()
            cluster.close()
    base = min(m[0] for m in measured["Dask", 1])
    rows = []
    for (kind, workers), rounds_measured in measured.items():
        wall, cores, before, after = min(rounds_measured)
        rows.append({"runner": kind, "workers": workers, "takes": len(clips), "wall": wall, "cores": cores,
                     "all": [m[0] for m in rounds_measured], "per_min": len(clips) * 60 / wall,
                     "speedup": base / wall, "load": f"{before:.2f} → {after:.2f}"})
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
          "| vs 1 Dask worker | cores busy | load avg 1 min, start → end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runner']} | {r['workers']} | {r['takes']} | {r['wall']:.1f} | "
              f"{', '.join(f'{w:.1f}' for w in r['all'])} | {r['per_min']:.1f} | {r['speedup']:.2f}× | "
              f"{r['cores']:.2f} | {r['load']} |")
    ratio = next(r["speedup"] for r in rows if r["runner"] == "Dask" and r["workers"] == 2)
    print(f"\n2 Dask workers: {ratio:.2f}× the takes per minute of 1 (goal ≥ 1.7×)")


if __name__ == "__main__":
    main()
