"""An LTX API simulator (contract: blocks/ltx.py docstring): the create waits while the clip is
"generated" and answers with the MP4 itself, or with LTX's error shape
{"type": "error", "error": {"type", "message"}} (https://docs.ltx.video/errors).

Because the create is also the download, the download faults (corrupt, truncate, slow) apply to
the create's answer here; `concurrency` makes extra simultaneous creates fail with 429
concurrency_limit_error, as LTX's concurrency limit does.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import uuid
from typing import Any

from simulators.base import ProviderSimulator, Request, Response, collect_routes, route

_FAST_1080 = (6, 8, 10, 12, 14, 16, 18, 20)
_SHORT = (6, 8, 10)
_V25 = (2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20)
_V25_SHORT = (2, 3, 4, 5, 6, 8, 10)
_720 = ("1280x720", "720x1280")
_1080 = ("1920x1080", "1080x1920")
_LANDSCAPE = ("1920x1080", "2560x1440", "3840x2160")
_PORTRAIT = ("1080x1920", "1440x2560", "2160x3840")
_ABOVE_1080 = ("2560x1440", "1440x2560", "3840x2160", "2160x3840")


def _v25(sizes: tuple[str, ...]) -> dict[tuple[str, int], tuple[int, ...]]:
    """◐ Comfy Router schema for ltx-2-5-*: durations 2-6, then even seconds to 20, "the maximum
    depends on resolution and frame rate": taken, as on ltx-2, to be 10 s above 1080p or above 25 fps."""
    return {(s, f): _V25_SHORT if s in _ABOVE_1080 or f > 25 else _V25 for s in sizes for f in (24, 25, 48, 50)}


# model -> {(size, fps): durations}: ✅ https://docs.ltx.video/models for ltx-2; ◐ Comfy Router
# schema for ltx-2-5 (Pro makes 720p and 1080p only, Fast up to 4K, portrait too); ◐ ltx-2-3 as the
# catalogue sources it (Fast 6-20 s at 720p-4K per Venice's LTX 2.3 Fast page, Pro 6/8/10 s as ltx-2-pro)
MODELS: dict[str, dict[tuple[str, int], tuple[int, ...]]] = {
    "ltx-2-fast": {("1920x1080", 25): _FAST_1080, ("1920x1080", 50): _SHORT,
                   **{(s, f): _SHORT for s in _LANDSCAPE[1:] for f in (25, 50)}},
    "ltx-2-pro": {(s, f): _SHORT for s in _LANDSCAPE for f in (25, 50)},
    "ltx-2-5-fast": _v25(_720 + _LANDSCAPE + _PORTRAIT),
    "ltx-2-5-pro": _v25(_720 + _1080),
    "ltx-2-3-fast": {**{(s, 25): _FAST_1080 for s in _720 + _LANDSCAPE + _PORTRAIT},
                     **{(s, 50): _SHORT for s in _720 + _LANDSCAPE + _PORTRAIT}},
    "ltx-2-3-pro": {(s, f): _SHORT for s in _LANDSCAPE + _PORTRAIT for f in (25, 50)},
}
FIELDS = {"prompt", "model", "duration", "resolution", "fps", "generate_audio"}
# simulator error kind -> (HTTP status, LTX error type)
ERRORS = {"rate_limit": (429, "rate_limit_error"), "server": (503, "service_unavailable"),
          "internal": (500, "api_error"), "bad_output": (500, "api_error"),
          "moderation": (422, "content_filtered_error"), "moderation_output": (422, "content_filtered_error"),
          "invalid_input": (400, "invalid_request_error"), "insufficient_credits": (402, "insufficient_funds_error"),
          "not_found": (404, "not_found_error"), "concurrency": (429, "concurrency_limit_error")}


class Invalid(Exception):
    """A create LTX refuses with 400 invalid_request_error."""


@collect_routes
class LtxSimulator(ProviderSimulator):
    name = "ltx"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.in_flight = 0
        self._flight_lock = threading.Lock()

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        table_status, error_type = ERRORS.get(kind, (status, "api_error"))
        status = status if kind == "server" else table_status
        if kind == "server" and status >= 500 and status != 503:
            error_type = "api_error"
        return Response(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers)

    def auth_error(self, request: Request) -> Response:
        missing = not request.headers.get("Authorization")
        return Response(401, {"type": "error", "error": {"type": "authentication_error", "message": (
            "Missing authorization header" if missing else "Invalid API key")}})

    @route("POST", r"/v1/text-to-video", "create")
    def text_to_video(self, request: Request) -> Response:
        return self.generate(request, image=False)

    @route("POST", r"/v1/image-to-video", "create")
    def image_to_video(self, request: Request) -> Response:
        return self.generate(request, image=True)

    def generate(self, request: Request, image: bool) -> Response:
        try:
            params, reference = self.validate(request, image)
        except Invalid as exc:
            return self.error(400, "invalid_input", str(exc))
        with self._flight_lock:
            if self.concurrency is not None and self.in_flight >= self.concurrency:
                return self.error(429, "concurrency", f"Concurrency limit of {self.concurrency} reached")
            self.in_flight += 1
        try:
            width, height = (int(x) for x in params["resolution"].split("x"))
            task = self.new_task(params["model"], params, size=(width, height), duration=params["duration"],
                                 fps=params["fps"], prompt=params["prompt"], seed=0, image=reference)
            fault = self._take_fault("download", kinds=("corrupt", "truncate", "slow"))
            if fault is not None and fault.kind in ("corrupt", "truncate", "slow"):
                self._apply(fault, request)  # the answer to this create is the download
            video = task.video.result()  # "generating": the answer comes when the clip is made
            time.sleep(max(0.0, self.latency - (time.monotonic() - task.created)))
        finally:
            with self._flight_lock:
                self.in_flight -= 1
        if task.failure is not None:
            return self.error(400, task.failure, {
                "moderation": "Content is filtered due to policy restrictions",
                "moderation_output": "Content is filtered due to policy restrictions",
                "insufficient_credits": "Insufficient funds. Required: 120 credits",
                "invalid_input": "Invalid input image"}.get(task.failure, "Internal server error"))
        return Response(200, video, {"Content-Type": "video/mp4", "x-request-id": str(uuid.uuid4())})

    def validate(self, request: Request, image: bool) -> tuple[dict[str, Any], bytes | None]:
        try:
            body = request.json()
        except ValueError:
            raise Invalid("Request body must be valid JSON") from None
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object")
        allowed = FIELDS | ({"image_uri"} if image else set())
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise Invalid(f"Unknown field: {unknown[0]}")
        for name in ("prompt", "model", "duration", "resolution") + (("image_uri",) if image else ()):
            if body.get(name) in (None, ""):
                raise Invalid(f"{name} is required")
        prompt, model = body["prompt"], body["model"]
        if not isinstance(prompt, str) or len(prompt) > 5000:
            raise Invalid("prompt must be a string of at most 5000 characters")
        if model not in MODELS:
            raise Invalid(f"model must be one of: {', '.join(MODELS)}")
        duration, fps = body["duration"], body.get("fps", 25)
        for name, value in (("duration", duration), ("fps", fps)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid(f"{name} must be an integer")
        resolution = body["resolution"]
        if not isinstance(resolution, str) or not any(s == resolution for s, _ in MODELS[model]):
            sizes = sorted({s for s, _ in MODELS[model]})
            raise Invalid(f"resolution {resolution!r} is not supported by {model}; use one of {', '.join(sizes)}")
        durations = MODELS[model].get((resolution, fps))
        if durations is None:
            raise Invalid(f"fps {fps} is not supported by {model} at {resolution}")
        if duration not in durations:
            raise Invalid(f"duration {duration} is not supported by {model} at {resolution} and {fps} fps; "
                          f"use one of {', '.join(map(str, durations))}")
        if not isinstance(body.get("generate_audio", True), bool):
            raise Invalid("generate_audio must be a boolean")
        reference = image_data(str(body["image_uri"])) if image else None
        return {"model": model, "prompt": prompt, "duration": duration, "resolution": resolution,
                "fps": fps, "generate_audio": body.get("generate_audio", True)}, reference


def image_data(uri: str) -> bytes | None:
    """The bytes of a data-URI image (https URLs are accepted unread)."""
    if uri.startswith("https://"):
        return None
    match = re.fullmatch(r"data:image/(png|jpeg|webp);base64,(.+)", uri, re.S)
    if not match:
        raise Invalid("image_uri must be an https URL or a data:image/(png|jpeg|webp);base64 URI")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("image_uri is not valid base64") from None
    if not data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"RIFF")):
        raise Invalid("image_uri is not a PNG, JPEG or WebP image")
    return data
