"""Runway's developer API: Gen-4.5, Gen-4 Turbo and the Veo, Kling and Seedance models it resells.

Contract (runwayml SDK 5.24.0 and shared/reference/providers.md §1; ✅ SDK or Runway docs,
◐ secondary):
- ✅ `POST /v1/text_to_video` or `/v1/image_to_video` {model, promptText, promptImage, ratio,
  duration, seed?, audio?} → {id}; `GET /v1/tasks/{id}` → PENDING | THROTTLED | RUNNING
  (progress, estimatedCost) | SUCCEEDED (output [urls], cost.credits) | FAILED (failure,
  failureCode) | CANCELLED; `DELETE /v1/tasks/{id}` cancels. Every call sends
  `Authorization: Bearer key_...` and `X-Runway-Version: 2024-11-06`.
- ✅ `ratio` is a pixel size ("1280:720"): it is the catalogue's size for the shot's aspect ratio
  and resolution. `duration` is an int. `promptImage` is a data URI, or for a PNG/JPEG over the
  data-URI limit a runway:// upload of the file as it is (blocks/runway_upload.py).
- ✅ THROTTLED means over the key's concurrency: the task waits its turn, and that wait does not
  count against `generation_timeout`. A 429 reading "Your daily task limit has been reached." is the
  daily cap (rolling 24 h, ✅ runwayml/sdk-python#23): final for the day, never retried; other
  429s are passing overloads, retried with backoff.
- ✅ failureCode SAFETY.* and INPUT_PREPROCESSING.SAFETY.* are moderation (do not retry);
  ASSET.INVALID is bad input; INTERNAL.BAD_OUTPUT.* is a rejected output; INTERNAL and
  INPUT_PREPROCESSING.INTERNAL are worth retrying (docs.dev.runwayml.com/errors/task-failures).
- ◐ An empty credit balance is a 400 whose error reads "You do not have enough credits to run
  this task." (runwayml/sdk-node#28 and integrators' logs): classified insufficient_credits.
- ✅ `POST /v1/video_upscale` {model: magnific_video_upscaler_creative, videoUri, resolution
  720p|1k|2k|4k, fpsBoost, creativity, flavor, sharpen, smartGrain} → {id, estimatedCost}, then
  polled like a generation (SDK types/video_upscale_create_params.py). Videos go inline as data
  URIs of at most 16 MB (docs.dev.runwayml.com/assets/inputs), larger ones as uploads; the price
  is unpublished (❓).
- ✅ `POST /v1/organization/usage` {startDate, beforeDate (not inclusive, at most 90 days later)}
  → {models, results: [{date, usedCredits: [{model, amount}]}]}, amounts net of refunds, dates in
  UTC (SDK resources/organization/organization.py, types/organization_retrieve_usage_*.py): the
  account's own record of what it charged, which decides creates of unknown outcome
  (tasks/spend.py `settle_unknown_creates`).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from blocks.catalogue import ModelEntry, UpscalerEntry
from blocks.media import file_digest
from blocks.providers import GenerationRequest, GenerationResult
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState, data_uri
from blocks.runway_models import MODELS as RUNWAY_MODELS
from blocks.runway_models import SDK_VERSION
from blocks.runway_upload import upload
from blocks.super_resolution import UpscaleRequest

log = logging.getLogger("takeflow.providers")

STATUSES = {"PENDING": "queued", "THROTTLED": "throttled", "RUNNING": "running", "SUCCEEDED": "succeeded",
            "FAILED": "failed", "CANCELLED": "cancelled"}
# promptText limits in UTF-16 code units where the SDK's docstring states none (Kling's is its own
# API's 2500, ◐); the SDK's own "up to N characters" wins where it gives one
PROMPT_LIMITS = {"kling": 2500, "seedance": 3500}
# a data URI's base64 is 4/3 of the image: keep the whole URI within the 5 MB the API allows
MAX_IMAGE_BYTES = 5 * 2**20 * 3 // 4 - 1024


class DailyLimit(ProviderError):
    """Runway's daily task cap (a rolling 24 h per model): rate limited, but final for the day, so
    the take fails at once with Runway's words instead of retrying into the same 429."""

    def __init__(self, provider: str, kind: ErrorKind, message: str, retry_after: float | None = None):
        super().__init__(provider, kind, message, retry_after)
        self.transient = False


def daily_cap(message: str) -> bool:
    """Whether a 429's message is the daily cap ("Your daily task limit has been reached.", ✅
    runwayml/sdk-python#23) rather than a passing overload."""
    return "daily" in message.lower()


def _model_of(response: httpx.Response) -> str:
    try:
        return json.loads(response.request.content or b"{}").get("model") or "this model"
    except (ValueError, AttributeError, httpx.RequestNotRead):
        return "this model"


def failure_kind(code: str | None) -> ErrorKind:
    """The error kind a FAILED task's failureCode stands for."""
    code = code or ""
    if code.startswith(("SAFETY.", "INPUT_PREPROCESSING.SAFETY")):
        return "moderation"
    if code.startswith("ASSET."):
        return "invalid_input"
    if code.startswith("INTERNAL.BAD_OUTPUT"):
        return "bad_output"
    return "transient"  # INTERNAL, INPUT_PREPROCESSING.INTERNAL, or no code: a new try may succeed


class RunwayProvider(RemoteVideoProvider):
    """Video generation through Runway's developer API (a `key_...` secret from dev.runwayml.com).

    Example:
        ```python
        from blocks.runway import RunwayProvider
        runway = RunwayProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow runway"
    _documentation_url = "https://docs.dev.runwayml.com/"
    _description = ("Runway developer API: Gen-4.5, Gen-4 Turbo and every model its router offers (Veo 3.1, "
                    "Kling 2.5/3.0/O3/4, Seedance 2.0/2.5, Wan 3, Hailuo 3, Gemini Omni, Grok Imagine...), billed "
                    "in Runway credits.")
    models = tuple(RUNWAY_MODELS)  # every model the SDK's text- and image-to-video unions route to
    upscalers: ClassVar[tuple[str, ...]] = ("magnific_video_upscaler_creative",)
    provider_name = "runway"
    unit_cost_field: ClassVar[str] = "cost.credits"
    whole_seconds: ClassVar[bool] = True
    task_history: ClassVar[str] = "the Runway dashboard's task history"
    cache_neutral: ClassVar[tuple[str, ...]] = RemoteVideoProvider.cache_neutral + ("api_version",)

    base_url: str = Field(
        "https://api.dev.runwayml.com",
        description="API root (api.dev, not api.runwayml.com); point it at a simulator or a proxy to test.")
    api_version: str = Field("2024-11-06", description="X-Runway-Version header sent with every call.")
    max_concurrency: int = Field(
        2, ge=1, le=100,
        description="Most takes in flight at once. Usage tier 1 runs 1-2 per model; extra tasks wait "
                    "THROTTLED at Runway, which does not count against generation_timeout.")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret()}", "X-Runway-Version": self.api_version}

    # ---- create ------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> str:
        body = self.body(request)
        path = "/v1/image_to_video" if "promptImage" in body else "/v1/text_to_video"
        return self._create(path, body)

    def _create(self, path: str, body: dict[str, Any]) -> str:
        response = self.send("POST", path, create=True, json=body)
        return self.created_id(response, self.json_body(response).get("id"))

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The create body for a request, shaped by the model's SDK field rules (blocks/runway_models.py)
        and checked against the catalogue before anything is spent."""
        entry = self.checked(request)
        endpoint = "i2v" if request.reference_image is not None else "t2v"
        fields = RUNWAY_MODELS.get(request.model, {}).get(endpoint) or {}
        if entry.retired or request.model not in RUNWAY_MODELS:
            raise ProviderError(self.name, "retired", (
                f"{request.model} is no longer offered by the Runway API (gone from runwayml {SDK_VERSION}); "
                "choose a current model (takeflow models --provider runway)"))
        resolution = request.resolution or entry.default_resolution
        self._check(request, entry, resolution, fields)
        width, height = entry.size(request.aspect_ratio, resolution)
        body: dict[str, Any] = {"model": request.model}
        ratio = _ratio(fields, width, height, request.aspect_ratio, resolution)
        if ratio:
            body["ratio"] = ratio
        if "resolution" in fields:
            body["resolution"] = resolution
        if "duration" in fields:
            body["duration"] = int(round(request.duration))
        if request.prompt.strip():
            body["promptText"] = request.prompt
        if request.reference_image is not None:
            body["promptImage"] = self._image_uri(request.reference_image)
        if "seed" in fields:  # ❓ the range is undocumented: folded into 32 bits, the usual seed size
            body["seed"] = request.seed % 2**32
        if "audio" in fields:  # sent either way: whether it is on changes the price
            body["audio"] = request.audio
        return body

    def _image_uri(self, path: Path) -> str:
        """A PNG or JPEG too large to go inline is uploaded as it is rather than re-encoded smaller;
        other images go inline as JPEG."""
        with path.open("rb") as handle:
            png_or_jpeg = handle.read(4).startswith((b"\x89PNG", b"\xff\xd8\xff"))
        if png_or_jpeg and path.stat().st_size > MAX_IMAGE_BYTES:
            return upload(self, path)
        return data_uri(path, MAX_IMAGE_BYTES)

    def _check(self, request: GenerationRequest, entry: ModelEntry, resolution: str,
               fields: dict[str, Any]) -> None:
        """What the SDK's types refuse beyond the catalogue's capability check (`checked`)."""
        def refuse(message: str) -> None:
            raise self.refuse(f"{request.model} {message}")

        width, height = entry.size(request.aspect_ratio, resolution)
        if "ratio" in fields and fields["ratio"].get("required") and not _ratio(
                fields, width, height, request.aspect_ratio, resolution):
            refuse(f"takes no {width}:{height} ratio here; use one of {', '.join(fields['ratio']['enum'])}")
        if "resolution" in fields and resolution not in fields["resolution"].get("enum", [resolution]):
            refuse(f"takes no resolution {resolution} here; use {' or '.join(fields['resolution']['enum'])}")
        prompt = fields.get("promptText", {})
        if prompt.get("required") and not request.prompt.strip():
            refuse("needs a prompt here; send one")
        limit = prompt.get("max_length") or next(
            (n for prefix, n in PROMPT_LIMITS.items() if request.model.startswith(prefix)), None)
        if limit and len(request.prompt.encode("utf-16-le")) // 2 > limit:
            refuse(f"takes prompts of at most {limit} characters; shorten the prompt")

    # ---- upscale (POST /v1/video_upscale: a task like any other) -----------------------------

    def check_upscale(self, request: UpscaleRequest) -> UpscalerEntry:
        """The catalogue entry of a request the API would take; refuses the rest without sending."""
        entry = self.upscaler_entry(request.model, request.resolution)
        if entry.max_duration is not None and request.duration > entry.max_duration:
            raise ProviderError(self.name, "invalid_input", (
                f"{request.model} upscales clips of at most {entry.max_duration:g} s, not "
                f"{request.duration:g} s; upscale it locally instead"))
        size = request.source.stat().st_size
        if _inline(request.source, entry):
            return entry
        if entry.max_upload_mb is None:
            raise ProviderError(self.name, "invalid_input", (
                f"{request.source.name} is {size / 2**20:.1f} MB; {request.model} takes at most "
                f"{entry.max_input_mb:g} MB as a data URI (about {entry.max_input_mb * 3 / 4:g} MB of video); "
                "upscale it locally instead"))
        if size > entry.max_upload_mb * 2**20:
            raise ProviderError(self.name, "invalid_input", (
                f"{request.source.name} is {size / 2**20:.1f} MB; {request.model} takes at most "
                f"{entry.max_upload_mb:g} MB (as an upload); upscale it locally instead"))
        return entry

    def upscale(self, request: UpscaleRequest, dest: Path) -> GenerationResult:
        started = time.perf_counter()
        entry = self.check_upscale(request)
        # fpsBoost off: the edit's timing is planned at the take's frame rate
        body = {"model": request.model, "resolution": entry.target(request.resolution).api, "fpsBoost": False}
        key = json.dumps({**body, "source": file_digest(request.source), "duration": request.duration})

        def create() -> str:
            uri = (_video_uri_header(request.source) + base64.b64encode(request.source.read_bytes()).decode()
                   if _inline(request.source, entry) else upload(self, request.source))
            return self._create("/v1/video_upscale", {**body, "videoUri": uri})

        credits = self.run_task(key, create, dest, lambda state: self.credits_or(state, lambda: (
            self.estimate_upscale_credits(request.model, request.resolution, request.duration))))
        return GenerationResult(path=dest, provider=self.get_block_type_slug(), model=request.model,
                                credits=round(credits, 4), seconds=time.perf_counter() - started)

    # ---- usage -------------------------------------------------------------------------------

    def usage_since(self, day: date) -> float | None:
        """Runway credits the account used from `day` (UTC) to today, every model, net of refunds;
        None when `day` is past the 90 days the record reaches."""
        before = datetime.now(timezone.utc).date() + timedelta(days=1)
        if (before - day).days > 90:
            return None
        data = self.json_body(self.send("POST", "/v1/organization/usage",
                                        json={"startDate": day.isoformat(), "beforeDate": before.isoformat()}))
        return float(sum(used.get("amount", 0) for result in data.get("results") or []
                         for used in result.get("usedCredits") or []))

    # ---- poll, cancel, errors ----------------------------------------------------------------

    def poll(self, task_id: str) -> TaskState:
        data = self.json_body(self.send("GET", f"/v1/tasks/{task_id}"))
        raw = data.get("status")
        status = STATUSES.get(raw)
        if status is None:  # a status newer than this adapter: keep polling, on the deadline's clock
            log.warning("%s: task %s has unknown status %r", self.name, task_id, raw)
            status = "running"
        # cost.credits once the task has ended; estimatedCost.credits while it is pending or running
        cost = data.get("cost") if isinstance(data.get("cost"), dict) else data.get("estimatedCost")
        credits = cost.get("credits") if isinstance(cost, dict) else None
        output = data.get("output") if isinstance(data.get("output"), list) else []
        progress = data.get("progress")
        return TaskState(
            id=task_id, status=status, progress=progress if isinstance(progress, (int, float)) else None,
            output_url=output[0] if output and isinstance(output[0], str) else None,
            cost=credits if isinstance(credits, (int, float)) else None,
            error_kind=failure_kind(data.get("failureCode")) if status == "failed" else None,
            error=(f"{data.get('failure') or 'no reason given'} ({data.get('failureCode') or 'no code'})"
                   if status == "failed" else None))

    def retryable(self, response: httpx.Response) -> bool:
        """A 429 for the daily cap is final for the day: retrying in seconds cannot succeed."""
        if response.status_code == 429 and daily_cap(self._message(response)):
            return False
        return super().retryable(response)

    def cancel(self, task_id: str) -> None:
        try:
            self.send("DELETE", f"/v1/tasks/{task_id}", headers={"Accept": "*/*"})
        except ProviderError as exc:  # best effort: the take has failed either way
            log.warning("%s: could not cancel task %s: %s", self.name, task_id, exc)

    def error_for(self, response: httpx.Response) -> ProviderError:
        status, message = response.status_code, self._message(response)
        if status == 400 and "credit" in message.lower():
            return ProviderError(self.name, "insufficient_credits", (
                f"the account is out of credits ({message}); buy credits at dev.runwayml.com, then retry"))
        if status in (401, 403):
            return ProviderError(self.name, "auth", (
                f"the API key was refused (HTTP {status}: {message}); check the key saved in the "
                f"'{self.name}' block"))
        if status == 404 and "/v1/tasks/" in response.request.url.path:
            return ProviderError(self.name, "cancelled", (
                "the task no longer exists (deleted, or made with another key); the take must start again"))
        if status == 429 and daily_cap(message):
            return DailyLimit(self.name, "rate_limited", (
                f"Runway's daily task limit for {_model_of(response)} is reached (\"{message}\"); the cap is a "
                "rolling 24 h, so this take is not retried today: use another model or provider, or ask "
                "Runway for a higher usage tier"))
        if status == 429:
            return ProviderError(self.name, "rate_limited", f"Runway is rate limiting (HTTP 429: {message})")
        if status >= 500 or status in (408, 409):
            return ProviderError(self.name, "transient", f"Runway answered HTTP {status}: {message}")
        return ProviderError(self.name, "invalid_input", (
            f"Runway refused the request (HTTP {status}: {message}); fix the request's settings"))

    def _message(self, response: httpx.Response) -> str:
        return self.error_body(response).message


def _ratio(fields: dict[str, Any], width: int, height: int, aspect: str, resolution: str) -> str | None:
    """The `ratio` a model takes for a size: its pixel size, its aspect ratio or its `auto_<res>`
    tier, whichever the SDK types offer; None when it takes none of them (or no ratio at all)."""
    offered = fields.get("ratio", {}).get("enum", [])
    return next((v for v in (f"{width}:{height}", aspect, f"auto_{resolution}") if v in offered), None)


def _inline(path: Path, entry: UpscalerEntry) -> bool:
    """Whether the clip fits the upscaler's data-URI limit: header plus 4 base64 characters per 3 bytes."""
    return len(_video_uri_header(path)) + 4 * math.ceil(path.stat().st_size / 3) <= entry.max_input_mb * 2**20


def _video_uri_header(path: Path) -> str:
    kind = {".mov": "video/quicktime", ".webm": "video/webm"}.get(path.suffix.lower(), "video/mp4")
    return f"data:{kind};base64,"
