"""SoraProvider against the Videos API simulator on loopback: retirement, round trips, faults, the SDK."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.sora import SoraProvider
from simulators.base import Fault
from simulators.sora import SoraSimulator
from tests.conftest import EXAMPLES
from tests.provider_faults import fault_id, transient_faults, open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

KEY = "sk-proj-MARKER_SECRET_sora_0123456789"
REFERENCE = EXAMPLES / "references" / "kite-meadow.jpg"  # 960x540: cover-cropped to the video size


@pytest.fixture(scope="module")
def shared_sim():
    with SoraSimulator(latency=0.3, api_key=KEY, render_height=72) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim):
    shared_sim.faults.clear()
    shared_sim.requests.clear()
    shared_sim.forms.clear()
    shared_sim.creates = 0
    shared_sim.latency = 0.3
    return shared_sim


def provider(sim, **overrides) -> SoraProvider:
    settings = dict(api_key=KEY, base_url=sim.url + "/v1", first_poll=0.05, poll_interval=0.2)
    return SoraProvider(**{**settings, **overrides})


def request(**overrides) -> GenerationRequest:
    base = dict(prompt="a paper boat on a rain puddle, slow push in", model="sora-2", seed=7, duration=4,
                fps=30, aspect_ratio="16:9")
    return GenerationRequest(**{**base, **overrides})


def test_retired_api_fails_fast_before_any_request():
    calls = []
    block = SoraProvider(api_key=KEY)
    block._http = httpx.Client(transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500)))
    for attempt in (block.preflight, lambda: block.estimate_credits(request()), lambda: block.submit(request()),
                    lambda: block.generate(request(), Path("/nonexistent/take.mp4"))):
        with pytest.raises(ProviderError) as caught:
            attempt()
        assert caught.value.kind == "retired" and not caught.value.transient
        message = str(caught.value)
        assert "shut down by OpenAI on 2026-09-24" in message and "veo-3.1" in message and "base_url" in message
        assert "\n" not in message and KEY not in message
    assert calls == []
    assert SoraProvider(api_key=KEY, base_url="https://api.openai.com/v1/").retired()
    assert not SoraProvider(api_key=KEY, base_url="https://sora.example.com/v1").retired()


def test_text_to_video_round_trip(sim, tmp_path):
    block, req = provider(sim), request()
    block.preflight()
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == block.render_size(req) == (1280, 720)
    assert info.frames == 120 and sim.creates == 1
    assert result.credits == block.estimate_credits(req) == pytest.approx(0.10 * 4 * 100)
    # multipart fields; seconds is the API's string enum, the size comes from the catalogue
    assert sim.forms == [{"prompt": req.prompt, "model": "sora-2", "seconds": "4", "size": "1280x720"}]
    assert not open_tasks()


def test_image_to_video_round_trip_crops_the_reference_to_the_size(sim, tmp_path):
    block = provider(sim)
    req = request(model="sora-2-pro", resolution="1080p", aspect_ratio="9:16", reference_image=REFERENCE)
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == block.render_size(req) == (1080, 1920)
    assert result.credits == pytest.approx(0.50 * 4 * 100) and sim.creates == 1
    assert sim.forms[0]["size"] == "1080x1920"  # the simulator refuses a reference of another size


@pytest.mark.parametrize("fault", transient_faults(), ids=fault_id)
def test_faults_are_survived_with_one_create(sim, tmp_path, fault):
    sim.inject(fault)
    result = provider(sim).generate(request(), tmp_path / "take.mp4")
    assert probe(result.path).frames == 120
    assert sim.creates == 1 and sim.count("create") == (2 if fault.on == "create" else 1)
    assert not sim.faults


def test_dropped_create_is_not_sent_again(sim):
    sim.inject(Fault("drop", on="create"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).submit(request())
    assert caught.value.kind == "unknown_outcome" and sim.count("create") == 1


@pytest.mark.parametrize("fault, kind", [
    (Fault("reject", failure="moderation"), "moderation"),
    (Fault("reject", failure="insufficient_credits"), "insufficient_credits"),  # a 429 that is not retried
    (Fault("reject", failure="invalid_input"), "invalid_input"),
    (Fault("fail", failure="moderation"), "moderation"),
    (Fault("fail", failure="moderation_output"), "moderation"),
    (Fault("fail", failure="insufficient_credits"), "insufficient_credits"),
    (Fault("fail", failure="bad_output"), "bad_output"),
], ids=lambda v: v if isinstance(v, str) else f"{v.kind}-{v.failure}")
def test_refusals_are_final_with_one_create(sim, tmp_path, fault, kind):
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:  # one retry: a damaged download is fetched again
        provider(sim, max_retries=1).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient
    assert sim.count("create") == 1
    assert not open_tasks()


def test_simulator_validates_like_the_api(sim):
    block = provider(sim)
    for bad, said in ((request(duration=5), "invalid_value (seconds)"), (request(resolution="1080p"), "1080p"),
                      (request(aspect_ratio="1:1"), "1:1")):
        with pytest.raises(ProviderError) as caught:
            block.submit(bad)
        assert caught.value.kind == "invalid_input" and said in str(caught.value)
    assert sim.count("create") == 1  # sizes the catalogue lacks are refused before any request
    headers = {"Authorization": f"Bearer {KEY}"}
    wrong_size = block.http.post("/videos", headers=headers, files={
        "prompt": (None, "x"), "size": (None, "1280x720"),
        "input_reference": ("r.jpg", REFERENCE.read_bytes(), "image/jpeg")})
    numeric = block.http.post("/videos", headers=headers, json={"prompt": "x", "seconds": 4})
    unknown = block.http.post("/videos", headers=headers, files={"prompt": (None, "x"), "seed": (None, "3")})
    assert wrong_size.json()["error"]["message"] == "Inpaint image must match the requested width and height"
    assert numeric.json()["error"]["code"] == "invalid_type" and unknown.json()["error"]["code"] == "unknown_parameter"
    assert sim.creates == 0


def test_failed_generation_with_an_unknown_code_is_transient(sim, tmp_path):
    sim.inject(Fault("fail", failure="internal"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "transient" and "internal_error" in str(caught.value)


def test_deadline_deletes_the_video(sim, tmp_path):
    sim.latency = 5.0
    with pytest.raises(ProviderError) as caught:
        provider(sim, generation_timeout=0.2).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "timeout"
    deletes = [path for method, path, _ in sim.requests if method == "DELETE"]
    assert len(deletes) == 1 and sim.tasks[deletes[0].rsplit("/", 1)[1]].cancelled


def test_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sim.inject(Fault("rate_limit", on="poll", retry_after=0.1))
    block = provider(sim)
    block.generate(request(), tmp_path / "take.mp4")
    wrong = "sk-proj-MARKER_SECRET_wrong_9876543210"
    failures = []
    for bad in (provider(sim, api_key=wrong), provider(sim, api_key=None)):
        with pytest.raises(ProviderError) as caught:
            bad.generate(request(seed=8), tmp_path / "other.mp4")  # not the take already paid for
        assert caught.value.kind == "auth" and not caught.value.transient
        failures.append(caught.value)
    # the API's own 401 message shows part of the key ("sk-proj-****...3210"); it is not repeated
    assert "refused (HTTP 401 invalid_api_key)" in str(failures[0]) and "no API key" in str(failures[1])
    for text in (*map(str, failures), repr(block), block.model_dump_json(), caplog.text):
        assert KEY not in text and wrong not in text and "MARKER" not in text and "3210" not in text


def test_openai_sdk_round_trip(sim, tmp_path):
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=sim.url + "/v1", max_retries=1)
    reference = cv2.imencode(".png", np.full((720, 1280, 3), 90, np.uint8))[1].tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks the retired API deprecated
        video = client.videos.create(prompt="a kite", model="sora-2", seconds="4", size="1280x720",
                                     input_reference=("reference.png", reference, "image/png"))
        assert video.id.startswith("video_") and video.object == "video" and video.seconds == "4"
        video = client.videos.poll(video.id, poll_interval_ms=100)
        assert video.status == "completed" and video.progress == 100 and video.error is None
        client.videos.download_content(video.id).write_to_file(tmp_path / "sdk.mp4")
        deleted = client.videos.delete(video.id)
    info = probe(tmp_path / "sdk.mp4")
    assert (info.width, info.height) == (1280, 720) and deleted.deleted and sim.creates == 1
    assert sim.forms[0]["seconds"] == "4"


def test_every_seconds_and_size_the_sdk_types_name_is_taken_and_the_guides_additions_too(sim):
    """The SDK's VideoSeconds / VideoSize literals, each on the models the guide gives it, plus the
    guide's 16/20 s and sora-2-pro 1920x1080; what neither names is refused in OpenAI's shape."""
    import typing

    import openai
    from openai.types import VideoSeconds, VideoSize

    client = openai.OpenAI(api_key=KEY, base_url=sim.url + "/v1", max_retries=0)
    pro_only = {"1024x1792", "1792x1024", "1080x1920", "1920x1080"}
    accepted = [("sora-2", s, "1280x720") for s in typing.get_args(VideoSeconds) + ("16", "20")]
    accepted += [("sora-2-pro" if size in pro_only else "sora-2", "4", size)
                 for size in typing.get_args(VideoSize) + ("1920x1080", "1080x1920")]
    refused = [("sora-2", "6", "1280x720", "seconds"), ("sora-2", "4", "1920x1080", "size"),
               ("sora-2-pro", "24", "1280x720", "seconds"), ("sora-2-pro", "4", "2560x1440", "size")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for model, seconds, size in accepted:
            video = client.videos.create(prompt="a kite", model=model, seconds=seconds, size=size)
            assert (video.seconds, video.size) == (seconds, size)
            client.videos.delete(video.id)  # cancelled: its render is not waited for
        for model, seconds, size, param in refused:
            with pytest.raises(openai.BadRequestError) as caught:
                client.videos.create(prompt="a kite", model=model, seconds=seconds, size=size)
            assert caught.value.body["param"] == param and caught.value.body["code"] == "invalid_value"
    assert sim.creates == len(accepted)
    # the catalogue offers exactly what the simulator takes, per model
    for entry in load_catalogue().models_of("sora"):
        assert {f"{d:g}" for d in entry.durations} == set(sim.seconds)
        assert {s for r in entry.resolutions.values() for s in r.sizes.values()} <= set(sim.sizes[entry.model])
