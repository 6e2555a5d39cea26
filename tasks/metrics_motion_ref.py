"""Motion-reference adherence: does a take move the way the shot's motion reference video moves?

Kling motion control (and the previz preview of it) should follow the reference's global motion
at the reference's timing. Both clips' camera paths come from the same estimate
(blocks/previz_motion.py: tracked corners fitted to a shift-and-zoom per frame pair), sampled on
one clock every STEP seconds over the shorter clip. The score compares the two velocity curves
(dx, dy in frame sizes, d log zoom per step):

    1 - sum |v_take - v_ref|^2 / (sum |v_take|^2 + sum |v_ref|^2 + floor)

1 when the take moves exactly like the reference (or both hold still), 0 when it holds still while
the reference moves (or the reverse), and below 0, clamped to 0, when it moves the other way.
Timing counts: the same move made a second late scores low, because the curves are compared at
the same instants. The floor (STILL_FLOOR per sample) keeps sub-pixel estimation noise of two
still clips from reading as disagreement.

It measures global (camera) motion only: a character's own movement inside the frame is what the
RANSAC fit leaves out, so this is a check of timing and camera, not of choreography.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blocks.media import MediaError
from blocks.previz_motion import MotionTrack, estimate_motion

NAME = "motion_reference_adherence"
STEP = 1 / 12          # seconds between compared samples: finer than any camera move's timing matters
STILL_FLOOR = 1e-5     # per sample, ~0.3 % of the frame per step: estimation noise of a still clip


def track_adherence(take: MotionTrack, reference: MotionTrack) -> float:
    """The score above for two camera paths."""
    span = min(take.duration, reference.duration)
    mine, theirs = take.velocities(STEP, span), reference.velocities(STEP, span)
    if len(mine) == 0:
        return 0.0
    error = float(np.sum((mine - theirs) ** 2))
    energy = float(np.sum(mine ** 2) + np.sum(theirs ** 2)) + STILL_FLOOR * len(mine)
    return max(0.0, 1.0 - error / energy)


def motion_reference_adherence(take: Path, reference: Path) -> float | None:
    """How closely `take` follows `reference`'s global motion and timing, 0..1; None when either
    clip cannot be read (the take's own QC reports an unreadable take)."""
    try:
        return round(track_adherence(estimate_motion(Path(take)), estimate_motion(Path(reference))), 4)
    except MediaError:
        return None
