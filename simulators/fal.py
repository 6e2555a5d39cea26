"""A fal.ai queue API simulator (queue.fal.run), for the endpoints the catalogue lists (contract:
blocks/fal.py docstring).

- `POST /{endpoint}` with `Authorization: Key …` → {request_id, response_url, status_url,
  cancel_url, queue_position}; the URLs sit under the app id (`owner/app`), not the subpath.
  An unknown endpoint is 404. The queue takes any JSON object: inputs are checked when the request
  runs, as on fal, so a bad input is a request that COMPLETES and whose result answers 422
  {"detail": [{"loc": ["body", field], "msg", "type"}]}, with `X-Fal-Retryable: false`.
- `GET …/requests/{id}/status` → IN_QUEUE (queue_position) | IN_PROGRESS (logs) | COMPLETED
  (metrics.inference_time); `GET …/requests/{id}` → {"video": {url, content_type, file_name,
  file_size}, "seed"} or the error; 400 {"detail": "Request is still in progress"} before then.
- `PUT …/requests/{id}/cancel` → 202 {"status": "CANCELLATION_REQUESTED"} while queued; 400
  {"status": "ALREADY_COMPLETED"} once it runs. A cancelled request's result is 400 ❓ (wording).
- Rules per endpoint: the field spellings in blocks/fal.py ENDPOINTS, the durations, sizes and
  resolutions the catalogue lists for the model (each with its source there), images as data
  URIs or HTTPS URLs in `web`. Moderation (`reject`/`fail` faults) is a 422
  content_policy_violation result. Nothing failed or cancelled is charged (`charged`).
- LTX 2.5 Upscale (`lightricks/ltx-2.5/upscale`): {video_url, resolution 1080p|4k|8k}; short side
  ≥ 480 px and the frame caps are checked; the output is the input scaled with ffmpeg.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from typing import Any

import cv2
import numpy as np

from blocks.catalogue import load_catalogue
from blocks.fal import ENDPOINTS, UPSCALE_FRAMES, UPSCALER, UPSCALER_ENDPOINT
from blocks.media import MediaError, probe
from simulators.base import ProviderSimulator, Request, Response, SimTask, collect_routes, route
from simulators.runway_upscale import _upscaled

SHORT_SIDE = {"1080p": 1080, "4k": 2160, "8k": 4320}
BY_ENDPOINT = {endpoint: (model, kind) for model, spec in ENDPOINTS.items()
               for kind, endpoint in (("t2v", spec.t2v), ("i2v", spec.i2v)) if endpoint}


class Invalid(Exception):
    """An input fal's endpoint refuses: 422 with one pydantic-style detail item."""

    def __init__(self, field: str, message: str, kind: str = "value_error"):
        super().__init__(message)
        self.field, self.kind = field, kind


@collect_routes
class FalSimulator(ProviderSimulator):
    name = "fal"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.web: dict[str, bytes] = {}  # HTTPS URLs the "runner" can download, and their bytes
        self.charged: dict[str, float] = {}  # request id → USD fal bills for it

    def default_key(self) -> str:
        return f"{uuid.uuid4()}:{uuid.uuid4().hex}"

    def authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Key {self.api_key}"

    def auth_error(self, request: Request) -> Response:
        return Response(401, {"detail": "Invalid authentication credentials: use 'Authorization: Key <FAL_KEY>'"})

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if kind == "reject":
            status = 422
        return Response(status, {"detail": message}, headers)

    def _apply(self, fault, request: Request) -> Response | None:
        if fault.kind == "reject":  # fal moderates when the request runs: it completes with the refusal
            request.headers = {**dict(request.headers.items()), "X-Sim-Reject": fault.failure}
            return None
        return super()._apply(fault, request)

    # ---- routes ------------------------------------------------------------------------------

    @route("POST", r"/(.+)", "create")
    def submit(self, request: Request, endpoint: str) -> Response:
        if endpoint not in BY_ENDPOINT and endpoint != UPSCALER_ENDPOINT:
            return Response(404, {"detail": f"Application '{endpoint}' not found"})
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(422, {"detail": [{"loc": ["body"], "msg": "Input should be a valid dictionary",
                                              "type": "dict_type"}]})
        app = "/".join(endpoint.split("/")[:2])
        try:
            task = self.upscale_task(body) if endpoint == UPSCALER_ENDPOINT else self.video_task(endpoint, body)
        except Invalid as exc:
            task = self.record_task(endpoint, body)
            task.extra["invalid"] = exc
        rejected = request.headers.get("X-Sim-Reject") if isinstance(request.headers, dict) else None
        if rejected:
            task.failure = rejected
        base = f"{self.url}/{app}/requests/{task.id}"
        task.extra.update(app=app, endpoint=endpoint)
        return Response(200, {"request_id": task.id, "response_url": base, "status_url": f"{base}/status",
                              "cancel_url": f"{base}/cancel", "queue_position": 0})

    @route("GET", r"/(.+)/requests/([\w-]+)/status", "poll")
    def get_status(self, request: Request, app: str, request_id: str) -> Response:
        task = self._task(app, request_id)
        if task is None:
            return Response(404, {"detail": f"Request {request_id} not found"})
        status, _ = self.status(task)
        if status in ("queued", "throttled"):
            return Response(202, {"status": "IN_QUEUE", "queue_position": 0,
                                  "response_url": f"{self.url}/{app}/requests/{task.id}"})
        if status == "running":
            return Response(202, {"status": "IN_PROGRESS", "logs": [{"message": "generating", "level": "INFO"}]})
        return Response(200, {"status": "COMPLETED", "logs": [],
                              "metrics": {"inference_time": round(self.latency, 3)}})

    @route("GET", r"/(.+)/requests/([\w-]+)", "result")
    def get_result(self, request: Request, app: str, request_id: str) -> Response:
        task = self._task(app, request_id)
        if task is None:
            return Response(404, {"detail": f"Request {request_id} not found"})
        status, _ = self.status(task)
        if status not in ("succeeded", "failed", "cancelled"):
            return Response(400, {"detail": "Request is still in progress"})
        if task.cancelled:
            return Response(400, {"detail": "Request was cancelled"}, {"X-Fal-Retryable": "false"})
        invalid = task.extra.get("invalid")
        if invalid is not None or task.failure is not None:
            if invalid is None:
                invalid = Invalid("prompt", "The content could not be processed because it contained material "
                                  "flagged by a content checker.", "content_policy_violation") \
                    if task.failure in ("moderation", "moderation_output") else None
            if invalid is None:
                return Response(500, {"detail": "Internal server error"}, {"X-Fal-Retryable": "true"})
            return Response(422, {"detail": [{"loc": ["body", invalid.field], "msg": str(invalid),
                                              "type": invalid.kind}]}, {"X-Fal-Retryable": "false"})
        video = task.video.result()
        self.charged[task.id] = task.extra.get("usd", 0.0)
        return Response(200, {"video": {"url": self.output_url(task), "content_type": "video/mp4",
                                        "file_name": video.name, "file_size": video.stat().st_size},
                              "seed": task.params.get("seed", 0)})

    @route("PUT", r"/(.+)/requests/([\w-]+)/cancel", "cancel")
    def cancel(self, request: Request, app: str, request_id: str) -> Response:
        task = self._task(app, request_id)
        if task is None:
            return Response(404, {"detail": f"Request {request_id} not found"})
        status, _ = self.status(task)
        if status not in ("queued", "throttled"):
            return Response(400, {"status": "ALREADY_COMPLETED"})
        with self.lock:
            task.cancelled = True
        return Response(202, {"status": "CANCELLATION_REQUESTED"})

    def _task(self, app: str, request_id: str) -> SimTask | None:
        task = self.tasks.get(request_id)
        return task if task is not None and task.extra.get("app") == app else None

    # ---- inputs ------------------------------------------------------------------------------

    def video_task(self, endpoint: str, body: dict[str, Any]) -> SimTask:
        model, kind = BY_ENDPOINT[endpoint]
        spec, entry = ENDPOINTS[model], load_catalogue().model("fal", model)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Invalid("prompt", "Field required" if prompt is None else "String should have at least 1 character",
                          "missing" if prompt is None else "string_too_short")
        resolutions = {api: name for name, api in (spec.resolution or {}).items()}
        resolution = entry.default_resolution
        if spec.resolution:
            value = body.get("resolution", spec.resolution.get(entry.default_resolution))
            if value not in resolutions:
                raise Invalid("resolution", f"Input should be {', '.join(map(repr, resolutions))}", "literal_error")
            resolution = resolutions[value]
        seconds = _duration(body.get("duration"), spec.duration, entry.durations_at(resolution))
        aspect = body.get("aspect_ratio", "16:9")
        sizes = entry.resolutions[resolution].sizes
        image = None
        if kind == "i2v":
            image, (width, height) = _image(spec.image, body.get(spec.image), self.web)
            aspect = _aspect_of(width, height, sizes)
        elif spec.aspect and aspect not in sizes:
            raise Invalid("aspect_ratio", f"Input should be {', '.join(map(repr, sizes))}", "literal_error")
        for name in (spec.audio,) if spec.audio else ():
            if not isinstance(body.get(name, False), bool):
                raise Invalid(name, "Input should be a valid boolean", "bool_type")
        width, height = (int(v) for v in sizes.get(aspect, next(iter(sizes.values()))).split("x"))
        task = self.new_task(model, body, size=(width, height), duration=seconds, fps=entry.fps, prompt=prompt,
                             seed=int(body.get("seed", 0)) % 2**31, image=image, task_id=str(uuid.uuid4()))
        task.extra["usd"] = entry.price_per_second(resolution, bool(body.get(spec.audio or "", False))) * seconds
        return task

    def upscale_task(self, body: dict[str, Any]) -> SimTask:
        resolution = body.get("resolution", "1080p")
        if resolution not in SHORT_SIDE:
            raise Invalid("resolution", "Input should be '1080p', '4k' or '8k'", "literal_error")
        raw = _media("video_url", body.get("video_url"), "video/", self.web)
        source = self.media / f"fal-upscale-in-{uuid.uuid4().hex[:12]}.mp4"
        source.write_bytes(raw)
        try:
            info = probe(source)
        except MediaError:
            raise Invalid("video_url", "The video could not be decoded; send H.264 or HEVC",
                          "file_download_error") from None
        if min(info.width, info.height) < 480:
            raise Invalid("video_url", f"The video's short side is {min(info.width, info.height)} px; it must be "
                          "at least 480", "video_too_small")
        if info.frames > UPSCALE_FRAMES.get(resolution, 241):
            raise Invalid("video_url", f"The video has {info.frames} frames; at most "
                          f"{UPSCALE_FRAMES.get(resolution, 241)} for {resolution}", "video_too_long")
        task = self.record_task(UPSCALER, body)
        task.video = self.renderer.submit(_upscaled, source, self.media / f"fal-upscaled-{task.id}.mp4",
                                          SHORT_SIDE[resolution], False, info.fps)
        target = next((k for k, t in load_catalogue().upscaler("fal", UPSCALER).resolutions.items()
                       if t.api == resolution), None)
        price = load_catalogue().upscaler("fal", UPSCALER).resolutions[target].price if target else 0.0
        task.extra["usd"] = price * info.duration
        return task

    def holds_slot(self, task: SimTask) -> bool:
        return "invalid" not in task.extra  # refused when it ran: it never occupies a runner

    def lifecycle(self, task: SimTask) -> tuple[str, float]:
        if "invalid" in task.extra:  # refused when it ran: completes at once
            return ("cancelled" if task.cancelled else "failed"), 1.0
        return super().lifecycle(task)


def _duration(value: Any, spelling: str, allowed: list[float]) -> int:
    options = [f"{int(d)}s" if spelling == "s" else str(int(d)) if spelling == "str" else int(d) for d in allowed]
    if value is None:
        return int(allowed[-1] if spelling == "s" else allowed[0])  # Veo defaults to 8s, others to the shortest
    if value not in options or isinstance(value, bool):
        raise Invalid("duration", f"Input should be {', '.join(map(repr, options))}", "literal_error")
    return int(str(value).removesuffix("s"))


def _media(field: str, value: Any, kind: str, web: dict[str, bytes]) -> bytes:
    if not isinstance(value, str) or not value:
        raise Invalid(field, "Field required", "missing")
    if value.startswith("https://"):
        if value not in web:
            raise Invalid(field, f"Failed to download the file from {value.split('?')[0]}", "file_download_error")
        return web[value]
    head, _, data = value.partition(",")
    if not (head.startswith("data:" + kind) and head.endswith(";base64")):
        raise Invalid(field, f"Expected an HTTPS URL or a base64 data URI of a {kind.rstrip('/')} file", "value_error")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(field, "The data URI is not valid base64", "value_error") from None


def _image(field: str, value: Any, web: dict[str, bytes]) -> tuple[bytes, tuple[int, int]]:
    """An image input's bytes and (width, height), decoded once."""
    raw = _media(field, value, "image/", web)
    decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise Invalid(field, "The image could not be decoded", "image_load_error")
    return raw, (decoded.shape[1], decoded.shape[0])


def _aspect_of(width: int, height: int, sizes: dict[str, str]) -> str:
    return min(sizes, key=lambda a: abs(math.log(int(a.split(":")[0]) / int(a.split(":")[1]) / (width / height))))

