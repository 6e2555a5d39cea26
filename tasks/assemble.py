"""Final assembly: join the upscaled takes with cuts and crossfades in one encode, plus a poster.

Everything happens in a single ffmpeg filter graph so the picture is encoded exactly once
after the takes. Each input is first normalised to the same rate, timebase, pixel format and
size, because xfade refuses inputs that differ in any of these.
"""

from __future__ import annotations

from pathlib import Path

import ffmpeg
from prefect import task

from blocks.media import H264_OUTPUT, MediaError, VideoInfo, atomic_path, probe, run_ffmpeg
from tasks.caching import content_key
from tasks.storyboard import Transition
from tasks.upscale import check_frame_size, cover_crop

FINAL_CRF = 18
POSTER_QUALITY = 2  # mjpeg qscale: 2 is near the best, the poster is a single small file


def _fade_frames(transition: Transition, fps: int) -> int:
    """Frames a transition overlaps its two clips by: whole frames, so offsets stay on the grid."""
    return max(1, round(transition.duration * fps)) if transition.kind == "crossfade" else 0


def _validate(clip_frames: list[int], transitions: list[Transition], fps: int) -> None:
    """Raise ValueError naming the clip if the transitions cannot be laid out on these clips."""
    if len(transitions) != len(clip_frames) - 1:
        raise ValueError(f"{len(clip_frames)} clips need {len(clip_frames) - 1} transitions, "
                         f"got {len(transitions)}")
    # Padded with 0: nothing fades into the first clip or out of the last.
    fades = [0, *(_fade_frames(t, fps) for t in transitions), 0]
    for i, frames in enumerate(clip_frames):
        fade_in, fade_out = fades[i], fades[i + 1]
        length = f"{frames / fps:.3f}s"
        if max(fade_in, fade_out) > frames:
            raise ValueError(f"clip {i}: crossfade of {max(fade_in, fade_out) / fps:.3f}s is "
                             f"longer than the clip ({length})")
        if fade_in + fade_out > frames:
            raise ValueError(f"clip {i}: crossfades in ({fade_in / fps:.3f}s) and out "
                             f"({fade_out / fps:.3f}s) overlap in a clip of {length}")


def _probe_clip(index: int, clip: Path) -> VideoInfo:
    try:
        return probe(clip)
    except MediaError as exc:
        raise MediaError(f"clip {index}: {exc}") from None


def _normalised(clip: Path, fps: int, width: int, height: int, same_size: bool):
    """One clip's video from t=0 at `fps`, yuv420p, width x height.

    The timebase is set to AVTB (1/1000000) because that is what concat outputs, and an
    xfade after a concat needs both of its inputs on the same timebase.
    """
    video = ffmpeg.input(str(clip)).video.setpts("PTS-STARTPTS").filter("fps", fps)
    if not same_size:
        video = cover_crop(video, width, height)
    return video.filter("format", "yuv420p").filter("settb", "AVTB")


def _concat(segments: list):
    """Cut straight from each segment to the next (a lone segment needs no concat)."""
    return segments[0] if len(segments) == 1 else ffmpeg.concat(*segments, v=1, a=0)


def build_assembly(clips: list[Path], transitions: list[Transition], dest: Path, fps: int):
    """The ffmpeg-python graph that writes the assembled video to `dest` (not run).

    Clips keep the first clip's size; others are cover-scaled to it. Runs of cuts become one
    concat; a crossfade xfades everything joined so far into the next clip, starting
    `fade` before the end of what is joined so far.
    """
    if not clips:
        raise ValueError("no clips to assemble")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    infos = [_probe_clip(i, clip) for i, clip in enumerate(clips)]
    # The fps filter keeps a clip's duration, rounded to whole output frames.
    clip_frames = [max(1, round(info.frames * fps / info.fps)) for info in infos]
    _validate(clip_frames, transitions, fps)
    width, height = infos[0].width, infos[0].height
    check_frame_size(width, height)

    inputs = [_normalised(clip, fps, width, height, (info.width, info.height) == (width, height))
              for clip, info in zip(clips, infos)]
    segments = [inputs[0]]  # pieces waiting to be concatenated by the next crossfade or the end
    joined_frames = clip_frames[0]
    for transition, following, frames in zip(transitions, inputs[1:], clip_frames[1:]):
        fade = _fade_frames(transition, fps)
        if fade:
            joined = _concat(segments)
            segments = [ffmpeg.filter([joined, following], "xfade", transition="fade",
                                      duration=fade / fps, offset=(joined_frames - fade) / fps)]
        else:
            segments.append(following)
        joined_frames += frames - fade
    return _concat(segments).output(str(dest), r=fps, crf=FINAL_CRF, **{"profile:v": "high"},
                                    **H264_OUTPUT)


def assemble_video(clips: list[Path], transitions: list[Transition], dest: Path, fps: int) -> Path:
    """Join `clips` in order; `transitions[i]` joins clip i to clip i + 1. Video only.

    The result lasts the sum of the clips minus the crossfades, at `fps`, in one H.264 encode.
    """
    clips = [Path(clip) for clip in clips]
    with atomic_path(dest) as tmp:
        run_ffmpeg(build_assembly(clips, transitions, tmp, fps), f"assemble {Path(dest).name}")
    return Path(dest)


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
def assemble_final(clips: list[Path], transitions: list[Transition], fps: int, dest: Path) -> Path:
    """Assemble the delivery video from the upscaled takes."""
    return assemble_video(clips, transitions, dest, fps)


@task(name="make-poster", cache_key_fn=content_key("dest"), persist_result=True, retries=1)
def make_poster(video: Path, at: float, dest: Path) -> Path:
    """Grab the poster frame of the finished video."""
    return extract_poster(video, dest, at)
