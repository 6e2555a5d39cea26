"""A BytePlus ModelArk simulator for Seedance video tasks (contract: blocks/seedance.py docstring).

Routes sit under /api/v3 as on ModelArk, so the adapter's base_url is `sim.url + "/api/v3"`.

It validates creates the way ModelArk does (model id, content items, inline `--flags`, image
data URIs, whole-second durations) and answers with ModelArk's error shape
{"error": {"code", "message", "type"}}. Task usage is reported in video tokens with the
published formula width x height x frames / 1024 (◐ measured: 720p 4 s = 87300 tokens).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from typing import Any

from simulators.base import ProviderSimulator, Request, Response, SimTask, collect_routes, route

FPS = 24
# Seedance 2.0 output sizes (◐ evolink / cometapi transcriptions of the official table)
SIZES = {"480p": {"16:9": (864, 496), "4:3": (752, 560), "1:1": (640, 640), "3:4": (560, 752),
                  "9:16": (496, 864), "21:9": (992, 432)},
         "720p": {"16:9": (1280, 720), "4:3": (1112, 834), "1:1": (960, 960), "3:4": (834, 1112),
                  "9:16": (720, 1280), "21:9": (1470, 630)},
         "1080p": {"16:9": (1920, 1080), "4:3": (1664, 1248), "1:1": (1440, 1440), "3:4": (1248, 1664),
                   "9:16": (1080, 1920), "21:9": (2206, 946)}}
MODELS = {"dreamina-seedance-2-0-260128": ("480p", "720p", "1080p"),
          "dreamina-seedance-2-0-fast-260128": ("480p", "720p")}
FLAG_NAMES = {"resolution": "resolution", "rs": "resolution", "ratio": "ratio", "rt": "ratio",
              "duration": "duration", "dur": "duration", "seed": "seed", "camerafixed": "camera_fixed",
              "cf": "camera_fixed", "watermark": "watermark", "wm": "watermark", "fps": "fps"}
TOP_LEVEL = {"model", "content", "callback_url", "return_last_frame", "generate_audio", "resolution",
             "ratio", "duration", "seed", "camera_fixed", "watermark", "service_tier",
             "execution_expires_after"}
# (HTTP status, code, type) for each simulator error kind, from the ModelArk error table
ERRORS = {
    "rate_limit": (429, "AccountRateLimitExceeded", "TooManyRequests"),
    "server": (503, "ServerOverloaded", "ServiceUnavailable"),
    "internal": (500, "InternalServiceError", "InternalServerError"),
    "moderation": (400, "SensitiveContentDetected", "BadRequest"),
    "moderation_output": (400, "OutputVideoSensitiveContentDetected", "BadRequest"),
    "invalid_input": (400, "InvalidParameter", "BadRequest"),
    "insufficient_credits": (403, "AccountOverdueError", "Forbidden"),
    "not_found": (404, "ResourceNotFound", "NotFound"),
    "bad_output": (500, "InternalServiceError", "InternalServerError"),
}
# the code a task that fails after acceptance carries, per injected failure
TASK_FAILURES = {
    "moderation": ("InputTextSensitiveContentDetected", "The request failed because the input text may "
                                                         "contain sensitive information."),
    "moderation_output": ("OutputVideoSensitiveContentDetected", "The request failed because the output "
                                                                  "video may contain sensitive information."),
    "invalid_input": ("InvalidParameter", "One or more parameters specified in the request are not valid."),
    "insufficient_credits": ("AccountOverdueError", "The request failed because your account has an "
                                                    "overdue balance."),
    "internal": ("InternalServiceError", "The service encountered an unexpected internal error."),
    "bad_output": ("InternalServiceError", "The service encountered an unexpected internal error."),
}


class Invalid(Exception):
    """A create the API refuses with 400 InvalidParameter/MissingParameter."""

    def __init__(self, message: str, code: str = "InvalidParameter"):
        super().__init__(message)
        self.code = code


@collect_routes
class SeedanceSimulator(ProviderSimulator):
    name = "seedance"

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        if kind == "expired":  # the output lives on object storage, which answers in XML
            return Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired"
                                 b"</Message></Error>", {"Content-Type": "application/xml"})
        table_status, code, kind_type = ERRORS.get(kind, (status, "InternalServiceError", "InternalServerError"))
        status = status if kind == "server" else table_status  # e.g. a refused create for credit is a 403
        request_id = secrets.token_hex(10)
        return Response(status, {"error": {"code": code, "message": f"{message} Request id: {request_id}",
                                           "type": kind_type}}, headers)

    def auth_error(self, request: Request) -> Response:
        return Response(401, {"error": {"code": "AuthenticationError", "type": "Unauthorized", "message": (
            "The API key or AK/SK in the request is missing or invalid. Request id: "
            f"{secrets.token_hex(10)}")}})

    def invalid(self, exc: Invalid) -> Response:
        return Response(400, {"error": {"code": exc.code, "message": str(exc), "type": "BadRequest"}})

    # ---- routes ------------------------------------------------------------------------------

    @route("POST", r"/api/v3/contents/generations/tasks", "create")
    def create(self, request: Request) -> Response:
        try:
            params, image = self.validate(request)
        except Invalid as exc:
            return self.invalid(exc)
        width, height = SIZES[params["resolution"]][params["ratio"]]
        now = time.time()
        task = self.new_task(params["model"], params, size=(width, height), duration=params["duration"],
                             fps=FPS, prompt=params["prompt"], seed=params["seed"] % 2**31, image=image,
                             task_id=f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-"
                                     f"{secrets.token_hex(3)[:5]}")
        task.extra.update(created_at=int(now), size=(width, height))
        return Response(200, {"id": task.id})

    @route("GET", r"/api/v3/contents/generations/tasks/([\w-]+)", "poll")
    def get(self, request: Request, task_id: str) -> Response:
        task = self.tasks.get(task_id)
        if task is None or task.extra.get("deleted"):
            return self.error(404, "not_found", f"The specified task {task_id} is not found.")
        return Response(200, self.describe(task))

    @route("DELETE", r"/api/v3/contents/generations/tasks/([\w-]+)", "cancel")
    def delete(self, request: Request, task_id: str) -> Response:
        """Queued tasks are cancelled; finished ones have their record deleted; running ones
        cannot be stopped (◐/❓ the docs' wording; the exact refusal code is not published)."""
        task = self.tasks.get(task_id)
        if task is None or task.extra.get("deleted"):
            return self.error(404, "not_found", f"The specified task {task_id} is not found.")
        status, _ = self.status(task)
        if status in ("queued", "throttled"):
            with self.lock:
                task.cancelled = True
        elif status == "running":
            return self.invalid(Invalid(f"The task {task_id} is running and cannot be cancelled.",
                                        "InvalidParameter.TaskStatus"))
        else:
            task.extra["deleted"] = True
        return Response(200, {})

    # ---- helpers -----------------------------------------------------------------------------

    def describe(self, task: SimTask) -> dict[str, Any]:
        status, _ = self.status(task)
        status = "queued" if status == "throttled" else status  # ModelArk shows throttling as queued
        params = task.params
        body: dict[str, Any] = {
            "id": task.id, "model": task.model, "status": status, "error": None,
            "created_at": task.extra["created_at"], "updated_at": int(time.time()),
            "seed": params["seed"], "resolution": params["resolution"], "ratio": params["ratio"],
            "duration": params["duration"], "framespersecond": FPS,
            "generate_audio": params["generate_audio"]}
        if status == "succeeded":
            width, height = task.extra["size"]
            tokens = width * height * (FPS * params["duration"] + 1) // 1024
            body["content"] = {"video_url": self.output_url(task)}
            body["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        elif status == "failed":
            code, message = TASK_FAILURES.get(task.failure, TASK_FAILURES["internal"])
            body["error"] = {"code": code, "message": message}
        return body

    def validate(self, request: Request) -> tuple[dict[str, Any], bytes | None]:
        try:
            body = request.json()
        except ValueError:
            raise Invalid("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise Invalid("The request body must be a JSON object.")
        unknown = set(body) - TOP_LEVEL
        if unknown:
            raise Invalid(f"The parameter {sorted(unknown)[0]} specified in the request is not valid.")
        model = body.get("model")
        if not model:
            raise Invalid("The request failed because it is missing a required parameter: model",
                          "MissingParameter")
        if model not in MODELS:
            raise Invalid(f"The model or endpoint {model} does not exist or you do not have access to it.",
                          "InvalidEndpointOrModel.NotFound")
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid("The request failed because it is missing a required parameter: content",
                          "MissingParameter")
        texts = [c for c in content if isinstance(c, dict) and c.get("type") == "text"]
        images = [c for c in content if isinstance(c, dict) and c.get("type") == "image_url"]
        if len(texts) + len(images) != len(content) or len(texts) > 1:
            raise Invalid("The parameter content specified in the request is not valid: each item is one "
                          "text or image_url, with at most one text.")
        prompt, flags = parse_flags(str(texts[0].get("text", ""))) if texts else ("", {})
        if not prompt and not images:
            raise Invalid("The parameter content specified in the request is not valid: a prompt or an "
                          "image is required.")
        params = {k: body[k] for k in ("resolution", "ratio", "duration", "seed", "camera_fixed",
                                       "watermark") if k in body}
        params.update(flags)  # inline flags are the older spelling of the same fields
        resolution = params.get("resolution", "720p")
        if resolution not in MODELS[model]:
            raise Invalid(f"The parameter resolution specified in the request is not valid: {resolution} "
                          f"is not supported by {model}.")
        ratio = params.get("ratio", "adaptive" if images else "16:9")
        if ratio == "adaptive":
            ratio = "16:9"
        if ratio not in SIZES[resolution]:
            raise Invalid(f"The parameter ratio specified in the request is not valid: {ratio}.")
        duration = _int(params.get("duration", 5), "duration")
        if not 4 <= duration <= 15:
            raise Invalid(f"The parameter duration specified in the request is not valid: {duration} "
                          "(4 to 15 seconds).")
        seed = _int(params.get("seed", -1), "seed")
        if not -1 <= seed <= 2**32 - 1:
            raise Invalid(f"The parameter seed specified in the request is not valid: {seed}.")
        for key in ("camera_fixed", "watermark"):
            if key in params and _bool(params[key], key) is None:
                raise Invalid(f"The parameter {key} specified in the request is not valid.")
        audio = body.get("generate_audio", True)  # Seedance 2.0 makes sound unless told not to
        if not isinstance(audio, bool):
            raise Invalid("The parameter generate_audio specified in the request is not valid: want a boolean.")
        image = None
        for item in images:
            role = item.get("role", "first_frame")
            if role not in ("first_frame", "last_frame", "reference_image"):
                raise Invalid(f"The parameter role specified in the request is not valid: {role}.")
            data = image_data(str((item.get("image_url") or {}).get("url", "")))
            image = image if role != "first_frame" else data
        return {"model": model, "prompt": prompt or "reference image", "resolution": resolution,
                "ratio": ratio, "duration": duration, "seed": seed if seed >= 0 else 0,
                "generate_audio": audio}, image


def parse_flags(text: str) -> tuple[str, dict[str, str]]:
    """Split `prompt --flag value ...` into the prompt and its flags (unknown flags are refused)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"--(\w+)\s+(\S+)", text):
        name = FLAG_NAMES.get(match.group(1))
        if name is None:
            raise Invalid(f"The parameter --{match.group(1)} specified in the request is not valid.")
        found[name] = match.group(2)
    if "fps" in found and found.pop("fps") != str(FPS):
        raise Invalid(f"The parameter fps specified in the request is not valid: only {FPS}.")
    return re.split(r"\s--\w+\s", " " + text, maxsplit=1)[0].strip(), found


def image_data(url: str) -> bytes | None:
    """The bytes of a data-URI image (remote and asset:// URLs are accepted unread)."""
    if url.startswith(("http://", "https://", "asset://")):
        return None
    match = re.fullmatch(r"data:image/(png|jpeg|jpg|webp|bmp|tiff|gif);base64,(.+)", url, re.S)
    if not match:
        raise Invalid("The parameter image_url.url specified in the request is not valid: use a URL or "
                      "data:image/<format>;base64,<data> with a lower-case format.")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("The parameter image_url.url is not valid base64.") from None
    if not data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"BM", b"GIF8", b"II*\x00", b"MM\x00*")):
        raise Invalid("The request failed because the input image format is not supported.",
                      "InvalidParameter.UnsupportedImageFormat")
    return data


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise Invalid(f"The parameter {name} specified in the request is not valid.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"The parameter {name} specified in the request is not valid: {value}.") from None
    if number != int(number):
        raise Invalid(f"The parameter {name} specified in the request is not valid: whole numbers only.")
    return int(number)


def _bool(value: Any, name: str) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value).lower())
