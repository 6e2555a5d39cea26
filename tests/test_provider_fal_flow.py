"""A storyboard routed to the fal simulator, end to end on a real Prefect server: takes from fal,
`model: auto` routed to fal, and fal's LTX upscaler bringing the chosen takes to the delivery size."""

from __future__ import annotations

import json

import pytest

from blocks.media import probe
from blocks.registry import provider_class
from simulators.serve import client_settings, start_simulator
from tasks.storyboard import parse_storyboard
from tests.conftest import EXAMPLES


@pytest.fixture
def fal(prefect_server):
    sim = start_simulator("fal", latency=0.3, render_height=72)
    provider_class("fal")(**client_settings("fal", sim), first_poll=0.05, poll_interval=0.2).save(
        "fal", overwrite=True)
    yield sim
    sim.stop()
    provider_class("fal").delete("fal")


def run(board, out):
    from flows.produce import RunOptions, produce
    return produce(storyboard=board, options=RunOptions(out_dir=str(out)), return_state=True)


def test_a_storyboard_on_fal_completes_with_fals_upscaler(fal, tmp_path):
    board = parse_storyboard({
        "title": "On Fal",
        "defaults": {"duration": 4, "fps": 24, "takes": 1, "delivery": "1080p", "quality_bar": 0.0,
                     "upscaler": "fal/ltx-2.5-upscale", "providers": ["fal"]},
        "shots": [
            {"id": "kite", "reference_image": "references/kite-meadow.jpg", "provider": "fal", "model": "veo3.1",
             "brief": "a red kite climbs; static camera; bright midday sun"},
            {"id": "oak", "brief": "a lone oak on a hill; slow dolly in; warm dusk light", "model": "auto",
             "duration": 5},
        ]}, EXAMPLES)
    state = run(board, tmp_path)
    assert state.is_completed(), state.message
    folder = tmp_path / "on-fal"
    report = json.loads((folder / "report.json").read_text())
    kite, oak = report["shots"]
    assert {t["provider"] for s in report["shots"] for t in s["takes"]} == {"fal"}
    assert kite["takes"][0]["model"] == "veo3.1"
    assert oak["takes"][0]["model"] == "seedance-v1.5-pro"  # auto: the cheapest fal model for 5 s of 16:9
    assert kite["takes"][0]["credits"] == 80 and oak["takes"][0]["credits"] == 26  # $0.20/s x 4, $0.052/s x 5
    # both 720p takes are brought to 1080p by fal's LTX upscaler at $0.08 per second
    for shot, seconds in ((kite, 4), (oak, 5)):
        assert shot["upscale"]["model"] == "ltx-2.5-upscale" and shot["upscale"]["credits"] == 8 * seconds
        assert probe(folder / shot["upscale"]["file"]).height == 1080
    endpoints = sorted(t.extra["endpoint"] for t in fal.tasks.values())
    assert endpoints == sorted(["fal-ai/veo3.1/image-to-video", "fal-ai/bytedance/seedance/v1.5/pro/text-to-video",
                                "lightricks/ltx-2.5/upscale", "lightricks/ltx-2.5/upscale"])
    final = probe(folder / "final.mp4")
    assert (final.width, final.height) == (1920, 1080)
    assert report["credits_spent"] == 80 + 26 + 32 + 40
