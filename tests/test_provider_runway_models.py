"""Every model Runway routes to: the SDK's types, the catalogue, the adapter and the simulator agree,
and the official runwayml SDK runs against the simulator for each catalogue model."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.runway import RunwayProvider
from blocks.runway_contract import extract, sdk_version
from blocks.runway_models import MODELS, SDK_VERSION
from simulators.runway import VERSION, RunwaySimulator
from simulators.runway_rules import Invalid, check_body

runwayml = pytest.importorskip("runwayml")
CURRENT = [m for m in load_catalogue().models_of("runway") if not m.retired]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    image = np.zeros((360, 640, 3), np.uint8)
    image[:, :, 2] = np.linspace(0, 255, 640, dtype=np.uint8)
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def sim():
    with RunwaySimulator(latency=0.0, render_height=36) as simulator:
        yield simulator


def requests_for(entry, png: Path):
    """One request per endpoint, resolution and aspect ratio the catalogue lists for a model."""
    for endpoint in ("t2v", "i2v"):
        if (endpoint == "t2v" and not entry.text_to_video) or (endpoint == "i2v" and not entry.image_to_video):
            continue
        for resolution, res in entry.resolutions.items():
            for aspect in res.sizes:
                if aspect not in ("16:9", "9:16", "1:1"):
                    continue
                yield endpoint, GenerationRequest(
                    prompt="a kite over a meadow, slow pan left", model=entry.model, seed=3,
                    duration=min(entry.durations_at(resolution)), fps=24, aspect_ratio=aspect,
                    resolution=resolution, reference_image=png if endpoint == "i2v" else None)


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


# ---- the generated rules are the installed SDK's ----------------------------------------------


def test_the_generated_rules_match_the_installed_sdk():
    sdk = Path(runwayml.__file__).parent
    assert sdk_version(sdk) == SDK_VERSION == runwayml.__version__
    assert extract(sdk) == MODELS, "runwayml changed: run python -m blocks.runway_contract"


def test_the_catalogue_lists_every_model_the_sdk_routes_to():
    runway = load_catalogue().models_of("runway")
    assert {m.model for m in runway if not m.retired} == set(MODELS) == set(RunwayProvider.models)
    assert len(MODELS) >= 24
    retired = {m.model for m in runway if m.retired}
    assert retired == {"veo3"} and not retired & set(MODELS)
    for entry in runway:
        assert entry.source and entry.checked >= "2026-12-01", entry.model
        if entry.model in MODELS:
            assert entry.text_to_video == ("t2v" in MODELS[entry.model]), entry.model
            assert entry.image_to_video == ("i2v" in MODELS[entry.model]), entry.model
            assert entry.seed == any("seed" in f for f in MODELS[entry.model].values()), entry.model
    gen4_turbo = load_catalogue().model("runway", "gen4_turbo")
    assert len(gen4_turbo.resolutions["720p"].sizes) == 6
    assert "outputFormat" not in MODELS["gen4_turbo"]["i2v"] and "outputFormat" in MODELS["gen4.5"]["i2v"]
    assert not MODELS["kling2.5_turbo_pro"]["t2v"]["ratio"]["required"]
    assert "ratio" not in MODELS["kling2.5_turbo_pro"]["i2v"]


@pytest.mark.parametrize("entry", CURRENT, ids=lambda e: e.model)
def test_every_body_the_adapter_builds_passes_the_sdk_rules(entry, png):
    adapter = RunwayProvider(api_key="key_" + "0" * 128)
    for endpoint, request in requests_for(entry, png):
        body = adapter.body(request)
        check_body(body, endpoint)  # raises Invalid with the API's message otherwise
        assert ("promptImage" in body) == (endpoint == "i2v")


def test_a_retired_model_is_refused_before_sending():
    adapter = RunwayProvider(api_key="key_" + "0" * 128)
    request = GenerationRequest(prompt="x", model="veo3", seed=1, duration=8, fps=24, aspect_ratio="16:9")
    with pytest.raises(ProviderError, match="no longer offered") as caught:
        adapter.body(request)
    assert caught.value.kind == "retired" and not caught.value.transient


# ---- the official SDK against the simulator, every catalogue model --------------------------------


@pytest.mark.parametrize("entry", CURRENT, ids=lambda e: e.model)
def test_the_sdk_creates_and_reads_every_catalogue_model(sim, entry, png):
    client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url, max_retries=0)
    adapter = RunwayProvider(api_key=sim.api_key, base_url=sim.url)
    endpoints = {}
    for endpoint, request in requests_for(entry, png):
        endpoints.setdefault(endpoint, request)  # the first size of each endpoint
    for endpoint, request in endpoints.items():
        body = adapter.body(request)
        params = {snake(k): v for k, v in body.items()}
        resource = client.image_to_video if endpoint == "i2v" else client.text_to_video
        task = resource.create(**params)
        deadline = time.monotonic() + 60
        while (done := client.tasks.retrieve(task.id)).status not in ("SUCCEEDED", "FAILED"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert done.status == "SUCCEEDED" and done.output, (entry.model, endpoint)
        assert done.cost.credits == round(load_catalogue().credits(
            "runway", entry.model, request.duration, request.resolution, request.audio)), entry.model


def test_the_sdk_meets_the_apis_refusals(sim, png):
    """One refusal per rule, as the API answers it: 400 {"error": "<field>: ..."}."""
    client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url, max_retries=0)
    good = {"model": "gen4.5", "prompt_text": "a paper boat", "ratio": "1280:720", "duration": 5}
    cases = [
        ({"ratio": "960:960"}, "ratio"),                              # an i2v-only ratio on t2v
        ({"duration": 11}, "duration"),                              # outside the SDK's 2-10
        ({"duration": "5"}, "duration"),                             # a string, not an int
        ({"prompt_text": "x" * 1001}, "promptText"),                 # over 1000 UTF-16 units
        ({"model": "veo3"}, "model"),                                # retired from the router
        ({"model": "gen4_turbo"}, "model"),                          # image-to-video only
        ({"extra_body": {"outputFormat": "gif"}}, "outputFormat"),   # not in the enum
        ({"extra_body": {"watermark": False}}, "Unrecognized"),      # the API is strict
    ]
    for change, words in cases:
        extra = change.pop("extra_body", None)
        with pytest.raises(runwayml.BadRequestError, match=words):
            client.text_to_video.create(**{**good, **change}, extra_body=extra)
    turbo = {"model": "gen4_turbo", "prompt_image": "https://assets.example.com/ref.png", "ratio": "1280:720"}
    with pytest.raises(runwayml.BadRequestError, match="could not be fetched"):
        client.image_to_video.create(**turbo)
    for url, words in [("http://assets.example.com/ref.png", "Only HTTPS"), ("https://10.0.0.1/ref.png", "domain")]:
        with pytest.raises(runwayml.BadRequestError, match=words):
            client.image_to_video.create(**{**turbo, "prompt_image": url})
    sim.web[turbo["prompt_image"]] = png.read_bytes()
    assert client.image_to_video.create(**turbo).id
    with pytest.raises(runwayml.BadRequestError, match="resolution"):
        client.image_to_video.create(model="happyhorse_1_0", prompt_image=turbo["prompt_image"], resolution="4k")
    with pytest.raises(runwayml.BadRequestError, match="position"):
        client.image_to_video.create(model="gen4.5", prompt_text="x", ratio="1280:720", duration=5,
                                     prompt_image=[{"uri": turbo["prompt_image"], "position": "last"}])
    with pytest.raises(runwayml.BadRequestError, match="multiPrompt"):
        client.text_to_video.create(model="kling3.0_pro", ratio="1920:1080", extra_body={"providerSettings": {
            "multiPrompt": [{"prompt": "a", "duration": 10}, {"prompt": "b", "duration": 10}]}})
    with pytest.raises(runwayml.BadRequestError, match="duration"):
        client.text_to_video.create(model="kling3.0_pro", prompt_text="x", ratio="1920:1080", duration=20)


def test_kling_multi_prompt_passes_through_runway(sim):
    client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url, max_retries=0)
    task = client.text_to_video.create(model="klingO3_pro", ratio="1920:1080", duration=6, extra_body={
        "providerSettings": {"multiPrompt": [{"prompt": "a kite rises", "duration": 3},
                                             {"prompt": "it dives", "duration": 3}]}})
    assert sim.tasks[task.id].params["providerSettings"]["multiPrompt"][1]["prompt"] == "it dives"


# ---- the daily cap: final for the day, in the provider's words -----------------------------------


def test_the_daily_cap_fails_the_take_at_once_with_runways_words(tmp_path):
    request = GenerationRequest(prompt="a lighthouse at dusk", model="gen4.5", seed=1, duration=2, fps=24,
                                aspect_ratio="16:9")
    with RunwaySimulator(latency=0.0, daily_limit=1, render_height=36) as sim:
        runway = RunwayProvider(api_key=sim.api_key, base_url=sim.url, first_poll=0.05, poll_interval=0.1)
        runway.generate(request, tmp_path / "one.mp4")
        requests = sim.count("create")
        started = time.perf_counter()
        with pytest.raises(ProviderError) as caught:
            runway.generate(request.model_copy(update={"seed": 2}), tmp_path / "two.mp4")
        assert time.perf_counter() - started < 5  # no backoff: the cap does not lift in seconds
        error = caught.value
        assert error.kind == "rate_limited" and not error.transient
        assert "Your daily task limit has been reached." in str(error) and "gen4.5" in str(error)
        assert sim.count("create") - requests == 1  # asked once, not retried
        assert type(error.__reduce__()[0](*error.__reduce__()[1])).__name__ == "DailyLimit"
        assert not error.__reduce__()[0](*error.__reduce__()[1]).transient
        # another model has its own cap; the SDK sees the cap as a RateLimitError
        other = request.model_copy(update={"model": "gen4_turbo", "reference_image": None})
        with pytest.raises(ProviderError, match="needs a reference image"):
            runway.generate(other, tmp_path / "three.mp4")
        client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url, max_retries=0)
        with pytest.raises(runwayml.RateLimitError, match="daily task limit"):
            client.text_to_video.create(model="gen4.5", prompt_text="x", ratio="1280:720", duration=2)
        assert httpx.post(f"{sim.url}/v1/text_to_video", headers={
            "Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}, json={
            "model": "veo3.1", "promptText": "x", "ratio": "1280:720", "duration": 4}).status_code == 200


def test_check_body_refuses_an_unknown_model():
    with pytest.raises(Invalid, match="model: expected one of"):
        check_body({"model": "gen5", "promptText": "x"}, "t2v")
