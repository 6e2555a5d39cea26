"""fal.ai, an aggregator: one key and one queue API in front of Kling, Veo, LTX, Seedance, Wan and
Hailuo, plus LTX's video upscaler.

Contract (shared/reference/providers.md §5.1; ✅ https://docs.fal.ai/model-endpoints/queue, ◐ secondary):
- ✅ Every call sends `Authorization: Key <FAL_KEY>` to https://queue.fal.run.
  `POST /{endpoint}` (JSON input) → {request_id, status_url, response_url, cancel_url};
  `GET …/requests/{id}/status` → IN_QUEUE (queue_position) | IN_PROGRESS (logs) | COMPLETED
  (metrics); `GET …/requests/{id}` → the endpoint's output ({"video": {"url", …}}) or, for a
  failed request, its error; `PUT …/requests/{id}/cancel` → 202 CANCELLATION_REQUESTED, or 400
  ALREADY_COMPLETED once it runs. Status, result and cancel sit under the app id (`owner/app`),
  not the endpoint's subpath, so the adapter follows the URLs the submit answered with.
- ✅ COMPLETED covers failures too: the result then answers 4xx/5xx with {"detail": …}; a
  validation error is 422 {"detail": [{"loc", "msg", "type"}]} (◐ `type` content_policy_violation
  for moderation, fal's error-type docs); `X-Fal-Retryable` says whether trying again may help (◐).
- ✅ "You pay only for successful outputs": failed and cancelled requests are not charged, so a
  request's credits are the catalogue's per-second price (fal's results carry no cost).
- Inputs differ per endpoint (field names, duration spelling "5" / "8s" / 8, resolution enums):
  ENDPOINTS below, from each model's fal page (◐ as transcribed in the sources the catalogue
  names). Images and upscale inputs go inline as data URIs, which fal accepts for file inputs (◐).
- ✅ LTX 2.5 Upscale (`lightricks/ltx-2.5/upscale`, fal model page): {video_url, resolution
  1080p|4k|8k}; input H.264/HEVC ≤ 200 MB, short side ≥ 480 px, ≤ 2401 frames for 1080p and ≤ 601
  for 4K; billed per second of input.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from blocks.catalogue import UpscalerEntry
from blocks.media import file_digest, probe
from blocks.providers import GenerationRequest, GenerationResult
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState, data_uri
from blocks.super_resolution import UpscaleRequest

log = logging.getLogger("takeflow.providers")

STATUSES = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "succeeded"}
ERROR_KINDS: dict[str, ErrorKind] = {"content_policy_violation": "moderation", "no_media_generated": "bad_output",
                                     "generation_timeout": "transient", "downstream_service_error": "transient",
                                     "internal_server_error": "transient"}
UPSCALE_FRAMES = {"1080p": 2401, "4k": 601}  # ✅ most input frames per target (fal model page)


@dataclass(frozen=True)
class Endpoint:
    """How one fal model family spells a request."""

    t2v: str | None                      # text-to-video endpoint id
    i2v: str | None                      # image-to-video endpoint id
    image: str = "image_url"             # the first-frame field
    duration: str = "str"                # "str" ("5"), "s" ("8s") or "int" (8)
    resolution: dict[str, str] | None = None  # takeflow resolution → the endpoint's value
    aspect: bool = True                  # takes aspect_ratio (text to video)
    audio: str | None = None             # the sound switch, where it has one
    seed: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "kling-v3-pro": Endpoint("fal-ai/kling-video/v3/pro/text-to-video",
                                          "fal-ai/kling-video/v3/pro/image-to-video", image="start_image_url",
                                          audio="generate_audio"),
    "kling-v2.5-turbo-pro": Endpoint("fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
                                                  "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"),
    "veo3.1": Endpoint("fal-ai/veo3.1", "fal-ai/veo3.1/image-to-video", duration="s",
                              resolution={"720p": "720p", "1080p": "1080p"}, audio="generate_audio"),
    "veo3.1-fast": Endpoint("fal-ai/veo3.1/fast", "fal-ai/veo3.1/fast/image-to-video", duration="s",
                                   resolution={"720p": "720p", "1080p": "1080p"}, audio="generate_audio"),
    "ltx-2.3-pro": Endpoint("fal-ai/ltx-2.3/text-to-video", "fal-ai/ltx-2.3/image-to-video", duration="int",
                               resolution={"1080p": "1080p", "1440p": "1440p", "4k": "2160p"},
                               audio="generate_audio"),
    "ltx-2.3-fast": Endpoint("fal-ai/ltx-2.3/text-to-video/fast", "fal-ai/ltx-2.3/image-to-video/fast",
                                    duration="int", resolution={"1080p": "1080p", "1440p": "1440p", "4k": "2160p"},
                                    audio="generate_audio"),
    "seedance-v1.5-pro": Endpoint(
        "fal-ai/bytedance/seedance/v1.5/pro/text-to-video", "fal-ai/bytedance/seedance/v1.5/pro/image-to-video",
        resolution={"480p": "480p", "720p": "720p", "1080p": "1080p"}, audio="generate_audio", seed=True),
    "wan-2.5": Endpoint("fal-ai/wan-25-preview/text-to-video", "fal-ai/wan-25-preview/image-to-video",
                                      resolution={"480p": "480p", "720p": "720p", "1080p": "1080p"}, seed=True),
    "hailuo-02-standard": Endpoint("fal-ai/minimax/hailuo-02/standard/text-to-video",
                                                  "fal-ai/minimax/hailuo-02/standard/image-to-video",
                                                  aspect=False),
}
UPSCALER = "ltx-2.5-upscale"  # takeflow's name for it
UPSCALER_ENDPOINT = "lightricks/ltx-2.5/upscale"


class FalProvider(RemoteVideoProvider):
    """Video generation and upscaling through fal.ai's queue API (a FAL_KEY from fal.ai/dashboard).

    Example:
        ```python
        from blocks.fal import FalProvider
        fal = FalProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow fal"
    _documentation_url = "https://docs.fal.ai/model-endpoints/queue"
    _description = ("fal.ai queue API: Kling, Veo, LTX 2.3, Seedance, Wan and Hailuo behind one key, billed in USD "
                    "per second, and LTX 2.5 Upscale as a provider upscaler.")
    models: ClassVar[tuple[str, ...]] = tuple(ENDPOINTS)
    upscalers: ClassVar[tuple[str, ...]] = (UPSCALER,)
    provider_name: ClassVar[str] = "fal"
    whole_seconds: ClassVar[bool] = True
    task_history: ClassVar[str] = "fal's request history (fal.ai/dashboard/requests)"

    base_url: str = Field("https://queue.fal.run", description="Queue API root; point it at a simulator to test.")
    max_concurrency: int = Field(
        4, ge=1, le=100, description="Most requests in flight at once; fal's own limit grows with your purchase "
                                     "history, and requests over it simply wait in fal's queue.")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.secret()}"}

    # ---- create -----------------------------------------------------------------------------

    def body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """(endpoint id, input) for a request, checked against the catalogue before anything is spent."""
        entry = self.checked(request)
        spec = ENDPOINTS.get(request.model)
        endpoint = spec and (spec.i2v if request.reference_image is not None else spec.t2v)
        if endpoint is None:  # a catalogue entry this adapter has no endpoint for
            with_image = " with a reference image" if request.reference_image is not None else ""
            raise self.refuse(f"fal/{request.model}: takeflow knows no fal endpoint for it{with_image}; "
                              "use another fal model (takeflow models --provider fal)")
        resolution = request.resolution or entry.default_resolution
        seconds = int(round(request.duration))
        body: dict[str, Any] = {"prompt": request.prompt,
                                "duration": {"str": str(seconds), "s": f"{seconds}s", "int": seconds}[spec.duration]}
        if spec.aspect and request.reference_image is None:
            body["aspect_ratio"] = request.aspect_ratio
        if spec.resolution:
            body["resolution"] = spec.resolution[resolution]
        if spec.audio:
            body[spec.audio] = bool(request.audio)
        if spec.seed:
            body["seed"] = request.seed % 2**31
        if request.reference_image is not None:
            body[spec.image] = data_uri(request.reference_image, 10 * 2**20)
        return endpoint, body

    def submit(self, request: GenerationRequest) -> str:
        return self._submit(*self.body(request))

    def _submit(self, endpoint: str, body: dict[str, Any]) -> str:
        response = self.send("POST", f"/{endpoint}", create=True, json=body)
        answer = self.json_body(response)
        request_id = self.created_id(response, answer.get("request_id"), "request_id")
        status_url = answer.get("status_url")
        root = self.base_url.rstrip("/") + "/"
        if isinstance(status_url, str) and status_url.startswith(root) and status_url.endswith("/status"):
            return status_url[len(root):-len("/status")]  # "owner/app/requests/<id>"
        return f"{'/'.join(endpoint.split('/')[:2])}/requests/{request_id}"

    # ---- status, result, cancel ---------------------------------------------------------------

    def poll(self, task_id: str) -> TaskState:
        status = self.json_body(self.send("GET", f"/{task_id}/status"))
        raw = str(status.get("status", ""))
        state = STATUSES.get(raw)
        if state is None:
            log.warning("%s: request %s has unknown status %r; still waiting", self.name, task_id, raw)
            return TaskState(id=task_id, status="running")
        if state != "succeeded":
            return TaskState(id=task_id, status=state)
        try:  # COMPLETED covers failures too: the result says which
            result = self.json_body(self.send("GET", f"/{task_id}"))
        except ProviderError as exc:
            if getattr(exc, "http_status", None) is None:  # the result was not read: read it again
                raise
            return TaskState(id=task_id, status="failed", error_kind=exc.kind,
                             error=str(exc).removeprefix(f"{self.name}: "))
        video = result.get("video") if isinstance(result.get("video"), dict) else {}
        return TaskState(id=task_id, status="succeeded", output_url=video.get("url"))

    def cancel(self, task_id: str) -> None:
        try:
            self.send("PUT", f"/{task_id}/cancel")
        except ProviderError as exc:  # it already runs (400 ALREADY_COMPLETED): it ends, and fal bills it
            log.warning("%s: could not cancel request %s: %s", self.name, task_id, exc)

    # ---- errors -------------------------------------------------------------------------------

    def retryable(self, response: httpx.Response) -> bool:
        return response.headers.get("x-fal-retryable", "true").lower() != "false" and super().retryable(response)

    def error_for(self, response: httpx.Response) -> ProviderError:
        error = self._classify(response)
        error.http_status = response.status_code  # an answer, not a lost connection (see poll)
        return error

    def _classify(self, response: httpx.Response) -> ProviderError:
        status, (kind, message) = response.status_code, self._detail(response)
        if status in (401, 403):
            return ProviderError(self.name, "auth", f"fal refused the key (HTTP {status}: {message}); save a valid "
                                                    f"FAL_KEY in the '{self.name}' block")
        if status == 402 or "balance" in message.lower():
            return ProviderError(self.name, "insufficient_credits", f"the fal account is out of credit ({message}); "
                                                                    "top it up at fal.ai/dashboard/billing")
        if status == 429:
            return ProviderError(self.name, "rate_limited", f"fal is rate limiting (HTTP 429: {message})")
        if status >= 500 or status in (408, 409):
            return ProviderError(self.name, kind or "transient", f"fal answered HTTP {status}: {message}")
        if status == 404:
            return ProviderError(self.name, "cancelled", f"the request is unknown to fal (HTTP 404: {message}); "
                                                         "the request must be sent again")
        if kind == "moderation":
            return ProviderError(self.name, "moderation", f"fal's content policy refused it ({message}); change "
                                                          "the prompt or image")
        return ProviderError(self.name, kind or "invalid_input", f"fal refused the input (HTTP {status}: "
                                                                 f"{message}); fix the request")

    def _detail(self, response: httpx.Response) -> tuple[ErrorKind | None, str]:
        """(kind, one-line message) from fal's {"detail": str | [{loc, msg, type}]}, never the key."""
        error = self.error_body(response)
        return ERROR_KINDS.get(error.type), error.message

    # ---- upscale (LTX 2.5 Upscale, a queue request like any other) ------------------------------

    def check_upscale(self, request: UpscaleRequest) -> UpscalerEntry:
        """The catalogue entry of a request fal would take; refuses the rest without sending."""
        entry = self.upscaler_entry(request.model, request.resolution)
        refuse = lambda text: ProviderError(self.name, "invalid_input", f"{request.model}: {text}; upscale it "  # noqa: E731
                                                                        "locally instead")
        size = request.source.stat().st_size
        if 4 * -(-size // 3) + 32 > entry.max_input_mb * 2**20:
            raise refuse(f"{request.source.name} is {size / 2**20:.1f} MB, over the {entry.max_input_mb:g} MB "
                         "takeflow sends inline")
        info = probe(request.source)
        if min(info.width, info.height) < 480:
            raise refuse(f"the input's short side is {min(info.width, info.height)} px; it must be at least 480")
        cap = UPSCALE_FRAMES.get(request.resolution)
        if cap and info.frames > cap:
            raise refuse(f"the input has {info.frames} frames; at {request.resolution} it takes at most {cap}")
        return entry

    def upscale(self, request: UpscaleRequest, dest: Path) -> GenerationResult:
        started = time.perf_counter()
        entry = self.check_upscale(request)
        body = {"resolution": entry.target(request.resolution).api}
        key = json.dumps({**body, "model": request.model, "source": file_digest(request.source)})

        def create() -> str:
            uri = "data:video/mp4;base64," + base64.b64encode(request.source.read_bytes()).decode()
            return self._submit(UPSCALER_ENDPOINT, {**body, "video_url": uri})

        price = self.estimate_upscale_credits(request.model, request.resolution, request.duration)
        credits = self.run_task(key, create, dest, lambda state: price)  # fal reports no cost: its price list
        return GenerationResult(path=dest, provider=self.get_block_type_slug(), model=request.model,
                                credits=round(credits, 4), seconds=time.perf_counter() - started)
