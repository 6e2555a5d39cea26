"""OpenAI Sora 2 through the Videos API (create, poll, download the content) — retired by OpenAI.

OpenAI shut the Videos API down on 2026-09-24 (✅ developers.openai.com video-generation guide;
the openai SDK marks every `videos` method deprecated). Pointed at api.openai.com this block fails
at once with a `retired` error, before any request; pointed at a compatible endpoint (`base_url`)
it works as below.

Contract (shared/reference/providers.md §4; ✅ = openai-python source, ◐ = secondary):
- ✅ `POST /v1/videos` multipart {prompt, model, seconds (a string: the SDK's "4"|"8"|"12", and
  the guide's "16"|"20"), size ("1280x720", ...; 1920x1080 on sora-2-pro per the guide),
  input_reference (file)} → Video {id, status queued|in_progress|completed|failed, progress
  0-100, error{code,message}}; `GET /v1/videos/{id}`; `GET /v1/videos/{id}/content` → MP4 bytes
  with the key; `DELETE /v1/videos/{id}` (used as cancel).
- ✅ Errors are {"error":{"message","type","param","code"}}; 429 honours retry-after(-ms).
- ✅ A reference image must be exactly the video size ("Inpaint image must match the requested
  width and height", MicrosoftLearning/mslearn-ai-vision PR #78), so it is cover-cropped first.
- ◐ Moderation is code `moderation_blocked`; an account out of credit is 429 `insufficient_quota`.
- The Video object carries no cost: takes are billed at catalogue prices.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import cv2
import httpx
from pydantic import Field

from blocks.media import MediaError, cover_box, read_image
from blocks.providers import GenerationRequest
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState

log = logging.getLogger("takeflow.providers")

RETIRED_ON = "2026-09-24"
OPENAI_HOST = "api.openai.com"
STATUSES = {"queued": "queued", "in_progress": "running", "completed": "succeeded", "failed": "failed"}
NO_CREDIT = ("insufficient_quota", "billing_hard_limit_reached", "billing_not_active")


def failure_kind(code: str | None) -> ErrorKind:
    """The error kind of a failed Video's `error.code`."""
    code = (code or "").lower()
    if "moderation" in code or "safety" in code:
        return "moderation"
    if code in NO_CREDIT:
        return "insufficient_credits"
    if code.startswith("invalid") or code.endswith("invalid"):
        return "invalid_input"
    return "transient"


class SoraProvider(RemoteVideoProvider):
    """OpenAI Sora 2 and Sora 2 Pro (shut down by OpenAI on 2026-09-24; set `base_url` to a
    compatible endpoint to use this block).

    Example:
        ```python
        from blocks.sora import SoraProvider
        sora = SoraProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow sora"
    _documentation_url = "https://developers.openai.com/api/docs/guides/video-generation"
    _description = ("OpenAI Sora 2 Videos API (retired by OpenAI on 2026-09-24): works only against a "
                    "compatible endpoint set in base_url.")
    models: ClassVar[tuple[str, ...]] = ("sora-2", "sora-2-pro")
    provider_name: ClassVar[str] = "sora"
    task_history: ClassVar[str] = "the endpoint's video list (GET /videos)"

    base_url: str = Field("https://api.openai.com/v1",
                          description="Videos API root. OpenAI's own was shut down on 2026-09-24; set a "
                                      "compatible endpoint (or a simulator) here.")

    # ---- retirement ------------------------------------------------------------------------------

    def retired(self) -> bool:
        return httpx.URL(self.base_url).host == OPENAI_HOST

    def _refuse_if_retired(self) -> None:
        if self.retired():
            raise ProviderError(self.name, "retired", (
                f"Sora 2 was shut down by OpenAI on {RETIRED_ON}; pick another model (e.g. "
                "veo/veo-3.1-generate-preview or kling), or set the 'sora' block's base_url to a compatible "
                "endpoint"))

    def preflight(self) -> None:
        self._refuse_if_retired()
        super().preflight()

    def estimate_credits(self, request: GenerationRequest) -> float:
        self._refuse_if_retired()
        return super().estimate_credits(request)

    # ---- requests --------------------------------------------------------------------------------

    def download_headers(self, url: str) -> dict[str, str]:
        # the content endpoint wants the key; a redirect elsewhere must not get it (httpx drops
        # Authorization on cross-origin redirects itself)
        target, api = httpx.URL(url), httpx.URL(self.base_url)
        same = (target.scheme, target.host, target.port) == (api.scheme, api.host, api.port)
        return self.auth_headers() if same else {}

    def submit(self, request: GenerationRequest) -> str:
        self._refuse_if_retired()
        try:
            width, height = self.render_size(request)
        except KeyError as exc:  # a model, ratio or resolution the catalogue does not list for Sora
            raise ProviderError(self.name, "invalid_input", (
                f"{request.model} has no {request.aspect_ratio} size at {request.resolution or 'its default'} "
                f"resolution ({exc.args[0]}); choose a size the catalogue lists")) from None
        seconds = f"{int(request.duration)}" if float(request.duration).is_integer() else f"{request.duration:g}"
        # multipart even without a file, as the SDK always sends; (None, value) makes a plain field
        form: dict[str, tuple] = {"prompt": (None, request.prompt), "model": (None, request.model),
                                  "seconds": (None, seconds), "size": (None, f"{width}x{height}")}
        if request.reference_image is not None:
            form["input_reference"] = ("reference.jpg", fitted_reference(request.reference_image, width, height),
                                       "image/jpeg")
        response = self.send("POST", "/videos", files=form, create=True)
        return self.created_id(response, self.json_body(response).get("id"), "video id")

    def poll(self, task_id: str) -> TaskState:
        self._refuse_if_retired()
        video = self.json_body(self.send("GET", f"/videos/{task_id}"))
        status = STATUSES.get(video.get("status"), "running")
        progress = video.get("progress")
        state = TaskState(id=task_id, status=status,
                          progress=progress / 100 if isinstance(progress, (int, float)) else None)
        if status == "succeeded":
            state.output_url = f"{self.base_url.rstrip('/')}/videos/{task_id}/content"
        elif status == "failed":
            error = video.get("error") or {}
            state.error_kind = failure_kind(error.get("code"))
            state.error = f"{self.redact(error.get('message') or 'no reason given')} ({error.get('code')})"
        return state

    def cancel(self, task_id: str) -> None:
        try:  # deleting the video is the only way the API offers to stop it
            self.send("DELETE", f"/videos/{task_id}")
        except ProviderError as exc:
            log.warning("%s: could not delete task %s: %s", self.name, task_id, exc)

    # ---- errors ----------------------------------------------------------------------------------

    def error_for(self, response: httpx.Response) -> ProviderError:
        error, status = self.error_body(response, f"HTTP {response.status_code}"), response.status_code
        code, kind, message = str(error.code or ""), error.type, error.message
        param = f" ({error.param})" if error.param else ""
        said = f"HTTP {status}{' ' + code if code else ''}{param}: {message}"
        if status == 401:  # the message echoes part of the key: leave it out
            return ProviderError(self.name, "auth", f"the API key was refused (HTTP 401{' ' + code if code else ''}); "
                                                    "save a valid key in the 'sora' block")
        if status == 403:
            return ProviderError(self.name, "auth", f"{said}; check the organization is verified for video")
        if code in NO_CREDIT or kind == "insufficient_quota":
            return ProviderError(self.name, "insufficient_credits", f"{said}; add credit to the OpenAI account")
        if "moderation" in code:
            return ProviderError(self.name, "moderation", f"{said}; change the prompt or reference image")
        if status == 429:
            return ProviderError(self.name, "rate_limited", f"{said}; lower the block's max_concurrency")
        if status >= 500:
            return ProviderError(self.name, "transient", said)
        return ProviderError(self.name, "invalid_input", f"{said}; check the request's model, duration "
                                                         "and size against the catalogue")

    def retryable(self, response: httpx.Response) -> bool:
        error = self.error_body(response)
        if error.code in NO_CREDIT or error.type == "insufficient_quota":
            return False  # waiting does not add credit
        return super().retryable(response)


def fitted_reference(path: Path, width: int, height: int) -> bytes:
    """The reference image cover-cropped and scaled to exactly width x height, as JPEG."""
    try:
        image = read_image(path)
    except MediaError as exc:
        raise ProviderError("sora", "invalid_input", str(exc)) from None
    x, y, w, h = cover_box(image.shape[1], image.shape[0], width / height)
    crop = image[round(y):round(y + h), round(x):round(x + w)]
    resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ProviderError("sora", "invalid_input", f"{path.name} could not be re-encoded as JPEG")
    return encoded.tobytes()
