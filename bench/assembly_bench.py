"""Benchmark: single-pass delivery assembly vs the same graph as one hand-written ffmpeg command.

Run: python bench/assembly_bench.py [--seconds 5] [--repeats 1] [--sizes 1080p 4k]

Six 720p previz shots of 5 s, joined with crossfade | cut | fade_black | crossfade | dip under a
looped music bed, are delivered at 1080p and at 4K (H.264 crf 18, x264's default preset, as in
the product). `assemble_edit` also probes the clips, measures the mix's loudness (audio only)
and meters the output; the hand-written command is just the encode, given the same loudnorm
measurements. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks.media import FFMPEG, probe  # noqa: E402
from blocks.previz_render import render_previz  # noqa: E402
from tasks.assemble import assemble_edit, count_video_encodes  # noqa: E402
from tasks.edit import EditTransition, Soundtrack  # noqa: E402

FPS, FADE = 24, 0.5
SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160)}
PROMPTS = ["a lighthouse on a cliff; slow dolly in; dusk light", "a harbour at dawn; pan left",
           "a forest path; static camera", "a city street at night; pan right",
           "a mountain lake; slow dolly out", "a desert road; orbit"]
KINDS = ["crossfade", "cut", "fade_black", "crossfade", "dip"]
XFADE = {"crossfade": "fade", "fade_black": "fadeblack", "dip": "fadewhite"}


def make_shots(folder: Path, seconds: float) -> list[Path]:
    shots = []
    for i, prompt in enumerate(PROMPTS):
        dest = folder / f"shot{i}.mp4"
        render_previz(dest, width=1280, height=720, fps=FPS, duration=seconds, prompt=prompt, seed=i,
                      motion_amount=0.5, reference_image=None, regions=())
        shots.append(dest)
    return shots


def make_music(dest: Path, seconds: float) -> Path:
    t = np.arange(round(seconds * 48000)) / 48000
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) * (0.6 + 0.4 * np.sin(t))
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(48000)
        out.writeframes((chord * 32767).astype(np.int16).tobytes())
    return dest


def hand_command(shots: list[Path], music: Path, seconds: float, size: tuple[int, int],
                 loudnorm: str, dest: Path) -> list[str]:
    """The edit as one would write it by hand: same filters, no probing or metering around it."""
    width, height = size
    graph = [f"[{i}:v]setpts=PTS-STARTPTS,fps={FPS},scale={width}:{height}:force_original_aspect_ratio=increase"
             f":flags=lanczos,crop={width}:{height},setsar=1,unsharp=5:5:0.6:5:5:0.0,format=yuv420p,"
             f"settb=AVTB[v{i}]" for i in range(len(shots))]
    joined, label = seconds, "v0"
    for i, kind in enumerate(KINDS, start=1):
        if kind == "cut":
            graph.append(f"[{label}][v{i}]concat=n=2:v=1:a=0[j{i}]")
            joined += seconds
        else:
            graph.append(f"[{label}][v{i}]xfade=transition={XFADE[kind]}:duration={FADE}:"
                         f"offset={joined - FADE}[j{i}]")
            joined += seconds - FADE
        label = f"j{i}"
    graph.append(f"[{len(shots)}:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"
                 f"atrim=duration={joined},volume=-6dB,afade=t=in:d=0.5,afade=t=out:st={joined - 1}:d=1,"
                 f"{loudnorm},aresample=48000[a]")
    inputs = [arg for shot in shots for arg in ("-i", str(shot))]
    return [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs,
            "-stream_loop", "-1", "-i", str(music), "-filter_complex", ";".join(graph),
            "-map", f"[{label}]", "-map", "[a]", "-c:v", "libx264", "-crf", "18", "-profile:v", "high",
            "-pix_fmt", "yuv420p", "-r", str(FPS), "-movflags", "+faststart", "-c:a", "aac",
            "-b:a", "192k", str(dest)]


def bench(shots: list[Path], music: Path, seconds: float, name: str, folder: Path, repeats: int) -> dict:
    """Best of `repeats` for each way, interleaved, because the 2 cores are shared."""
    size, ours, hand = SIZES[name], [], []
    transitions = [EditTransition(kind=k, duration=FADE) for k in KINDS]
    for _ in range(repeats):
        started = time.perf_counter()
        result = assemble_edit(shots, transitions, folder / f"{name}.mp4", *size, FPS,
                               soundtrack=Soundtrack(music=music))
        ours.append(time.perf_counter() - started)
        loudnorm = re.search(r"loudnorm=[^\[]+", next(a for a in result.command if "loudnorm" in a)).group(0)
        command = hand_command(shots, music, seconds, size, loudnorm, folder / f"{name}-hand.mp4")
        started = time.perf_counter()
        subprocess.run(command, check=True)
        hand.append(time.perf_counter() - started)
    ours, hand = min(ours), min(hand)
    hand_frames = probe(folder / f"{name}-hand.mp4").frames
    return {"name": name, "ours": ours, "hand": hand, "frames": result.frames, "hand_frames": hand_frames,
            "encodes": count_video_encodes(result.command), "lufs": result.loudness_lufs,
            "audio": result.audio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs each")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="assembly-bench-") as tmp:
        folder = Path(tmp)
        shots = make_shots(folder, args.seconds)
        music = make_music(folder / "music.wav", 7.0)  # shorter than the edit: it loops
        rows = [bench(shots, music, args.seconds, name, folder, args.repeats) for name in args.sizes]
    print(f"\n6 shots x {args.seconds:g} s of 720p previz, {', '.join(KINDS)}, music bed; "
          "H.264 crf 18 (x264 default preset)\n")
    print("| output | frames (hand) | assemble_edit s | hand-written command s | ratio "
          "| lossy video encodes / frame | output loudness | audio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['frames']} ({r['hand_frames']}) | {r['ours']:.1f} | {r['hand']:.1f} "
              f"| {r['ours'] / r['hand']:.2f}x | {r['encodes']} | {r['lufs']:.1f} LUFS | {r['audio']} |")


if __name__ == "__main__":
    main()
