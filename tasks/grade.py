"""Colour continuity: grade each shot so its colour and brightness match a reference shot.

Takes generated separately drift in white balance and exposure, and a cut between them jumps.
Each chosen take's colour is summarised from a few sampled frames (per-channel mean and spread),
and a per-channel gain and offset moves its statistics onto the reference's (Reinhard-style
transfer in RGB). The grade is clamped: it corrects drift, it does not repaint a night shot as day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from prefect import task
from pydantic import BaseModel

from blocks.media import sample_frames
from tasks.caching import content_key
from tasks.edit import Grade

ColourMatch = Literal["off", "previous", "first"]
SAMPLED_FRAMES = 8
MAX_GAIN = 1.6  # beyond this the correction amplifies noise more than it fixes colour
MAX_OFFSET = 0.25


class ColourStats(BaseModel):
    """Per-channel mean and standard deviation of a clip, RGB in 0..1."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def colour_stats(path: Path) -> ColourStats:
    """Summarise a clip's colour from evenly spaced frames (shrunk, so cheap at any resolution)."""
    frames = sample_frames(Path(path), SAMPLED_FRAMES, lambda f: cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA))
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames])[:, ::-1].astype(np.float64) / 255  # BGR -> RGB
    return ColourStats(mean=tuple(pixels.mean(axis=0)), std=tuple(pixels.std(axis=0)))


def match_grade(clip: ColourStats, reference: ColourStats) -> Grade:
    """The gain and offset per channel that give `clip` the reference's mean and spread."""
    gain = np.clip(np.array(reference.std) / np.maximum(clip.std, 1e-3), 1 / MAX_GAIN, MAX_GAIN)
    offset = np.clip(np.array(reference.mean) - gain * np.array(clip.mean), -MAX_OFFSET, MAX_OFFSET)
    return Grade(gain=tuple(round(float(g), 4) for g in gain), offset=tuple(round(float(o), 4) for o in offset))


def graded(stats: ColourStats, grade: Grade) -> ColourStats:
    """A clip's statistics after `grade` (what the next shot matches in 'previous' mode)."""
    return ColourStats(mean=tuple(m * g + o for m, g, o in zip(stats.mean, grade.gain, grade.offset)),
                       std=tuple(s * g for s, g in zip(stats.std, grade.gain)))


@task(name="match-colour", cache_key_fn=content_key(), persist_result=True)
def match_colours(clips: list[Path], mode: ColourMatch) -> list[Grade | None]:
    """Grades that match every shot to the first shot, or each to the previous (as graded)."""
    if mode == "off" or len(clips) < 2:
        return [None] * len(clips)
    stats = [colour_stats(clip) for clip in clips]
    grades: list[Grade | None] = [None]
    target = stats[0]
    for clip_stats in stats[1:]:
        grade = match_grade(clip_stats, target)
        grades.append(None if grade.is_identity else grade)
        if mode == "previous":
            target = graded(clip_stats, grade)
    return grades
