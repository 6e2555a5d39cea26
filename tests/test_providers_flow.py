"""Hosted providers inside the produce flow, against their simulators on a real Prefect server:
takes of one storyboard (and of one shot) mix providers, a 40-take fan-out stays inside the
provider's concurrency limit, keys never leak, and a retired or unconfigured provider stops the
run before anything is spent."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.registry import provider_class
from simulators.serve import client_settings, start_simulator
from tasks.storyboard import StoryboardError, parse_storyboard
from tests.conftest import EXAMPLES

MARKER = "key_" + "5ec7e7" * 21 + "00"  # a well-formed Runway key that is easy to grep for


@pytest.fixture
def sims(prefect_server):
    """Runway, Kling and Veo simulators with saved blocks pointing at them; removed afterwards."""
    started = {"runway": start_simulator("runway", latency=0.3, api_key=MARKER),
               "kling": start_simulator("kling", latency=0.3),
               "veo": start_simulator("veo", latency=0.3)}
    for name, sim in started.items():
        provider_class(name)(**client_settings(name, sim), first_poll=0.05, poll_interval=0.2).save(
            name, overwrite=True)
    yield started
    for name, sim in started.items():
        sim.stop()
        provider_class(name).delete(name)


def run(board, out, **options):
    from flows.produce import RunOptions, produce
    return produce(storyboard=board, options=RunOptions(out_dir=str(out), **options), return_state=True)


def flow_logs(flow_run_id) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def test_storyboard_mixes_providers_and_reports_their_costs(sims, tmp_path):
    board = parse_storyboard({
        "title": "Mixed Providers",
        "defaults": {"duration": 5, "fps": 24, "takes": 2, "delivery": "720p", "quality_bar": 0.0},
        "shots": [
            {"id": "kite", "reference_image": "references/kite-meadow.jpg", "duration": 4,
             "models": ["runway/gen4.5", "veo/veo-3.1-fast-generate-preview"],
             "brief": "a red kite climbs; static camera; bright midday sun"},
            {"id": "hill", "brief": "a lone oak on a hill; slow dolly in; warm dusk light",
             "provider": "kling", "model": "kling-v2-5-turbo"},
        ]}, EXAMPLES)
    state = run(board, tmp_path)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "mixed-providers" / "report.json").read_text())
    kite, hill = report["shots"]
    assert [t["provider"] for t in kite["takes"]] == ["runway", "veo"]  # takes of one shot mix models
    assert {t["provider"] for t in hill["takes"]} == {"kling"}
    assert all(t["credits"] > 0 and t["file"] for s in report["shots"] for t in s["takes"])
    assert kite["takes"][0]["credits"] == 48  # Runway's own cost report: gen4.5, 4 s at 12 credits/s
    assert sims["runway"].creates == 1 and sims["veo"].creates == 1 and sims["kling"].creates == 2
    assert probe(tmp_path / "mixed-providers" / "final.mp4").height == 720
    # the key never reaches logs, the report, artifacts or saved results
    assert MARKER not in flow_logs(state.state_details.flow_run_id)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".md")
                and MARKER in p.read_text(errors="ignore")]


def test_forty_take_fan_out_stays_inside_the_concurrency_limit(prefect_server, tmp_path):
    from prefect import flow, get_client
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks.generate import ensure_limits, generate_take

    sim = start_simulator("runway", latency=0.2, concurrency=3)
    provider = provider_class("runway")(**client_settings("runway", sim), first_poll=0.05, poll_interval=0.1,
                                        max_concurrency=3)
    requests = [GenerationRequest(prompt="a kite; static camera; noon light", model="gen4.5", seed=n,
                                  duration=2, fps=8, aspect_ratio="16:9") for n in range(40)]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def fan_out() -> list:
        ensure_limits({"runway": provider})
        futures = [generate_take.submit(provider, r, "fan", n, tmp_path / f"take{n}.mp4")
                   for n, r in enumerate(requests)]
        return [f.result() for f in futures]

    try:
        results = fan_out()
    finally:
        sim.stop()
    assert len(results) == 40 and all(Path(r.path).is_file() for r in results)
    assert sim.creates == 40
    assert sim.peak_active <= 3  # never more in flight than the limit, so never THROTTLED
    with get_client(sync_client=True) as client:  # and the slots go back once the fan-out is over
        deadline = time.monotonic() + 10
        while client.read_global_concurrency_limit_by_name("tag:provider-runway").active_slots:
            assert time.monotonic() < deadline, "tag:provider-runway slots were not returned"
            time.sleep(0.1)


def test_missing_key_stops_the_run_before_any_spend(prefect_server, tmp_path):
    board = parse_storyboard({"title": "No Key", "defaults": {"provider": "ltx", "model": "ltx-2-fast",
                                                             "duration": 6},
                              "shots": [{"brief": "a fox; slow pan left; dusk light"}]}, EXAMPLES)
    state = run(board, tmp_path)
    assert state.is_failed() and state.name == "InvalidInput"
    assert "ltx" in state.message and "key" in state.message and "nothing was spent" in state.message


def test_retired_sora_fails_fast_and_auto_never_picks_it(prefect_server, tmp_path):
    board = parse_storyboard({"title": "Retired", "defaults": {"provider": "sora", "model": "sora-2",
                                                              "duration": 4},
                              "shots": [{"brief": "a fox; slow pan left; dusk light"}]}, EXAMPLES)
    provider = provider_class("sora")(api_key=secrets.token_hex(8))
    with pytest.raises(Exception, match="retired|shut down"):
        provider.estimate_credits(GenerationRequest(prompt="x", model="sora-2", seed=1, duration=4, fps=24,
                                                    aspect_ratio="16:9"))
    state = run(board, tmp_path)
    assert state.is_failed() and state.name == "InvalidInput" and "2026-09-24" in state.message
    with pytest.raises(StoryboardError, match="no model among sora offers"):
        parse_storyboard({"title": "Auto", "defaults": {"model": "auto", "duration": 4, "providers": ["sora"]},
                          "shots": [{"brief": "a fox; slow pan left; dusk light"}]}, EXAMPLES)
