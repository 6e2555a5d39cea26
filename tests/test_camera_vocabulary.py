"""One camera vocabulary: prompt expansion, the motion-preview renderer, Kling's camera control
and scoring read a camera instruction the same way (blocks/camera_vocabulary.py)."""

from __future__ import annotations

import pytest

import blocks.kling
import blocks.previz_render
import tasks.metrics
import tasks.prompts
from blocks.camera_vocabulary import asks_for_still_camera, names_camera, parse_camera
from blocks.kling import camera_control
from tasks.metrics import Expectation, frame_metrics, motion_asked, motion_wanted
from tasks.metrics_adherence import CameraAdherence
from tasks.prompts import StructuredPrompt, split_brief

# Ways of saying the camera holds still: the preview holds the frame, expansion marks stillness
# as allowed, scoring asks for no motion. Before one vocabulary, the last three were still to the
# preview or to scoring but not to both.
STILL = ["Static shot.", "Locked-off frame", "on a tripod", "still camera", "fixed camera",
         "the camera stays still", "no camera movement", "No camera motion."]


@pytest.mark.parametrize("camera", STILL)
def test_a_still_camera_is_still_to_every_reader(camera: str) -> None:
    assert parse_camera(camera).kind == "static"
    prompt = StructuredPrompt(subject="a lighthouse", camera=camera)
    assert prompt.asks_for_still_camera()
    assert split_brief(f"A lighthouse on a cliff, {camera}")["camera"] == camera.rstrip(".")
    # As flows/takes.py builds it: a still camera allows a still take even at a motion amount.
    expected = Expectation(duration=2.0, width=320, height=180, fps=12, camera=camera, motion_amount=0.5,
                           still_allowed=prompt.asks_for_still_camera())
    assert not motion_wanted(expected) and motion_asked(expected) == ""
    adherence = [m for m in frame_metrics(expected, 12, 24) if isinstance(m, CameraAdherence)]
    assert [m._move.kind for m in adherence] == ["static"]


@pytest.mark.parametrize("camera", ["Slow pan left, then locked off.", "Dolly in on the static crowd.",
                                    "Crane up from a tripod-height start."])
def test_the_first_move_named_decides_stillness(camera: str) -> None:
    # Scoring's camera adherence checks the first move, so stillness is not allowed alongside it.
    assert parse_camera(camera).kind != "static"
    assert not asks_for_still_camera(camera)


@pytest.mark.parametrize(("clause", "camera"), [
    ("slow dolly in", True), ("the camera dollies past the stalls", True), ("panned across the bay", True),
    ("close-up on her hands", True), ("handheld", True), ("bird's-eye view", True),
    ("tracking shot along the pier", True), ("zoomed out", True),
    ("a fishing boat glides into the harbour", False), ("golden hour light", False),
    ("she pulls out a map", False),
])
def test_clauses_about_the_camera(clause: str, camera: bool) -> None:
    assert names_camera(clause) is camera


@pytest.mark.parametrize(("prompt", "travels"), [
    ("Truck left past the shelves.", True), ("Tracking left.", True), ("Crane up.", True),
    ("pedestal down", True), ("Pan left.", False), ("Tilt up to the spire.", False), ("Dolly in.", False),
])
def test_travelling_moves_are_told_from_turning_ones(prompt: str, travels: bool) -> None:
    move = parse_camera(prompt)
    assert move.travels is travels
    axis = next(k for k, v in camera_control(prompt, 1.0)["config"].items() if v)
    turning = {"pan_left": "pan", "pan_right": "pan", "tilt_up": "tilt", "tilt_down": "tilt"}
    travelling = {"pan": "horizontal", "tilt": "vertical"}
    want = turning.get(move.kind, "zoom")
    assert axis == (travelling.get(want, want) if travels else want)


def test_every_reader_uses_the_one_parser() -> None:
    # A second copy of the vocabulary is how the readers drifted apart: keep them on this one.
    for module in (blocks.previz_render, blocks.kling, tasks.metrics):
        assert module.parse_camera is parse_camera, module.__name__
    assert tasks.prompts.names_camera is names_camera
    assert not hasattr(tasks.prompts, "CAMERA_WORDS") and not hasattr(tasks.prompts, "STILL_CAMERA")
