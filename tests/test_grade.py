"""Colour matching moves a shot's colour onto its reference shot's, within limits."""

from __future__ import annotations

import numpy as np
import pytest

from blocks.media import FrameWriter
from tasks.edit import Grade
from tasks.grade import MAX_GAIN, colour_stats, match_colours, match_grade


def clip(path, bgr, contrast=60, frames=12):
    rng = np.random.default_rng(1)
    texture = rng.normal(0, contrast, (90, 160, 1))
    with FrameWriter(path, 160, 90, 12) as writer:
        for _ in range(frames):
            writer.write(np.clip(np.array(bgr, float) + texture, 0, 255).astype(np.uint8))
    return path


def apply(stats, grade: Grade):
    return [m * g + o for m, g, o in zip(stats.mean, grade.gain, grade.offset)]


def test_grade_moves_a_warm_shot_onto_a_neutral_reference(tmp_path):
    neutral = colour_stats(clip(tmp_path / "n.mp4", (128, 128, 128)))
    warm = colour_stats(clip(tmp_path / "w.mp4", (100, 130, 170)))  # BGR: more red, less blue
    assert warm.mean[0] > warm.mean[2] + 0.2
    corrected = apply(warm, match_grade(warm, neutral))
    assert corrected == pytest.approx(list(neutral.mean), abs=0.02)


def test_gain_is_clamped_so_a_flat_shot_is_not_blown_up(tmp_path):
    flat = colour_stats(clip(tmp_path / "f.mp4", (128, 128, 128), contrast=2))
    contrasty = colour_stats(clip(tmp_path / "c.mp4", (128, 128, 128), contrast=70))
    assert max(match_grade(flat, contrasty).gain) == pytest.approx(MAX_GAIN)


def test_modes(tmp_path):
    clips = [clip(tmp_path / f"{i}.mp4", bgr) for i, bgr in enumerate([(128,) * 3, (100, 130, 170), (128,) * 3])]
    assert match_colours.fn(clips, "off") == [None, None, None]
    first = match_colours.fn(clips, "first")
    assert first[0] is None and first[1].gain != (1.0, 1.0, 1.0)
    assert first[2] is None or max(abs(g - 1) for g in first[2].gain) < 0.02
    previous = match_colours.fn(clips, "previous")
    assert previous[1] == first[1]
