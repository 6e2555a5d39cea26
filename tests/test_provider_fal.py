"""The fal.ai adapter against the fal queue simulator on loopback: every catalogue model, the queue
lifecycle, refusals in fal's shapes, faults, cancel, the LTX upscaler, and the key kept secret."""

from __future__ import annotations

import logging
import time

import cv2
import ffmpeg
import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.fal import ENDPOINTS, FalProvider
from blocks.media import H264_OUTPUT, probe, run_ffmpeg
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.super_resolution import UpscaleRequest
from simulators.base import Fault
from simulators.fal import FalSimulator
from tests.provider_faults import fault_id, transient_faults

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

MARKER = "MARKER-SECRET-0000:" + "c0ffee" * 6
T2V = GenerationRequest(prompt="a harbour at dawn, slow pan left, soft light", model="veo3.1", seed=5,
                        duration=4, fps=24, aspect_ratio="16:9")
FAL = load_catalogue().models_of("fal")


def make_provider(sim: FalSimulator, **settings) -> FalProvider:
    return FalProvider(api_key=settings.pop("api_key", sim.api_key), base_url=sim.url, first_poll=0.05,
                       poll_interval=0.2, **settings)


@pytest.fixture(scope="module")
def sim():
    with FalSimulator(latency=0.2, render_height=36, seed=3) as simulator:
        yield simulator


@pytest.fixture
def fal(sim):
    sim.faults.clear()
    provider = make_provider(sim)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 640, dtype=np.uint8)
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    cv2.imwrite(str(path), image)
    return path


def clip(path, width, height, seconds=1.0, fps=24):
    stream = ffmpeg.input(f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}", f="lavfi")
    run_ffmpeg(ffmpeg.output(stream, str(path), **{**H264_OUTPUT, "preset": "ultrafast"}).overwrite_output()
               .global_args("-loglevel", "error"), "test clip")
    return path


# ---- every catalogue model, text and image to video ----------------------------------------------


@pytest.mark.parametrize("entry", FAL, ids=lambda e: e.model)
def test_every_catalogue_model_round_trips(sim, fal, tmp_path, reference, entry):
    for image in (None, reference):
        aspect = "16:9"
        request = GenerationRequest(prompt="a kite over a meadow", model=entry.model, seed=2, fps=24,
                                    duration=min(entry.durations), aspect_ratio=aspect, reference_image=image,
                                    audio=entry.audio == "optional")
        creates = sim.creates
        result = fal.generate(request, tmp_path / f"{image is not None}.mp4")
        info = probe(result.path)
        assert (info.width, info.height) == fal.render_size(request), entry.model
        assert sim.creates - creates == 1 and result.credits == fal.estimate_credits(request) > 0
        task = list(sim.tasks.values())[-1]
        spec = ENDPOINTS[entry.model]
        assert task.extra["endpoint"] == (spec.i2v if image else spec.t2v)
        assert (spec.image in task.params) == (image is not None)


def test_the_queue_urls_sit_under_the_app_id_and_the_statuses_are_fals(sim, reference):
    headers = {"Authorization": f"Key {sim.api_key}"}
    body = {"prompt": "x", "duration": "5", "start_image_url": None}
    body.pop("start_image_url")
    # wide enough windows that polls every 0.05 s see each state even on a loaded machine: the task
    # starts when its queue time is over, not when a poll first looks
    latency, sim.queue_latency, sim.latency = sim.latency, 0.5, 1.0
    try:
        submitted = httpx.post(f"{sim.url}/fal-ai/kling-video/v3/pro/text-to-video", json=body, headers=headers).json()
        assert submitted["status_url"].startswith(f"{sim.url}/fal-ai/kling-video/requests/")
        seen = []
        while not seen or seen[-1] != "COMPLETED":
            seen.append(httpx.get(submitted["status_url"], headers=headers).json()["status"])
            time.sleep(0.05)
        assert seen[0] == "IN_QUEUE" and "IN_PROGRESS" in seen
    finally:
        sim.queue_latency, sim.latency = 0.0, latency
    result = httpx.get(submitted["response_url"], headers=headers).json()
    assert result["video"]["url"] and result["video"]["content_type"] == "video/mp4"
    assert httpx.post(f"{sim.url}/fal-ai/no-such-app/text-to-video", json=body, headers=headers).status_code == 404


@pytest.mark.parametrize("body, field, kind", [
    ({"prompt": "x", "duration": "7"}, "duration", "literal_error"),             # 5 or 10 only
    ({"prompt": "x", "duration": 5}, "duration", "literal_error"),               # a string, not an int
    ({"duration": "5"}, "prompt", "missing"),
    ({"prompt": "x", "resolution": "4k"}, None, None),                           # ignored: v2.5 has no resolution
], ids=["duration", "duration-type", "prompt", "extra"])
def test_bad_inputs_complete_with_fals_422(sim, body, field, kind):
    headers = {"Authorization": f"Key {sim.api_key}"}
    submitted = httpx.post(f"{sim.url}/fal-ai/kling-video/v2.5-turbo/pro/text-to-video", json=body,
                           headers=headers).json()
    deadline = time.monotonic() + 10
    while httpx.get(submitted["status_url"], headers=headers).json()["status"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = httpx.get(submitted["response_url"], headers=headers)
    if field is None:
        assert result.status_code == 200
        return
    assert result.status_code == 422 and result.headers["X-Fal-Retryable"] == "false"
    detail = result.json()["detail"][0]
    assert detail["loc"] == ["body", field] and detail["type"] == kind and detail["msg"]
    assert sim.charged.get(submitted["request_id"]) is None  # fal bills only successful outputs


@pytest.mark.parametrize("change, words", [
    ({"duration": 5}, "makes 4-8 s in steps of 2 clips, not 5 s"), ({"aspect_ratio": "1:1"}, "no 1:1"),
    ({"resolution": "4k"}, "does not generate at 4k"), ({"model": "sora-2"}, "not a fal model"),
])
def test_requests_fal_would_refuse_are_refused_before_sending(sim, fal, tmp_path, change, words):
    requests = len(sim.requests)
    with pytest.raises(ProviderError, match=words) as caught:
        fal.generate(T2V.model_copy(update=change), tmp_path / "take.mp4")
    assert caught.value.kind == "invalid_input" and len(sim.requests) == requests


# ---- faults, moderation, auth, cancel ------------------------------------------------------------


@pytest.mark.parametrize("fault", transient_faults(), ids=fault_id)
def test_transient_faults_are_retried_with_one_create(sim, fal, tmp_path, fault):
    creates = sim.creates
    sim.inject(fault)
    result = fal.generate(T2V, tmp_path / "take.mp4")
    assert probe(result.path).width == 1280 and sim.creates - creates == 1 and not sim.faults


@pytest.mark.parametrize("fault", [Fault("reject", failure="moderation"), Fault("fail", failure="moderation")],
                         ids=["at-submit", "while-running"])
def test_moderation_is_final_and_not_charged(sim, fal, tmp_path, fault):
    sim.inject(fault)
    with pytest.raises(ProviderError, match="content policy") as caught:
        fal.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.kind == "moderation" and not caught.value.transient
    assert list(sim.tasks)[-1] not in sim.charged
    assert not (tmp_path / "take.mp4.task.json").exists()


def test_a_failed_run_is_transient_and_starts_afresh(sim, fal, tmp_path):
    sim.inject(Fault("fail", failure="internal"))
    with pytest.raises(ProviderError) as caught:
        fal.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.transient and not (tmp_path / "take.mp4.task.json").exists()


def test_the_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    refused = make_provider(sim, api_key=MARKER)
    with pytest.raises(ProviderError) as caught:
        refused.generate(T2V, tmp_path / "take.mp4")
    assert caught.value.kind == "auth" and not caught.value.transient
    texts = [str(caught.value), repr(refused), refused.model_dump_json(), repr(caught.value.__reduce__()),
             caplog.text]
    assert all("MARKER-SECRET" not in text for text in texts)


def test_a_request_past_its_deadline_is_cancelled_while_queued(tmp_path):
    with FalSimulator(latency=0.1, queue_latency=60, render_height=36) as sim:
        fal = make_provider(sim, queue_timeout=0.5)
        with pytest.raises(ProviderError) as caught:
            fal.generate(T2V, tmp_path / "take.mp4")
        assert caught.value.kind == "timeout" and sim.count("cancel") == 1
        task = list(sim.tasks.values())[-1]
        assert task.cancelled
        headers = {"Authorization": f"Key {sim.api_key}"}
        answer = httpx.put(f"{sim.url}/fal-ai/veo3.1/requests/{task.id}/cancel", headers=headers)
        assert answer.status_code == 400 and answer.json() == {"status": "ALREADY_COMPLETED"}


# ---- the LTX upscaler ----------------------------------------------------------------------------


def test_the_ltx_upscaler_brings_a_take_to_1080p(sim, fal, tmp_path):
    source = clip(tmp_path / "take.mp4", 1280, 720)
    request = UpscaleRequest(source=source, model="ltx-2.5-upscale", resolution="1080p", duration=1.0)
    creates = sim.creates
    result = fal.upscale(request, tmp_path / "up.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == (1920, 1080) and sim.creates - creates == 1
    assert result.credits == 8.0 == fal.estimate_upscale_credits("ltx-2.5-upscale", "1080p", 1.0)
    task = list(sim.tasks.values())[-1]
    assert task.params["resolution"] == "1080p" and task.params["video_url"].startswith("data:video/mp4;base64,")


@pytest.mark.parametrize("size, resolution, words", [
    ((640, 360), "1080p", "short side is 360 px"), ((1280, 720), "1440p", "does not upscale to 1440p"),
])
def test_the_upscaler_refuses_what_fal_refuses_before_sending(sim, fal, tmp_path, size, resolution, words):
    source = clip(tmp_path / "take.mp4", *size)
    requests = len(sim.requests)
    with pytest.raises(ProviderError, match=words) as caught:
        fal.upscale(UpscaleRequest(source=source, model="ltx-2.5-upscale", resolution=resolution, duration=1),
                    tmp_path / "up.mp4")
    assert caught.value.kind == "invalid_input" and len(sim.requests) == requests


def test_the_simulator_refuses_a_small_upscale_input_in_fals_shape(sim, tmp_path):
    import base64

    source = clip(tmp_path / "small.mp4", 640, 360)
    headers = {"Authorization": f"Key {sim.api_key}"}
    uri = "data:video/mp4;base64," + base64.b64encode(source.read_bytes()).decode()
    submitted = httpx.post(f"{sim.url}/lightricks/ltx-2.5/upscale", json={"video_url": uri, "resolution": "4k"},
                           headers=headers).json()
    assert submitted["status_url"].startswith(f"{sim.url}/lightricks/ltx-2.5/requests/")
    time.sleep(0.1)
    result = httpx.get(submitted["response_url"], headers=headers)
    assert result.status_code == 422 and result.json()["detail"][0]["type"] == "video_too_small"
