"""A Runway developer API simulator (api.dev.runwayml.com, X-Runway-Version 2024-11-06).

Close enough to the runwayml SDK 5.24.0's contract that the SDK itself runs against it:
- `POST /v1/text_to_video` | `/v1/image_to_video` → {id, estimatedCost}; bodies are checked per model
  against the SDK's own types (simulators/runway_rules.py: fields, required, enums, ranges, prompt
  length in UTF-16 units, nested items; unknown fields refused), images are data URIs ≤ 5 MB,
  runway:// uploads or HTTPS URLs it can fetch (`web`); a URL it cannot fetch is a 400.
- `GET /v1/tasks/{id}`: PENDING | THROTTLED | RUNNING (progress) with estimatedCost.credits;
  SUCCEEDED (output [url]) | FAILED (failure, failureCode) | CANCELLED with cost.credits (int)
  at the catalogue's price. `DELETE` → 204 cancels a live task (refunded unless it was running,
  per the SDK's docstring) or deletes a finished one (it then reads CANCELLED).
- Errors are {"error": "..."}: 400 bad input, a missing/unknown version, and no credits ("You do
  not have enough credits to run this task.", as the API answers ◐); 401 bad key; 429 "Your daily
  task limit has been reached." once a key made `daily_limit` tasks of a model in 24 h (✅ wording,
  runwayml/sdk-python#23), while injected transient 429s read "Too many requests".
- `POST /v1/organization/usage`: credits used per day and model, from this record of charges.
- Over `concurrency` live tasks per key, new ones wait THROTTLED. Moderation is never synchronous:
  a rejected input is a task that fails at once with INPUT_PREPROCESSING.SAFETY.TEXT.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Any

from blocks.catalogue import load_catalogue
from simulators.base import Fault, ProviderSimulator, Request, Response, SimTask, collect_routes, route
from simulators.runway_rules import Invalid, check_body, image_bytes, output_size, prompt_images
from simulators.runway_upscale import VideoUpscaleRoutes
from simulators.runway_uploads import UploadRoutes
from simulators.runway_usage import UsageRoutes

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
DAILY_CAP = "Your daily task limit has been reached."  # ✅ the API's words, runwayml/sdk-python#23
MESSAGES = {"insufficient_credits": "You do not have enough credits to run this task.",
            "rate_limit": "Too many requests. Please slow down and retry.",
            "invalid_input": "promptImage: the image could not be decoded.",
            "server": "The service is temporarily overloaded. Please retry."}
@collect_routes
class RunwaySimulator(UploadRoutes, VideoUpscaleRoutes, UsageRoutes, ProviderSimulator):
    """Runway's task API on loopback, with ephemeral uploads (simulators/runway_uploads.py), video
    upscale (simulators/runway_upscale.py) and the account's usage record (simulators/runway_usage.py).
    `model_latency` gives some models their own run time; `extra_keys` are further accepted API
    keys, each with its own concurrency budget; `daily_limit` caps the tasks per key and model in a
    rolling 24 h (the tier limit: a 429 in the API's words, where retrying is pointless); `web`
    holds the HTTPS URLs the API can fetch images from."""

    name = "runway"
    keyless_endpoints = ("download", "storage")

    def __init__(self, *, model_latency: dict[str, float] | None = None, extra_keys: tuple[str, ...] = (),
                 daily_limit: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.model_latency = dict(model_latency or {})
        self.keys = {self.api_key, *extra_keys}
        self.daily_limit = daily_limit  # tasks per key and model in a rolling 24 h; None: no cap
        self.daily: dict[tuple[str, str], list[float]] = {}
        self.web: dict[str, bytes] = {}  # HTTPS URLs the "API" can fetch, and their bytes

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
            model, size, duration, image = self.validate(body, endpoint)
        except Invalid as exc:
            return Response(400, {"error": str(exc)})
        if self.over_daily_cap(request, model):
            return Response(429, {"error": DAILY_CAP})
        task = self.new_task(model, body, size=size, duration=duration, fps=24,
                             prompt=body.get("promptText") or "", seed=body.get("seed", 0), image=image)
        credits = self.price(model, size, body, duration)
        return self.accepted(request, task, credits)

    def over_daily_cap(self, request: Request, model: str) -> bool:
        """Whether this key has made `daily_limit` tasks of this model in the last 24 h (rolling)."""
        if self.daily_limit is None:
            return False
        key, now = _key_id(request), time.time()
        with self.lock:
            made = [t for t in self.daily.get((key, model), []) if now - t < 24 * 3600]
            if len(made) >= self.daily_limit:
                return True
            self.daily[(key, model)] = made + [now]
        return False

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

    def validate(self, body: Any, endpoint: str) -> tuple[str, tuple[int, int], int, bytes | None]:
        """(model, output size, duration, first frame) of a valid create body; raises Invalid."""
        fields = check_body(body, endpoint)
        model, first = body["model"], None
        if endpoint == "i2v":
            frames = prompt_images(body["promptImage"])
            positions = fields["promptImage"].get("items", {}).get("position", {}).get("enum")
            for index, (position, uri) in enumerate(frames):
                raw = image_bytes("promptImage" if len(frames) == 1 else f"promptImage[{index}]", uri,
                                  self.resolve_upload, self.web)
                if position in (None, "first") and first is None:
                    first = raw
            if positions and [p for p, _ in frames] == ["last"]:
                raise Invalid("promptImage: a last frame needs a first frame too.")
        for index, ref in enumerate(body.get("references") or []):
            uri = ref.get("uri") if isinstance(ref, dict) else ref
            image_bytes(f"references[{index}]", uri, self.resolve_upload, self.web)
        duration = body.get("duration", 5)
        if duration == "auto":  # billed at the model's longest, refunded after (SDK docstring)
            duration = 5
        return model, output_size(model, body, first), duration, first

    def price(self, model: str, size: tuple[int, int], body: dict[str, Any], seconds: int) -> int:
        """Credits a generation costs at the catalogue's per-second price for its size ('auto'
        durations at the model's longest, as the SDK says they are billed up front)."""
        try:
            entry = load_catalogue().model("runway", model)
        except KeyError:
            return 0
        wanted = f"{size[0]}x{size[1]}"
        resolution = next((name for name, res in entry.resolutions.items() if wanted in res.sizes.values()),
                          None)  # a size the catalogue does not list is priced at the default resolution
        billed = max(entry.durations) if body.get("duration") == "auto" else seconds
        return round(entry.price_per_second(resolution, bool(body.get("audio"))) * billed)

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
