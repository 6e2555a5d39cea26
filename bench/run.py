"""Benchmark: previz render speed, and `takeflow produce` on every example, first run vs cached rerun.

Run: python bench/run.py            (prints markdown tables; takes about five minutes)

Each production runs as a user would run it, through the `takeflow` console script, in two
Prefect modes: embedded (PREFECT_API_URL unset: Prefect starts a server for each command) and
against a running `prefect server start`. Each mode gets its own PREFECT_HOME and result store,
so every first run really starts with a cold cache.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.stem != "simulated-providers")  # previz only
TAKEFLOW = str(Path(sys.executable).parent / "takeflow")
STAGES = ["plan", "generate+score", "assemble"]


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, largest single process) of a command run in a child."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *command], env=env, capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - started, int(done.stdout.strip().splitlines()[-1]) / 1024


def bench_previz(workdir: Path) -> list[dict]:
    from blocks.previz_render import render_previz
    from blocks.providers import MotionRegion

    reference = ROOT / "examples" / "references" / "kite-meadow.jpg"
    brush = (MotionRegion(polygon=((0.4, 0.2), (0.54, 0.2), (0.54, 0.44), (0.4, 0.44)), vector=(0.2, -0.3)),)
    cases = {"composed plate, dolly in": ("a lighthouse on a cliff; slow dolly in; dusk light", None, ()),
             "reference image, pan left": ("a meadow; slow pan left; midday sun", reference, ()),
             "reference + brush, static": ("a kite climbs; static camera", reference, brush)}
    rows = []
    for name, (prompt, image, regions) in cases.items():
        started = time.perf_counter()
        render_previz(workdir / "previz.mp4", width=1280, height=720, fps=24, duration=5, prompt=prompt,
                      seed=1, motion_amount=0.5, reference_image=image, regions=regions)
        rows.append({"case": name, "seconds": time.perf_counter() - started})
    return rows


def bench_example(example: Path, workdir: Path, env: dict[str, str]) -> dict:
    out = workdir / example.stem
    command = [TAKEFLOW, "produce", str(example), "--out", str(out)]
    first_wall, first_rss = measured(command, env)
    report_path = next(out.glob("*/report.json"))
    first = json.loads(report_path.read_text())
    again_wall, again_rss = measured(command, env)
    again = json.loads(report_path.read_text())
    assert again["generated"] == 0, f"{example.name}: cached rerun generated {again['generated']} takes"
    stages = {s: first["timings"].get(s, 0.0) for s in STAGES}
    return {"example": example.stem, "takes": first["generated"], "duration": first["duration"],
            "size": f"{first['width']}x{first['height']}", "wall": first_wall, "rss": first_rss,
            "startup": first_wall - sum(stages.values()), **stages,
            "rerun": again_wall, "rerun_rss": again_rss}


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A `prefect server start` on a free loopback port, and its API URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            import httpx
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("prefect server did not start within 120 s")


def bench_mode(mode: str, workdir: Path) -> None:
    home = workdir / mode
    (home / "prefect-home").mkdir(parents=True)
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect-home"),
           "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "results")}
    env.pop("PREFECT_API_URL", None)
    server = None
    if mode == "embedded":
        # The very first start creates Prefect's database; time it apart from the examples.
        first_start, _ = measured([sys.executable, "-c", "from prefect import flow; flow(lambda: None)()"], env)
        print(f"\n**{mode}** (first-ever start, which creates Prefect's database: {first_start:.1f} s)\n")
    else:
        server, env["PREFECT_API_URL"] = start_server(env)
        print(f"\n**{mode}** (`prefect server start` already running)\n")
    print("| example | takes | final | wall s | peak RSS MiB | start-up+exit s | generate+score s "
          "| assemble s | cached rerun s | rerun / first |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    try:
        for example in EXAMPLES:
            r = bench_example(example, home, env)
            print(f"| {r['example']} | {r['takes']} | {r['duration']:.2f} s {r['size']} | {r['wall']:.1f} "
                  f"| {r['rss']:.0f} | {r['startup']:.1f} | {r['generate+score']:.1f} "
                  f"| {r['assemble']:.1f} | {r['rerun']:.1f} | {r['rerun'] / r['wall']:.0%} |",
                  flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="takeflow-bench-"))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}\n")
    print("| previz render, 5 s 1280x720 24 fps | seconds | goal |\n|---|---|---|")
    for row in bench_previz(workdir):
        print(f"| {row['case']} | {row['seconds']:.2f} | ≤ 5 |", flush=True)
    for mode in ("embedded", "server"):
        bench_mode(mode, workdir)


if __name__ == "__main__":
    main()
