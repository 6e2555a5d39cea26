"""Kling motion control end to end: a shot's motion reference is validated before any spend,
previewed on previz (which replays the reference's global motion and timing), sent to the Kling
simulator's `POST /v1/videos/motion-control`, and scored on how closely each take follows it."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from blocks.kling import KlingProvider
from blocks.media import FrameWriter, probe
from blocks.previz_motion import estimate_motion
from blocks.previz_render import render_previz
from blocks.providers import GenerationRequest
from blocks.registry import provider_class
from blocks.remote import ProviderError
from simulators.kling import KlingSimulator
from simulators.serve import client_settings, start_simulator
from tasks.checks import check_run
from tasks.metrics_motion_ref import motion_reference_adherence
from tasks.storyboard import StoryboardError, parse_storyboard
from tests.conftest import EXAMPLES

AK, SK = "ak_MARKER_SECRET_motion_77", "sk_MARKER_SECRET_motion_77"
IMAGE = EXAMPLES / "references" / "kite-meadow.jpg"


def pan_video(dest: Path, seconds: float, vx: float, vy: float = 0.0, size=(640, 360), fps=24) -> Path:
    """A camera travelling over blurred noise at (vx, vy) px per frame: known global motion."""
    width, height = size
    rng = np.random.default_rng(7)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (height * 3, width * 3, 3), dtype=np.uint8), (0, 0), 2)
    with FrameWriter(dest, width, height, fps) as out:
        for i in range(round(seconds * fps)):
            x, y = int(width + vx * i), int(height + vy * i)
            out.write(np.ascontiguousarray(scene[y:y + height, x:x + width]))
    return dest


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("motion")
    return {"right": pan_video(folder / "right.mp4", 4, 4, 1), "left": pan_video(folder / "left.mp4", 4, -4, -1),
            "short": pan_video(folder / "short.mp4", 2.0, 4), "square": pan_video(folder / "square.mp4", 4, 2,
                                                                                  size=(400, 400)),
            "folder": folder}


@pytest.fixture(scope="module")
def web(videos):
    """The reference videos over HTTP on loopback, where both takeflow and the simulator fetch them."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(videos["folder"]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# ---- the reference's motion, previewed and scored ------------------------------------------------

def test_previz_replays_the_references_motion_and_scoring_tells_it_from_the_opposite(videos, tmp_path):
    preview = tmp_path / "preview.mp4"
    render_previz(preview, width=320, height=180, fps=24, duration=4, prompt="a dancer on a rooftop",
                  seed=3, motion_amount=0.5, reference_image=IMAGE, regions=(), motion_reference=videos["right"])
    track, reference = estimate_motion(preview), estimate_motion(videos["right"])
    assert reference.x[-1] == pytest.approx(95 * 4 / 640, rel=0.15)  # the camera's real travel
    assert track.x[-1] == pytest.approx(reference.x[-1], rel=0.2) and track.y[-1] > 0.1
    assert motion_reference_adherence(preview, videos["right"]) > 0.8
    assert motion_reference_adherence(preview, videos["left"]) == 0.0  # moving the other way
    assert motion_reference_adherence(videos["short"], videos["right"]) > 0.8  # same move, over 2 s


# ---- the adapter and the simulator's contract ------------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    with KlingSimulator(access_key=AK, secret_key=SK, latency=0.2, render_height=96) as server:
        yield server


@pytest.fixture
def kling(sim):
    provider = KlingProvider(access_key=AK, secret_key=SK, base_url=sim.url, first_poll=0.05, poll_interval=0.2)
    yield provider
    provider.close()


def req(url, model="kling-v3-motion-control", **kw) -> GenerationRequest:
    fields = dict(prompt="a dancer spins", model=model, seed=1, duration=4, fps=24, aspect_ratio="16:9", reference_image=IMAGE, motion_reference_url=url)
    return GenerationRequest(**{**fields, **kw})


def test_a_motion_control_take_follows_the_reference_and_is_billed_by_its_length(kling, sim, web, videos, tmp_path):
    result = kling.generate(req(f"{web}/right.mp4", resolution="1080p"), tmp_path / "take.mp4")
    body = sim.bodies[-1]
    assert body["model_name"] == "kling-v3" and body["mode"] == "pro" and body["character_orientation"] == "video"
    assert "duration" not in body and "aspect_ratio" not in body and not body["image_url"].startswith("data:")
    info = probe(result.path)
    assert (info.width, info.height) == (1920, 1080) and info.duration == pytest.approx(4, abs=0.1)
    # 1.2 units per second of reference at pro, $0.14 a unit, 14 credits a unit
    assert result.credits == pytest.approx(round(1.2 * 4, 2) * 14, rel=1e-3)
    assert motion_reference_adherence(result.path, videos["right"]) > 0.7


@pytest.mark.parametrize("change, words", [
    ({"video_url": "/short.mp4"}, "at least 3s"),
    ({"video_url": "/missing.mp4"}, "could not be fetched"),
    ({"video_url": "https://example.invalid/ref.mp4"}, "could not be fetched"),
    ({"duration": "5"}, "duration is not a parameter of motion-control"),
    ({"character_orientation": None}, "character_orientation is required"),
    ({"model_name": "kling-v1-6"}, "not supported by motion-control"),
])
def test_the_simulator_refuses_what_motion_control_refuses(sim, kling, web, change, words):
    _, body = kling.build(req(f"{web}/right.mp4"))
    change = {k: (web + v if isinstance(v, str) and v.startswith("/") else v) for k, v in change.items()}
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    made = sim.creates
    answer = httpx.post(f"{sim.url}/v1/videos/motion-control", json=body, headers=kling.auth_headers(), timeout=30)
    assert answer.status_code == 400 and answer.json()["code"] == 1201 and words in answer.json()["message"]
    assert sim.creates == made


def test_the_adapter_refuses_before_any_create(kling, sim, web):
    made = sim.creates
    for request, words in [
        (req(f"{web}/right.mp4", reference_image=None), "needs a reference image"),
        (req(None, motion_reference=IMAGE), "must be an https URL"),
        (req("s3://bucket/ref.mp4"), "must be an https URL"),
        (req(f"{web}/right.mp4", model="kling-v2-6", duration=5), "follows no motion reference"),
        (req(f"{web}/right.mp4", duration=31), "3-30 s"),
    ]:
        with pytest.raises(ProviderError) as refused:
            kling.generate(request, Path("/nonexistent/take.mp4"))
        assert refused.value.kind == "invalid_input" and words in str(refused.value)
        assert AK not in str(refused.value) and SK not in str(refused.value)
    assert sim.creates == made


# ---- the storyboard: validated before spend, previewed, produced ------------------------------------

def board(reference, **shot):
    return {"title": "Motion Ref", "defaults": {"fps": 24, "takes": 1, "quality_bar": 0.0},
            "shots": [{"id": "dance", "brief": "a dancer spins on a rooftop at dusk", "reference_image": str(IMAGE),
                       "provider": "previz", **({"motion_reference": str(reference)} if reference else {}),
                       **shot}]}


def test_a_bad_motion_reference_is_refused_in_one_line_naming_the_field(videos, tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n")
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as handle:  # sparse: 101 MB on paper, nothing on disk
        handle.truncate(101 * 2**20)
    for reference, words in [(videos["short"], "lasts 2.0 s"), (not_video, "not an MP4 or MOV"),
                             (huge, "limit"), (IMAGE, "not an MP4 or MOV")]:
        with pytest.raises(StoryboardError) as refused:
            parse_storyboard(board(reference), str(tmp_path))
        message = str(refused.value)
        assert "motion_reference" in message and words in message and "\n" not in message
    with pytest.raises(StoryboardError, match="duration is 5 s but motion_reference lasts 4 s"):
        parse_storyboard(board(videos["right"], duration=5), str(tmp_path))


def test_a_local_reference_cannot_go_to_kling_and_a_remote_one_needs_its_length(videos, web, tmp_path):
    local = parse_storyboard(board(videos["right"], provider="kling", model="kling-v3-motion-control"), ".")
    assert local.duration_of(0) == 4  # the shot lasts as long as its reference
    with pytest.raises(StoryboardError, match=r"shots\[0\].motion_reference: kling/kling-v3-motion-control "
                                              "fetches the video itself"):
        check_run(local)
    remote = parse_storyboard(board(f"{web}/right.mp4", provider="kling", model="kling-v3-motion-control"), ".")
    with pytest.raises(StoryboardError, match=r"shots\[0\].duration: the motion reference lasts 4.00 s"):
        check_run(remote)
    square = parse_storyboard({**board(f"{web}/square.mp4", provider="kling", model="kling-v3-motion-control",
                                       duration=4)}, ".")
    with pytest.raises(StoryboardError, match=r"shots\[0\].motion_reference: the video is 400x400, not 16:9"):
        check_run(square)
    with pytest.raises(StoryboardError, match=r"shots\[0\].model: runway/gen4_turbo follows no motion reference"):
        parse_storyboard(board(videos["right"], provider="runway", model="gen4_turbo"), ".")
    with pytest.raises(StoryboardError, match="needs a motion reference video"):
        parse_storyboard(board(None, provider="kling", model="kling-v3-motion-control", duration=4), ".")


@pytest.fixture
def kling_block(prefect_server):
    sim = start_simulator("kling", latency=0.3, render_height=72)
    provider_class("kling")(**client_settings("kling", sim), first_poll=0.05, poll_interval=0.2).save(
        "kling", overwrite=True)
    yield sim
    sim.stop()
    provider_class("kling").delete("kling")


def test_a_storyboard_with_a_motion_reference_previews_on_previz_and_runs_on_kling(kling_block, web, videos,
                                                                                   tmp_path):
    from flows.produce import RunOptions, produce

    url = f"{web}/right.mp4"
    data = board(url, duration=4)
    data["shots"].append({**data["shots"][0], "id": "dance-kling", "provider": "kling",
                          "model": "kling-v3-motion-control"})
    storyboard = parse_storyboard(data, str(tmp_path))
    check_run(storyboard)  # fetches and measures the remote reference before anything is spent
    state = produce(storyboard=storyboard, options=RunOptions(out_dir=str(tmp_path)), return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "motion-ref" / "report.json").read_text())
    preview, take = (shot["takes"][0] for shot in report["shots"])
    assert preview["provider"] == "previz" and take["model"] == "kling-v3-motion-control"
    for made in (preview, take):  # both follow the reference, and the score says so
        assert made["metrics"]["motion_reference_adherence"] > 0.7
    [task] = kling_block.tasks.values()
    assert task.params["kind"] == "motion-control" and kling_block.bodies[0]["video_url"] == url
    assert take["credits"] == pytest.approx(round(0.9 * 4, 2) * 14, rel=1e-3)
