"""The runs that stop tell the UI and automations why: a budget refusal emits
`takeflow.budget.exceeded` on the budget, a shot with no acceptable take emits
`takeflow.shot.no-acceptable-take` and still puts its contact sheet on the run."""

from __future__ import annotations

import time

import cv2
import httpx
import numpy as np

from tasks.storyboard import parse_storyboard
from tests.test_produce import run, storyboard


def _events(api_url: str, flow_run_id, name: str, count: int) -> list[dict]:
    """The run's events of that name, once `count` are stored (the server persists in batches)."""
    deadline = time.monotonic() + 60
    while True:
        events = httpx.post(f"{api_url}/events/filter", timeout=30, json={"filter": {
            "related": {"resources_in_roles": [[f"prefect.flow-run.{flow_run_id}", "flow-run"]]},
            "event": {"name": [name]}}, "limit": 50}).json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(1)


def test_a_budget_refusal_emits_budget_exceeded(prefect_server, tmp_path):
    from blocks.previz import PrevizProvider

    PrevizProvider(render_height=144, credits_per_second=10).save("previz", overwrite=True)
    try:
        state = run(storyboard(), tmp_path, budget=50)
    finally:
        PrevizProvider(render_height=144).save("previz", overwrite=True)
    assert state.name == "BudgetExceeded"
    [event] = _events(prefect_server["api_url"], state.state_details.flow_run_id, "takeflow.budget.exceeded", 1)
    assert event["resource"]["prefect.resource.id"] == "takeflow.budget.project-test-reel"
    assert event["payload"]["limit"] == 50 and event["payload"]["message"] == state.message
    assert event["payload"]["project"] == "test-reel"


def test_no_acceptable_take_emits_its_event_and_shows_the_contact_sheet(prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((90, 160, 3), np.uint8))
    board = parse_storyboard({"title": "Night Events", "defaults": {"duration": 1, "fps": 12, "takes": 2,
                                                                    "extra_takes": 0},
                              "shots": [{"id": "void", "brief": "a dark room; slow pan left; no light",
                                         "reference_image": "black.png"}]}, tmp_path)
    state = run(board, tmp_path)
    assert state.name == "NoAcceptableTake"
    run_id = state.state_details.flow_run_id
    [event] = _events(prefect_server["api_url"], run_id, "takeflow.shot.no-acceptable-take", 1)
    assert event["resource"]["prefect.resource.id"] == "takeflow.shot.night-events.void"
    assert "no take passed QC" in event["payload"]["reason"]
    assert [t["take"] for t in event["payload"]["takes"]] == [1, 2]
    assert not _events(prefect_server["api_url"], run_id, "takeflow.shot.selected", 0)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    sheets = [a for a in artifacts if a.key == "night-events-void-sheet"]
    assert len(sheets) == 1 and sheets[0].type == "image" and sheets[0].data.startswith("data:image/jpeg;base64,")
    assert "NoAcceptableTake" in sheets[0].description
