"""Benchmark: the cost of scoring one take against the cost of only decoding it, and its memory.

Run: python bench/score_bench.py            (prints markdown tables; takes about half a minute)

A 10 s 1280x720 24 fps previz take (a pan over a reference image, with a brushed region) is
decoded with `iter_frames` at full size and at the analysis size, and measured by `measure_take`
with a full Expectation (camera, brush region, reference, motion amount); the three are timed in
five interleaved rounds and the medians reported (on a shared machine the ratio is what counts).
Peak memory is measured for 5, 10 and 20 s takes, each in a fresh Python process: the
tracemalloc peak of Python allocations (numpy arrays included), how far the process's peak
RSS (OpenCV's own buffers included) rises during `measure_take`, and the peak RSS of the largest
child process it ran (the ffmpeg that decodes the take).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from blocks.camera_vocabulary import parse_camera
from blocks.media import iter_frames
from blocks.previz_camera import plan_camera
from blocks.previz_render import render_previz
from blocks.providers import MotionRegion
from tasks.metrics import Expectation, analysis_side, measure_take

ROOT = Path(__file__).resolve().parents[1]

WIDTH, HEIGHT, FPS = 1280, 720, 24
PROMPT, SEED, MOTION = "A painted valley. Slow pan left.", 3, 0.6
REGION = MotionRegion(polygon=((0.35, 0.3), (0.55, 0.3), (0.55, 0.6), (0.35, 0.6)), vector=(0.15, -0.1))
RUNS = 5

# Run in a fresh interpreter per take: argv = take, expectation JSON; prints the peaks as JSON.
# Writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0),
# so imports and the interpreter's start-up do not hide what measure_take itself adds.
_MEMORY_PROBE = """
import json, resource, sys, tracemalloc
from tasks.metrics import Expectation, measure_take

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

expected = Expectation.model_validate_json(sys.argv[2])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = kib("VmRSS:")
tracemalloc.start()
result = measure_take(sys.argv[1], expected)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"fails": result.hard_fails, "tracemalloc_peak": peak,
                  "rss_growth_kib": kib("VmHWM:") - before,
                  "child_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def draw_reference(path: Path) -> Path:
    """A 16:9 painting of coloured grain and flat discs (what a reference image gives the camera)."""
    rng = np.random.default_rng(7)
    image = cv2.GaussianBlur(rng.uniform(0, 255, (HEIGHT, WIDTH, 3)).astype(np.float32), (0, 0), 12)
    image = (image - image.mean()) * 3 + 128
    for _ in range(30):
        centre = tuple(int(c) for c in rng.integers(0, (WIDTH, HEIGHT)))
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(20, 120)), colour, -1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))
    return path


def render_take(dest: Path, seconds: float, reference: Path) -> Path:
    # The renderer places regions on the reference, which the camera's overscan spreads beyond
    # the frame; Expectation holds them in frame fractions.
    overscan = plan_camera(parse_camera(PROMPT), MOTION, SEED).overscan
    on_reference = MotionRegion(
        polygon=tuple(((x - 0.5) / overscan + 0.5, (y - 0.5) / overscan + 0.5) for x, y in REGION.polygon),
        vector=(REGION.vector[0] / overscan, REGION.vector[1] / overscan))
    render_previz(dest, width=WIDTH, height=HEIGHT, fps=FPS, duration=seconds, prompt=PROMPT, seed=SEED,
                  motion_amount=MOTION, reference_image=reference, regions=(on_reference,))
    return dest


def expectation(seconds: float, reference: Path) -> Expectation:
    return Expectation(width=WIDTH, height=HEIGHT, fps=FPS, duration=seconds, camera="slow pan left",
                       motion_amount=MOTION, regions=(REGION,), reference_image=reference)


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def bench_speed(take: Path, expected: Expectation) -> None:
    side = analysis_side(WIDTH, HEIGHT)
    steps = {"full": lambda: sum(1 for _ in iter_frames(take)),
             "analysis": lambda: sum(1 for _ in iter_frames(take, max_side=side)),
             "scored": lambda: measure_take(take, expected)}
    # Interleaved rounds, so that a busy machine slows every step alike; medians reported.
    rounds = [{name: timed(work) for name, work in steps.items()} for _ in range(RUNS)]
    full, analysis, scored = (statistics.median(r[name] for r in rounds) for name in steps)
    result = measure_take(take, expected)
    print(f"### Speed: 10 s {WIDTH}x{HEIGHT} {FPS} fps take, median of {RUNS} interleaved runs\n")
    print("| step | seconds | measure_take / step |")
    print("|---|---|---|")
    print(f"| decode only, full size (iter_frames) | {full:.3f} | {scored / full:.2f}x |")
    print(f"| decode only, analysis size {side} px (iter_frames) | {analysis:.3f} | "
          f"{scored / analysis:.2f}x |")
    print(f"| measure_take, full Expectation | {scored:.3f} | goal <= 1.5x |")
    print(f"\npassed={result.passed} fails={result.hard_fails}")
    print("metrics: " + ", ".join(f"{name}={value:.4g}" for name, value in result.metrics.items()) + "\n")


def bench_memory(folder: Path, reference: Path) -> None:
    print("### Peak memory of measure_take (fresh process per take)\n")
    print("| take | frames | tracemalloc peak (Python + numpy) | peak RSS growth | decoder process peak RSS |")
    print("|---|---|---|---|---|")
    for seconds in (5, 10, 20):
        take = render_take(folder / f"take-{seconds}s.mp4", seconds, reference)
        expected = expectation(seconds, reference)
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(take), expected.model_dump_json()],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        peak = json.loads(done.stdout.strip().splitlines()[-1])
        assert not peak["fails"], peak
        print(f"| {seconds} s | {seconds * FPS} | {peak['tracemalloc_peak'] / 2**20:.1f} MiB | "
              f"{peak['rss_growth_kib'] / 1024:.1f} MiB | {peak['child_rss_kib'] / 1024:.1f} MiB |")


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        reference = draw_reference(folder / "reference.png")
        take = render_take(folder / "take-10s.mp4", 10, reference)
        bench_speed(take, expectation(10, reference))
        bench_memory(folder, reference)


if __name__ == "__main__":
    main()
