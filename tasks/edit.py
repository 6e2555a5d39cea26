"""The edit to deliver: clips, how they join, what is heard and written on top, and its timeline.

Everything here is plain data (frozen pydantic models) plus the frame arithmetic every part of
assembly shares, so the picture, the sound and the edit decision list agree frame for frame.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from blocks.media import MediaError, VideoInfo, probe
from tasks.storyboard import Transition

DeliveryFormat = Literal["h264", "prores", "hevc10"]
MusicFit = Literal["loop", "pad"]
TransitionKind = Literal["cut", "crossfade", "fade_black", "dip"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Grade(_Frozen):
    """A per-channel colour correction in RGB: out = in * gain + offset (offset in 0..1 units)."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def is_identity(self) -> bool:
        return self.gain == (1.0, 1.0, 1.0) and self.offset == (0.0, 0.0, 0.0)


class EditClip(_Frozen):
    path: Path
    grade: Grade | None = None


class EditTransition(_Frozen):
    """How a clip joins the next. Every kind but cut overlaps the two clips by `duration`."""

    kind: TransitionKind = "cut"
    duration: float = Field(0.5, ge=0, le=5)
    color: str = Field("white", description="dip colour: a name ffmpeg knows or #rrggbb")

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _overlap_needs_length(self) -> "EditTransition":
        if self.kind != "cut" and self.duration <= 0:
            raise ValueError(f"a {self.kind} needs a duration above 0")
        return self


class Soundtrack(_Frozen):
    """What is heard. Music shorter than the edit is looped or padded with silence (`music_fit`);
    fades apply to the whole mix, which is then normalised to `loudness_lufs` (EBU R128)."""

    music: Path | None = None
    music_gain_db: float = -6.0
    music_fit: MusicFit = "loop"
    voice_over: Path | None = None
    voice_over_start: float = Field(0.0, ge=0)
    fade_in: float = Field(0.5, ge=0)
    fade_out: float = Field(1.0, ge=0)
    loudness_lufs: float = Field(-14.0, ge=-70, le=-5)
    keep_take_audio: bool = True


class Title(_Frozen):
    """Text shown from `start` for `duration` seconds of the edit (OpenCV's Hershey font: ASCII)."""

    text: str = Field(min_length=1)
    start: float = Field(ge=0)
    duration: float = Field(gt=0)
    position: Literal["top", "center", "bottom"] = "bottom"


class AssemblyResult(_Frozen):
    dest: Path
    duration: float
    frames: int
    lossy_video_encodes: int
    audio: str  # "none", or what the mix holds, e.g. "takes + music looped + voice-over"
    loudness_lufs: float | None  # integrated loudness measured on the written file
    command: tuple[str, ...]


def as_clip(clip: EditClip | Path | str) -> EditClip:
    return clip if isinstance(clip, EditClip) else EditClip(path=Path(clip))


def as_transition(index: int, transition: EditTransition | Transition | dict | str) -> EditTransition:
    """An EditTransition from a storyboard Transition, a dict or a word; errors name the shot."""
    if isinstance(transition, EditTransition):
        return transition
    if isinstance(transition, Transition):  # the storyboard's: keep the fields an edit knows
        transition = {k: v for k, v in transition.model_dump().items() if k in EditTransition.model_fields}
    try:
        return EditTransition.model_validate(transition)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ValueError(f"transition after shot {index} ({transition!r}): {reason}") from None


def overlap_frames(transition: EditTransition, fps: int) -> int:
    """Frames a transition overlaps its two clips by: whole frames, so offsets stay on the grid."""
    return 0 if transition.kind == "cut" else max(1, round(transition.duration * fps))


@dataclass(frozen=True)
class Timeline:
    """Where every clip sits in the edit, in frames at the delivery rate."""

    fps: int
    clip_frames: tuple[int, ...]
    overlaps: tuple[int, ...]  # overlaps[i] joins clip i to clip i + 1

    @property
    def starts(self) -> tuple[int, ...]:
        """The record frame where each clip's first frame lands."""
        starts, at = [], 0
        for i, frames in enumerate(self.clip_frames):
            starts.append(at)
            at += frames - (self.overlaps[i] if i < len(self.overlaps) else 0)
        return tuple(starts)

    @property
    def frames(self) -> int:
        return sum(self.clip_frames) - sum(self.overlaps)

    @property
    def duration(self) -> float:
        return self.frames / self.fps


def plan_timeline(clip_frames: list[int], transitions: list[EditTransition], fps: int) -> Timeline:
    """Lay the clips out, or raise ValueError naming the clip whose transitions cannot fit."""
    if len(transitions) != len(clip_frames) - 1:
        raise ValueError(f"{len(clip_frames)} clips need {len(clip_frames) - 1} transitions, "
                         f"got {len(transitions)}")
    overlaps = [overlap_frames(t, fps) for t in transitions]
    kinds = [t.kind for t in transitions]
    padded = [0, *overlaps, 0]  # nothing overlaps into the first clip or out of the last
    for i, frames in enumerate(clip_frames):
        into, out_of = padded[i], padded[i + 1]
        length = f"{frames / fps:.3f}s"
        if max(into, out_of) > frames:
            kind = kinds[i - 1] if into > out_of else kinds[i]
            raise ValueError(f"clip {i}: {kind} of {max(into, out_of) / fps:.3f}s is longer "
                             f"than the clip ({length})")
        if into + out_of > frames:
            raise ValueError(f"clip {i}: transitions in ({into / fps:.3f}s) and out "
                             f"({out_of / fps:.3f}s) overlap in a clip of {length}")
    return Timeline(fps, tuple(clip_frames), tuple(overlaps))


def _probe_clip(index: int, clip: EditClip) -> VideoInfo:
    try:
        return probe(clip.path)
    except MediaError as exc:
        raise MediaError(f"clip {index}: {exc}") from None


def clip_timeline(clips: list[EditClip], transitions: list[EditTransition],
                  fps: int) -> tuple[list[VideoInfo], Timeline]:
    """Probe the clips and lay them out. The rate conversion keeps a clip's duration, rounded
    to whole delivery frames (the assembly pads or trims each clip to exactly that)."""
    if not clips:
        raise ValueError("no clips to assemble")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    infos = [_probe_clip(i, clip) for i, clip in enumerate(clips)]
    frames = [max(1, round(info.duration * fps)) for info in infos]
    return infos, plan_timeline(frames, transitions, fps)


def timecode(frame: int, fps: int) -> str:
    seconds, frames = divmod(frame, fps)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frames:02d}"


def write_edl(clips: list[EditClip | Path], transitions: list, fps: int, dest: Path,
              names: list[str]) -> Path:
    """Write the edit decision list as CSV, one row per clip (event), frames at the delivery rate.

    Source in/out are frames of the clip after rate conversion (out exclusive); record in/out
    are frames of the finished video; `transition_in` is how the event is entered and
    `transition_frames` how long it overlaps the previous event.
    """
    clips = [as_clip(c) for c in clips]
    transitions = [as_transition(i, t) for i, t in enumerate(transitions)]
    _, timeline = clip_timeline(clips, transitions, fps)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["event", "name", "file", "source_in", "source_out", "record_in",
                      "record_out", "record_in_tc", "record_out_tc", "transition_in",
                      "transition_frames"])
        for i, (clip, name, frames, start) in enumerate(
                zip(clips, names, timeline.clip_frames, timeline.starts, strict=True)):
            entry = transitions[i - 1] if i else None
            out.writerow([i + 1, name, clip.path.name, 0, frames, start, start + frames,
                          timecode(start, fps), timecode(start + frames, fps),
                          entry.kind if entry else "start", timeline.overlaps[i - 1] if i else 0])
    return dest
