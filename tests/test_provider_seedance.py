"""SeedanceProvider against the ModelArk simulator on loopback: round trips, faults, refusals."""

from __future__ import annotations

import logging

import cv2
import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.seedance import SeedanceProvider
from simulators.base import Fault
from simulators.seedance import SeedanceSimulator
from tests.provider_faults import fault_id, transient_faults, open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

KEY = "key_MARKER_SECRET_seedance_0123456789"
FAST = "dreamina-seedance-2-0-fast-260128"


@pytest.fixture(scope="module")
def shared_sim():
    with SeedanceSimulator(latency=0.3, api_key=KEY, render_height=72) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim):
    shared_sim.faults.clear()
    shared_sim.requests.clear()
    shared_sim.creates = 0
    shared_sim.latency, shared_sim.queue_latency = 0.3, 0.0
    return shared_sim


def provider(sim, **overrides) -> SeedanceProvider:
    settings = dict(api_key=KEY, base_url=sim.url + "/api/v3", first_poll=0.05, poll_interval=0.2)
    return SeedanceProvider(**{**settings, **overrides})


def request(**overrides) -> GenerationRequest:
    base = dict(prompt="a lighthouse at dusk, slow push in", model=FAST, seed=7, duration=4, fps=24,
                aspect_ratio="16:9", resolution="480p")
    return GenerationRequest(**{**base, **overrides})


def test_text_to_video_round_trip(sim, tmp_path):
    block, req = provider(sim), request()
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == block.render_size(req) == (864, 496)
    assert info.frames >= 2 and sim.creates == 1
    assert result.credits == block.estimate_credits(req) == pytest.approx(0.031 * 4 * 100)
    task = list(sim.tasks.values())[-1]
    assert task.id.startswith("cgt-") and task.params["generate_audio"] is False
    assert (task.params["resolution"], task.params["ratio"], task.params["duration"], task.params["seed"]) \
        == ("480p", "16:9", 4, 7)
    assert not open_tasks()  # journal cleared after success


def test_image_to_video_round_trip(sim, tmp_path):
    image = tmp_path / "ref.png"
    cv2.imwrite(str(image), np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (180, 1)))
    block = provider(sim)
    req = request(aspect_ratio="9:16", reference_image=image, seed=8)
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == (496, 864) and sim.creates == 1
    assert result.credits == pytest.approx(0.031 * 4 * 100)


def test_credits_follow_reported_tokens_when_a_rate_is_set(sim, tmp_path):
    block = provider(sim, usd_per_million_tokens=4.0)
    result = block.generate(request(), tmp_path / "take.mp4")
    tokens = 864 * 496 * (24 * 4 + 1) // 1024  # what ModelArk reports for 4 s at 480p 16:9
    usd_to_credits = load_catalogue().providers["seedance"].credits_per_unit
    assert result.credits == pytest.approx(round(tokens * 4.0 / 1e6 * usd_to_credits, 4))


@pytest.mark.parametrize("fault", transient_faults(), ids=fault_id)
def test_faults_are_survived_with_one_create(sim, tmp_path, fault):
    sim.inject(fault)
    result = provider(sim).generate(request(), tmp_path / "take.mp4")
    assert probe(result.path).frames >= 2
    assert sim.creates == 1 and not sim.faults


@pytest.mark.parametrize("failure, kind, code", [
    ("moderation", "moderation", "SensitiveContentDetected"),
    ("insufficient_credits", "insufficient_credits", "AccountOverdueError"),
    ("invalid_input", "invalid_input", "InvalidParameter"),
])
def test_refused_creates_are_not_retried(sim, tmp_path, failure, kind, code):
    sim.inject(Fault("reject", failure=failure))
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient and code in str(caught.value)
    assert sim.count("create") == 1 and sim.creates == 0
    assert not (tmp_path / "take.mp4").exists()


def test_a_create_cut_off_after_sending_is_not_sent_again(sim, tmp_path):
    sim.inject(Fault("drop", on="create"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "unknown_outcome" and not caught.value.transient
    assert sim.count("create") == 1


def test_moderation_after_submit_fails_the_task(sim, tmp_path):
    sim.inject(Fault("fail", failure="moderation_output"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "moderation" and not caught.value.transient
    assert "OutputVideoSensitiveContentDetected" in str(caught.value)
    assert sim.creates == 1 and sim.count("download") == 0
    assert not open_tasks()


def test_requests_the_model_cannot_make_are_refused_before_spending(sim, tmp_path):
    block = provider(sim)
    for bad in (request(duration=3), request(resolution="1080p"), request(duration=4.5),
                request(model="seedance-9")):
        with pytest.raises(ProviderError) as caught:
            block.generate(bad, tmp_path / "take.mp4")
        assert caught.value.kind == "invalid_input" and not caught.value.transient
    assert sim.requests == []


def test_simulator_validates_like_modelark(sim):
    def create(body):
        return httpx.post(f"{sim.url}/api/v3/contents/generations/tasks", json=body,
                          headers={"Authorization": f"Bearer {KEY}"})
    text = {"type": "text", "text": "a boat --resolution 720p --duration 5"}
    ok = create({"model": FAST, "content": [text]})
    assert ok.status_code == 200 and ok.json()["id"].startswith("cgt-")
    for body, code in [
        ({"content": [text]}, "MissingParameter"),
        ({"model": "nope", "content": [text]}, "InvalidEndpointOrModel.NotFound"),
        ({"model": FAST, "content": [{"type": "text", "text": "a boat --duration 5s"}]}, "InvalidParameter"),
        ({"model": FAST, "content": [{"type": "text", "text": "a boat --resolution 1080p"}]}, "InvalidParameter"),
        ({"model": FAST, "content": [text], "generate_audio": "no"}, "InvalidParameter"),
        ({"model": FAST, "content": [text, {"type": "image_url", "role": "first_frame",
                                            "image_url": {"url": "data:image/PNG;base64,AAAA"}}]},
         "InvalidParameter"),
    ]:
        answer = create(body)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, body
        assert answer.json()["error"]["type"] == "BadRequest"
    task = httpx.get(f"{sim.url}/api/v3/contents/generations/tasks/{ok.json()['id']}",
                     headers={"Authorization": f"Bearer {KEY}"}).json()
    # the task started at its create, so a slow machine may see it already done
    assert task["status"] in ("queued", "running", "succeeded") and task["model"] == FAST


def test_deadline_cancels_a_queued_task(sim, tmp_path):
    sim.queue_latency = 30.0
    with pytest.raises(ProviderError) as caught:
        provider(sim, queue_timeout=0.3).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "timeout" and sim.count("cancel") == 1
    task = next(t for t in sim.tasks.values() if t.cancelled)
    assert sim.status(task)[0] == "cancelled"


def test_a_running_task_cannot_be_cancelled_and_the_timeout_still_stands(sim, tmp_path, caplog):
    sim.latency = 30.0
    with pytest.raises(ProviderError) as caught:
        provider(sim, generation_timeout=0.3).generate(request(seed=9), tmp_path / "take.mp4")
    assert caught.value.kind == "timeout" and sim.count("cancel") == 1
    assert "could not cancel" in caplog.text


@pytest.mark.parametrize("status, code, kind, retryable", [
    (429, "AccountRateLimitExceeded", "rate_limited", True),
    (429, "QuotaExceeded", "insufficient_credits", False),
    (429, "SetLimitExceeded", "insufficient_credits", False),
    (403, "AccountOverdueError", "insufficient_credits", True),
    (403, "AccessDenied", "auth", True),
    (401, "AuthenticationError", "auth", True),
    (400, "InputImageSensitiveContentDetected.PrivacyInformation", "moderation", True),
    (400, "InvalidEndpoint.ClosedEndpoint", "invalid_input", True),
    (404, "InvalidEndpointOrModel.NotFound", "invalid_input", True),
    (500, "InternalServiceError", "transient", True),
])
def test_error_codes_map_to_kinds(status, code, kind, retryable):
    response = httpx.Response(status, json={"error": {"code": code, "message": "m", "type": "t"}})
    block = SeedanceProvider(api_key=KEY)
    assert block.error_for(response).kind == kind
    assert block.retryable(response) is retryable


def test_the_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sim.inject(Fault("fail", failure="moderation_output"))
    good = provider(sim)
    with pytest.raises(ProviderError) as refused:
        good.generate(request(), tmp_path / "a.mp4")
    wrong = provider(sim, api_key="key_MARKER_SECRET_wrong")
    with pytest.raises(ProviderError) as unauthorised:
        wrong.generate(request(), tmp_path / "b.mp4")
    assert unauthorised.value.kind == "auth" and not unauthorised.value.transient
    for block, exc in ((good, refused.value), (wrong, unauthorised.value)):
        for text in (str(exc), repr(exc), repr(block), block.model_dump_json(), caplog.text):
            assert "MARKER_SECRET" not in text
