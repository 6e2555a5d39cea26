"""Provider super-resolution inside the produce flow, against the Runway simulator on a real Prefect
server: the upscale is priced into the estimate and the budget gate, runs once per chosen take
(a rerun pays nothing), lands in report.json's costs, and is refused before any spend when the
budget or the input size rules it out. Takes come from the free previz block (256x144)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from blocks.catalogue import DEFAULT_PATH
from blocks.media import probe
from blocks.registry import provider_class
from simulators.serve import client_settings, start_simulator
from tasks.storyboard import StoryboardError, parse_storyboard

UPSCALER = "runway/magnific_video_upscaler_creative"


@pytest.fixture
def runway(prefect_server, tmp_path, monkeypatch):
    # a ledger of this test's own: the storyboard's budget counts its spend over every run
    monkeypatch.setenv("TAKEFLOW_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    sim = start_simulator("runway", latency=0.3)
    provider_class("runway")(**client_settings("runway", sim), first_poll=0.05, poll_interval=0.2).save(
        "runway", overwrite=True)
    yield sim
    sim.stop()
    provider_class("runway").delete("runway")


def board(**defaults):
    return parse_storyboard({
        "title": "Upscaled", "defaults": {"duration": 1, "fps": 12, "takes": 1, "delivery": "720p",
                                          "upscaler": UPSCALER, **defaults},
        "shots": [{"id": "dawn", "brief": "a harbour at dawn; static camera; soft pink light"},
                  {"id": "dusk", "brief": "a harbour at dusk; slow pan left; warm low sun"}]})


def run(storyboard, out, **options):
    from flows.produce import RunOptions, produce
    return produce(storyboard=storyboard, options=RunOptions(out_dir=str(out), **options), return_state=True)


def test_provider_upscale_end_to_end_and_a_rerun_pays_nothing(runway, tmp_path):
    state = run(board(), tmp_path)
    assert state.is_completed(), state.message
    folder = tmp_path / "upscaled"
    report = json.loads((folder / "report.json").read_text())
    assert report["estimate"] == 20  # previz is free; 2 x 1 s of upscale at 10 credits/s
    assert report["credits_spent"] == 20 and runway.creates == 2
    for shot in report["shots"]:
        upscale = shot["upscale"]
        assert upscale["model"] == "magnific_video_upscaler_creative" and upscale["credits"] == 10
        assert not upscale["from_cache"] and upscale["error"] is None and shot["credits_spent"] == 10
        take = next(t for t in shot["takes"] if t["take"] == shot["chosen"])
        assert probe(folder / take["file"]).height == 144 and probe(folder / upscale["file"]).height == 720
    assert [row["file"] for row in csv.DictReader((folder / "edit.csv").open())] == [
        Path(s["upscale"]["file"]).name for s in report["shots"]]  # the edit is cut from the upscaled clips
    final = probe(folder / "final.mp4")
    assert (final.width, final.height) == (1280, 720) and abs(final.duration - 2.0) <= 1 / 12
    assert "upscale" in report["timings"]

    again = run(board(), tmp_path / "again")
    assert again.is_completed(), again.message
    rerun = json.loads((tmp_path / "again" / "upscaled" / "report.json").read_text())
    assert runway.creates == 2 and rerun["credits_this_run"] == 0 and rerun["credits_spent"] == 20  # all runs
    assert all(s["upscale"]["from_cache"] for s in rerun["shots"])


def test_the_budget_gate_counts_the_upscale_and_stops_before_any_spend(runway, tmp_path):
    state = run(board(), tmp_path, budget=15)
    assert state.is_failed() and state.name == "BudgetExceeded"
    assert "needs 20 credits (20 of them upscaling) but budget 'project-upscaled' has 15 left" in state.message
    assert "defaults.upscaler: local" in state.message and "nothing was spent" in state.message
    assert runway.creates == 0 and not (tmp_path / "upscaled").exists()


def test_a_take_too_large_for_the_upscaler_is_refused_before_the_upscale_is_paid(runway, tmp_path, monkeypatch):
    """A catalogue of the team's own (TAKEFLOW_CATALOGUE) with a tighter input limit."""
    catalogue = yaml.safe_load(DEFAULT_PATH.read_text())
    catalogue["upscalers"][0]["max_input_mb"] = 0.001  # 1 KB: any real take is larger
    catalogue["upscalers"][0]["max_upload_mb"] = 0.001
    own = tmp_path / "catalogue.yaml"
    own.write_text(yaml.safe_dump(catalogue))
    monkeypatch.setenv("TAKEFLOW_CATALOGUE", str(own))
    state = run(board(), tmp_path)
    assert state.is_failed() and state.name == "InvalidInput"
    assert state.message.startswith("dawn: runway: ") and "upscale it locally instead" in state.message
    assert "set defaults.upscaler: local" in state.message and "nothing was spent on upscaling" in state.message
    assert runway.creates == 0 and runway.count("create") == 0
    report = json.loads((tmp_path / "upscaled" / "report.json").read_text())
    assert report["status"] == state.message and all(s["chosen"] for s in report["shots"])  # takes kept


def test_a_failed_upscale_is_reported_and_its_take_scaled_in_the_assembly(runway, tmp_path):
    from simulators.base import Fault

    runway.inject(Fault("fail", failure="moderation_output"))  # the first upscale task fails
    state = run(board(), tmp_path)
    assert state.is_completed(), state.message
    folder = tmp_path / "upscaled"
    report = json.loads((folder / "report.json").read_text())
    failed = [s["upscale"] for s in report["shots"] if s["upscale"]["error"]]
    assert len(failed) == 1 and "SAFETY.OUTPUT.VIDEO" in failed[0]["error"] and failed[0]["file"] is None
    # the other shot's upscale, and the failed one only if it cannot be told uncharged: Runway reports
    # cost.credits 0 for a SAFETY.OUTPUT failure; without that figure the ledger counts a failed Runway
    # task as charged (Runway documents no refunds for API tasks)
    assert runway.creates == 2 and report["credits_spent"] in (10, 20)
    final = probe(folder / "final.mp4")
    assert (final.width, final.height) == (1280, 720)


def test_takes_already_at_the_delivery_size_are_not_upscaled(runway, tmp_path):
    from blocks.previz import PrevizProvider

    PrevizProvider(render_height=720).save("previz", overwrite=True)
    try:
        state = run(board(duration=1), tmp_path)  # the shortest shot the checks allow at 12 fps
    finally:
        PrevizProvider(render_height=144).save("previz", overwrite=True)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "upscaled" / "report.json").read_text())
    assert report["estimate"] == 0 and runway.creates == 0
    assert all(s["upscale"] is None for s in report["shots"])


@pytest.mark.parametrize("defaults, words", [
    ({"upscaler": "runway/upscale_v1"}, "defaults.upscaler: 'runway/upscale_v1' is not an upscaler in the "
                                        "catalogue; use local or one of: runway/magnific_video_upscaler_creative"),
    ({"upscaler": "4x"}, "defaults.upscaler: '4x' is not an upscaler"),
])
def test_unknown_upscalers_are_refused_in_one_line(defaults, words):
    with pytest.raises(StoryboardError) as caught:
        board(**defaults)
    assert str(caught.value).startswith(words)


def test_shots_longer_than_the_upscaler_takes_are_refused(tmp_path, monkeypatch):
    catalogue = yaml.safe_load(DEFAULT_PATH.read_text())
    catalogue["upscalers"][0]["max_duration"] = 0.5
    own = tmp_path / "catalogue.yaml"
    own.write_text(yaml.safe_dump(catalogue))
    monkeypatch.setenv("TAKEFLOW_CATALOGUE", str(own))
    with pytest.raises(StoryboardError, match=r"^shots\[0\].duration: runway/magnific_video_upscaler_creative "
                                              r"upscales clips of at most 0.5 s, not 1 s; shorten the shot or "
                                              "set defaults.upscaler: local"):
        board()
