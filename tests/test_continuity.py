"""A shot that continues the previous one starts from the last frame of that shot's chosen take."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from blocks.media import iter_frames, read_image
from tasks.storyboard import StoryboardError, parse_storyboard

SHOT = {"brief": "a lighthouse on a cliff; slow pan left; warm dusk light"}


def test_continuing_shot_starts_where_the_previous_chosen_take_ends(prefect_server, tmp_path):
    from flows.produce import RunOptions, produce

    board = parse_storyboard({"title": "Sequence", "defaults": {"duration": 1.5, "fps": 12, "takes": 2,
                                                                "delivery": "720p"},
                              "shots": [{"id": "one", **SHOT},
                                        {"id": "two", "continues": True,
                                         "brief": "the lighthouse; slow push in; warm dusk light"}]})
    state = produce(storyboard=board, options=RunOptions(out_dir=str(tmp_path)), return_state=True)
    assert state.is_completed(), state.message
    folder = tmp_path / "sequence"
    one, two = json.loads((folder / "report.json").read_text())["shots"]
    assert two["history"] == [f"continues one from the last frame of its take {one['chosen']}"]
    chosen_one = next(t for t in one["takes"] if t["take"] == one["chosen"])
    frames_one = list(iter_frames(folder / chosen_one["file"]))
    reference = read_image(next((folder / "references").glob("two-from-one-take*.png")))
    assert np.array_equal(reference, frames_one[-1])  # the reference IS the last frame

    def likeness(a, b):
        small = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (64, 36)).astype(float) for f in (a, b)]
        return np.corrcoef(small[0].ravel(), small[1].ravel())[0, 1]

    for take in two["takes"]:
        first = next(iter_frames(folder / take["file"]))
        # The previz camera re-frames the plate per seed, so compare coarse structure: the
        # continuation starts closer to where shot one ended than to where it began.
        assert likeness(first, frames_one[-1]) > max(0.6, likeness(first, frames_one[0]))


def test_first_shot_cannot_continue_and_continuing_shots_take_no_reference():
    with pytest.raises(StoryboardError, match="shots\\[0\\].continues"):
        parse_storyboard({"title": "t", "shots": [{**SHOT, "continues": True}]})
    with pytest.raises(StoryboardError, match="remove reference_image or continues"):
        parse_storyboard({"title": "t", "shots": [SHOT, {**SHOT, "continues": True,
                                                         "reference_image": "https://x/y.png"}]})
