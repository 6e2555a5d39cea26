"""The Runway adapter against the Runway simulator on loopback (and the official SDK against both)."""

from __future__ import annotations

import logging
import time

import cv2
import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.runway import RunwayProvider, failure_kind
from simulators.base import Fault
from simulators.runway import VERSION, RunwaySimulator
from tests.provider_faults import fault_id, transient_faults, open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

MARKER = "key_MARKER_SECRET_" + "c0ffee" * 8
T2V = GenerationRequest(prompt="a lighthouse on a cliff at dusk, slow push in", model="gen4.5", seed=7,
                        duration=2, fps=24, aspect_ratio="16:9")


def make_provider(sim: RunwaySimulator, **settings) -> RunwayProvider:
    return RunwayProvider(api_key=settings.pop("api_key", sim.api_key), base_url=sim.url, first_poll=0.05,
                          poll_interval=0.2, **settings)


@pytest.fixture(scope="module")
def sim():
    with RunwaySimulator(latency=0.3, seed=1) as simulator:
        yield simulator


@pytest.fixture
def runway(sim):
    sim.faults.clear()
    provider = make_provider(sim)
    yield provider
    provider.close()


@pytest.fixture
def reference(tmp_path):
    image = np.zeros((320, 320, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 320, dtype=np.uint8)
    cv2.circle(image, (160, 160), 60, (30, 60, 220), -1)
    path = tmp_path / "ref.png"
    cv2.imwrite(str(path), image)
    return path


def last_task(sim: RunwaySimulator):
    return list(sim.tasks.values())[-1]


# ---- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("request_", [
    T2V,
    T2V.model_copy(update={"model": "veo3.1", "duration": 4, "aspect_ratio": "9:16", "audio": True}),
], ids=["gen4.5", "veo3.1-audio"])
def test_text_to_video_round_trip(sim, runway, tmp_path, request_):
    creates = sim.creates
    result = runway.generate(request_, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == runway.render_size(request_)
    assert info.frames >= 2 and result.model == request_.model
    task = last_task(sim)
    assert sim.creates - creates == 1
    assert result.credits == task.extra["credits"] == runway.estimate_credits(request_)
    sent = task.params
    assert sent["ratio"] == "{}:{}".format(*runway.render_size(request_))
    assert sent["duration"] == request_.duration
    assert isinstance(sent["duration"], int) and sent["seed"] == 7 and "promptImage" not in sent
    assert sent.get("audio") is (True if request_.model == "veo3.1" else None)
    assert not open_tasks()


def test_image_to_video_round_trip(sim, runway, tmp_path, reference):
    request = T2V.model_copy(update={"model": "gen4_turbo", "aspect_ratio": "1:1",
                                     "reference_image": reference})
    result = runway.generate(request, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == (960, 960) == runway.render_size(request)
    assert result.credits == 10 == load_catalogue().credits("runway", "gen4_turbo", 2)
    sent = last_task(sim).params
    assert sent["promptImage"].startswith("data:image/png;base64,") and sent["ratio"] == "960:960"


# ---- faults: retried, and never a second create --------------------------------------------------


@pytest.mark.parametrize("fault", transient_faults(), ids=fault_id)
def test_faults_are_retried_with_one_create(sim, runway, tmp_path, fault):
    creates = sim.creates
    sim.inject(fault)
    result = runway.generate(T2V, tmp_path / "take.mp4")
    assert probe(result.path).width == 1280
    assert sim.creates - creates == 1 and not sim.faults


# ---- refusals: the right kind, not transient, one create ------------------------------------------


@pytest.mark.parametrize("fault, kind, code", [
    (Fault("reject", failure="moderation"), "moderation", "INPUT_PREPROCESSING.SAFETY.TEXT"),
    (Fault("fail", failure="moderation"), "moderation", "SAFETY.INPUT.TEXT"),
    (Fault("fail", failure="moderation_output"), "moderation", "SAFETY.OUTPUT.VIDEO"),
    (Fault("fail", failure="invalid_input"), "invalid_input", "ASSET.INVALID"),
    (Fault("fail", failure="bad_output"), "bad_output", "INTERNAL.BAD_OUTPUT.CODE01"),
], ids=lambda v: v if isinstance(v, str) else f"{v.kind}-{v.failure}")
def test_failed_tasks_are_classified(sim, runway, tmp_path, fault, kind, code):
    creates, requests = sim.creates, sim.count("create")
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        runway.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient and code in str(caught.value)
    assert sim.creates - creates == 1 and sim.count("create") - requests == 1
    assert not open_tasks()  # a retry starts afresh


@pytest.mark.parametrize("fault, kind, words", [
    (Fault("reject", failure="insufficient_credits"), "insufficient_credits", "enough credits"),
    (Fault("reject", failure="invalid_input"), "invalid_input", "promptImage"),
], ids=["no-credits", "invalid"])
def test_refused_creates_are_classified(sim, runway, tmp_path, fault, kind, words):
    creates, requests = sim.creates, sim.count("create")
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        runway.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient and words in str(caught.value)
    assert sim.count("create") - requests == 1 and sim.creates == creates


def test_the_simulator_validates_like_the_api(sim, runway, tmp_path, reference):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image" * 10)
    request = T2V.model_copy(update={"model": "gen4_turbo", "reference_image": broken})
    with pytest.raises(ProviderError, match="promptImage: the image could not be decoded") as caught:
        runway.generate(request, tmp_path / "take.mp4")
    assert caught.value.kind == "invalid_input"
    headers = {"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}
    body = {"model": "gen4.5", "promptText": "x", "ratio": "1280:720", "duration": 2}
    for change, field in [({"ratio": "960:960"}, "ratio"), ({"duration": 2.0}, "duration"),
                          ({"duration": 11}, "duration"), ({"seed": "7"}, "seed"), ({"audio": True}, "audio"),
                          ({"promptText": "x" * 1001}, "promptText"), ({"model": "gen4_turbo"}, "model")]:
        answer = httpx.post(f"{sim.url}/v1/text_to_video", json={**body, **change}, headers=headers)
        assert answer.status_code == 400 and field in answer.json()["error"], change
    for version in ({}, {"X-Runway-Version": "2023-01-01"}):
        answer = httpx.post(f"{sim.url}/v1/text_to_video", json=body,
                            headers={"Authorization": headers["Authorization"], **version})
        assert answer.status_code == 400 and "X-Runway-Version" in answer.json()["error"]


@pytest.mark.parametrize("change, words", [
    ({"aspect_ratio": "1:1"}, "no 1:1"), ({"duration": 2.5}, "not 2.5 s"), ({"duration": 12}, "not 12 s"),
    ({"model": "gen4_turbo"}, "needs a reference image"), ({"audio": True}, "makes no sound"),
    ({"resolution": "1080p"}, "does not generate at 1080p"), ({"prompt": "x" * 1001}, "at most 1000"),
    ({"model": "gen5"}, "not a runway model"),
])
def test_requests_the_api_would_refuse_are_refused_before_sending(sim, runway, tmp_path, change, words):
    requests = len(sim.requests)
    with pytest.raises(ProviderError, match=words) as caught:
        runway.generate(T2V.model_copy(update=change), tmp_path / "take.mp4")
    assert caught.value.kind == "invalid_input" and len(sim.requests) == requests


@pytest.mark.parametrize("code, kind", [
    ("SAFETY.INPUT.IMAGE", "moderation"), ("SAFETY.OUTPUT.VIDEO", "moderation"),
    ("INPUT_PREPROCESSING.SAFETY.TEXT", "moderation"), ("ASSET.INVALID", "invalid_input"),
    ("INTERNAL.BAD_OUTPUT.CODE01", "bad_output"), ("INTERNAL", "transient"),
    ("INPUT_PREPROCESSING.INTERNAL", "transient"), (None, "transient"),
])
def test_failure_codes(code, kind):
    assert failure_kind(code) == kind


# ---- secrets -----------------------------------------------------------------------------------


def test_the_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    refused = make_provider(sim, api_key=MARKER)
    with pytest.raises(ProviderError) as caught:
        refused.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.kind == "auth" and not caught.value.transient
    sim.keys.add(MARKER)
    try:
        accepted = make_provider(sim, api_key=MARKER)
        accepted.generate(T2V, tmp_path / "ok.mp4")
        texts = [str(caught.value), repr(refused), refused.model_dump_json(), str(refused.model_dump()),
                 repr(caught.value.__reduce__()), caplog.text]
        assert caplog.text and all(MARKER not in text and "MARKER_SECRET" not in text for text in texts)
    finally:
        sim.keys.discard(MARKER)


# ---- throttling and deadlines --------------------------------------------------------------------


def test_throttled_time_does_not_count_against_the_deadline(tmp_path):
    other = "key_" + "ab" * 64
    with RunwaySimulator(latency=0.3, concurrency=1, model_latency={"veo3.1_fast": 2.0},
                         extra_keys=(other,)) as sim:
        headers = {"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}
        body = {"model": "veo3.1_fast", "promptText": "blocker", "ratio": "1280:720", "duration": 4}
        blocker = httpx.post(f"{sim.url}/v1/text_to_video", json=body, headers=headers).json()["id"]
        assert httpx.get(f"{sim.url}/v1/tasks/{blocker}", headers=headers).json()["status"] == "RUNNING"
        # the concurrency budget is per key: another key's task runs at once
        mine = {**headers, "Authorization": f"Bearer {other}"}
        theirs = httpx.post(f"{sim.url}/v1/text_to_video", json=body, headers=mine).json()["id"]
        assert httpx.get(f"{sim.url}/v1/tasks/{theirs}", headers=mine).json()["status"] == "RUNNING"
        runway = make_provider(sim, generation_timeout=1.0)
        started = time.perf_counter()
        result = runway.generate(T2V, tmp_path / "take.mp4")
        assert time.perf_counter() - started > 1.5 and probe(result.path).width == 1280
        seen = last_task(sim).extra["seen"]
        assert seen[0] == "THROTTLED" and seen.count("THROTTLED") >= 3 and seen[-1] == "SUCCEEDED"


def test_a_task_running_past_the_deadline_is_cancelled(tmp_path):
    with RunwaySimulator(latency=60) as sim:
        runway = make_provider(sim, generation_timeout=0.5)
        with pytest.raises(ProviderError) as caught:
            runway.generate(T2V, tmp_path / "take.mp4")
        assert caught.value.kind == "timeout" and not caught.value.transient
        assert sim.count("cancel") == 1
        task = last_task(sim)
        headers = {"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}
        polled = httpx.get(f"{sim.url}/v1/tasks/{task.id}", headers=headers).json()
        assert polled["status"] == "CANCELLED" and polled["cost"]["credits"] == 24  # running: not refunded


# ---- the official SDK against the simulator ------------------------------------------------------


def test_the_runwayml_sdk_runs_against_the_simulator(tmp_path, reference):
    runwayml = pytest.importorskip("runwayml")
    from blocks.remote import data_uri

    with RunwaySimulator(latency=0.2) as sim:
        client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url)
        pending = client.text_to_video.create(model="gen4.5", prompt_text="a paper boat", ratio="720:1280",
                                              duration=2)
        created = client.image_to_video.create(model="gen4_turbo", prompt_image=data_uri(reference),
                                               prompt_text="the ball rolls", ratio="960:960", duration=2)
        done = created.wait_for_task_output(timeout=30)  # sleeps its 6 +- 1.5 s, then polls once
        assert done.status == "SUCCEEDED" and done.cost.credits == 10
        video = tmp_path / "sdk.mp4"
        video.write_bytes(httpx.get(done.output[0]).content)
        assert (probe(video).width, probe(video).height) == (960, 960)
        again = client.tasks.retrieve(created.id)
        assert again.status == "SUCCEEDED" and again.output and again.created_at.year >= 2024
        assert client.tasks.retrieve(pending.id).status == "SUCCEEDED"
        client.tasks.delete(pending.id)
        assert client.tasks.retrieve(pending.id).status == "CANCELLED"
        with pytest.raises(runwayml.BadRequestError):
            client.text_to_video.create(model="gen4.5", prompt_text="x", ratio="960:960", duration=2)
        with pytest.raises(runwayml.AuthenticationError):
            runwayml.RunwayML(api_key="key_" + "0" * 128, base_url=sim.url, max_retries=0).tasks.retrieve(
                created.id)
