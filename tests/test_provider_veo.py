"""VeoProvider against the Gemini API simulator on loopback: round trips, faults, refusals, the SDK."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from pathlib import Path

import pytest

from blocks.catalogue import load_catalogue
from blocks.media import probe
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.veo import VeoProvider
from simulators.base import Fault
from simulators.veo import VeoSimulator
from tests.conftest import EXAMPLES
from tests.provider_faults import fault_id, transient_faults, open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

KEY = "AIzaMARKER_SECRET_veo_0123456789"
FAST = "veo-3.1-fast-generate-preview"
REFERENCE = EXAMPLES / "references" / "kite-meadow.jpg"


@pytest.fixture(scope="module")
def shared_sim():
    with VeoSimulator(latency=0.3, api_key=KEY, render_height=72) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim):
    shared_sim.faults.clear()
    shared_sim.requests.clear()
    shared_sim.bodies.clear()
    shared_sim.creates = shared_sim.keys_at_storage = 0
    shared_sim.storage_host, shared_sim.inline_video = None, False
    return shared_sim


def provider(sim, **overrides) -> VeoProvider:
    settings = dict(api_key=KEY, base_url=sim.url, first_poll=0.05, poll_interval=0.2)
    return VeoProvider(**{**settings, **overrides})


def request(**overrides) -> GenerationRequest:
    base = dict(prompt="a red kite over a meadow, slow pan left", model=FAST, seed=7, duration=4, fps=24,
                aspect_ratio="16:9")
    return GenerationRequest(**{**base, **overrides})


def test_text_to_video_round_trip(sim, tmp_path):
    block, req = provider(sim), request()
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == block.render_size(req) == (1280, 720)
    assert info.fps == 24 and info.frames == 96 and sim.creates == 1
    assert result.credits == block.estimate_credits(req) == pytest.approx(0.10 * 4 * 100)
    body = sim.bodies[0]
    assert body["instances"] == [{"prompt": req.prompt}]
    # the Gemini API takes no seed and no generateAudio; durationSeconds goes as the SDK's int
    assert body["parameters"] == {"aspectRatio": "16:9", "durationSeconds": 4, "sampleCount": 1,
                                  "resolution": "720p"}
    assert not open_tasks()


def test_image_to_video_round_trip(sim, tmp_path):
    block = provider(sim, person_generation="allow_adult")
    req = request(model="veo-3.1-generate-preview", aspect_ratio="9:16", reference_image=REFERENCE)
    result = block.generate(req, tmp_path / "take.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == load_catalogue().model("veo", req.model).size("9:16") == (720, 1280)
    assert result.credits == pytest.approx(0.40 * 4 * 100) and sim.creates == 1
    instance, parameters = sim.bodies[0]["instances"][0], sim.bodies[0]["parameters"]
    assert instance["image"]["mimeType"] == "image/jpeg"
    assert base64.b64decode(instance["image"]["bytesBase64Encoded"]) == REFERENCE.read_bytes()
    assert parameters["personGeneration"] == "allow_adult" and parameters["aspectRatio"] == "9:16"


def test_veo2_gets_no_resolution_and_1080p_is_sent(sim):
    block = provider(sim)
    block.submit(request(model="veo-2.0-generate-001", duration=5))
    block.submit(request(resolution="1080p", duration=8))
    assert "resolution" not in sim.bodies[0]["parameters"]
    assert sim.bodies[1]["parameters"]["resolution"] == "1080p" and sim.creates == 2


@pytest.mark.parametrize("fault", transient_faults(expire=False), ids=fault_id)
def test_faults_are_survived_with_one_create(sim, tmp_path, fault):
    sim.inject(fault)
    result = provider(sim).generate(request(), tmp_path / "take.mp4")
    assert probe(result.path).frames == 96
    assert sim.creates == 1 and sim.count("create") == (2 if fault.on == "create" else 1)
    assert not sim.faults  # the fault really happened


def test_expired_storage_url_is_refreshed_through_the_api(sim, tmp_path):
    sim.inject(Fault("expire"))
    provider(sim).generate(request(), tmp_path / "take.mp4")
    # the refused download, then one through an already-expired redirect, then a fresh one
    assert sim.count("media") == 3 and sim.count("download") == 3 and sim.creates == 1


def test_rate_limit_waits_the_retry_delay_in_the_body(sim):
    sim.inject(Fault("rate_limit", on="create", retry_after=1.0))
    started = time.monotonic()
    provider(sim).submit(request())
    assert time.monotonic() - started >= 0.95  # exponential backoff alone would wait at most 0.625 s
    assert sim.count("create") == 2 and sim.creates == 1


def test_final_rate_limit_is_transient_with_the_delay(sim):
    sim.inject(Fault("rate_limit", on="create", retry_after=7))
    with pytest.raises(ProviderError) as caught:
        provider(sim, max_retries=0).submit(request())
    assert caught.value.kind == "rate_limited" and caught.value.transient and caught.value.retry_after == 7


def test_dropped_create_is_not_sent_again(sim):
    sim.inject(Fault("drop", on="create"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).submit(request())
    assert caught.value.kind == "unknown_outcome" and not caught.value.transient
    assert sim.count("create") == 1


@pytest.mark.parametrize("fault, kind", [
    (Fault("reject", failure="moderation"), "moderation"),
    (Fault("reject", failure="insufficient_credits"), "insufficient_credits"),
    (Fault("reject", failure="invalid_input"), "invalid_input"),
    (Fault("fail", failure="moderation_output"), "moderation"),
    (Fault("fail", failure="invalid_input"), "invalid_input"),
    (Fault("fail", failure="insufficient_credits"), "insufficient_credits"),
    (Fault("fail", failure="bad_output"), "bad_output"),
], ids=lambda v: v if isinstance(v, str) else f"{v.kind}-{v.failure}")
def test_refusals_are_final_with_one_create(sim, tmp_path, fault, kind):
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        provider(sim, max_retries=1).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient
    assert sim.count("create") == 1 and sim.count("media") == 0
    assert not open_tasks()


def test_blocked_video_names_the_filter_and_is_not_charged(sim, tmp_path):
    sim.inject(Fault("fail", failure="moderation"))
    with pytest.raises(ProviderError, match="safety filters blocked the video .*usage guidelines.*not charged"):
        provider(sim).generate(request(), tmp_path / "take.mp4")


def test_failed_operation_internal_error_is_transient(sim, tmp_path):
    sim.inject(Fault("fail", failure="internal"))
    with pytest.raises(ProviderError) as caught:
        provider(sim).generate(request(), tmp_path / "take.mp4")
    assert caught.value.kind == "transient" and "google.rpc code 13" in str(caught.value)


def test_simulator_validates_like_the_api(sim):
    block = provider(sim)
    for bad in (request(resolution="1080p", duration=4), request(duration=5), request(aspect_ratio="1:1"),
                request(model="veo-2.0-generate-001", duration=4)):
        with pytest.raises(ProviderError) as caught:
            block.submit(bad)
        assert caught.value.kind == "invalid_input" and "HTTP 400 INVALID_ARGUMENT" in str(caught.value)
    with pytest.raises(ProviderError, match="HTTP 404 NOT_FOUND"):
        block.submit(request(model="veo-9"))
    assert sim.creates == 0
    # durationSeconds as the docs' string is accepted too; so is a seed (ignored), unlike unknown fields
    key = {"x-goog-api-key": KEY}
    url = f"/v1beta/models/{FAST}:predictLongRunning"
    ok = block.http.post(url, headers=key, json={"instances": [{"prompt": "x"}],
                                                 "parameters": {"durationSeconds": "6", "seed": 3}})
    bad = block.http.post(url, headers=key, json={"instances": [{"prompt": "x"}],
                                                  "parameters": {"generateAudio": True}})
    assert ok.status_code == 200 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_deadline_gives_up_without_a_cancel(sim, tmp_path):
    sim.latency = 5.0
    try:
        with pytest.raises(ProviderError) as caught:
            provider(sim, generation_timeout=0.2).generate(request(), tmp_path / "take.mp4")
    finally:
        sim.latency = 0.3
    assert caught.value.kind == "timeout"
    assert {e for _, _, e in sim.requests} == {"create", "poll"}  # the Gemini API has no cancel


def test_key_goes_to_the_api_host_only(sim, tmp_path):
    sim.storage_host = "localhost"  # the signed storage URL is on another host
    provider(sim).generate(request(), tmp_path / "take.mp4")
    assert sim.count("media") == 1 and sim.count("download") == 1 and sim.keys_at_storage == 0
    block = provider(sim)
    assert block.download_headers(f"{sim.url}/v1beta/files/abc:download?alt=media") == {"x-goog-api-key": KEY}
    assert block.download_headers(f"http://localhost:{sim.url.rsplit(':', 1)[1]}/files/x.mp4") == {}


def test_inline_video_is_accepted(sim, tmp_path):
    sim.inline_video = True
    result = provider(sim).generate(request(), tmp_path / "take.mp4")
    assert probe(result.path).frames == 96 and sim.count("download") == 0


def test_key_never_leaks(sim, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sim.inject(Fault("rate_limit", on="poll", retry_after=0.1))
    block = provider(sim)
    block.generate(request(), tmp_path / "take.mp4")
    wrong = "AIzaMARKER_SECRET_wrong_9876543210"
    failures = []
    for bad in (provider(sim, api_key=wrong), provider(sim, api_key=None)):
        with pytest.raises(ProviderError) as caught:
            bad.generate(request(seed=8), tmp_path / "other.mp4")  # not the take already paid for
        assert caught.value.kind == "auth" and not caught.value.transient
        failures.append(caught.value)
    assert "Gemini API key" in str(failures[0]) and "no API key" in str(failures[1])
    for text in (*map(str, failures), repr(block), block.model_dump_json(), caplog.text):
        assert KEY not in text and wrong not in text and "MARKER" not in text


@pytest.mark.parametrize("model", [m.model for m in load_catalogue().models_of("veo")])
def test_google_genai_sdk_round_trip_for_every_catalogue_model(sim, model):
    """The SDK creates (through its own transport where generate_videos refuses Gemini mode), polls with
    operations.get and downloads with files.download(file=video), which parses the API's file URI."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=sim.url, api_version="v1beta"))
    entry = load_catalogue().model("veo", model)
    seconds = int(min(entry.durations))
    parameters = {"durationSeconds": seconds, "aspectRatio": "16:9"}
    if not model.startswith("veo-2"):
        parameters["resolution"] = "720p"
    try:
        config = types.GenerateVideosConfig(duration_seconds=seconds, aspect_ratio="16:9",
                                            resolution=parameters.get("resolution"))
        operation = client.models.generate_videos(model=model, source=types.GenerateVideosSource(prompt="a kite"),
                                                  config=config)
    except ValueError as exc:
        # google-genai 3.x refuses generate_videos in Gemini API mode; the same request through the
        # SDK's own transport (its key header, base URL and API version) keeps the contract tested
        assert "Gemini Developer API" in str(exc)
        created = client._api_client.request("post", f"models/{model}:predictLongRunning", {
            "instances": [{"prompt": "a kite"}], "parameters": parameters})
        operation = types.GenerateVideosOperation(name=json.loads(created.body)["name"])
    deadline = time.monotonic() + 20
    while not operation.done and time.monotonic() < deadline:
        time.sleep(0.1)
        operation = client.operations.get(operation)  # public API: GET /v1beta/{name}
    video = operation.result.generated_videos[0].video
    assert video.uri.startswith("https://generativelanguage.googleapis.com/v1beta/files/")
    data = client.files.download(file=video)  # with the key, through the redirect
    assert video.video_bytes == data
    path = Path(sim.media) / f"sdk-{model}.mp4"
    path.write_bytes(data)
    info = probe(path)
    assert (info.width, info.height) == (1280, 720) and sim.creates == 1 and sim.count("download") == 1


def _image() -> dict:
    return {"bytesBase64Encoded": base64.b64encode(REFERENCE.read_bytes()).decode(), "mimeType": "image/jpeg"}


@pytest.mark.parametrize("model, instance, parameters, words", [
    ("veo-3.1-generate-preview", {"lastFrame": "IMAGE"}, {}, "`lastFrame` needs `image`"),
    ("veo-3.0-generate-001", {"image": "IMAGE", "lastFrame": "IMAGE"}, {}, "`lastFrame` isn't supported"),
    ("veo-3.1-lite-generate-001", {"image": "IMAGE", "lastFrame": "IMAGE"}, {}, "`lastFrame` isn't supported"),
    ("veo-3.1-generate-preview", {"image": "IMAGE", "lastFrame": {"mimeType": "image/gif"}}, {},
     "lastFrame.mimeType"),
    ("veo-3.1-fast-generate-preview", {"referenceImages": [{"image": "IMAGE"}]}, {"durationSeconds": 8},
     "`referenceImages` isn't supported"),
    ("veo-3.1-generate-preview", {"referenceImages": [{"image": "IMAGE"}] * 4}, {"durationSeconds": 8},
     "1 to 3 images"),
    ("veo-3.1-generate-preview", {"referenceImages": [{"image": "IMAGE", "referenceType": "style"}]},
     {"durationSeconds": 8}, "must be \"asset\""),
    ("veo-3.1-generate-preview", {"referenceImages": [{"image": "IMAGE"}]}, {"durationSeconds": 4},
     "reference images must be 8 seconds"),
    ("veo-3.1-generate-preview", {"referenceImages": [{"image": "IMAGE"}]},
     {"durationSeconds": 8, "personGeneration": "allow_all"}, "personGeneration"),
    ("veo-3.1-generate-preview", {"mask": {}}, {}, "Unknown name \"mask\""),
    ("veo-3.1-lite-generate-001", {}, {"resolution": "4k", "durationSeconds": 8}, "Unsupported resolution"),
])
def test_the_simulator_checks_last_frames_and_reference_images(sim, model, instance, parameters, words):
    import httpx

    instance = {key: (_image() if value == "IMAGE" else value) for key, value in instance.items()}
    if "referenceImages" in instance:
        instance["referenceImages"] = [{k: (_image() if v == "IMAGE" else v) for k, v in ref.items()}
                                       for ref in instance["referenceImages"]]
    body = {"instances": [{"prompt": "a kite", **instance}], "parameters": {"aspectRatio": "16:9", **parameters}}
    answer = httpx.post(f"{sim.url}/v1beta/models/{model}:predictLongRunning", json=body,
                        headers={"x-goog-api-key": KEY})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert words in answer.json()["error"]["message"], answer.json()


def test_last_frames_and_reference_images_the_api_takes(sim):
    import httpx

    for model, instance, seconds in [
        ("veo-3.1-fast-generate-preview", {"image": _image(), "lastFrame": _image()}, 4),
        ("veo-3.1-generate-preview", {"referenceImages": [{"image": _image(), "referenceType": "asset"}] * 3}, 8),
        ("veo-3.1-lite-generate-001", {"image": _image()}, 6),
    ]:
        body = {"instances": [{"prompt": "a kite", **instance}],
                "parameters": {"durationSeconds": seconds, "resolution": "1080p" if seconds == 6 else "720p"}}
        answer = httpx.post(f"{sim.url}/v1beta/models/{model}:predictLongRunning", json=body,
                            headers={"x-goog-api-key": KEY})
        assert answer.status_code == 200, (model, answer.text)
