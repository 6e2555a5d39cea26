"""A contract simulator of OpenAI's Videos API for Sora 2 (providers.md §4), for tests on loopback.

OpenAI shut the real API down on 2026-09-24; this keeps the contract the openai SDK (3.x,
`resources/videos.py`, `types/video*.py`) speaks, so adapters and compatible endpoints can be tested:

- `POST /v1/videos` multipart {prompt, model, seconds ("4"|"8"|"12"|"16"|"20", a string), size
  (sora-2: 1280x720|720x1280; sora-2-pro also 1792x1024|1024x1792|1920x1080|1080x1920), input_reference (an image file the size of the video)} → Video object
  {id "video_…", object "video", status queued|in_progress|completed|failed, progress 0-100,
  seconds, size, error{code,message}}; `GET /v1/videos/{id}`; `GET /v1/videos/{id}/content` → MP4
  bytes (needs the key); `DELETE /v1/videos/{id}` → {id, deleted, object "video.deleted"}.
- Errors are OpenAI's {"error":{"message","type","param","code"}}: 401 invalid_api_key (the message
  shows a masked key), 400 invalid_request_error (unknown_parameter, invalid_value, invalid_type,
  and ✅ "Inpaint image must match the requested width and height" for a reference of another
  size, MicrosoftLearning/mslearn-ai-vision PR #78), ◐ 400 code moderation_blocked, 429
  rate_limit_exceeded with `retry-after`, 429 insufficient_quota when the account is out of credit.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import cv2
import numpy as np

from simulators.base import ProviderSimulator, Request, Response, SimTask, collect_routes, route

MODELS = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")
# The SDK's literals (openai 3.57 types/video_seconds.py, video_size.py: seconds 4/8/12; sizes
# 720x1280, 1280x720, 1024x1792, 1792x1024) plus what OpenAI's guide added after them: 16 and 20 s
# for both models, and 1920x1080 / 1080x1920 for sora-2-pro only (providers.md §4.2). The SDK
# sends any string, so a client can ask for the guide's values; tests check every SDK literal.
SECONDS = ("4", "8", "12", "16", "20")
SIZES_720 = ("720x1280", "1280x720")
SIZES_PRO = SIZES_720 + ("1024x1792", "1792x1024", "1080x1920", "1920x1080")
FIELDS = {"prompt", "model", "seconds", "size", "input_reference"}
FAILURES = {  # a failed Video's error by simulated failure (◐ only moderation_blocked is attested)
    "moderation": ("moderation_blocked", "Your request was blocked by our moderation system."),
    "moderation_output": ("moderation_blocked", "The generated video was blocked by our moderation system."),
    "invalid_input": ("invalid_request", "The request could not be processed."),
    "internal": ("internal_error", "Video generation failed due to an internal error."),
    "insufficient_credits": ("insufficient_quota", "You exceeded your current quota, please check your plan "
                                                   "and billing details."),
}


class Invalid(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


@collect_routes
class SoraSimulator(ProviderSimulator):
    """Sora 2 behind `/v1/videos`; `seconds` and per-model sizes are configurable because the
    guide and the SDK disagree about them (providers.md §4.2)."""

    name = "sora"

    def __init__(self, *, seconds: tuple[str, ...] = SECONDS, fps: int = 30, **kwargs: Any):
        super().__init__(**kwargs)
        self.seconds, self.fps = seconds, fps
        self.sizes = {m: SIZES_PRO if "pro" in m else SIZES_720 for m in MODELS}
        self.forms: list[dict[str, str]] = []  # every create's form fields, for contract checks

    def default_key(self) -> str:
        return "sk-proj-" + uuid.uuid4().hex

    # ---- OpenAI's spelling of auth and errors --------------------------------------------------

    def auth_error(self, request: Request) -> Response:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not given:
            return self._error(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        masked = given[:8] + "*" * max(0, len(given) - 12) + given[-4:] if len(given) > 12 else "***"
        return self._error(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                                "https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        if kind == "rate_limit":
            return self._error(429, "Rate limit reached for requests per minute. Please try again later.",
                               type_="requests", code="rate_limit_exceeded", headers=headers)
        if kind in ("moderation", "moderation_output"):
            return self._error(400, "Your request was blocked by our moderation system.", code="moderation_blocked")
        if kind == "insufficient_credits":
            return self._error(429, FAILURES["insufficient_credits"][1], type_="insufficient_quota",
                               code="insufficient_quota")
        if kind in ("server", "internal", "bad_output"):
            return self._error(status if status >= 500 else 500, "The server had an error while processing "
                               "your request. Sorry about that!", type_="server_error", headers=headers)
        return self._error(status, message)

    def _error(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, headers: dict[str, str] | None = None) -> Response:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return Response(status, body, headers or {})

    # ---- routes ----------------------------------------------------------------------------------

    @route("POST", r"/v1/videos", "create")
    def create(self, request: Request) -> Response:
        try:
            fields, files = self._fields(request)
            model, seconds, size, image = self._validate(fields, files)
        except Invalid as exc:
            return self._error(400, str(exc), param=exc.param, code=exc.code)
        with self.lock:
            self.forms.append(fields)
        width, height = (int(v) for v in size.split("x"))
        task = self.new_task(model, {"seconds": seconds, "size": size, "prompt": fields["prompt"]},
                             size=(width, height), duration=float(seconds), fps=self.fps, prompt=fields["prompt"],
                             image=image, task_id="video_" + uuid.uuid4().hex)
        return Response(200, self.video(task))

    def _fields(self, request: Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        kind = request.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            return request.form()
        if kind.startswith("application/json"):  # ◐ accepted per proxies; files then come as objects
            body = request.json()
            if not isinstance(body, dict):
                raise Invalid("We could not parse the JSON body of your request.")
            return body, {}
        raise Invalid("Unsupported content type; send multipart/form-data.")

    def _validate(self, fields: dict[str, Any], files: dict) -> tuple[str, str, str, bytes | None]:
        for name in list(fields) + list(files):
            if name.split("[")[0] not in FIELDS:
                raise Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = fields.get("model", "sora-2")
        if model not in MODELS:
            raise Invalid(f"Invalid value: '{model}'. Supported values are: 'sora-2' and 'sora-2-pro'.",
                          "model", "invalid_value")
        seconds = fields.get("seconds", "4")
        if not isinstance(seconds, str):  # the API wants the string enum, not a number
            raise Invalid(f"Invalid type for 'seconds': expected one of {', '.join(self.seconds)}, but got "
                          f"{type(seconds).__name__} instead.", "seconds", "invalid_type")
        if seconds not in self.seconds:
            raise Invalid(f"Invalid value: '{seconds}'. Supported values are: {', '.join(self.seconds)}.",
                          "seconds", "invalid_value")
        size = fields.get("size", "720x1280")
        if size not in self.sizes[model]:
            raise Invalid(f"Invalid value: '{size}'. Supported values for {model} are: "
                          f"{', '.join(self.sizes[model])}.", "size", "invalid_value")
        image = None
        if "input_reference" in files:
            mime, image = files["input_reference"]
            decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR) if image else None
            if mime not in ("image/jpeg", "image/png", "image/webp") or decoded is None:
                raise Invalid("Invalid input_reference: use a JPEG, PNG or WebP image.", "input_reference",
                              "invalid_value")
            if f"{decoded.shape[1]}x{decoded.shape[0]}" != size:
                raise Invalid("Inpaint image must match the requested width and height")
        elif any(name.startswith("input_reference") for name in fields):  # the SDK's {file_id|image_url}
            raise Invalid("Simulator limitation: input_reference objects (file_id, image_url) are not "
                          "simulated; upload the image as a file.", "input_reference")
        return model, seconds, size, image

    @route("GET", r"/v1/videos/(video_[0-9a-f]+)", "poll")
    def retrieve(self, request: Request, video_id: str) -> Response:
        task = self.tasks.get(video_id)
        if task is None or task.cancelled:
            return self._error(404, f"Video with id '{video_id}' not found.", param="video_id")
        return Response(200, self.video(task), {"openai-poll-after-ms": "200"})

    @route("DELETE", r"/v1/videos/(video_[0-9a-f]+)")
    def delete(self, request: Request, video_id: str) -> Response:
        task = self.tasks.get(video_id)
        if task is None or task.cancelled:
            return self._error(404, f"Video with id '{video_id}' not found.", param="video_id")
        with self.lock:
            task.cancelled = True
        return Response(200, {"id": video_id, "deleted": True, "object": "video.deleted"})

    @route("GET", r"/v1/videos/(video_[0-9a-f]+)/content", "download")
    def content(self, request: Request, video_id: str) -> Response:
        if not self.authorised(request):  # "download" routes skip the base class's auth check
            return self.auth_error(request)
        task = self.tasks.get(video_id)
        if task is None or task.cancelled:
            return self._error(404, f"Video with id '{video_id}' not found.", param="video_id")
        if (request.query.get("variant") or ["video"])[0] != "video":
            return self._error(400, "Only the video variant is simulated.", param="variant")
        state = self._state(task)
        if state != "completed":
            return self._error(400, f"Video is not ready yet, its status is {state}.")
        if task.failure == "bad_output":
            return Response(200, b"\x00\x00\x00\x18ftypmp42" + bytes(2048), {"Content-Type": "video/mp4"})
        return self.video_response(task)

    # ---- the Video object ------------------------------------------------------------------------

    def _state(self, task: SimTask) -> str:
        state, _ = self.status(task)
        if state == "failed" and task.failure == "bad_output":
            return "completed"  # finished "fine" but the file is not a video
        return {"queued": "queued", "throttled": "queued", "running": "in_progress", "succeeded": "completed",
                "failed": "failed", "cancelled": "failed"}[state]

    def video(self, task: SimTask) -> dict:
        state, progress = self.status(task)
        status = self._state(task)
        completed = int(time.time()) if status in ("completed", "failed") else None
        error = None
        if status == "failed":
            code, message = FAILURES.get(task.failure or "internal", FAILURES["internal"])
            error = {"code": code, "message": message}
        return {"id": task.id, "object": "video", "created_at": int(time.time() - (time.monotonic() - task.created)),
                "completed_at": completed, "expires_at": completed + int(self.url_ttl) if completed else None,
                "status": status, "model": task.model,
                "progress": 100 if status == "completed" else int(progress * 100) if state == "running" else 0,
                "prompt": task.params["prompt"], "seconds": task.params["seconds"], "size": task.params["size"],
                "remixed_from_video_id": None, "error": error}
