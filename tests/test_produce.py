"""The produce flow end to end on a real Prefect server: a storyboard becomes final.mp4, takes,
scores and report.json; an identical rerun generates nothing and gives the same video."""

from __future__ import annotations

import json
import shutil

import pytest

from blocks.media import file_digest, probe
from tasks.storyboard import parse_storyboard
from tests.conftest import EXAMPLES

FPS = 12


def storyboard(**shot_changes):
    """Two shots (a text brief and a brushed reference image), joined by a crossfade."""
    shots = [
        {"id": "fox", "brief": "a red fox trots through snow; slow pan left; soft blue dusk light",
         **shot_changes},
        {"id": "kite", "reference_image": "references/kite-meadow.jpg", "subject": "a red kite",
         "action": "climbs", "camera": "static camera", "lighting": "bright midday sun",
         "duration": 2, "motion_brush": [{"polygon": [[0.40, 0.20], [0.54, 0.20], [0.54, 0.44], [0.40, 0.44]],
                                          "direction": "up", "speed": "fast"}]},
    ]
    return parse_storyboard({
        "title": "Test Reel",
        "defaults": {"duration": 1.5, "fps": FPS, "takes": 2, "delivery": "720p",
                     "transition": {"kind": "crossfade", "duration": 0.5}},
        "shots": shots}, EXAMPLES)


def run(board, out, **options):
    from flows.produce import RunOptions, produce
    return produce(storyboard=board, options=RunOptions(out_dir=str(out), **options), return_state=True)


def generate_states(flow_run_id) -> list[str]:
    """State names of the flow run's generate-take task runs, read back from the Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(r.state.name for r in runs if r.name.startswith("generate-"))


@pytest.fixture(scope="module")
def first_run(prefect_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    state = run(storyboard(), out)
    assert state.is_completed(), state.message
    return out / "test-reel", state


def test_final_video_has_the_planned_duration_size_and_fps(first_run):
    folder, _ = first_run
    info = probe(folder / "final.mp4")
    assert (info.width, info.height, info.fps) == (1280, 720, FPS)
    assert abs(info.duration - (1.5 + 2 - 0.5)) <= 1 / FPS
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (folder / "poster.jpg").stat().st_size > 0


def test_every_take_matches_its_shot(first_run):
    folder, _ = first_run
    report = json.loads((folder / "report.json").read_text())
    durations = {"fox": 1.5, "kite": 2}
    for shot in report["shots"]:
        assert [t["take"] for t in shot["takes"]] == [1, 2]
        assert shot["chosen"] in (1, 2) and shot["reason"]
        places = {t["take"]: t["place"] for t in shot["takes"]}
        assert places[shot["chosen"]] == 1 and sorted(places.values()) == [1, 2]
        for take in shot["takes"]:
            info = probe(folder / take["file"])
            assert (info.width, info.height) == (256, 144)  # 16:9 at the saved block's 144 px
            assert abs(info.duration - durations[shot["shot_id"]]) < 1e-6
            assert take["passed"] and take["metrics"]
    assert report["generated"] == 4 and report["cached"] == 0
    assert report["status"] == "complete" and report["final"] == "final.mp4"
    assert set(report["timings"]) == {"plan", "generate+score", "assemble"}
    assert all(seconds > 0 for seconds in report["timings"].values())


def test_identical_rerun_generates_nothing_and_gives_the_same_video(first_run, tmp_path):
    folder, first = first_run
    digest = file_digest(folder / "final.mp4")
    state = run(storyboard(), folder.parent)
    assert state.is_completed(), state.message
    assert generate_states(first.state_details.flow_run_id) == ["Completed"] * 4
    assert generate_states(state.state_details.flow_run_id) == ["Cached"] * 4
    report = json.loads((folder / "report.json").read_text())
    assert report["generated"] == 0 and report["cached"] == 4
    assert file_digest(folder / "final.mp4") == digest

    # The same work in another output folder is still served from the cache.
    state = run(storyboard(), tmp_path)
    assert generate_states(state.state_details.flow_run_id) == ["Cached"] * 4
    assert file_digest(tmp_path / "test-reel" / "final.mp4") == digest


def test_changing_one_shot_regenerates_only_that_shot(first_run, tmp_path):
    shutil.copytree(first_run[0], tmp_path / "test-reel")
    state = run(storyboard(brief="a red fox trots through snow; slow pan right; soft blue dusk light"), tmp_path)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "test-reel" / "report.json").read_text())
    cached = {s["shot_id"]: [t["from_cache"] for t in s["takes"]] for s in report["shots"]}
    assert cached == {"fox": [False, False], "kite": [True, True]}


def test_a_deleted_take_is_generated_again(first_run, tmp_path):
    shutil.copytree(first_run[0], tmp_path / "test-reel")
    for take in (tmp_path / "test-reel" / "takes").glob("kite-take2-*.mp4"):
        take.unlink()
    # Remove the original too, so the cache record points at nothing.
    for take in (first_run[0] / "takes").glob("kite-take2-*.mp4"):
        take.rename(take.with_suffix(".bak"))
    try:
        state = run(storyboard(), tmp_path)
    finally:
        for take in (first_run[0] / "takes").glob("kite-take2-*.bak"):
            take.rename(take.with_suffix(".mp4"))
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "test-reel" / "report.json").read_text())
    kite = next(s for s in report["shots"] if s["shot_id"] == "kite")
    assert [t["from_cache"] for t in kite["takes"]] == [True, False]
    assert probe(tmp_path / "test-reel" / kite["takes"][1]["file"]).frames == 2 * FPS


def test_budget_gate_stops_before_any_take(prefect_server, tmp_path):
    from blocks.previz import PrevizProvider

    PrevizProvider(render_height=144, credits_per_second=10).save("previz", overwrite=True)
    try:
        state = run(storyboard(), tmp_path, budget=50)
    finally:
        PrevizProvider(render_height=144).save("previz", overwrite=True)
    assert state.is_failed() and state.name == "BudgetExceeded"
    assert "the plan needs 70 credits but budget 'project-test-reel' has 50 left" in state.message
    assert "nothing was spent" in state.message
    assert not (tmp_path / "test-reel").exists()


def test_shot_without_an_acceptable_take_stops_the_run_and_keeps_its_takes(prefect_server, tmp_path):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((90, 160, 3), np.uint8))
    board = parse_storyboard({"title": "Night", "defaults": {"duration": 1, "fps": FPS, "takes": 2, "extra_takes": 0},
                              "shots": [{"id": "void", "brief": "a dark room; slow pan left; no light",
                                         "reference_image": "black.png"}]}, tmp_path)
    state = run(board, tmp_path)
    assert state.is_failed() and state.name == "NoAcceptableTake"
    assert "void: no take passed QC" in state.message
    report = json.loads((tmp_path / "night" / "report.json").read_text())
    assert all(any("black frames" in fail for fail in take["hard_fails"]) for take in report["shots"][0]["takes"])
    assert report["final"] is None and report["shots"][0]["chosen"] is None
    assert len(list((tmp_path / "night" / "takes").glob("void-take*.mp4"))) == 2
