"""Runway's ephemeral uploads: a PNG or JPEG over the data-URI limit (and a video over the upscaler's)
goes to the Runway simulator as a runway:// upload of the file as it is, the official SDK's own
upload works against the same simulator, and storage never sees the API key."""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from blocks.providers import GenerationRequest
from blocks.remote import ProviderError
from blocks.runway import MAX_IMAGE_BYTES, RunwayProvider
from simulators.base import Fault
from simulators.runway import VERSION, RunwaySimulator

from tests.provider_faults import open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates


@pytest.fixture(scope="module")
def sim():
    with RunwaySimulator(latency=0.3, seed=3) as simulator:
        yield simulator


@pytest.fixture
def runway(sim):
    sim.faults.clear()
    provider = RunwayProvider(api_key=sim.api_key, base_url=sim.url, first_poll=0.05, poll_interval=0.2)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    """Noise does not compress: a 1400x1000 PNG of it is over 4 MB, past the ~3.7 MB that fit inline."""
    path = tmp_path_factory.mktemp("img") / "plate.png"
    cv2.imwrite(str(path), np.random.default_rng(9).integers(0, 256, (1000, 1400, 3), dtype=np.uint8))
    assert path.stat().st_size > MAX_IMAGE_BYTES
    return path


def i2v(image) -> GenerationRequest:
    return GenerationRequest(prompt="a harbour at dawn, slow pan left", model="gen4.5", seed=3, duration=2,
                             fps=24, aspect_ratio="16:9", reference_image=image)


def test_a_large_reference_image_is_uploaded_as_it_is_not_shrunk(sim, runway, big_png, tmp_path):
    uploads, stored, creates = sim.count("upload"), sim.count("storage"), sim.creates
    result = runway.generate(i2v(big_png), tmp_path / "take.mp4")
    assert result.path.is_file()
    assert sim.count("upload") == uploads + 1 and sim.count("storage") == stored + 1
    assert sim.creates == creates + 1
    assert big_png.read_bytes() in (data for data, _ in sim.uploads.values())  # byte for byte


def test_a_small_reference_image_still_goes_inline(sim, runway, tmp_path):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((360, 640, 3), 120, np.uint8))
    uploads = sim.count("upload")
    runway.generate(i2v(small), tmp_path / "take.mp4")
    assert sim.count("upload") == uploads


def test_a_failed_storage_post_is_transient_and_nothing_is_created(sim, runway, big_png, tmp_path):
    sim.inject(Fault("server", on="storage", status=503))
    creates = sim.creates
    with pytest.raises(ProviderError) as caught:
        runway.generate(i2v(big_png), tmp_path / "take.mp4")
    assert caught.value.transient and "upload of plate.png failed" in str(caught.value)
    assert sim.creates == creates and not open_tasks()
    assert sim.api_key not in str(caught.value)


def test_the_official_sdk_uploads_to_the_simulator_and_uses_the_uri(sim, big_png):
    from runwayml import RunwayML

    client = RunwayML(api_key=sim.api_key, base_url=sim.url)
    uri = client.uploads.create_ephemeral(file=big_png).uri
    assert uri.startswith("runway://")
    task = client.image_to_video.create(model="gen4.5", prompt_image=uri, prompt_text="a harbour at dawn",
                                        ratio="1280:720", duration=2).wait_for_task_output()
    assert task.status == "SUCCEEDED" and task.output


def test_storage_refuses_the_api_key_a_changed_form_and_an_unknown_upload(sim):
    api = {"Authorization": f"Bearer {sim.api_key}", "X-Runway-Version": VERSION}
    started = httpx.post(f"{sim.url}/v1/uploads", json={"filename": "a.png", "type": "ephemeral"},
                         headers=api).json()
    files = {"file": ("a.png", b"\x89PNG....", "image/png")}
    leaked = httpx.post(started["uploadUrl"], data=started["fields"], files=files,
                        headers={"Authorization": api["Authorization"]})
    assert leaked.status_code == 400 and b"Unsupported Authorization Type" in leaked.content
    changed = httpx.post(started["uploadUrl"], data={**started["fields"], "policy": "e30="}, files=files)
    assert changed.status_code == 403 and b"AccessDenied" in changed.content
    for field in ({"filename": "", "type": "ephemeral"}, {"filename": "a.png", "type": "forever"},
                  {"filename": "a.png", "type": "ephemeral", "public": True}):
        assert httpx.post(f"{sim.url}/v1/uploads", json=field, headers=api).status_code == 400
    unknown = httpx.post(f"{sim.url}/v1/image_to_video", headers=api, json={
        "model": "gen4.5", "promptImage": "runway://0123456789abcdef0123456789abcdef", "promptText": "a harbour",
        "ratio": "1280:720", "duration": 2})
    assert unknown.status_code == 400 and "not found or has expired" in unknown.json()["error"]
