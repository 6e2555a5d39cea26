"""A Runway developer API simulator (api.dev.runwayml.com, X-Runway-Version 2024-11-06).

Close enough to the runwayml SDK 5.24.0's contract that the SDK itself runs against it:
- `POST /v1/text_to_video` | `/v1/image_to_video` → {id, estimatedCost}; bodies are checked per model as the
  SDK's params types describe them (required fields, ratio/duration enums, int types, promptText
  length in UTF-16 units, data URIs ≤ 5 MB); unknown fields are refused.
- `GET /v1/tasks/{id}`: PENDING | THROTTLED | RUNNING (progress) with estimatedCost.credits;
  SUCCEEDED (output [url]) | FAILED (failure, failureCode) | CANCELLED with cost.credits (int)
  at the catalogue's price. `DELETE` → 204 cancels a live task (refunded unless it was running,
  per the SDK's docstring) or deletes a finished one (it then reads CANCELLED).
- Errors are {"error": "..."}: 400 bad input, a missing/unknown version, and no credits ("You do
  not have enough credits to run this task.", as the API answers ◐); 401 bad key; 429 daily cap.
- Over `concurrency` live tasks per key, new ones wait THROTTLED. Moderation is never synchronous:
  a rejected input is a task that fails at once with INPUT_PREPROCESSING.SAFETY.TEXT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import cv2
import numpy as np

from blocks.catalogue import load_catalogue
from simulators.base import Fault, ProviderSimulator, Request, Response, SimTask, collect_routes, route
from simulators.runway_upscale import VideoUpscaleRoutes
from simulators.runway_uploads import UploadRoutes

VERSION = "2024-11-06"
STATUS = {"queued": "PENDING", "throttled": "THROTTLED", "running": "RUNNING", "succeeded": "SUCCEEDED",
          "failed": "FAILED", "cancelled": "CANCELLED"}
FAILURES = {  # injected failure → (failureCode, failure), codes of docs.dev.runwayml.com/errors/task-failures
    "moderation": ("SAFETY.INPUT.TEXT", "The prompt text did not pass moderation."),
    "moderation_output": ("SAFETY.OUTPUT.VIDEO", "The generated video did not pass moderation."),
    "invalid_input": ("ASSET.INVALID", "The input image could not be processed."),
    "bad_output": ("INTERNAL.BAD_OUTPUT.CODE01", "The output did not meet our quality standards."),
    "internal": ("INTERNAL", "An unexpected error occurred."),
}
PREPROCESSING = ("INPUT_PREPROCESSING.SAFETY.TEXT", "The prompt text was rejected by input moderation.")
MESSAGES = {"insufficient_credits": "You do not have enough credits to run this task.",
            "rate_limit": "You have exceeded the daily generation limit for this model.",
            "invalid_input": "promptImage: the image could not be decoded.",
            "server": "The service is temporarily overloaded. Please retry."}
MAX_IMAGE_BYTES = 5 * 2**20
BASE_FIELDS = {"model", "promptText", "promptImage", "ratio", "duration"}

R_GEN4 = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
R_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")
R_K25 = ("1920:1080", "1440:1440", "1080:1920", "1280:720", "720:720", "720:1280")
R_SD_720 = ("992:432", "864:496", "752:560", "640:640", "560:752", "496:864", "1470:630", "1280:720",
            "1112:834", "960:960", "834:1112", "720:1280")
R_SD = R_SD_720 + ("2206:946", "1920:1080", "1664:1248", "1440:1440", "1248:1664", "1080:1920", "3840:1646",
                   "3840:2160", "3840:2880", "3840:3840", "2880:3840", "2160:3840")


@dataclass(frozen=True)
class Spec:
    """What one model accepts (runwayml SDK 5.24.0 params types; veo3 from rsdk 5.13.0)."""

    t2v: tuple[str, ...] | None  # ratios on text_to_video; None: not a text-to-video model
    i2v: tuple[str, ...] | None  # ratios on image_to_video; (): takes no ratio, follows the image
    durations: tuple[int, ...]
    default_duration: int | None  # None: duration is required
    prompt_on: tuple[str, ...] = ("t2v", "i2v")  # where promptText is required
    ratio_on: tuple[str, ...] = ("t2v", "i2v")  # where ratio is required
    prompt_max: int = 1000
    extra: frozenset[str] = frozenset()  # optional fields beyond BASE_FIELDS
    auto: bool = False  # duration may be "auto" (billed at the longest)


def _kling3(ratios: tuple[str, ...]) -> Spec:  # ◐ 3-15 s (providers.md §2.3)
    return Spec(ratios, ratios, tuple(range(3, 16)), 5, (), ("t2v",), 2500,
                frozenset({"audio", "cfgScale", "providerSettings"}))


def _seedance(ratios: tuple[str, ...]) -> Spec:  # ◐ 4-15 s (Seedance 2.0 docs at resellers)
    return Spec(ratios, ratios, tuple(range(4, 16)), 5, ("t2v",), (), 3500,
                frozenset({"audio", "seed", "referenceAudio", "references", "referenceVideos"}), auto=True)


GEN4 = frozenset({"seed", "contentModeration", "outputFormat", "proresProfile"})
VEO = frozenset({"audio", "negativePrompt", "seed"})
SPECS: dict[str, Spec] = {
    "gen4.5": Spec(R_GEN4[:2], R_GEN4, tuple(range(2, 11)), None, extra=GEN4),
    "gen4_turbo": Spec(None, R_GEN4, tuple(range(2, 11)), 10, prompt_on=(), extra=GEN4),
    "veo3.1": Spec(R_VEO, R_VEO, (4, 6, 8), 8, ("t2v",), extra=VEO),
    "veo3.1_fast": Spec(R_VEO, R_VEO, (4, 6, 8), 8, ("t2v",), extra=VEO),
    "veo3": Spec(R_VEO, R_VEO, (8,), None, ("t2v",), extra=frozenset({"negativePrompt"})),
    "kling2.5_turbo_pro": Spec(R_K25, (), (5, 10), 5, ratio_on=("t2v",), prompt_max=2500,
                               extra=frozenset({"cfgScale"})),
    "kling3.0_standard": _kling3(("1280:720", "720:1280", "960:960")),
    "kling3.0_pro": _kling3(("1920:1080", "1080:1920", "1440:1440")),
    "kling3.0_4k": _kling3(("3840:2160", "2160:3840", "2880:2880")),
    "seedance2": _seedance(R_SD),
    "seedance2_fast": _seedance(R_SD_720),
    "seedance2_mini": _seedance(R_SD_720),
}


class Invalid(Exception):
    """A request the API answers with 400 and this message."""


@collect_routes
class RunwaySimulator(UploadRoutes, VideoUpscaleRoutes, ProviderSimulator):
    """Runway's task API on loopback, with ephemeral uploads (simulators/runway_uploads.py) and
    video upscale (simulators/runway_upscale.py).
    `model_latency` gives some models their own run time; `extra_keys` are further accepted API
    keys, each with its own concurrency budget."""

    name = "runway"
    keyless_endpoints = ("download", "storage")

    def __init__(self, *, model_latency: dict[str, float] | None = None, extra_keys: tuple[str, ...] = (),
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.model_latency = dict(model_latency or {})
        self.keys = {self.api_key, *extra_keys}

    def default_key(self) -> str:
        return "key_" + hashlib.sha512(str(time.time_ns()).encode()).hexdigest()  # ^key_[0-9a-f]{128}$

    def authorised(self, request: Request) -> bool:
        auth = _header(request, "Authorization")
        return auth.startswith("Bearer ") and auth[7:] in self.keys

    def auth_error(self, request: Request) -> Response:
        return Response(401, {"error": "Invalid API key. Check that it is correct and has not been disabled."})

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Response(status, {"error": MESSAGES.get(kind, message)}, headers)

    def _apply(self, fault: Fault, request: Request) -> Response | None:
        if fault.kind == "reject" and fault.failure in ("moderation", "moderation_output"):
            # Runway moderates inputs inside the task, not in the create: it succeeds, the task fails
            request.headers = {**dict(request.headers.items()), "X-Sim-Reject": fault.failure}
            return None
        return super()._apply(fault, request)

    # ---- routes ------------------------------------------------------------------------------

    @route("POST", r"/v1/(text|image)_to_video", "create")
    def create(self, request: Request, source: str) -> Response:
        endpoint = "t2v" if source == "text" else "i2v"
        body, refused = self.json_body(request)
        if refused:
            return refused
        try:
            model, ratio, duration, image = self.validate(body, endpoint)
        except Invalid as exc:
            return Response(400, {"error": str(exc)})
        width, height = (int(x) for x in ratio.split(":"))
        task = self.new_task(model, body, size=(width, height), duration=duration, fps=24,
                             prompt=body.get("promptText") or "", seed=body.get("seed", 0), image=image)
        billed = max(SPECS[model].durations) if body.get("duration") == "auto" else duration
        credits = self.price(model, f"{width}x{height}", billed, bool(body.get("audio")))
        return self.accepted(request, task, credits)

    def accepted(self, request: Request, task: SimTask, credits: int) -> Response:
        """Answer a create: the task joins its key's queue and reports what it will cost."""
        task.extra.update(key=_key_id(request), latency=self.model_latency.get(task.model, self.latency), seen=[],
                          created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z",
                          credits=credits)
        rejected = request.headers.get("X-Sim-Reject") if isinstance(request.headers, dict) else None
        if rejected:
            task.failure, task.extra["failure"] = rejected, PREPROCESSING
        self.status(task)  # it starts now if its key has a free slot, whether or not anyone polls
        return Response(200, {"id": task.id, "estimatedCost": {"credits": float(credits)}})

    @route("GET", r"/v1/tasks/([\w-]+)", "poll")
    def get_task(self, request: Request, task_id: str) -> Response:
        task, refused = self._task(request, task_id)
        if refused:
            return refused
        status, progress = self.status(task)
        task.extra["seen"].append(STATUS[status])
        return Response(200, self.task_body(task, status, progress))

    @route("DELETE", r"/v1/tasks/([\w-]+)", "cancel")
    def delete_task(self, request: Request, task_id: str) -> Response:
        task, refused = self._task(request, task_id)
        if refused:
            return refused
        status, _ = self.status(task)
        with self.lock:  # what was charged stays charged, and a task already running is not refunded
            task.extra["charged"] = 0 if status in ("queued", "throttled") else self.charged(
                task, "succeeded" if status == "running" else status)
            task.cancelled = True
        return Response(204, None)

    # ---- contract ----------------------------------------------------------------------------

    def _version(self, request: Request) -> Response | None:
        version = _header(request, "X-Runway-Version")
        if version == VERSION:
            return None
        what = "is required" if not version else f"'{version}' is not a supported version"
        return Response(400, {"error": f"The X-Runway-Version header {what}. Use {VERSION}."})

    def json_body(self, request: Request) -> tuple[Any, Response | None]:
        """The JSON body of a versioned API call, or the 400 the API answers instead."""
        refused = self._version(request)
        if refused:
            return None, refused
        try:
            return request.json(), None
        except ValueError:
            return None, Response(400, {"error": "Invalid JSON body."})

    def _task(self, request: Request, task_id: str) -> tuple[SimTask | None, Response | None]:
        refused = self._version(request)
        task = self.tasks.get(task_id)
        if refused is None and (task is None or task.extra.get("key") != _key_id(request)):
            refused = Response(404, {"error": "Task not found."})
        return task, refused

    def validate(self, body: Any, endpoint: str) -> tuple[str, str, int, bytes | None]:
        """(model, ratio, duration, image bytes) of a valid create body; raises Invalid otherwise."""
        if not isinstance(body, dict):
            raise Invalid("The request body must be a JSON object.")
        spec = SPECS.get(body.get("model")) if isinstance(body.get("model"), str) else None
        ratios = getattr(spec, endpoint, None)
        if spec is None or ratios is None:
            known = sorted(m for m, s in SPECS.items() if getattr(s, endpoint) is not None)
            raise Invalid(f"model: expected one of {', '.join(known)}.")
        allowed = BASE_FIELDS - ({"promptImage"} if endpoint == "t2v" else set()) | spec.extra
        unknown = set(body) - allowed
        if unknown:
            raise Invalid(f"Unrecognized key(s) in object: {', '.join(sorted(unknown))}.")
        prompt = body.get("promptText")
        if prompt is None and endpoint in spec.prompt_on:
            raise Invalid("promptText: Required.")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()
                                   or len(prompt.encode("utf-16-le")) // 2 > spec.prompt_max):
            raise Invalid(f"promptText: must be a non-empty string of at most {spec.prompt_max} characters.")
        duration = body.get("duration", spec.default_duration)
        if duration is None:
            raise Invalid("duration: Required.")
        if duration == "auto" and spec.auto:
            duration = 5
        elif isinstance(duration, bool) or not isinstance(duration, int) or duration not in spec.durations:
            raise Invalid(f"duration: expected an integer in {', '.join(map(str, spec.durations))}.")
        seed = body.get("seed", 0)  # ❓ the range is undocumented; 32-bit unsigned is the usual one
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 4294967295:
            raise Invalid("seed: expected an integer from 0 to 4294967295.")
        if not isinstance(body.get("audio", False), bool):
            raise Invalid("audio: expected a boolean.")
        image = _image(body.get("promptImage"), self.resolve_upload) if endpoint == "i2v" else None
        ratio = body.get("ratio")
        if ratio is None and endpoint in spec.ratio_on:
            raise Invalid("ratio: Required.")
        if ratio is not None and ratio not in ratios:
            raise Invalid(f"ratio: expected one of {', '.join(ratios)}." if ratios else
                          "ratio: not taken on image_to_video by this model (the output follows the image).")
        return body["model"], ratio or _default_ratio(ratios or spec.t2v or R_VEO, image), duration, image

    def price(self, model: str, size: str, seconds: int, audio: bool) -> int:
        """Credits a generation costs at the catalogue's per-second price for its size."""
        try:
            entry = load_catalogue().model("runway", model)
        except KeyError:
            return 0
        resolution = next((name for name, res in entry.resolutions.items() if size in res.sizes.values()),
                          None)  # a ratio the catalogue does not list is priced at the default resolution
        return round(entry.price_per_second(resolution, audio) * seconds)

    def lifecycle(self, task: SimTask) -> tuple[str, float]:
        """The base lifecycle, with a concurrency budget per key and a run time per model."""
        now, latency = time.monotonic(), task.extra.get("latency", self.latency)
        with self.lock:
            if task.cancelled:
                return "cancelled", 0.0
            if "failure" in task.extra:  # refused by input moderation before it ever ran
                return "failed", 0.0
            if now - task.created < self.queue_latency:
                return "queued", 0.0
            if task.started is None:
                busy = sum(1 for t in self.tasks.values() if t.extra.get("key") == task.extra.get("key")
                           and t.started is not None and not t.cancelled
                           and now - t.started < t.extra.get("latency", self.latency))
                if self.concurrency is not None and busy >= self.concurrency:
                    return "throttled", 0.0
                task.started = now
            elapsed = now - task.started
        if elapsed < latency or not task.video.done():
            return "running", min(0.99, elapsed / latency) if latency else 0.99
        if task.failure is not None:
            return "failed", 1.0
        task.video.result()  # a render error surfaces here as a 500
        return "succeeded", 1.0

    def task_body(self, task: SimTask, status: str, progress: float) -> dict[str, Any]:
        body: dict[str, Any] = {"id": task.id, "createdAt": task.extra["created_at"], "status": STATUS[status]}
        if status in ("queued", "throttled", "running"):
            body["estimatedCost"] = {"credits": float(task.extra["credits"])}
            if status == "running":
                body["progress"] = round(progress, 3)
            return body
        body["cost"] = {"credits": self.charged(task, status)}
        if status == "succeeded":
            body["output"] = [self.output_url(task)]
        elif status == "failed":
            body["failureCode"], body["failure"] = self.failure(task)
        return body

    def failure(self, task: SimTask) -> tuple[str, str]:
        return task.extra.get("failure") or FAILURES.get(task.failure or "", FAILURES["internal"])

    def charge(self, task: SimTask, status: str) -> float:
        return float(self.charged(task, status)) if status in ("succeeded", "failed", "cancelled") else 0.0

    def charged(self, task: SimTask, status: str) -> int:
        """cost.credits of a finished task (◐ runwayml/skills: SAFETY.INPUT failures are not refunded)."""
        if status == "cancelled":
            return task.extra.get("charged", 0)
        if status == "failed" and not self.failure(task)[0].startswith("SAFETY.INPUT"):
            return 0
        return int(task.extra["credits"])


def _key_id(request: Request) -> str:
    """Which key made a request, without keeping the key itself."""
    return hashlib.sha256(_header(request, "Authorization").encode()).hexdigest()[:16]


def _header(request: Request, name: str) -> str:
    """A request header, whatever its case (fault injection turns the headers into a plain dict)."""
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), "")


def _image(value: Any, resolve: Callable[[str, str], bytes]) -> bytes | None:
    """The bytes of a promptImage (a string or [{uri, position}]): a data URI, or a runway://
    upload resolved with `resolve`; None for HTTPS URLs (not fetched)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        value = next((v.get("uri") for v in value if v.get("position", "first") == "first"), None)
    if not isinstance(value, str) or not value:
        raise Invalid("promptImage: Required: an HTTPS URL, a runway:// upload URI or a data URI.")
    if value.startswith("https://") and not value.split("/")[2].replace(".", "").replace(":", "").isdigit():
        return None
    if value.startswith("runway://"):
        try:
            raw = resolve("promptImage", value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    else:
        head, _, data = value.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64")):
            raise Invalid("promptImage: use an HTTPS URL on a domain, a runway:// URI or a base64 data URI.")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("promptImage: the data URI is not valid base64.") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise Invalid("promptImage: data URIs may be at most 5MB; use an upload instead.")
    if cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        raise Invalid("promptImage: the image could not be decoded.")
    return raw


def _default_ratio(ratios: tuple[str, ...], image: bytes | None) -> str:
    """Without a ratio the output follows the image's shape (text: 1280:720 where offered)."""
    if image is None:
        return "1280:720" if "1280:720" in ratios else ratios[0]
    height, width = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
    shape = math.log(width / height)
    return min(ratios, key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - shape))
