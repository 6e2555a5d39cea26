"""Final assembly: the chosen takes become the delivery file in ONE ffmpeg pass, with sound.

Each take is normalised (rate, timebase, exact length), graded, Lanczos-scaled to the delivery
size, joined with cuts and overlapping transitions, titled, captioned, and encoded exactly once,
while the sound mix is built and loudness-normalised in the same graph. The only other passes
read audio (loudness measurement) and never touch the picture.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ffmpeg
import numpy as np
from prefect import task

from blocks.media import FFMPEG, H264_OUTPUT, MediaError, VideoInfo, atomic_path, probe, run_ffmpeg
from tasks.audio import SAMPLE_RATE, integrated_loudness, measure_mix, mix, normalised_loudness, run_command
from tasks.caching import content_key
from tasks.edit import (AssemblyResult, DeliveryFormat, EditClip, EditTransition, Grade, Soundtrack,
                        Timeline, Title, as_clip, as_transition, clip_timeline)
from tasks.overlays import caption_chain, caption_slot, render_title, splice_captions, titled
from tasks.srt import Cue, fit_to_edit
from tasks.lanczos_scale import check_frame_size, delivery_scale

FINAL_CRF = 18
HEVC_CRF = 20  # x265 at 20 looks like x264 at 18 at a smaller size
POSTER_QUALITY = 2  # mjpeg qscale: 2 is near the best, the poster is a single small file
# Linux caps one command-line argument at 128 KiB; a graph longer than this (hundreds of caption
# lines) is handed to ffmpeg as a file instead.
MAX_INLINE_GRAPH = 100_000
_VIDEO_CODEC_FLAGS = ("-vcodec", "-c:v", "-codec:v")


@dataclass(frozen=True)
class _Format:
    pix_fmt: str  # the graph works in the delivery pixel format, so 10-bit stays 10-bit
    overlay: str  # overlay's name for that format (its default would drop to 8-bit 4:2:0)
    video: dict
    audio: dict
    suffixes: tuple[str, ...]


FORMATS: dict[str, _Format] = {
    "h264": _Format("yuv420p", "yuv420", {**H264_OUTPUT, "crf": FINAL_CRF, "profile:v": "high"},
                    {"acodec": "aac", "b:a": "192k"}, (".mp4", ".mov")),
    "prores": _Format("yuv422p10le", "yuv422p10",
                      {"vcodec": "prores_ks", "profile:v": 3, "vendor": "apl0", "pix_fmt": "yuv422p10le"},
                      {"acodec": "pcm_s24le"}, (".mov",)),
    "hevc10": _Format("yuv420p10le", "yuv420p10",
                      {"vcodec": "libx265", "pix_fmt": "yuv420p10le", "crf": HEVC_CRF, "tag:v": "hvc1",
                       "movflags": "+faststart", "x265-params": "log-level=error"},
                      {"acodec": "aac", "b:a": "192k"}, (".mp4", ".mov")),
}
_XFADE = {"crossfade": "fade", "fade_black": "fadeblack"}


def count_video_encodes(command: Sequence[str]) -> int:
    """Lossy video encodes a command performs: every video codec option that is not a copy."""
    return sum(arg in _VIDEO_CODEC_FLAGS and value != "copy"
               for arg, value in zip(command, command[1:]))


def _graded(video, grade: Grade):
    """Apply out = in * gain + offset per RGB channel (lutrgb: a table lookup, cheap)."""
    channels = {name: f"clip(val*{gain}+{offset}*maxval,minval,maxval)"
                for name, gain, offset in zip("rgb", grade.gain, grade.offset)}
    return video.filter("lutrgb", **channels)


def _picture(video, info: VideoInfo, clip: EditClip, frames: int, fps: int, width: int,
             height: int, pix_fmt: str):
    """One clip's picture: `frames` frames at `fps` from t=0, graded, at width x height.

    The fps filter resamples any rate, mixed or variable, onto the delivery grid; tpad + trim
    then pin the length to the planned frame count, so transition offsets computed from it are
    exact. The timebase is AVTB because concat outputs that and xfade needs equal timebases.
    """
    video = video.setpts("PTS-STARTPTS").filter("fps", fps)
    video = video.filter("tpad", stop_mode="clone", stop_duration=1).filter("trim", end_frame=frames)
    if clip.grade is not None and not clip.grade.is_identity:
        video = _graded(video, clip.grade)  # before scaling: fewer pixels to grade
    if (info.width, info.height) != (width, height):
        video = delivery_scale(video, width, height)  # marks pixels square itself
    else:  # already the delivery size: no resampling, no sharpening, as upscale_video does
        video = video.filter("setsar", 1)
    return video.filter("format", pix_fmt).filter("settb", "AVTB")


def _dip_levels(index: int, color: str, pix_fmt: str) -> tuple[int, int, int]:
    """The Y, U, V plane values of `color` in the working pixel format, as ffmpeg converts it."""
    ten_bit = "10" in pix_fmt
    raw = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"color=c={color}:s=2x2",
         "-frames:v", "1", "-pix_fmt", "yuv444p10le" if ten_bit else "yuv444p", "-f", "rawvideo", "-"],
        capture_output=True).stdout
    if not raw:
        raise ValueError(f"transition after shot {index}: unknown dip colour {color!r}")
    planes = np.frombuffer(raw, np.uint16 if ten_bit else np.uint8).reshape(3, -1)
    return tuple(int(plane[0]) for plane in planes)


def _xfade_options(index: int, transition: EditTransition, pix_fmt: str) -> dict:
    if transition.kind in _XFADE:
        return {"transition": _XFADE[transition.kind]}
    if transition.color.lower() in ("white", "black"):
        return {"transition": f"fade{transition.color.lower()}"}
    # A dip through any other colour: out to the colour over the first half, in over the second.
    # xfade's P runs from 1 (all first clip) to 0 (all second clip).
    y, u, v = _dip_levels(index, transition.color, pix_fmt)
    colour = f"if(eq(PLANE,0),{y},if(eq(PLANE,1),{u},{v}))"
    return {"transition": "custom",
            "expr": f"if(gt(P,0.5),A*(2*P-1)+{colour}*(2-2*P),{colour}*2*P+B*(1-2*P))"}


def _concat(segments: list):
    return segments[0] if len(segments) == 1 else ffmpeg.concat(*segments, v=1, a=0)


def _joined(pictures: list, transitions: list[EditTransition], timeline: Timeline, pix_fmt: str):
    """Runs of cuts become one concat; an overlapping transition xfades everything joined so far
    into the next clip, starting `overlap` before the end of what is joined so far."""
    fps = timeline.fps
    pending, joined = [pictures[0]], timeline.clip_frames[0]
    for index, (transition, picture, frames, overlap) in enumerate(
            zip(transitions, pictures[1:], timeline.clip_frames[1:], timeline.overlaps)):
        if overlap:
            pending = [ffmpeg.filter([_concat(pending), picture], "xfade",
                                     duration=f"{overlap / fps:.6f}",
                                     offset=f"{(joined - overlap) / fps:.6f}",
                                     **_xfade_options(index, transition, pix_fmt))]
        else:
            pending.append(picture)
        joined += frames - overlap
    return _concat(pending)


def _clip_streams(clips: list[EditClip], infos: list[VideoInfo]) -> tuple[list, list]:
    """Each clip's video stream, and its audio stream (None for a silent take).

    A take used more than once is one input whose streams are split: ffmpeg-python merges
    identical inputs into one node, and a stream can feed only one filter.
    """
    uses = Counter(str(clip.path) for clip in clips)
    videos, audios, taken = {}, {}, Counter()
    for clip, info in zip(clips, infos):
        path = str(clip.path)
        if path not in videos:
            source, once = ffmpeg.input(path), uses[path] == 1
            videos[path] = [source.video] if once else source.video.split()
            if info.has_audio:
                audios[path] = [source.audio] if once else source.audio.asplit()
    streams = []
    for clip in clips:
        path = str(clip.path)
        use = taken[path]
        taken[path] += 1
        streams.append((videos[path][use], audios[path][use] if path in audios else None))
    return [video for video, _ in streams], [audio for _, audio in streams]


def assemble_edit(clips: Sequence[EditClip | Path], transitions: Sequence, dest: Path, width: int,
                  height: int, fps: int, soundtrack: Soundtrack | None = None,
                  titles: Sequence[Title] = (), fmt: DeliveryFormat = "h264",
                  captions: Sequence[Cue] = ()) -> AssemblyResult:
    """Write the finished video to `dest`: `transitions[i]` joins clip i to clip i + 1.

    It lasts the sum of the clips minus the transition overlaps, at `fps` and width x height,
    with exactly one lossy video encode. Caption cues running past the end are clipped to it.
    Raises ValueError naming the shot, clip, caption cue or soundtrack field that cannot be used.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown delivery format {fmt!r}: use one of {', '.join(FORMATS)}")
    form, dest = FORMATS[fmt], Path(dest)
    if dest.suffix.lower() not in form.suffixes:
        raise ValueError(f"{fmt} is delivered as {' or '.join(form.suffixes)}, not {dest.name}")
    check_frame_size(width, height)
    clips = [as_clip(clip) for clip in clips]
    transitions = [as_transition(i, t) for i, t in enumerate(transitions)]
    infos, timeline = clip_timeline(clips, transitions, fps)
    for title in titles:
        if title.start >= timeline.duration:
            raise ValueError(f"title {title.text!r} starts at {title.start}s, after the edit ends "
                             f"({timeline.duration:.3f}s)")
    captions = fit_to_edit(list(captions), timeline.duration, "captions")
    soundtrack = soundtrack or Soundtrack()

    # Measurement pass: the same mix from fresh inputs, audio only.
    measuring, audio = mix(_clip_streams(clips, infos)[1], transitions, timeline, soundtrack)
    measured = measure_mix(measuring, dest.name) if measuring is not None else None

    videos, audios = _clip_streams(clips, infos)
    pictures = [_picture(video, info, clip, frames, fps, width, height, form.pix_fmt)
                for video, info, clip, frames in zip(videos, infos, clips, timeline.clip_frames)]
    mixed, _ = mix(audios, transitions, timeline, soundtrack)
    with tempfile.TemporaryDirectory(prefix="titles-") as folder, atomic_path(dest) as tmp:
        images = [render_title(title, width, height, Path(folder) / f"title{i}.png")
                  for i, title in enumerate(titles)]
        video = titled(_joined(pictures, transitions, timeline, form.pix_fmt), titles, images, form.overlay)
        streams, options = [caption_slot(video, captions)], {**form.video, "r": fps}
        if mixed is not None:
            streams.append(normalised_loudness(mixed, measured, soundtrack.loudness_lufs))
            options.update(form.audio, ar=SAMPLE_RATE)
        command = (ffmpeg.output(*streams, str(tmp), **options)
                   .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
                   .overwrite_output().compile(cmd=FFMPEG))
        command = splice_captions(command, caption_chain(captions, width, height, titles))
        command = _graph_in_file_if_long(command, Path(folder) / "graph.txt")
        run_command(command, f"assemble {dest.name}")
    written = probe(dest)
    return AssemblyResult(dest=dest, duration=written.duration, frames=written.frames,
                          lossy_video_encodes=count_video_encodes(command), audio=audio,
                          loudness_lufs=integrated_loudness(dest) if mixed is not None else None,
                          command=tuple(command))


def _graph_in_file_if_long(command: list[str], path: Path) -> list[str]:
    """The command, with a filter graph too long for one argument read from `path` instead."""
    at = command.index("-filter_complex")
    if len(command[at + 1]) <= MAX_INLINE_GRAPH:
        return command
    path.write_text(command[at + 1])
    return [*command[:at], "-/filter_complex", str(path), *command[at + 2:]]


def extract_poster(video: Path, dest: Path, at: float) -> Path:
    """Write the frame shown at `at` seconds of `video` to `dest` as a JPEG."""
    video, dest = Path(video), Path(dest)
    duration = probe(video).duration
    if not 0 <= at < duration:
        raise ValueError(f"poster time {at}s is outside {video.name} (0 to {duration:.3f}s)")
    with atomic_path(dest) as tmp:
        # -ss before -i seeks fast, and is frame-accurate because the frame is decoded.
        poster = ffmpeg.input(str(video), ss=at).video.output(
            str(tmp), vframes=1, format="image2", vcodec="mjpeg", update=1,
            **{"q:v": POSTER_QUALITY})
        run_ffmpeg(poster, f"poster of {video.name}")
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise MediaError(f"poster of {video.name}: ffmpeg wrote no frame at {at}s")
    return dest


@task(name="assemble-final", cache_key_fn=content_key("dest"), persist_result=True, retries=1)
def assemble_final(clips: list[EditClip | Path], transitions: list, fps: int, dest: Path,
                   width: int | None = None, height: int | None = None,
                   soundtrack: Soundtrack | None = None, titles: Sequence[Title] = (),
                   fmt: DeliveryFormat = "h264", captions: Sequence[Cue] = ()) -> Path:
    """Assemble the delivery video from the chosen takes (at the first clip's size if none given)."""
    if clips and (width is None or height is None):
        first = probe(as_clip(clips[0]).path)
        width, height = first.width, first.height
    return assemble_edit(clips, transitions, dest, width, height, fps, soundtrack, titles, fmt, captions).dest


@task(name="make-poster", cache_key_fn=content_key("dest"), persist_result=True, retries=1)
def make_poster(video: Path, at: float, dest: Path) -> Path:
    """Grab the poster frame of the finished video."""
    return extract_poster(video, dest, at)
