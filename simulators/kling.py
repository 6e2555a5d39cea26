"""A Kling AI API simulator: JWT auth, text2video / image2video tasks, Kling's error envelope.

It follows shared/reference/providers.md §2 (◐ transcriptions of the official docs). Where the
docs are silent it makes a choice, stated here so tests and adapters can rely on it:
- a task that is not found (by task_id or external_task_id) answers 404 with code 1203;
- a second create with an external_task_id already used answers 400/1201 with a message naming
  external_task_id (the docs say the id "must be unique per user");
- a task that fails moderation after submit reads task_status "failed" with task_status_msg
  "Failure to pass the risk control system" (the message integrators report from Kling);
- over `concurrency` running tasks a create answers 429/1303, as Kling's resource packs do;
- only base64 images are taken (no URL fetching), and `aspect_ratio` on image2video is refused;
- motion control's `video_url` is fetched for real from loopback hosts (or found in `web`), as
  Kling fetches it; any other URL cannot be fetched (simulators/kling_motion.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

import cv2
import numpy as np

from blocks.catalogue import load_catalogue
from simulators.kling_motion import Invalid, check_motion_control
from simulators.base import Drop, ProviderSimulator, Request, Response, SimTask, collect_routes, route

SIZES = {720: {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)},
         1080: {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1440, 1440)},
         2160: {"16:9": (3840, 2160), "9:16": (2160, 3840), "1:1": (2880, 2880)}}
FIVE_TEN = ("5", "10")
# model: kinds, fps, durations, {mode: (short side, units per second, with sound or None)}, sound
# modes, brush/camera (mode, duration) — the capability map and price list of providers.md §2.3/§2.6
MODELS: dict[str, dict[str, Any]] = {
    "kling-v2-6": dict(kinds=("text2video", "image2video"), fps=24, durations=FIVE_TEN, sound=("pro",),
                       modes={"std": (720, 0.3, None), "pro": (1080, 0.5, 1.0)}),
    "kling-v2-5-turbo": dict(kinds=("text2video", "image2video"), fps=24, durations=FIVE_TEN,
                             modes={"std": (720, 0.3, None), "pro": (1080, 0.5, None)}),
    "kling-v2-1-master": dict(kinds=("text2video", "image2video"), fps=24, durations=FIVE_TEN,
                              modes={"std": (1080, 2.0, None)}),
    "kling-v1-6": dict(kinds=("text2video", "image2video"), fps=24, durations=FIVE_TEN,
                       modes={"std": (720, 0.4, None), "pro": (1080, 0.7, None)}),
    "kling-v1-5": dict(kinds=("image2video",), fps=30, durations=FIVE_TEN, motion=("pro", "5"),
                       modes={"std": (720, 0.4, None), "pro": (1080, 0.7, None)}),
    "kling-v3": dict(kinds=("text2video", "image2video"), fps=24, durations=tuple(map(str, range(3, 16))),
                     sound=("std", "pro", "4k"), sound_default="on",
                     modes={"std": (720, 0.6, 0.9), "pro": (1080, 0.8, 1.2), "4k": (2160, 3.0, 3.0)}),
}
CODES = {"rate_limit": (429, 1302), "concurrency": (429, 1303), "moderation": (400, 1301),
         "moderation_output": (400, 1301), "invalid_input": (400, 1201), "internal": (500, 5000),
         "insufficient_credits": (429, 1102), "bad_output": (500, 5000), "not_found": (404, 1203)}
FAILURES = {"moderation": "Failure to pass the risk control system",
            "moderation_output": "Failure to pass the risk control system",
            "invalid_input": "Image pixel is invalid", "insufficient_credits": "Resource pack balance is not enough",
            "internal": "Internal error, please try again later",
            "bad_output": "Internal error, please try again later"}
AUTH = {1000: "Authentication failed", 1001: "Authorization is empty", 1002: "Authorization is invalid",
        1003: "Authorization is not yet valid", 1004: "Authorization has expired"}
CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@collect_routes
class KlingSimulator(ProviderSimulator):
    """Kling's contract on loopback; `bodies` holds every create body it handled."""

    name = "kling"

    def __init__(self, *, access_key: str | None = None, secret_key: str | None = None,
                 web: dict[str, bytes] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.web = web if web is not None else {}  # motion references by URL, beside loopback fetches
        self.access_key = access_key or "ak-" + uuid.uuid4().hex
        self.secret_key = secret_key or secrets.token_hex(16)
        self.bodies: list[dict[str, Any]] = []
        self.by_external: dict[str, str] = {}
        self.lose_create_answers = 0  # handle this many creates, then drop the answer

    # ---- auth and errors ----------------------------------------------------------------------

    def auth_code(self, request: Request) -> int | None:
        header = request.headers.get("Authorization") or ""
        if not header:
            return 1001
        token = header.removeprefix("Bearer ")
        try:
            head, payload, signature = token.split(".")
            claims, alg = _b64json(payload), _b64json(head).get("alg")
        except (ValueError, binascii.Error, AttributeError):
            return 1002
        if not isinstance(claims, dict):
            return 1002
        expected = base64.urlsafe_b64encode(hmac.new(self.secret_key.encode(), f"{head}.{payload}".encode(),
                                                     hashlib.sha256).digest()).rstrip(b"=").decode()
        if alg != "HS256" or not hmac.compare_digest(signature, expected) or claims.get("iss") != self.access_key:
            return 1000
        now = time.time()
        if not isinstance(claims.get("exp"), (int, float)) or not isinstance(claims.get("nbf"), (int, float)):
            return 1002
        if claims["nbf"] > now:
            return 1003
        return 1004 if claims["exp"] <= now else None

    def authorised(self, request: Request) -> bool:
        return self.auth_code(request) is None

    def auth_error(self, request: Request) -> Response:
        code = self.auth_code(request) or 1000
        return Response(401, {"code": code, "message": AUTH[code], "request_id": str(uuid.uuid4())})

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if kind == "expired":  # the CDN in front of the videos, not the API
            return Response(403, b"Request has expired", {"Content-Type": "text/plain"})
        if kind == "server":
            code = {503: 5001, 504: 5002}.get(status, 5000)
        else:
            status, code = CODES.get(kind, (status, 1200))
        return Response(status, {"code": code, "message": message, "request_id": str(uuid.uuid4())}, headers)

    # ---- routes -------------------------------------------------------------------------------

    @route("POST", r"/v1/videos/(text2video|image2video|motion-control)", "create")
    def create(self, request: Request, kind: str) -> Response:
        try:
            body = request.json()
            if kind == "motion-control":
                return self.create_motion(body)
            spec, image, size = self.validate(kind, body)
        except Invalid as exc:
            return self.error(400, "invalid_input", str(exc))
        except ValueError:
            return self.error(400, "invalid_input", "request body is not JSON")
        with self.lock:
            external = body.get("external_task_id")
            refused = self.refuse_create(external)
            if refused is not None:
                return refused
            mode = body.get("mode", "std") if len(spec["modes"]) > 1 else next(iter(spec["modes"]))
            short, price, with_sound = spec["modes"][mode]
            sound = body.get("sound", spec.get("sound_default", "off")) == "on"
            duration = body.get("duration", "5")  # the docs' default: a create without it is valid
            units = (with_sound if sound and with_sound is not None else price) * int(duration)
            params = {"kind": kind, "external": external, "duration": duration, "units": units}
            # a multi-shot create is rendered from its segments' prompts, in order
            prompt = " then ".join(p["prompt"] for p in body.get("multi_prompt") or []) or body.get("prompt", "")
            task = self.new_task(body.get("model_name", "kling-v1"), params, size=size or SIZES[short][
                body.get("aspect_ratio", "16:9")], duration=int(duration), fps=spec["fps"],
                prompt=prompt, image=image, task_id=str(700000000000000000 + self.creates))
            lose = self.book_create(task, body, units)
        if lose:
            raise Drop()
        return self.envelope(self.describe(task, with_result=False))

    def create_motion(self, body: Any) -> Response:
        """`POST /v1/videos/motion-control` (simulators/kling_motion.py checks it)."""
        checked = check_motion_control(body, self.web, self.media)
        with self.lock:
            external = body.get("external_task_id")
            refused = self.refuse_create(external)
            if refused is not None:
                return refused
            duration = f"{round(checked.seconds, 1):g}"
            params = {"kind": "motion-control", "external": external, "duration": duration,
                      "units": checked.units}
            task = self.new_task(checked.model, params, size=checked.size, duration=checked.seconds, fps=24,
                                 prompt=body.get("prompt") or "", image=checked.image,
                                 task_id=str(700000000000000000 + self.creates), motion=checked.video)
            lose = self.book_create(task, body, checked.units)
        if lose:
            raise Drop()
        return self.envelope(self.describe(task, with_result=False))

    def refuse_create(self, external: str | None) -> Response | None:
        """A create Kling refuses whatever its body: a reused external_task_id, or too many tasks."""
        if external and external in self.by_external:
            return self.error(400, "invalid_input", f"external_task_id {external} already exists")
        if self.concurrency is not None and sum(
                self.status(t)[0] in ("queued", "throttled", "running") for t in self.tasks.values()
                ) >= self.concurrency:
            return self.error(429, "concurrency", "parallel task over resource pack limit")
        return None

    def book_create(self, task: SimTask, body: dict[str, Any], units: float) -> bool:
        """Record a made task; True when this create's answer is to be lost."""
        # billed in units, only for a task that succeeds (final_unit_deduction of a failed one: 0)
        task.extra["price"] = round(units * load_catalogue().providers["kling"].credits_per_unit, 4)
        if task.params["external"]:
            self.by_external[task.params["external"]] = task.id
        self.bodies.append(body)
        lose = self.lose_create_answers > 0
        self.lose_create_answers -= lose
        return lose

    @route("GET", r"/v1/videos/(text2video|image2video|motion-control)/([\w.-]+)", "poll")
    def query(self, request: Request, kind: str, ident: str) -> Response:
        task = self.tasks.get(self.by_external.get(ident, ident))
        if task is None or task.params["kind"] != kind:
            return self.error(404, "not_found", f"task {ident} does not exist")
        return self.envelope(self.describe(task, with_result=True))

    # ---- helpers ------------------------------------------------------------------------------

    def envelope(self, data: dict[str, Any]) -> Response:
        return Response(200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data})

    def describe(self, task: SimTask, with_result: bool) -> dict[str, Any]:
        created = int((time.time() - (time.monotonic() - task.created)) * 1000)
        data = {"task_id": task.id, "task_status": "submitted", "created_at": created,
                "updated_at": int(time.time() * 1000),
                "task_info": {"external_task_id": task.params["external"]} if task.params["external"] else {}}
        if not with_result:
            return data
        status, _ = self.status(task)
        data["task_status"] = {"succeeded": "succeed", "failed": "failed", "running": "processing"}.get(
            status, "submitted")
        data.update(task_status_msg=FAILURES.get(task.failure, "") if status == "failed" else "",
                    watermark_info={"enabled": False}, final_unit_deduction="0")
        if status == "succeeded":
            data["final_unit_deduction"] = f"{task.params['units']:g}"
            data["task_result"] = {"videos": [{"id": task.id + "-0", "url": self.output_url(task),
                                               "duration": task.params["duration"]}]}
        return data

    def validate(self, kind: str, body: Any) -> tuple[dict[str, Any], bytes | None, tuple[int, int] | None]:
        """Check a create the way Kling does; return the model spec, image bytes and output size."""
        if not isinstance(body, dict):
            raise Invalid("request body must be a JSON object")
        model = body.get("model_name", "kling-v1")
        spec = MODELS.get(model)
        if spec is None or kind not in spec["kinds"]:
            raise Invalid(f"model_name {model!r} is not supported by {kind}")
        prompt = body.get("prompt")
        duration = body.get("duration", "5")
        if not isinstance(duration, str):
            raise Invalid("duration must be a string such as \"5\"")
        multi = self.check_multi_shot(model, body, duration)
        if (kind == "text2video" and not prompt and not multi) or not isinstance(prompt or "", str) \
                or len(prompt or "") > 2500:
            raise Invalid("prompt is required for text2video and at most 2500 characters")
        mode = body.get("mode", "std")
        if duration not in spec["durations"] or (len(spec["modes"]) > 1 and mode not in spec["modes"]):
            raise Invalid(f"{model} takes duration {'/'.join(spec['durations'])} and mode {'/'.join(spec['modes'])}")
        if "cfg_scale" in body and model.startswith("kling-v2"):
            raise Invalid("cfg_scale is not supported by kling-v2.x models")
        sound = body.get("sound", "off")
        if sound not in ("on", "off") or (sound == "on" and mode not in spec.get("sound", ())):
            raise Invalid(f"sound must be on/off, and on only for {model} modes {spec.get('sound', ())}")
        groups = [k for k in (("image_tail",), ("dynamic_masks", "static_mask"), ("camera_control",))
                  if any(body.get(f) for f in k)]
        if len(groups) > 1:
            raise Invalid("image_tail, dynamic_masks/static_mask and camera_control are mutually exclusive")
        motion = spec.get("motion")
        if groups and groups[0] != ("image_tail",) and motion and motion != (mode, duration):
            raise Invalid(f"{model} takes motion brush and camera control only in mode {motion[0]}, {motion[1]} s")
        if body.get("camera_control"):
            self.check_camera(body["camera_control"], model, kind, motion)
        if kind == "text2video":
            if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
                raise Invalid("aspect_ratio must be 16:9, 9:16 or 1:1")
            return spec, None, None
        if "aspect_ratio" in body:
            raise Invalid("aspect_ratio is not a parameter of image2video; the image sets it")
        image, (width, height) = self.decode_image(body.get("image"), "image")
        if body.get("dynamic_masks"):
            if not motion:
                raise Invalid(f"{model} does not support dynamic_masks")
            self.check_masks(body["dynamic_masks"], (width, height))
        ratio = min(SIZES[720], key=lambda r: abs(np.log(width / height) - np.log(SIZES[720][r][0] / SIZES[720][r][1])))
        mode = mode if len(spec["modes"]) > 1 else next(iter(spec["modes"]))
        return spec, image, SIZES[spec["modes"][mode][0]][ratio]

    def check_multi_shot(self, model: str, body: dict[str, Any], duration: str) -> bool:
        """Kling 3.0's multi-shot create (◐ inference-sh video-v3, useapi.net; the segment rule as
        runwayml's Kling 3.0 types state it): multi_shot true, shot_type customize (segments from
        multi_prompt [{index, prompt, duration}], whose durations add up to `duration`) or
        intelligence (the model cuts the prompt into shots itself). Other models refuse it rather
        than ignore it."""
        fields = ("multi_shot", "shot_type", "multi_prompt")
        if not any(f in body for f in fields):
            return False
        if model != "kling-v3":
            raise Invalid(f"{', '.join(f for f in fields if f in body)} is not supported by {model}")
        if body.get("multi_shot") is not True:
            raise Invalid("multi_prompt and shot_type need multi_shot: true")
        shot_type = body.get("shot_type", "customize")
        if shot_type not in ("customize", "intelligence"):
            raise Invalid("shot_type must be customize or intelligence")
        segments = body.get("multi_prompt")
        if shot_type == "intelligence":
            if segments:
                raise Invalid("multi_prompt is only taken with shot_type customize")
            if not body.get("prompt"):
                raise Invalid("prompt is required with shot_type intelligence")
            return False
        if not isinstance(segments, list) or not 1 <= len(segments) <= 6:
            raise Invalid("multi_prompt takes 1 to 6 segments {index, prompt, duration} with shot_type customize")
        total = 0
        for index, segment in enumerate(segments, 1):
            if not isinstance(segment, dict) or not isinstance(segment.get("prompt"), str) \
                    or not segment["prompt"].strip() or len(segment["prompt"]) > 2500:
                raise Invalid(f"multi_prompt[{index - 1}].prompt is required and at most 2500 characters")
            seconds = segment.get("duration")
            if not isinstance(seconds, str) or not seconds.isdigit() or int(seconds) < 1:
                raise Invalid(f"multi_prompt[{index - 1}].duration must be a string of whole seconds such as \"3\"")
            if segment.get("index", index) != index:
                raise Invalid(f"multi_prompt[{index - 1}].index must be {index}")
            total += int(seconds)
        if str(total) != duration:
            raise Invalid(f"multi_prompt durations add up to {total} s, not the duration {duration}")
        return True

    def decode_image(self, value: Any, field: str) -> tuple[bytes, tuple[int, int]]:
        if not isinstance(value, str) or not value:
            raise Invalid(f"{field} is required")
        if value.startswith("data:"):
            raise Invalid(f"{field} must be raw base64 without a data: prefix")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{field} is neither a URL this simulator fetches nor valid base64") from None
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is None or not data.startswith((b"\x89PNG", b"\xff\xd8\xff")) or len(data) > 10 * 2**20:
            raise Invalid(f"{field} must be a jpg/jpeg/png of at most 10MB")
        height, width = pixels.shape[:2]
        if min(width, height) < 300 or not 1 / 2.5 <= width / height <= 2.5:
            raise Invalid(f"{field} must be at least 300px a side with an aspect ratio from 1:2.5 to 2.5:1")
        return data, (width, height)

    def check_masks(self, masks: Any, size: tuple[int, int]) -> None:
        if not isinstance(masks, list) or len(masks) > 6:
            raise Invalid("dynamic_masks takes at most 6 groups")
        for group in masks:
            if not isinstance(group, dict):
                raise Invalid("each dynamic_masks group is {mask, trajectories}")
            _, mask_size = self.decode_image(group.get("mask"), "mask")
            points = group.get("trajectories")
            if mask_size != size:
                raise Invalid("mask resolution must equal the image's")
            if not isinstance(points, list) or not 2 <= len(points) <= 77 or not all(
                    isinstance(p, dict) and all(type(p.get(a)) is int and 0 <= p[a] <= s for a, s in zip("xy", size))
                    for p in points):
                raise Invalid("trajectories takes 2 to 77 integer {x, y} points inside the image")

    def check_camera(self, control: Any, model: str, kind: str, motion: tuple[str, str] | None) -> None:
        if not motion:
            raise Invalid(f"{model} does not support camera_control in {kind}")
        if not isinstance(control, dict) or control.get("type") not in CAMERA_TYPES:
            raise Invalid(f"camera_control.type must be one of {', '.join(CAMERA_TYPES)}")
        config = control.get("config")
        if control["type"] != "simple":
            return
        axes = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
        if not isinstance(config, dict) or set(config) - set(axes) or not all(
                isinstance(v, (int, float)) and -10 <= v <= 10 for v in config.values()):
            raise Invalid("camera_control.config takes horizontal/vertical/pan/tilt/roll/zoom in [-10, 10]")
        if sum(1 for v in config.values() if v) != 1:
            raise Invalid("camera_control.config must have exactly one non-zero value")
