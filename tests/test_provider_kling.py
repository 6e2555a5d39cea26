"""The Kling adapter against its simulator on loopback: round trips, faults, errors, secrets,
create recovery by external_task_id, motion brush and camera control."""

from __future__ import annotations

import base64
import json
import logging
import time

import cv2
import httpx
import numpy as np
import pytest

from blocks import journal
from blocks.catalogue import load_catalogue
from blocks.kling import KlingProvider, camera_control, jwt_hs256
from blocks.media import probe
from blocks.providers import GenerationRequest, MotionRegion
from blocks.remote import ProviderError, request_key
from simulators.base import Fault
from simulators.kling import KlingSimulator

from tests.provider_faults import open_tasks

pytestmark = pytest.mark.usefixtures("own_takeflow_home")  # each test pays for its own creates

AK, SK = "ak_MARKER_SECRET_access_4242", "sk_MARKER_SECRET_signing_4242"
PROMPT = "A lighthouse on a cliff at dusk, waves below."
UNIT_CREDITS = load_catalogue().providers["kling"].credits_per_unit


@pytest.fixture(scope="module")
def sim():
    with KlingSimulator(access_key=AK, secret_key=SK, latency=0.3, render_height=96) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sim):
    sim.faults.clear()
    sim.lose_create_answers = 0
    yield
    sim.faults.clear()


@pytest.fixture
def kling(sim):
    provider = KlingProvider(access_key=AK, secret_key=SK, base_url=sim.url, first_poll=0.05, poll_interval=0.2,
                             max_retries=3)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A 640x360 reference image: a bright square on a gradient."""
    path = tmp_path_factory.mktemp("ref") / "ref.png"
    pixels = np.tile(np.linspace(40, 200, 640, dtype=np.uint8), (360, 1))
    pixels = cv2.merge([pixels, pixels // 2, 255 - pixels])
    cv2.rectangle(pixels, (260, 120), (380, 240), (255, 255, 255), -1)
    cv2.imwrite(str(path), pixels)
    return path


SEEDS = iter(range(1, 10_000))


def req(model="kling-v2-6", **kw) -> GenerationRequest:
    """A distinct take each call (its own seed, hence its own external_task_id)."""
    fields = dict(prompt=PROMPT, model=model, seed=next(SEEDS), duration=5, fps=24, aspect_ratio="16:9")
    return GenerationRequest(**{**fields, **kw})


def creates(sim) -> tuple[int, int]:
    """(tasks the simulator made, create requests it received)."""
    return sim.creates, sim.count("create")


def test_jwt_matches_rfc_vector_and_is_cached(kling, monkeypatch):
    token = jwt_hs256({"sub": "1234567890", "name": "John Doe", "iat": 1516239022}, "your-256-bit-secret")
    assert token.endswith(".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")  # the jwt.io HS256 example
    first = kling.auth_headers()["Authorization"]
    claims = json.loads(base64.urlsafe_b64decode(first.split(".")[1] + "=="))
    assert first.startswith("Bearer ") and claims["iss"] == AK and claims["exp"] - claims["nbf"] == 1805
    assert kling.auth_headers()["Authorization"] == first
    now = time.time()
    monkeypatch.setattr("blocks.kling.time.time", lambda: now + 1800 - 30)  # inside the last minute
    assert kling.auth_headers()["Authorization"] != first


def test_text_to_video_round_trip(sim, kling, tmp_path):
    before = creates(sim)
    request = req()
    result = kling.generate(request, tmp_path / "t2v.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == kling.render_size(request) == (1280, 720)
    assert result.credits == pytest.approx(1.5 * UNIT_CREDITS) == kling.estimate_credits(request)
    assert creates(sim) == (before[0] + 1, before[1] + 1)
    body = sim.bodies[-1]
    assert body["duration"] == "5" and body["mode"] == "std" and body["sound"] == "off"
    assert body["aspect_ratio"] == "16:9" and body["external_task_id"].startswith("takeflow-")
    assert "camera_control" not in body and not open_tasks()


def test_image_to_video_round_trip(sim, kling, image, tmp_path):
    before = creates(sim)
    request = req("kling-v3", duration=3, reference_image=image, audio=True)
    result = kling.generate(request, tmp_path / "i2v.mp4")
    info = probe(result.path)
    assert (info.width, info.height) == kling.render_size(request) == (1280, 720)
    assert result.credits == pytest.approx(0.9 * 3 * UNIT_CREDITS) == kling.estimate_credits(request)
    assert creates(sim) == (before[0] + 1, before[1] + 1)
    body = sim.bodies[-1]
    assert body["image"] == base64.b64encode(image.read_bytes()).decode()  # raw base64, no data: prefix
    assert "aspect_ratio" not in body and body["duration"] == "3" and body["sound"] == "on"


@pytest.mark.parametrize("faults", [
    [Fault("rate_limit", on="create", retry_after=0.1)],
    [Fault("rate_limit", on="create"), Fault("rate_limit", on="poll")],
    [Fault("server", on="create", status=503), Fault("server", on="poll", status=500)],
    [Fault("drop", on="poll", times=2)],
    [Fault("drop", on="download")],
    [Fault("truncate")],
    [Fault("corrupt")],
    [Fault("expire")],
], ids=["429-retry-after", "429", "5xx", "drop-poll", "drop-download", "truncate", "corrupt", "expire"])
def test_faults_are_survived_with_one_create(sim, kling, tmp_path, faults):
    before = creates(sim)
    sim.inject(*faults)
    result = kling.generate(req(), tmp_path / "take.mp4")
    assert probe(result.path).frames > 2 and not sim.faults
    assert sim.creates == before[0] + 1


def test_concurrency_limit_1303_is_waited_out(sim, kling, tmp_path):
    sim.concurrency = 1
    try:
        kling.submit(req())  # holds the account's only slot for the simulator's latency
        before = creates(sim)
        kling.generate(req(), tmp_path / "take.mp4")
    finally:
        sim.concurrency = None
    assert sim.creates == before[0] + 1 and sim.count("create") >= before[1] + 2  # refused 429/1303, retried


def test_dropped_create_is_looked_up_then_created_once(sim, kling, tmp_path):
    before, polls = creates(sim), sim.count("poll")
    sim.inject(Fault("drop", on="create"))
    kling.generate(req(), tmp_path / "take.mp4")
    assert creates(sim) == (before[0] + 1, before[1] + 2)  # dropped unhandled, looked up, created once
    assert any(p.endswith(sim.bodies[-1]["external_task_id"]) for _, p, _ in sim.requests[-60:])
    assert sim.count("poll") > polls


def test_lost_create_answer_resumes_the_task_found_by_external_id(sim, kling, tmp_path):
    before = creates(sim)
    sim.lose_create_answers = 1
    kling.generate(req(), tmp_path / "take.mp4")
    assert creates(sim) == (before[0] + 1, before[1] + 1)


def test_duplicate_external_id_is_refused_and_adopted(sim, kling, tmp_path):
    request = req()
    kling.generate(request, tmp_path / "a.mp4")
    body = sim.bodies[-1]
    raw = httpx.post(f"{sim.url}/v1/videos/text2video", json=body, headers=kling.auth_headers())
    assert raw.status_code == 400 and raw.json()["code"] == 1201 and "external_task_id" in raw.json()["message"]
    before = creates(sim)
    journal.forget(kling.work_key(request_key(request)))  # a journal lost: only Kling knows the take
    kling.generate(request, tmp_path / "b.mp4")  # the same take again: Kling already made it
    assert creates(sim) == (before[0], before[1] + 1)


def test_failed_task_then_retry_starts_a_new_task(sim, kling, tmp_path):
    request = req()
    sim.inject(Fault("fail", failure="internal"))
    with pytest.raises(ProviderError) as caught:
        kling.generate(request, tmp_path / "take.mp4")
    assert caught.value.kind == "transient" and caught.value.transient
    before = creates(sim)
    kling.generate(request, tmp_path / "take.mp4")
    assert sim.creates == before[0] + 1 and sim.bodies[-1]["external_task_id"].endswith("-r1")


@pytest.mark.parametrize("fault, kind", [
    (Fault("reject", failure="moderation"), "moderation"),
    (Fault("fail", failure="moderation"), "moderation"),
    (Fault("fail", failure="moderation_output"), "moderation"),
    (Fault("reject", failure="invalid_input"), "invalid_input"),
    (Fault("fail", failure="invalid_input"), "invalid_input"),
    (Fault("reject", failure="insufficient_credits"), "insufficient_credits"),
], ids=["moderation-submit", "moderation-after", "moderation-output", "invalid-submit", "invalid-after",
        "credits"])
def test_refusals_are_classified_and_not_retried(sim, kling, tmp_path, fault, kind):
    before = creates(sim)
    sim.inject(fault)
    with pytest.raises(ProviderError) as caught:
        kling.generate(req(), tmp_path / "take.mp4")
    assert caught.value.kind == kind and not caught.value.transient
    assert sim.count("create") == before[1] + 1  # one create request, never repeated
    assert sim.creates - before[0] == (1 if fault.kind == "fail" else 0)


def test_simulator_validation_reaches_the_adapter_as_invalid_input(sim, kling, tmp_path):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((200, 356, 3), np.uint8))
    before = creates(sim)
    with pytest.raises(ProviderError) as caught:
        kling.generate(req(reference_image=small), tmp_path / "take.mp4")
    assert caught.value.kind == "invalid_input" and "300px" in str(caught.value)
    assert creates(sim) == (before[0], before[1] + 1)


@pytest.mark.parametrize("change, message", [
    ({"duration": 5}, "duration must be a string"),
    ({"image": "data:image/png;base64,AAAA"}, "data: prefix"),
    ({"camera_control": {"type": "simple", "config": {"pan": 3}}}, "mutually exclusive"),
    ({"dynamic_masks": [{"mask": "x", "trajectories": []}] * 7}, "at most 6"),
])
def test_simulator_refuses_what_kling_refuses(sim, kling, image, change, message):
    body = {"model_name": "kling-v1-5", "mode": "pro", "duration": "5", "prompt": PROMPT,
            "image": base64.b64encode(image.read_bytes()).decode(),
            "dynamic_masks": [{"mask": base64.b64encode(image.read_bytes()).decode(),
                               "trajectories": [{"x": 1, "y": 1}, {"x": 9, "y": 9}]}]}
    if "dynamic_masks" in change or "duration" in change or "image" in change:
        body.pop("dynamic_masks")
    answer = httpx.post(f"{sim.url}/v1/videos/image2video", json={**body, **change}, headers=kling.auth_headers())
    assert answer.status_code == 400 and answer.json()["code"] == 1201 and message in answer.json()["message"]


def test_simulator_checks_the_token(sim, kling):
    now = int(time.time())
    cases = {1001: "", 1002: "Bearer not-a-jwt",
             1000: "Bearer " + jwt_hs256({"iss": AK, "exp": now + 60, "nbf": now}, "x"),
             1003: "Bearer " + jwt_hs256({"iss": AK, "exp": now + 60, "nbf": now + 30}, SK),
             1004: "Bearer " + jwt_hs256({"iss": AK, "exp": now - 1, "nbf": now - 60}, SK)}
    for code, header in cases.items():
        answer = httpx.get(f"{sim.url}/v1/videos/text2video/1", headers={"Authorization": header} if header else {})
        assert (answer.status_code, answer.json()["code"]) == (401, code)


@pytest.mark.parametrize("code, status, kind, retried", [
    (1302, 429, "rate_limited", True), (1303, 429, "rate_limited", True), (1102, 429, "insufficient_credits", False),
    (1101, 429, "insufficient_credits", False), (1103, 403, "auth", False), (1301, 400, "moderation", False),
    (1201, 400, "invalid_input", False), (5001, 503, "transient", True), (1004, 401, "auth", False),
])
def test_error_codes(kling, code, status, kind, retried):
    response = httpx.Response(status, json={"code": code, "message": "m", "request_id": "r"})
    assert kling.error_for(response).kind == kind
    assert (status in (429, 500, 502, 503, 504) and kling.retryable(response)) == retried


def test_keys_never_leak(sim, kling, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = KlingProvider(access_key=AK, secret_key="sk_MARKER_SECRET_wrong", base_url=sim.url, max_retries=0)
    with pytest.raises(ProviderError) as caught:
        wrong.generate(req(), tmp_path / "take.mp4")
    assert caught.value.kind == "auth" and "access_key and secret_key" in str(caught.value)
    sim.inject(Fault("reject", failure="moderation"))
    with pytest.raises(ProviderError) as refused:
        kling.generate(req(), tmp_path / "take.mp4")
    texts = [str(caught.value), repr(caught.value), str(refused.value), repr(wrong), repr(kling),
             wrong.model_dump_json(), kling.model_dump_json(), json.dumps(kling.cache_identity()), caplog.text]
    assert not any("MARKER_SECRET" in text for text in texts)
    with pytest.raises(ProviderError, match="access_key and secret_key") as missing:
        KlingProvider(base_url=sim.url).generate(req(), tmp_path / "take.mp4")
    assert missing.value.kind == "auth"


def test_motion_brush_becomes_masks_and_trajectories(sim, kling, image):
    square = ((0.40, 0.30), (0.60, 0.30), (0.60, 0.70), (0.40, 0.70))
    triangle = ((0.10, 0.80), (0.30, 0.80), (0.20, 0.55))
    regions = (MotionRegion(polygon=square, vector=(0.2, -0.1)), MotionRegion(polygon=triangle, vector=(-0.05, 0.1)))
    task = kling.submit(req("kling-v1-5", resolution="1080p", reference_image=image, motion_regions=regions,
                            prompt=PROMPT + " The camera pans left."))
    body = sim.bodies[-1]
    assert task.startswith("image2video/") and "camera_control" not in body and len(body["dynamic_masks"]) == 2
    for region, group in zip(regions, body["dynamic_masks"]):
        mask = cv2.imdecode(np.frombuffer(base64.b64decode(group["mask"]), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (360, 640) and set(np.unique(mask)) == {0, 255}
        expected = np.zeros_like(mask)
        cv2.fillPoly(expected, [np.round(np.array(region.polygon) * (640, 360)).astype(np.int32)], 255)
        overlap = np.logical_and(mask, expected).sum() / np.logical_or(mask, expected).sum()
        assert overlap > 0.97
        points = group["trajectories"]
        assert 2 <= len(points) <= 77 and all(type(p["x"]) is int and type(p["y"]) is int for p in points)
        dx, dy = points[-1]["x"] - points[0]["x"], points[-1]["y"] - points[0]["y"]
        assert abs(dx - region.vector[0] * 640) <= 1 and abs(dy + region.vector[1] * 360) <= 1  # y flipped
        cx, cy = np.array(region.polygon).mean(axis=0) * (640, 360)
        assert abs(points[0]["x"] - cx) <= 1 and abs(points[0]["y"] - (360 - cy)) <= 1  # origin bottom-left


def test_brush_outside_its_mode_is_refused_before_any_create(sim, kling, image):
    before = creates(sim)
    region = MotionRegion(polygon=((0.1, 0.1), (0.3, 0.1), (0.2, 0.3)), vector=(0.1, 0.0))
    for request in (req("kling-v1-5", resolution="720p", reference_image=image, motion_regions=(region,)),
                    req("kling-v2-6", reference_image=image, motion_regions=(region,)),
                    req("kling-v1-5", reference_image=image, motion_regions=(region,) * 7),
                    req("kling-v2-6", audio=True), req("kling-v2-5-turbo", audio=True), req(duration=6)):
        with pytest.raises(ProviderError) as caught:
            kling.submit(request)
        assert caught.value.kind == "invalid_input"
    assert creates(sim) == before


def test_camera_move_becomes_simple_camera_control(sim, kling, image):
    kling.submit(req("kling-v1-5", resolution="1080p", reference_image=image, motion_amount=0.6,
                     prompt="Slow pan left across the harbour at dawn."))
    control = sim.bodies[-1]["camera_control"]
    assert control["type"] == "simple" and control["config"]["pan"] == -6.0
    assert sum(1 for v in control["config"].values() if v) == 1
    assert camera_control("The camera tracks right along the pier.", 1.0)["config"]["horizontal"] == 10
    assert camera_control("Crane up over the rooftops.", 0.5)["config"]["vertical"] == 5
    assert camera_control("Slow dolly in on her face.", 0.3)["config"]["zoom"] == -3
    assert camera_control("A boat drifts by.", 0.5) is None  # no move named: left to the model
    kling.submit(req("kling-v2-6", prompt="Slow pan left across the harbour at dawn."))
    assert "camera_control" not in sim.bodies[-1]  # v2-6 has no camera control in the catalogue


def test_modes_follow_resolution(kling, image):
    kind, body = kling.build(req("kling-v3", duration=7, resolution="4k"))
    assert kind == "text2video" and body["mode"] == "4k" and body["duration"] == "7" and body["sound"] == "off"
    assert "mode" not in kling.build(req("kling-v2-1-master", resolution="1080p"))[1]
    assert kling.build(req("kling-v2-6", resolution="1080p", audio=True))[1]["mode"] == "pro"


def wait_for(sim, kling, kind, task_id) -> dict:
    deadline = time.monotonic() + 20
    while True:
        data = httpx.get(f"{sim.url}/v1/videos/{kind}/{task_id}", headers=kling.auth_headers()).json()["data"]
        if data["task_status"] in ("succeed", "failed") or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_a_create_without_duration_takes_the_documented_default(sim, kling):
    answer = httpx.post(f"{sim.url}/v1/videos/text2video", headers=kling.auth_headers(),
                        json={"model_name": "kling-v2-6", "prompt": PROMPT})
    assert answer.status_code == 200 and answer.json()["code"] == 0
    done = wait_for(sim, kling, "text2video", answer.json()["data"]["task_id"])
    assert done["task_status"] == "succeed" and done["task_result"]["videos"][0]["duration"] == "5"
    assert done["final_unit_deduction"] == "1.5"  # v2-6 std: 0.3 units a second for the default 5 s


def test_kling_v3_multi_shot_prompts_are_taken_and_checked(sim, kling):
    body = {"model_name": "kling-v3", "duration": "6", "multi_shot": True, "shot_type": "customize",
            "multi_prompt": [{"index": 1, "prompt": "a kite rises over the meadow", "duration": "4"},
                             {"index": 2, "prompt": "it dives towards the lake", "duration": "2"}]}
    answer = httpx.post(f"{sim.url}/v1/videos/text2video", headers=kling.auth_headers(), json=body)
    assert answer.status_code == 200, answer.text
    task = sim.tasks[answer.json()["data"]["task_id"]]
    assert wait_for(sim, kling, "text2video", task.id)["task_status"] == "succeed"
    for change, message in [
        ({"duration": "10"}, "add up to 6 s, not the duration 10"),
        ({"multi_shot": False}, "need multi_shot: true"),
        ({"model_name": "kling-v2-6"}, "not supported by kling-v2-6"),
        ({"multi_prompt": [{"index": 1, "prompt": "x", "duration": 6}]}, "string of whole seconds"),
        ({"shot_type": "intelligence"}, "only taken with shot_type customize"),
    ]:
        answer = httpx.post(f"{sim.url}/v1/videos/text2video", headers=kling.auth_headers(), json={**body, **change})
        assert answer.status_code == 400 and answer.json()["code"] == 1201, change
        assert message in answer.json()["message"], (change, answer.json())
