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
moment it starts. So a 429/5xx answered before any video byte is retried with the shared
backoff, but a connection that breaks after the request was sent (or mid-body) is never sent
again: the take fails with `unknown_outcome` rather than risk paying twice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from blocks.catalogue import load_catalogue
from blocks.media import atomic_path
from blocks.providers import GenerationRequest, GenerationResult
from blocks.outputs import output_path
from blocks.remote import (RETRYABLE_STATUS, ProviderError, RemoteVideoProvider, TaskState, data_uri,
                           request_key, retry_after, verify_video)

log = logging.getLogger("takeflow.providers")

# error.type → kind (https://docs.ltx.video/errors)
KINDS = {"invalid_request_error": "invalid_input", "request_too_large": "invalid_input",
         "authentication_error": "auth", "insufficient_funds_error": "insufficient_credits",
         "content_filtered_error": "moderation", "rate_limit_error": "rate_limited",
         "concurrency_limit_error": "rate_limited", "api_error": "transient",
         "service_unavailable": "transient"}
ADVICE = {"invalid_input": "fix the shot's model, duration, resolution or reference image",
          "auth": "save a valid LTX API key in the 'ltx' block",
          "insufficient_credits": "add credits in the LTX developer console",
          "moderation": "the prompt or reference image was refused by LTX's safety filter; rewrite it",
          "rate_limited": "lower the block's max_concurrency",
          "transient": "LTX had a problem; the take will be retried"}


class _Retry(Exception):
    """A retryable answer arrived before any video byte: back off and send the create again."""

    def __init__(self, hint: float | None):
        self.hint = hint


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
        try:
            entry = load_catalogue().model(self.name, request.model)
        except KeyError as exc:
            raise ProviderError(self.name, "invalid_input", str(exc.args[0])) from None
        resolution = request.resolution or entry.default_resolution
        if resolution not in entry.resolutions or request.aspect_ratio not in entry.resolutions[resolution].sizes:
            options = ", ".join(f"{r} {'/'.join(v.sizes)}" for r, v in entry.resolutions.items())
            raise ProviderError(self.name, "invalid_input", (
                f"{request.model} has no {request.aspect_ratio} {resolution}; use one of: {options}"))
        if not entry.allows_duration(request.duration, resolution):
            allowed = ", ".join(f"{d:g}" for d in entry.durations_at(resolution))
            raise ProviderError(self.name, "invalid_input", (
                f"{request.model} at {resolution} makes {allowed} s clips, not {request.duration:g} s; "
                "change the shot's duration"))
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
        """POST the create and stream its MP4 answer to `dest` (size-capped, verified as video).

        Mirrors `send()`'s policy: connection failures before anything was sent and 408/429/5xx
        answers are retried with backoff; anything that breaks after the request went out is
        `unknown_outcome` and never re-sent. Returns the x-request-id for support tickets."""
        timeout = httpx.Timeout(self.request_timeout, connect=self.connect_timeout, read=self.generation_timeout)
        headers = {**self.auth_headers(), "Accept": "video/mp4"}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                return self._stream_once(path, body, headers, timeout, dest, last)
            except _Retry as retry:
                self._sleep(attempt, retry.hint)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:  # nothing reached LTX: safe to say so and let the take retry
                    raise ProviderError(self.name, "transient", f"cannot reach {self.base_url}: "
                                                                f"{type(exc).__name__}") from None
                self._sleep(attempt, None)
            except httpx.ReadTimeout:
                raise ProviderError(self.name, "timeout", (
                    f"no video after {self.generation_timeout:g} s; the generation may still finish and "
                    "be charged, so it is not sent again; raise the block's generation_timeout")) from None
            except httpx.TransportError as exc:
                raise ProviderError(self.name, "unknown_outcome", (
                    f"the connection broke after the create was sent ({type(exc).__name__}); the video "
                    "may have been made and charged, so it is not sent again")) from None
        raise AssertionError("unreachable")

    def _stream_once(self, path: str, body: dict[str, Any], headers: dict[str, str], timeout: httpx.Timeout,
                     dest: Path, last: bool) -> str | None:
        with atomic_path(dest) as tmp:
            with self.http.stream("POST", path, json=body, headers=headers, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    hint = retry_after(response)
                    if response.status_code in RETRYABLE_STATUS and not last and self.retryable(response):
                        log.info("%s POST %s: HTTP %s, retrying", self.name, path, response.status_code)
                        raise _Retry(hint)
                    error = self.error_for(response)
                    error.retry_after = error.retry_after or hint
                    raise error
                kind = response.headers.get("content-type", "")
                if not kind.startswith("video/"):
                    raise ProviderError(self.name, "bad_output", (
                        f"the create answered {kind or 'no content type'} instead of a video; check the "
                        "block's base_url points at the LTX API"))
                self.write_capped(response, tmp)
                request_id = response.headers.get("x-request-id")
            verify_video(self.name, tmp)
        return request_id

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
        status = response.status_code
        try:
            detail = response.json().get("error") or {}
        except (ValueError, AttributeError):
            detail = {}
        error_type = str(detail.get("type") or "")
        kind = KINDS.get(error_type) or ("transient" if status >= 500 else "rate_limited" if status == 429 else
                                         "auth" if status in (401, 403) else "insufficient_credits"
                                         if status == 402 else "moderation" if status == 422 else "invalid_input")
        message = " ".join(str(detail.get("message") or response.reason_phrase).split())[:300]
        key = self.api_key.get_secret_value() if self.api_key else ""
        if key:
            message = message.replace(key, "***")
        what = f"HTTP {status} {error_type}" if error_type else f"HTTP {status}"
        return ProviderError(self.name, kind, f"{what}: {message}; {ADVICE[kind]}")
