"""Runway's video upscale (magnific_video_upscaler_creative) against the Runway simulator: real
media in and out, priced from the task's own cost, resumed from its journal rather than paid
twice, refused before sending when the API would refuse it (and the official SDK agrees with
the simulator's contract)."""

from __future__ import annotations

import base64
import subprocess

import httpx
import numpy as np
import pytest

from blocks.catalogue import load_catalogue
from blocks.media import FFMPEG, FrameWriter, probe
from blocks.remote import ProviderError
from blocks.runway import RunwayProvider
from blocks.super_resolution import SuperResolution, UpscaleRequest
from simulators.base import Fault
from simulators.runway import VERSION, RunwaySimulator
from simulators.runway_upscale import SHORT_SIDE

from tests.provider_faults import open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

MODEL = "magnific_video_upscaler_creative"


@pytest.fixture(scope="module")
def sim():
    with RunwaySimulator(latency=0.3, seed=2) as simulator:
        yield simulator


@pytest.fixture
def runway(sim):
    sim.faults.clear()
    provider = RunwayProvider(api_key=sim.api_key, base_url=sim.url, first_poll=0.05, poll_interval=0.2)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 256x144, 1.5 s, 24 fps clip with sound."""
    path = tmp_path_factory.mktemp("clip") / "take.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=256x144:r=24:d=1.5", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=1.5", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(path)], check=True)
    return path


def request_for(clip, resolution="1080p", **changes) -> UpscaleRequest:
    return UpscaleRequest(**{"source": clip, "model": MODEL, "resolution": resolution, "duration": 1.5, **changes})


def headers(sim) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}


@pytest.mark.parametrize("resolution, size, api", [("720p", (1280, 720), "720p"), ("1080p", (1920, 1080), "1k")])
def test_upscale_round_trip(sim, runway, clip, tmp_path, resolution, size, api):
    assert isinstance(runway, SuperResolution)
    creates = sim.creates
    result = runway.upscale(request_for(clip, resolution), tmp_path / "up.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == size and info.has_audio and abs(info.duration - 1.5) < 0.1
    task = list(sim.tasks.values())[-1]
    assert sim.creates - creates == 1
    assert {k: v for k, v in task.params.items() if k != "videoUri"} == {"model": MODEL, "resolution": api,
                                                                          "fpsBoost": False}
    sent = task.params["videoUri"]
    assert sent.startswith("data:video/mp4;base64,") and base64.b64decode(sent.split(",")[1]) == clip.read_bytes()
    assert result.credits == task.extra["credits"] == 15  # the task's cost: 10 credits/s for 1.5 s
    assert result.credits == runway.estimate_upscale_credits(MODEL, resolution, 1.5)
    assert not open_tasks()


def test_a_retried_upscale_resumes_its_task_instead_of_paying_twice(sim, clip, tmp_path):
    flaky = RunwayProvider(api_key=sim.api_key, base_url=sim.url, first_poll=0.05, poll_interval=0.2,
                           max_retries=0)
    creates = sim.creates
    sim.inject(Fault("server", on="poll", times=1))
    with pytest.raises(ProviderError) as caught:
        flaky.upscale(request_for(clip), tmp_path / "up.mp4")
    assert caught.value.transient and sim.creates - creates == 1
    [entry] = open_tasks()  # journalled in the shared state database, not next to the output
    assert entry.task_id == list(sim.tasks)[-1] and entry.state == "created"
    result = flaky.upscale(request_for(clip), tmp_path / "up.mp4")  # what a task retry does
    assert sim.creates - creates == 1 and probe(result.path).height == 1080
    assert not open_tasks()


def test_a_failed_upscale_task_is_classified_and_forgotten(sim, runway, clip, tmp_path):
    sim.inject(Fault("fail", failure="invalid_input"))
    with pytest.raises(ProviderError) as caught:
        runway.upscale(request_for(clip), tmp_path / "up.mp4")
    assert caught.value.kind == "invalid_input" and "ASSET.INVALID" in str(caught.value)
    assert not open_tasks()  # a retry starts afresh


def test_a_video_too_large_to_send_inline_goes_as_an_upload(sim, runway, tmp_path):
    """Noise does not compress: 48 frames of it at 640x360, lossless, is over 12 MB (16 MB inline)."""
    big = tmp_path / "big.mp4"
    noise = np.random.default_rng(5).integers(0, 256, (48, 360, 640, 3), dtype=np.uint8)
    with FrameWriter(big, 640, 360, 24, crf=0) as writer:
        for frame in noise:
            writer.write(frame)
    assert big.stat().st_size > 12 * 2**20
    uploads, stored = sim.count("upload"), sim.count("storage")
    result = runway.upscale(request_for(big, resolution="720p", duration=2.0), tmp_path / "up.mp4")
    assert (probe(result.path).width, probe(result.path).height) == (1280, 720)
    assert sim.count("upload") == uploads + 1 and sim.count("storage") == stored + 1
    assert big.read_bytes() in (data for data, _ in sim.uploads.values())  # the file as it is
    # and the simulator refuses inline what the adapter does not send inline, as the API does
    uri = "data:video/mp4;base64," + base64.b64encode(big.read_bytes()).decode()
    answer = httpx.post(f"{sim.url}/v1/video_upscale", json={"model": MODEL, "videoUri": uri},
                        headers=headers(sim))
    assert answer.status_code == 400 and "at most 16MB" in answer.json()["error"]


def test_a_video_over_the_upload_limit_is_refused_before_anything_is_sent(sim, runway, tmp_path):
    huge = tmp_path / "huge.mp4"
    with huge.open("wb") as handle:  # sparse: the size is checked before a byte is read
        handle.truncate(201 * 2**20)
    requests = len(sim.requests)
    with pytest.raises(ProviderError) as caught:
        runway.upscale(request_for(huge, duration=2.0), tmp_path / "up.mp4")
    assert caught.value.kind == "invalid_input" and not caught.value.transient
    assert "huge.mp4 is 201.0 MB" in str(caught.value) and "at most 200 MB (as an upload)" in str(caught.value)
    assert "upscale it locally instead" in str(caught.value)
    assert len(sim.requests) == requests and not open_tasks()


@pytest.mark.parametrize("change, words", [
    ({"resolution": "8k"}, "upscale to 8k"), ({"model": "upscale_v1"}, "not an upscaler in the catalogue"),
])
def test_requests_the_catalogue_rules_out_are_refused_before_sending(sim, runway, clip, tmp_path, change, words):
    requests = len(sim.requests)
    with pytest.raises(ProviderError, match=words) as caught:
        runway.upscale(request_for(clip, **change), tmp_path / "up.mp4")
    assert caught.value.kind == "invalid_input" and len(sim.requests) == requests


def test_the_simulator_validates_like_the_api(sim, clip):
    uri = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    good = {"model": MODEL, "videoUri": uri}
    for change, field in [({"resolution": "1080p"}, "resolution"), ({"creativity": 101}, "creativity"),
                          ({"sharpen": "50"}, "sharpen"), ({"smartGrain": True}, "smartGrain"),
                          ({"flavor": "bold"}, "flavor"), ({"fpsBoost": 1}, "fpsBoost"),
                          ({"model": "gen4.5"}, "model"), ({"prompt": "x"}, "Unrecognized key"),
                          ({"videoUri": "data:video/mp4;base64,bm90IGEgdmlkZW8="}, "could not be decoded"),
                          ({"videoUri": "data:image/png;base64,AAAA"}, "videoUri"),
                          ({"videoUri": None}, "videoUri")]:
        answer = httpx.post(f"{sim.url}/v1/video_upscale", json={**good, **change}, headers=headers(sim))
        assert answer.status_code == 400 and field in answer.json()["error"], change
    answer = httpx.post(f"{sim.url}/v1/video_upscale", json=good,
                        headers={"Authorization": f"Bearer {sim.api_key}"})
    assert answer.status_code == 400 and "X-Runway-Version" in answer.json()["error"]
    tuned = {**good, "creativity": 0, "flavor": "natural", "sharpen": 10, "smartGrain": 0}
    created = httpx.post(f"{sim.url}/v1/video_upscale", json=tuned, headers=headers(sim))
    # 2k by default: 15 credits/s for 1.5 s, in whole credits as Runway reports them
    assert created.status_code == 200 and created.json()["estimatedCost"]["credits"] == 22.0


def test_the_runwayml_sdk_upscales_against_the_simulator(clip, tmp_path):
    runwayml = pytest.importorskip("runwayml")
    with RunwaySimulator(latency=0.2) as sim:
        client = runwayml.RunwayML(api_key=sim.api_key, base_url=sim.url)
        uri = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
        created = client.video_upscale.create(model=MODEL, video_uri=uri, resolution="720p", fps_boost=False)
        done = created.wait_for_task_output(timeout=30)
        assert done.status == "SUCCEEDED" and done.cost.credits == 15
        video = tmp_path / "sdk.mp4"
        video.write_bytes(httpx.get(done.output[0]).content)
        assert (probe(video).width, probe(video).height) == (1280, 720)
        with pytest.raises(runwayml.BadRequestError):
            client.video_upscale.create(model=MODEL, video_uri=uri, resolution="8k")


def test_catalogue_upscalers_are_ones_the_block_and_api_know():
    catalogue = load_catalogue()
    runway = [u for u in catalogue.upscalers if u.provider == "runway"]
    assert {u.model for u in runway} == set(RunwayProvider.upscalers)
    for entry in runway:
        assert {t.api for t in entry.resolutions.values()} <= set(SHORT_SIDE)
        # said plainly until Runway publishes a price
        assert entry.price_assumed and "ASSUMPTION" in entry.price_source
