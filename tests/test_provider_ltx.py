"""LtxProvider against the LTX simulator on loopback: the synchronous create that answers with
the video, its retries before the body starts, and never a second create once it may be charged."""

from __future__ import annotations

import logging
import threading

import cv2
import httpx
import numpy as np
import pytest

from blocks.ltx import LtxProvider
from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from simulators.base import Fault
from simulators.ltx import LtxSimulator

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

KEY = "key_MARKER_SECRET_ltx_0123456789"
FAST = "ltx-2-5-fast"  # 2 s clips keep the simulator's renders cheap


@pytest.fixture(scope="module")
def shared_sim():
    with LtxSimulator(latency=0.3, api_key=KEY, render_height=72) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim):
    shared_sim.faults.clear()
    shared_sim.requests.clear()
    shared_sim.creates = 0
    shared_sim.latency, shared_sim.concurrency = 0.3, None
    return shared_sim


def provider(sim, **overrides) -> LtxProvider:
    return LtxProvider(**{**dict(api_key=KEY, base_url=sim.url), **overrides})


def request(**overrides) -> GenerationRequest:
    base = dict(prompt="rain on a tin roof, static shot", model=FAST, seed=3, duration=2, fps=25,
                aspect_ratio="16:9", resolution="1080p")
    return GenerationRequest(**{**base, **overrides})


def test_text_to_video_round_trip(sim, tmp_path):
    block, req = provider(sim), request()
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == block.render_size(req) == (1920, 1080)
    assert info.frames == 50 and sim.creates == 1 and sim.count("create") == 1
    assert result.credits == block.estimate_credits(req) == pytest.approx(0.09 * 2 * 100)
    task = list(sim.tasks.values())[-1]
    assert task.params["generate_audio"] is False and task.params["fps"] == 25


def test_image_to_video_portrait_round_trip(sim, tmp_path):
    image = tmp_path / "ref.png"
    cv2.imwrite(str(image), np.tile(np.linspace(0, 255, 180, dtype=np.uint8), (320, 1)))
    result = provider(sim).generate(request(aspect_ratio="9:16", reference_image=image), tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == (1080, 1920) and sim.creates == 1
    assert sim.requests[-1][1] == "/v1/image-to-video"


@pytest.mark.parametrize("model, seconds, price", [("ltx-2-5-fast", 2, 0.36), ("ltx-2-3-fast", 6, 0.24),
                                                   ("ltx-2-3-pro", 6, 0.32)])
def test_native_4k(sim, tmp_path, model, seconds, price):
    req = request(resolution="4k", model=model, duration=seconds)
    result = provider(sim).generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == (3840, 2160) and sim.creates == 1
    assert result.credits == pytest.approx(price * seconds * 100)


@pytest.mark.parametrize("fault", [
    Fault("rate_limit", on="create", retry_after=0.1),
    Fault("rate_limit", on="create"),
    Fault("server", on="create", retry_after=0.1),
    Fault("server", on="create", status=500, retry_after=0.1),
], ids=lambda f: f"{f.kind}-{f.status}-{f.retry_after}")
def test_refusals_before_the_body_are_retried_with_one_generation(sim, tmp_path, fault):
    sim.inject(fault)
    result = provider(sim).generate(request(), tmp_path / "take.mp4")
    assert probe(result.path).frames == 50
    assert sim.creates == 1 and sim.count("create") == 2 and not sim.faults


@pytest.mark.parametrize("fault, kind", [
    (Fault("drop", on="create"), "unknown_outcome"),
    (Fault("truncate"), "unknown_outcome"),
    (Fault("corrupt"), "bad_output"),
], ids=["drop", "truncate", "corrupt"])
def test_a_create_that_may_be_charged_is_never_sent_twice(sim, tmp_path, fault, kind):
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient
    assert sim.count("create") == 1
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_concurrency_limit_is_waited_out(sim, tmp_path):
    sim.concurrency = 1
    block, results, errors = provider(sim), [], []

    def take(name, seed):  # two different takes (the same one twice would wait for one create)
        try:
            results.append(block.generate(request(seed=seed), tmp_path / name))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=take, args=(f"{i}.mp4", i)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2 and sim.creates == 2
    assert sim.count("create") == 3  # one 429 concurrency_limit_error, waited out and sent again


@pytest.mark.parametrize("fault, kind", [
    (Fault("reject", failure="moderation"), "moderation"),
    (Fault("fail", failure="moderation_output"), "moderation"),
    (Fault("reject", failure="insufficient_credits"), "insufficient_credits"),
    (Fault("reject", failure="invalid_input"), "invalid_input"),
], ids=["moderation-submit", "moderation-after", "credits", "invalid"])
def test_refusals_are_classified_and_not_retried(sim, tmp_path, fault, kind):
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient
    assert sim.count("create") == 1


def test_generation_timeout_is_the_read_timeout(sim, tmp_path):
    sim.latency = 3.0
    with pytest.raises(ProviderError) as caught:
        provider(sim, generation_timeout=0.5).generate(request(seed=4), tmp_path / "take.mp4")
    assert caught.value.kind == "timeout" and not caught.value.transient
    assert "generation_timeout" in str(caught.value) and sim.count("create") == 1


def test_requests_the_model_cannot_make_are_refused_before_spending(sim, tmp_path):
    block = provider(sim)
    for bad in (request(model="ltx-2-pro", duration=2), request(model="ltx-2-fast", resolution="4k", duration=12),
                request(model="ltx-2-pro", duration=6, aspect_ratio="9:16"), request(model="ltx-2-5-pro", resolution="4k"),
                request(duration=7), request(resolution="4k", duration=12), request(model="ltx-2-3-pro", duration=12)):
        with pytest.raises(ProviderError) as caught:
            block.generate(bad, tmp_path / "take.mp4")
        assert caught.value.kind == "invalid_input"
    assert sim.requests == []


def test_simulator_validates_like_ltx(sim):
    def create(body):
        return httpx.post(f"{sim.url}/v1/text-to-video", json=body, headers={"Authorization": f"Bearer {KEY}"})
    good = {"prompt": "p", "model": "ltx-2-fast", "duration": 6, "resolution": "1920x1080", "fps": 25}
    for change in ({"duration": "6"}, {"duration": 12, "resolution": "3840x2160"}, {"fps": 30},
                   {"resolution": "1280x720"}, {"prompt": ""}, {"model": "ltx-1"}, {"seed": 3},
                   {"generate_audio": "yes"}):
        answer = create({**good, **change})
        assert answer.status_code == 400, change
        assert answer.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": answer.json()["error"]["message"]}}
    for change, words in [  # LTX-2.5 Pro makes 720p and 1080p only; 2.5 takes 2-6 s, then even seconds
        ({"model": "ltx-2-5-pro", "resolution": "3840x2160", "duration": 6}, "not supported by ltx-2-5-pro"),
        ({"model": "ltx-2-5-pro", "resolution": "2560x1440", "duration": 6}, "not supported by ltx-2-5-pro"),
        ({"model": "ltx-2-5-fast", "duration": 7}, "duration 7 is not supported"),
        ({"model": "ltx-2-5-fast", "duration": 12, "resolution": "3840x2160"}, "duration 12 is not supported"),
        ({"model": "ltx-2-3-pro", "duration": 12}, "duration 12 is not supported"),
    ]:
        answer = create({**good, **change})
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], (change, answer.json())
    unauthorised = httpx.post(f"{sim.url}/v1/text-to-video", json=good)
    assert unauthorised.status_code == 401
    assert unauthorised.json()["error"]["type"] == "authentication_error"
    assert sim.creates == 0
    assert create({**good, "model": "ltx-2-5-pro", "resolution": "1280x720", "duration": 3}).status_code == 200


@pytest.mark.parametrize("status, error_type, kind", [
    (400, "invalid_request_error", "invalid_input"), (401, "authentication_error", "auth"),
    (402, "insufficient_funds_error", "insufficient_credits"), (413, "request_too_large", "invalid_input"),
    (422, "content_filtered_error", "moderation"), (429, "concurrency_limit_error", "rate_limited"),
    (500, "api_error", "transient"), (503, "service_unavailable", "transient"), (502, None, "transient"),
])
def test_error_types_map_to_kinds(status, error_type, kind):
    body = {"type": "error", "error": {"type": error_type, "message": "m"}} if error_type else None
    response = httpx.Response(status, json=body) if body else httpx.Response(status, text="Bad gateway")
    assert LtxProvider(api_key=KEY).error_for(response).kind == kind


def test_the_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sim.inject(Fault("reject", failure="moderation"))
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
