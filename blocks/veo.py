"""Google Veo through the Gemini Developer API (an AI Studio key): a long-running operation per take.

Contract (shared/reference/providers.md §3.1; ✅ = Google docs or the google-genai SDK, ◐ = secondary):
- ✅ `POST /v1beta/models/{model}:predictLongRunning` {instances:[{prompt, image:{bytesBase64Encoded,
  mimeType}}], parameters:{aspectRatio, resolution, durationSeconds, personGeneration, sampleCount}}
  → {name}; `GET /v1beta/{name}` → {done, error?, response.generateVideoResponse{generatedSamples
  [{video:{uri | encodedVideo}}], raiMediaFilteredCount, raiMediaFilteredReasons}} (genai-py
  `_GenerateVideosOperation_from_mldev`, `_Video_from_mldev`). Auth is `x-goog-api-key`.
- ✅ The Gemini API takes no `seed` (the SDK refuses it since commit e9e2be73) and no
  `generateAudio`: Veo 3 always makes sound there. Veo 2 takes no `resolution`.
- ◐ The video URI needs the API key and redirects to storage; the key goes only to the API host.
  A files URI is fetched from `base_url` by its file id, as google-genai's `files.download` does.
- ◐ A blocked video is `done` with `raiMediaFilteredCount > 0` and no samples, and is not charged.
- ◐ 429 RESOURCE_EXHAUSTED carries its wait only in the body (RetryInfo.retryDelay), never in a
  Retry-After header (dcdpr/jp PR #1061); a per-day quota is not worth retrying within a take.
- ❓ No cancel is documented for Veo operations, so a take past its deadline is abandoned, not
  cancelled (the provider may still finish and bill it).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, PrivateAttr

from blocks.catalogue import load_catalogue
from blocks.media import atomic_path
from blocks.providers import GenerationRequest
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState, image_bytes, verify_video

log = logging.getLogger("takeflow.providers")

# google.rpc.Code of a failed operation → what the take should do about it
RPC_KINDS: dict[int, ErrorKind] = {1: "cancelled", 3: "invalid_input", 4: "transient", 5: "invalid_input",
                                   7: "auth", 8: "rate_limited", 9: "invalid_input", 10: "transient",
                                   11: "invalid_input", 13: "transient", 14: "transient", 16: "auth"}
# ◐ how Google words a prompt or image its safety filters refused (Vertex AI "Responsible AI" docs)
SAFETY = re.compile(r"responsible ai|usage guidelines|support codes|sensitive words|blocked by .*safety", re.I)


def _details(error: dict, kind: str) -> list[dict]:
    return [d for d in error.get("details") or [] if isinstance(d, dict) and d.get("@type", "").endswith(kind)]


def retry_delay(error: dict) -> float | None:
    """RetryInfo.retryDelay ("58s", "45.837906927s") in seconds."""
    for detail in _details(error, "google.rpc.RetryInfo"):
        try:
            return float(str(detail.get("retryDelay", "")).rstrip("s"))
        except ValueError:
            pass
    return None


def rpc_kind(code: Any, message: str) -> ErrorKind:
    """The error kind of a failed operation's google.rpc.Status."""
    if SAFETY.search(message):
        return "moderation"
    if code == 9 and "billing" in message.lower():
        return "insufficient_credits"
    return RPC_KINDS.get(code, "transient") if isinstance(code, int) else "transient"


class VeoProvider(RemoteVideoProvider):
    """Google Veo 2, 3 and 3.1 video generation with a Gemini API key from Google AI Studio.

    Example:
        ```python
        from blocks.veo import VeoProvider
        veo = VeoProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow veo"
    _documentation_url = "https://ai.google.dev/gemini-api/docs/video"
    _description = "Google Veo on the Gemini API: text- and image-to-video, with sound on Veo 3 and 3.1."
    models: ClassVar[tuple[str, ...]] = (
        "veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-001", "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001", "veo-2.0-generate-001")
    provider_name: ClassVar[str] = "veo"
    task_history: ClassVar[str] = "the Gemini API's operations (GET /v1beta/operations)"

    base_url: str = Field("https://generativelanguage.googleapis.com",
                          description="Gemini API root, without the version (point it at a simulator or proxy "
                                      "to test).")
    api_version: str = Field("v1beta", pattern=r"^v\d+\w*$",
                             description="Gemini API version in request paths; Veo is served on v1beta.")
    person_generation: Literal["allow_all", "allow_adult", "dont_allow"] | None = Field(
        None, description="Whether takes may show people. Empty lets the API choose the default for the "
                          "request and region (Veo 3 allows only allow_all for text and allow_adult for image "
                          "input, and allow_adult alone in the EU, UK, CH and MENA).")
    negative_prompt: str | None = Field(None, description="What every take should avoid (sent as negativePrompt).")

    # the retry wait a 429 body asked for, per thread, handed from `retryable` to `_sleep`
    _retry_hints: dict[int, float | None] = PrivateAttr(default_factory=dict)

    # ---- requests --------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.secret()}

    def download_headers(self, url: str) -> dict[str, str]:
        # the file URI is an API URL that needs the key; anywhere else (signed storage) must not see it
        return self.auth_headers() if self._on_api_host(url) else {}

    def _on_api_host(self, url: str | httpx.URL) -> bool:
        target, api = httpx.URL(str(url)), httpx.URL(self.base_url)
        return (target.scheme, target.host, target.port) == (api.scheme, api.host, api.port)

    @property
    def http(self) -> httpx.Client:
        fresh = self._http is None
        client = super().http
        if fresh:  # httpx keeps custom headers on cross-host redirects; drop the key there
            client.event_hooks["request"].append(self._strip_key_off_host)
        return client

    def _strip_key_off_host(self, request: httpx.Request) -> None:
        if "x-goog-api-key" in request.headers and not self._on_api_host(request.url):
            del request.headers["x-goog-api-key"]

    def submit(self, request: GenerationRequest) -> str:
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.reference_image is not None:
            # ◐ base64 grows it by a third: 10 MB keeps the body under the Gemini API's 20 MB request cap
            data, mime = image_bytes(request.reference_image, 10 * 2**20)
            instance["image"] = {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": mime}
        seconds = int(request.duration) if float(request.duration).is_integer() else request.duration
        parameters: dict[str, Any] = {"aspectRatio": request.aspect_ratio, "durationSeconds": seconds,
                                      "sampleCount": 1}
        if not request.model.startswith("veo-2"):  # Veo 2 makes 720p only and refuses the field
            parameters["resolution"] = request.resolution or self._default_resolution(request.model)
        if self.person_generation:
            parameters["personGeneration"] = self.person_generation
        if self.negative_prompt:
            parameters["negativePrompt"] = self.negative_prompt
        response = self.send("POST", f"/{self.api_version}/models/{request.model}:predictLongRunning",
                             json={"instances": [instance], "parameters": parameters}, create=True)
        name = self.json_body(response).get("name")
        return self.created_id(response, name if "/operations/" in str(name) else None, "operation name")

    def _default_resolution(self, model: str) -> str:
        try:
            return load_catalogue().model(self.name, model).default_resolution
        except KeyError:
            return "720p"

    def poll(self, task_id: str) -> TaskState:
        data = self.json_body(self.send("GET", f"/{self.api_version}/{task_id}"))
        if not data.get("done"):  # no progress and no queued state on the Gemini API
            return TaskState(id=task_id, status="running")
        error = data.get("error")
        if isinstance(error, dict):
            message = self.redact(error.get("message") or "no reason given")
            return TaskState(id=task_id, status="failed", error_kind=rpc_kind(error.get("code"), message),
                             error=f"{message} (google.rpc code {error.get('code')})")
        response = data.get("response") or {}
        result = response.get("generateVideoResponse") or response  # ❓ RAI fields may sit on `response`
        samples = [s.get("video") or {} for s in result.get("generatedSamples") or [] if isinstance(s, dict)]
        if not samples:
            if result.get("raiMediaFilteredCount"):
                reasons = "; ".join(result.get("raiMediaFilteredReasons") or []) or "no reason given"
                return TaskState(id=task_id, status="failed", error_kind="moderation", error=(
                    f"Google's safety filters blocked the video ({self.redact(reasons)}); it is not charged. "
                    "Rephrase the prompt or change the reference image"))
            return TaskState(id=task_id, status="failed", error_kind="bad_output",
                             error="the operation finished without a video or a reason")
        video = samples[0]
        url = self.file_url(video.get("uri"))
        if not url and video.get("encodedVideo"):
            url = f"data:{video.get('encoding') or 'video/mp4'};base64,{video['encodedVideo']}"
        return TaskState(id=task_id, status="succeeded", progress=1.0, output_url=url)

    def file_url(self, uri: str | None) -> str | None:
        """A generated file's URI as this block reaches it: `…/files/{id}:download` is fetched from
        `base_url`, as google-genai's `files.download` does, so a proxy or simulator in front of the
        API serves it too; any other URI (signed storage) is used as it is."""
        found = re.search(r"/files/([a-z0-9]+):download", uri or "")
        if not found:
            return uri
        return f"{self.base_url.rstrip('/')}/{self.api_version}/files/{found.group(1)}:download?alt=media"

    def cancel(self, task_id: str) -> None:
        # ❓ the Gemini API documents no cancel for Veo operations: the take is abandoned instead
        log.warning("%s: operation %s cannot be cancelled on the Gemini API; it may still finish and be "
                    "billed", self.name, task_id)

    def download(self, url: str, dest: Path) -> None:
        if not url.startswith("data:"):
            return super().download(url, dest)
        try:  # the video came inline in the operation (encodedVideo)
            data = base64.b64decode(url.partition(",")[2], validate=True)
        except binascii.Error:
            raise ProviderError(self.name, "bad_output", "the inline video is not valid base64") from None
        if len(data) > self.max_download_mb * 2**20:
            raise ProviderError(self.name, "bad_output", f"output is over {self.max_download_mb} MB; raise "
                                                         "the block's max_download_mb if that is expected")
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
            verify_video(self.name, tmp)

    # ---- errors and retries ----------------------------------------------------------------------

    def error_for(self, response: httpx.Response) -> ProviderError:
        body = self.error_body(response, f"HTTP {response.status_code}")
        error, code, status, message = body.error, response.status_code, body.type, body.message
        reasons = {d.get("reason") for d in _details(error, "google.rpc.ErrorInfo")}
        said = f"HTTP {code}{' ' + status if status else ''}: {message}"
        if "API_KEY_INVALID" in reasons or code == 401 or status == "UNAUTHENTICATED":
            return ProviderError(self.name, "auth", f"the API key was refused (HTTP {code}); save a valid "
                                                    "Gemini API key in the 'veo' block")
        if "BILLING_DISABLED" in reasons or (status == "FAILED_PRECONDITION" and "billing" in message.lower()):
            return ProviderError(self.name, "insufficient_credits", f"{said}; enable billing for the key's "
                                                                    "project in Google AI Studio")
        if code == 403 or status == "PERMISSION_DENIED":
            return ProviderError(self.name, "auth", f"{said}; check the key's project can use Veo")
        if code == 429 or status == "RESOURCE_EXHAUSTED":
            return ProviderError(self.name, "rate_limited", f"{said}; lower the block's max_concurrency or "
                                                            "raise the project's quota", retry_delay(error))
        if code >= 500:
            return ProviderError(self.name, "transient", said)
        if code == 404 and "/operations/" in response.request.url.path:
            return ProviderError(self.name, "invalid_input", (
                f"{said}; the operation is gone (Veo keeps them 2 days) or belongs to another key: "
                "run the take again"))
        if SAFETY.search(message):
            return ProviderError(self.name, "moderation", f"{said}; rephrase the prompt or change the image")
        return ProviderError(self.name, "invalid_input", f"{said}; check the request's model, duration, "
                                                         "resolution and aspect ratio against the catalogue")

    def retryable(self, response: httpx.Response) -> bool:
        error = self.error_body(response).error
        if any("PerDay" in str(v.get("quotaId", "")) for d in _details(error, "google.rpc.QuotaFailure")
               for v in d.get("violations") or []):
            return False  # a daily quota resets in hours: fail the take now with rate_limited
        if not super().retryable(response):
            return False
        self._retry_hints[threading.get_ident()] = retry_delay(error)
        return True

    def _sleep(self, attempt: int, hint: float | None) -> None:
        stashed = self._retry_hints.pop(threading.get_ident(), None)
        super()._sleep(attempt, hint if hint is not None else stashed)
