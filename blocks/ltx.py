"""Lightricks LTX on api.ltx.video: a synchronous API whose create answers with the MP4 itself.

Contract (shared/reference/providers.md §6.1; ✅ = provider docs, ◐ = secondary):
- ✅ `POST /v1/text-to-video` {prompt, model, duration, resolution "1920x1080", fps,
  generate_audio} and `POST /v1/image-to-video` (+ image_uri) return the video directly
  (Content-Type video/mp4, x-request-id header) — https://docs.ltx.video/quickstart. There is
  no task to poll, so this adapter replaces `generate()`: one create streams the body to disk.
- ✅ Errors are {"type":"error","error":{"type","message"}} — https://docs.ltx.video/errors:
  400 invalid_request_error, 401 authentication_error, 402 insufficient_funds_error, 413
  request_too_large, 422 content_filtered_error, 429 rate_limit_error/concurrency_limit_error,
  500 api_error, 503 service_unavailable.

Why the create is special: the body *is* the result, and the generation may be charged the
moment it starts. It goes through the shared send/retry policy (`send` with `read`), so a 429/5xx
answered before any video byte is retried with the shared backoff, but a connection that breaks
after the request was sent (or mid-body) is never sent again: the take fails with
`unknown_outcome` (`timeout` when no video came in time) rather than risk paying twice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from blocks.media import atomic_path
from blocks.providers import GenerationRequest, GenerationResult
from blocks.outputs import output_path
from blocks.remote import (ProviderError, RemoteVideoProvider, TaskState, data_uri,
                           request_key, verify_video)

log = logging.getLogger("takeflow.providers")

# error.type → kind (https://docs.ltx.video/errors)
KINDS = {"invalid_request_error": "invalid_input", "request_too_large": "invalid_input",
         "authentication_error": "auth", "insufficient_funds_error": "insufficient_credits",
         "content_filtered_error": "moderation", "rate_limit_error": "rate_limited",
         "concurrency_limit_error": "rate_limited", "api_error": "transient",
         "service_unavailable": "transient"}
ADVICE = {"invalid_input": "fix the request's model, duration, resolution or reference image",
          "auth": "save a valid LTX API key in the 'ltx' block",
          "insufficient_credits": "add credits in the LTX developer console",
          "moderation": "the prompt or reference image was refused by LTX's safety filter; rewrite it",
          "rate_limited": "lower the block's max_concurrency",
          "transient": "LTX had a problem; the take will be retried"}


class LtxProvider(RemoteVideoProvider):
    """Lightricks LTX-2 video generation (native up to 4K, optional sound), over api.ltx.video.

    Example:
        ```python
        from blocks.ltx import LtxProvider
        ltx = LtxProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow ltx"
    _documentation_url = "https://docs.ltx.video/"
    _description = "Lightricks LTX-2, 2.3 and 2.5 on api.ltx.video: synchronous text- and image-to-video up to 4K."
    models: ClassVar[tuple[str, ...]] = ("ltx-2-fast", "ltx-2-pro", "ltx-2-3-fast", "ltx-2-3-pro", "ltx-2-5-fast",
                                         "ltx-2-5-pro")
    provider_name: ClassVar[str] = "ltx"

    base_url: str = Field("https://api.ltx.video", description="LTX API root.")
    generation_timeout: float = Field(
        600.0, gt=0, description="Seconds to wait for the video body: the API answers only when the "
                                 "clip is made, so this is the read timeout of the create.")

    # ---- the synchronous create ---------------------------------------------------------------

    def body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """Endpoint and JSON for a take, checked against the catalogue so nothing is spent on a
        request the API would refuse."""
        entry = self.checked(request)
        resolution = request.resolution or entry.default_resolution
        body: dict[str, Any] = {
            "prompt": request.prompt, "model": request.model, "duration": round(request.duration),
            "resolution": entry.resolutions[resolution].sizes[request.aspect_ratio],
            "fps": entry.fps, "generate_audio": bool(request.audio)}
        if request.reference_image is None:
            return "/v1/text-to-video", body
        # ◐ LTX's input limits are not published as numbers; 7 MB of image stays well under a
        # 10 MB JSON body once base64-encoded
        return "/v1/image-to-video", {**body, "image_uri": data_uri(request.reference_image, 7 * 2**20)}

    def generate(self, request: GenerationRequest, dest: Path) -> GenerationResult:
        started = time.perf_counter()
        path, body = self.body(request)
        key = request_key(request)
        out = output_path(self.work_key(key))

        def create() -> str:  # the create is the whole job: its answer streams into the store
            request_id = self.create_video(path, body, out)
            log.info("%s: %s made %s (request %s)", self.name, request.model, dest.name, request_id or "?")
            return f"sync:{request_id or '?'}"

        credits = self.run_task(key, create, dest, lambda state: self.estimate_credits(request))
        return GenerationResult(path=dest, provider=self.get_block_type_slug(), model=request.model,
                                credits=round(credits, 4), seconds=time.perf_counter() - started)

    def create_video(self, path: str, body: dict[str, Any], dest: Path) -> str | None:
        """POST the create and stream its MP4 answer to `dest` (size-capped, verified as video),
        under the shared send/retry policy (`send` with `read`): 408/429/5xx answered before any
        video byte are retried with backoff; anything that breaks after the request went out is
        never re-sent (`lost_create`). Returns the x-request-id for support tickets."""
        timeout = httpx.Timeout(self.request_timeout, connect=self.connect_timeout, read=self.generation_timeout)
        with atomic_path(dest) as tmp:
            request_id = self.send("POST", path, create=True, json=body, headers={"Accept": "video/mp4"},
                                   timeout=timeout, read=lambda response: self._save(response, tmp))
            verify_video(self.name, tmp)
        return request_id

    def _save(self, response: httpx.Response, tmp: Path) -> str | None:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("video/"):
            raise ProviderError(self.name, "bad_output", (
                f"the create answered {kind or 'no content type'} instead of a video; check the "
                "block's base_url points at the LTX API"))
        self.write_capped(response, tmp)
        return response.headers.get("x-request-id")

    def lost_create(self, exc: httpx.TransportError) -> ProviderError:
        if isinstance(exc, httpx.ReadTimeout):  # the answer is the video: it may still be made
            return ProviderError(self.name, "timeout", (
                f"no video after {self.generation_timeout:g} s; the generation may still finish and "
                "be charged, so it is not sent again; raise the block's generation_timeout"))
        return ProviderError(self.name, "unknown_outcome", (
            f"the connection broke after the create was sent ({type(exc).__name__}); the video "
            "may have been made and charged, so it is not sent again"))

    # ---- the task interface has nothing to do here ------------------------------------------

    def submit(self, request: GenerationRequest) -> str:
        raise NotImplementedError("LTX answers the create with the video; use generate()")

    def poll(self, task_id: str) -> TaskState:
        raise NotImplementedError("LTX has no tasks to poll; use generate()")

    def wait(self, task_id: str) -> TaskState:
        return TaskState(id=task_id, status="succeeded")  # the create returned with the video

    def fetch(self, task_id: str, state: TaskState, dest: Path) -> None:
        if not dest.is_file():  # a stored output deleted since: LTX cannot serve it again
            raise ProviderError(self.name, "bad_output", (
                f"the stored video of request {task_id.removeprefix('sync:')} is gone and LTX keeps no "
                "copy; the take will be generated (and charged) again"))

    # ---- errors -----------------------------------------------------------------------------

    def error_for(self, response: httpx.Response) -> ProviderError:
        status, error = response.status_code, self.error_body(response)
        kind = KINDS.get(error.type) or ("transient" if status >= 500 else "rate_limited" if status == 429 else
                                         "auth" if status in (401, 403) else "insufficient_credits"
                                         if status == 402 else "moderation" if status == 422 else "invalid_input")
        what = f"HTTP {status} {error.type}" if error.type else f"HTTP {status}"
        return ProviderError(self.name, kind, f"{what}: {error.message}; {ADVICE[kind]}")
