"""The delivery sound mix: take audio laid on the picture's timeline, music, voice-over, loudness.

The mix is one ffmpeg-python audio stream built inside the assembly's filter graph, so it is
written in the same pass as the picture. Loudness normalisation needs the mix's loudness first,
so the same audio graph runs once on its own (audio only, no video decoded or encoded) to
measure it, and the final pass applies loudnorm in linear mode with those measurements: one
constant gain, no pumping.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import ffmpeg

from blocks.media import FFMPEG, MediaError
from blocks.media import audio_duration as media_audio_duration
from tasks.edit import EditTransition, Soundtrack, Timeline

SAMPLE_RATE = 48000
TRUE_PEAK_DB = -1.5
LOUDNESS_RANGE = 11
def run_command(args: list[str], what: str) -> str:
    """Run a compiled ffmpeg command; return its stderr (where measurements go) or raise."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise MediaError(f"{what}: ffmpeg failed: {' | '.join(tail)}")
    return done.stderr


def _header(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, timeout=60).stderr


def audio_duration(path: Path, field: str) -> float:
    """Seconds of audio in `path`; ValueError naming the soundtrack `field` if it has none."""
    try:
        return media_audio_duration(path)
    except MediaError as exc:
        raise ValueError(f"soundtrack.{field}: {exc}") from None


def _normalised(stream):
    """Any audio as 48 kHz stereo float from t=0, so streams can be joined and mixed."""
    return (stream.filter("aresample", SAMPLE_RATE)
            .filter("aformat", sample_fmts="fltp", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
            .filter("asetpts", "PTS-STARTPTS"))


def _exactly(stream, seconds: float):
    """Pad with silence or cut so the stream lasts `seconds`, whatever its own length."""
    return stream.filter("apad").filter("atrim", duration=f"{seconds:.6f}")


def _silence(seconds: float):
    return ffmpeg.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=f"{seconds:.6f}")


def _concat(segments: list):
    return segments[0] if len(segments) == 1 else ffmpeg.concat(*segments, v=0, a=1)


def take_track(take_audio: list, transitions: list[EditTransition], timeline: Timeline):
    """The takes' own sound on the picture's timeline: each clip's audio starts with its video.

    `take_audio[i]` is clip i's audio stream, or None for a silent take (silence stands in, so
    later clips stay in sync). Cuts concatenate; a crossfade crossfades the sound too (equal
    power); a fade through black or a dip fades out over its first half and in over its second.
    """
    fps = timeline.fps
    seconds = [frames / fps for frames in timeline.clip_frames]
    segments = [_exactly(_normalised(audio), length) if audio is not None else _silence(length)
                for audio, length in zip(take_audio, seconds)]
    pending, joined = [segments[0]], seconds[0]
    for transition, segment, length, overlap in zip(transitions, segments[1:], seconds[1:],
                                                   timeline.overlaps):
        if not overlap:
            pending.append(segment)
        else:
            fade = overlap / fps
            previous = _concat(pending)
            curve = "qsin"
            if transition.kind != "crossfade":  # through a colour: out, then in, never both
                previous = previous.filter("afade", t="out", st=f"{joined - fade:.6f}", d=f"{fade / 2:.6f}")
                segment = segment.filter("afade", t="in", st=f"{fade / 2:.6f}", d=f"{fade / 2:.6f}")
                curve = "nofade"
            pending = [ffmpeg.filter([previous, segment], "acrossfade", d=f"{fade:.6f}",
                                     c1=curve, c2=curve)]
        joined += length - overlap / fps
    return _concat(pending)


def _bed(path: Path, field: str, total: float, fit: str, delay: float = 0.0) -> tuple[object, str]:
    """A music or voice-over stream lasting exactly `total`, and how it was fitted."""
    end = delay + audio_duration(path, field)
    if delay >= total:
        raise ValueError(f"soundtrack.{field}_start: {delay}s is after the edit ends ({total:.3f}s)")
    loop = fit == "loop" and end < total
    stream = _normalised(ffmpeg.input(str(path), **({"stream_loop": -1} if loop else {})).audio)
    if delay:
        stream = stream.filter("adelay", delays=round(delay * 1000), all=1)
    fitted = "looped" if loop else "padded" if end < total else "trimmed" if end > total else ""
    return _exactly(stream, total), fitted


def mix(take_audio: list, transitions: list[EditTransition], timeline: Timeline,
        soundtrack: Soundtrack) -> tuple[object | None, str]:
    """The un-normalised mix (or None when there is nothing to hear) and what it holds."""
    total = timeline.duration
    parts, described = [], []
    if soundtrack.keep_take_audio and any(a is not None for a in take_audio):
        parts.append(take_track(take_audio, transitions, timeline))
        described.append("takes")
    if soundtrack.music is not None:
        music, fitted = _bed(soundtrack.music, "music", total, soundtrack.music_fit)
        parts.append(music.filter("volume", f"{soundtrack.music_gain_db}dB"))
        described.append(f"music {fitted}".strip())
    if soundtrack.voice_over is not None:
        voice, fitted = _bed(soundtrack.voice_over, "voice_over", total, "pad",
                             soundtrack.voice_over_start)
        parts.append(voice)
        described.append("voice-over trimmed" if fitted == "trimmed" else "voice-over")  # padding is normal
    if not parts:
        return None, "none"
    # normalize=0: amix would otherwise divide every input by the number of inputs.
    mixed = parts[0] if len(parts) == 1 else ffmpeg.filter(parts, "amix", inputs=len(parts),
                                                            duration="first", normalize=0)
    if soundtrack.fade_in:
        mixed = mixed.filter("afade", t="in", st=0, d=f"{min(soundtrack.fade_in, total):.6f}")
    if soundtrack.fade_out:
        fade_out = min(soundtrack.fade_out, total)
        mixed = mixed.filter("afade", t="out", st=f"{total - fade_out:.6f}", d=f"{fade_out:.6f}")
    return mixed, " + ".join(described)


def _ebur128(args: list[str], what: str) -> dict[str, float]:
    """Run a command ending in the ebur128 filter and read its summary (the EBU reference meter)."""
    summary = run_command(args, what).rsplit("Summary:", 1)[-1]
    fields = {"input_i": r"I:\s+(\S+) LUFS", "input_thresh": r"Threshold:\s+(\S+) LUFS",
              "input_lra": r"LRA:\s+(\S+) LU", "input_tp": r"Peak:\s+(\S+) dBFS"}
    found = {key: re.search(pattern, summary) for key, pattern in fields.items()}
    return {key: float(match.group(1)) for key, match in found.items() if match}


def measure_mix(mixed, what: str) -> dict[str, float]:
    """Measure the mix alone (no video decoded or encoded): loudness, range, true peak.

    ebur128 rather than loudnorm's own analysis: on clips of a few seconds loudnorm's estimate
    was a full LU away from what the reference meter reads on its output.
    """
    args = (mixed.filter("ebur128", peak="true").output("-", f="null")
            .global_args("-hide_banner", "-nostats", "-nostdin").compile(cmd=FFMPEG))
    return _ebur128(args, f"measure loudness of {what}")


def normalised_loudness(mixed, measured: dict[str, float], target_lufs: float):
    """The mix brought to `target_lufs` with one constant gain (loudnorm's linear mode).

    loudnorm only stays linear while the range fits its LRA target and the gained true peak
    stays under TP; the LRA target is therefore raised to the mix's own range (we want a gain,
    not compression). Where the peak would clip, loudnorm falls back to its dynamic mode.
    Digital silence has no loudness to correct, so it is passed through untouched.
    """
    if not math.isfinite(measured["input_i"]) or measured["input_i"] < -70:
        return mixed
    return mixed.filter(
        "loudnorm", I=target_lufs, TP=TRUE_PEAK_DB,
        LRA=min(50, max(LOUDNESS_RANGE, math.ceil(measured["input_lra"] + 1))),
        measured_I=measured["input_i"], measured_TP=measured["input_tp"],
        measured_LRA=measured["input_lra"], measured_thresh=measured["input_thresh"],
        linear="true",
    ).filter("aresample", SAMPLE_RATE)  # loudnorm works, and outputs, at 192 kHz


def integrated_loudness(path: Path) -> float | None:
    """EBU R128 integrated loudness (LUFS) of a file's audio, or None if it has none."""
    if not re.search(r"Stream #\d+:\d+.*?: Audio:", _header(path)):
        return None
    args = [FFMPEG, "-hide_banner", "-nostats", "-nostdin", "-i", str(path), "-map", "0:a:0",
            "-af", "ebur128", "-f", "null", "-"]
    return _ebur128(args, f"ebur128 of {Path(path).name}")["input_i"]
