"""ByteDance Seedance on BytePlus ModelArk: an asynchronous task API (create, poll, download).

Contract (see shared/reference/providers.md §6.2; ✅ = provider docs or SDK, ◐ = secondary):
- ✅ `POST /contents/generations/tasks` {model, content:[text, image_url(role first_frame)]} → {id};
  `GET /contents/generations/tasks/{id}` → {status queued|running|succeeded|failed|cancelled,
  content.video_url, usage.completion_tokens, error{code,message}} (volcengine-python-sdk
  `volcenginesdkarkruntime/resources/content_generation/tasks.py` and
  `types/content_generation/content_generation_task.py`); `DELETE` cancels a queued task.
- ✅ Errors are {"error":{"code","message","type"}} with codes from the ModelArk table
  (https://docs.byteplus.com/en/docs/ModelArk/1299023): 400 InvalidParameter/MissingParameter,
  400 *SensitiveContentDetected* (moderation at submit), 401 AuthenticationError, 403
  AccountOverdueError (no balance), 429 AccountRateLimitExceeded.
- ◐ Generation parameters ride in the prompt as `--flags` (the long-standing form every Seedance
  model accepts); `generate_audio` is a top-level field and Seedance 2.0 defaults it to true, so
  it is always sent explicitly.
- ◐ Output-side moderation fails the task with an `Output*SensitiveContentDetected` code
  (Seedance 2.0 error guide, blog.segmind.com; the Ark pattern OutputImageSensitiveContentDetected).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import httpx
from pydantic import Field

from blocks.providers import GenerationRequest
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState, data_uri

log = logging.getLogger("takeflow.providers")

TASKS = "/contents/generations/tasks"
STATUSES = {"queued": "queued", "running": "running", "succeeded": "succeeded", "failed": "failed",
            "cancelled": "cancelled"}
# 429s that no amount of waiting fixes (◐ Volcengine Ark error table: a spending cap the account
# set, or its quota, is used up); retrying them only burns the retry budget
SPENT_429 = ("QuotaExceeded", "SetLimitExceeded")


def failure_kind(code: str) -> ErrorKind:
    """The error kind a ModelArk error code (at submit or in a failed task) stands for."""
    if "SensitiveContent" in code or "RiskDetection" in code:
        return "moderation"
    if code.startswith(("AccountOverdue", "OperationDenied.ServiceOverdue") + SPENT_429):
        return "insufficient_credits"
    if code.startswith(("InvalidParameter", "MissingParameter", "InvalidEndpointOrModel", "ModelNotOpen")):
        return "invalid_input"
    if code.startswith(("AuthenticationError", "AccessDenied", "OperationDenied")):
        return "auth"
    return "transient"


class SeedanceProvider(RemoteVideoProvider):
    """ByteDance Seedance video generation through BytePlus ModelArk (ARK API key).

    Example:
        ```python
        from blocks.seedance import SeedanceProvider
        seedance = SeedanceProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow seedance"
    _documentation_url = "https://docs.byteplus.com/en/docs/ModelArk"
    _description = "ByteDance Seedance on BytePlus ModelArk: text- and image-to-video with optional sound."
    models: ClassVar[tuple[str, ...]] = ("dreamina-seedance-2-0-260128", "dreamina-seedance-2-0-fast-260128")
    provider_name: ClassVar[str] = "seedance"
    unit_cost_field: ClassVar[str] = "usage.completion_tokens"
    task_history: ClassVar[str] = "the ModelArk console's task list"
    cache_neutral: ClassVar[tuple[str, ...]] = (*RemoteVideoProvider.cache_neutral, "usd_per_million_tokens")

    base_url: str = Field(
        "https://ark.ap-southeast.bytepluses.com/api/v3",
        description="ModelArk API root (Volcengine accounts use https://ark.cn-beijing.volces.com/api/v3).")
    usd_per_million_tokens: float | None = Field(
        None, gt=0,
        description="Your ModelArk price per million video tokens. When set, each take's credits come "
                    "from the tokens the task reports (usage.completion_tokens); when empty, from the "
                    "catalogue's per-second price, because BytePlus publishes no official USD token "
                    "rate for Seedance 2.0 that takeflow could ship.")

    # ---- create -----------------------------------------------------------------------------

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The create request for a take (validated against the catalogue first: nothing is spent
        on a request the API would refuse)."""
        entry = self.checked(request)
        resolution = request.resolution or entry.default_resolution
        flags = (f"--resolution {resolution} --ratio {request.aspect_ratio} --duration "
                 f"{round(request.duration)} --seed {request.seed % 2**32} --camerafixed false "
                 "--watermark false")
        content: list[dict[str, Any]] = [{"type": "text", "text": f"{request.prompt.strip()} {flags}"}]
        if request.reference_image is not None:
            # ◐ Seedance takes images under 30 MB; 10 MB keeps the base64 JSON body (a third larger
            # than the image) modest
            content.append({"type": "image_url", "role": "first_frame",
                            "image_url": {"url": data_uri(request.reference_image, 10 * 2**20)}})
        return {"model": request.model, "content": content, "generate_audio": bool(request.audio)}

    def submit(self, request: GenerationRequest) -> str:
        response = self.send("POST", TASKS, json=self.body(request), create=True)
        return self.created_id(response, self.json_body(response).get("id"))

    # ---- status -----------------------------------------------------------------------------

    def poll(self, task_id: str) -> TaskState:
        task = self.json_body(self.send("GET", f"{TASKS}/{task_id}"))
        raw = str(task.get("status", ""))
        status = STATUSES.get(raw)
        error = task.get("error") or {}
        if raw == "expired":  # ◐ newer tasks carry an execution deadline; nothing was charged
            return TaskState(id=task_id, status="failed", error_kind="transient",
                             error="the task expired in the ModelArk queue")
        if status is None:
            log.info("%s: task %s has unknown status %r; still waiting", self.name, task_id, raw)
            status = "running"
        state = TaskState(id=task_id, status=status,
                          output_url=(task.get("content") or {}).get("video_url"))
        if status == "failed":
            code = str(error.get("code") or "")
            state.error_kind = failure_kind(code) if code else "transient"
            state.error = self.redact(f"{code}: {error.get('message') or 'no message'}" if code else
                                     str(error.get("message") or "no reason given"))
        tokens = (task.get("usage") or {}).get("completion_tokens")
        if status == "succeeded" and tokens is not None:
            log.info("%s: task %s used %s video tokens", self.name, task_id, tokens)
            if self.usd_per_million_tokens is not None:
                state.cost = float(tokens) * self.usd_per_million_tokens / 1e6
        return state

    def cancel(self, task_id: str) -> None:
        """ModelArk cancels only queued tasks (◐ docs: DELETE cancels a queued task and deletes a
        finished one's record; a running task cannot be stopped). A refused cancel is logged, not
        raised: the take is failing with a timeout anyway, and the task may still be charged."""
        try:
            self.send("DELETE", f"{TASKS}/{task_id}")
        except ProviderError as exc:
            log.warning("%s: could not cancel task %s (%s); a running task finishes and is charged",
                        self.name, task_id, exc)

    # ---- errors -----------------------------------------------------------------------------

    def retryable(self, response: httpx.Response) -> bool:
        return not self._code(response).startswith(SPENT_429)

    def _code(self, response: httpx.Response) -> str:
        return str(self.error_body(response).code or "")

    def error_for(self, response: httpx.Response) -> ProviderError:
        status, error = response.status_code, self.error_body(response)
        code, message = str(error.code or ""), error.message
        if status == 401:
            return ProviderError(self.name, "auth", (
                "ModelArk refused the API key (AuthenticationError); save a valid ARK key in the "
                f"'{self.name}' block"))
        if status == 429 and not code.startswith(SPENT_429):
            return ProviderError(self.name, "rate_limited", f"rate limited ({code or 'HTTP 429'}); "
                                                            "lower the block's max_concurrency")
        kind = failure_kind(code) if code else "transient"
        if status >= 500:
            kind = "transient"
        elif kind == "transient":  # a refusal whose code we do not know is still a refusal
            kind = "auth" if status == 403 else "invalid_input"
        advice = {
            "moderation": "the prompt or reference image was refused by content moderation; rewrite it",
            "insufficient_credits": "the ModelArk account has no balance or hit its spending limit; "
                                    "top it up in the BytePlus console",
            "invalid_input": "check the model id is activated for this key and the request's duration, "
                             "ratio and resolution" if status == 404 else
                             "fix the request's model, duration, ratio or resolution",
            "auth": "the key lacks access; activate the model for this key in the ModelArk console",
            "transient": "ModelArk had a problem; the take will be retried",
        }[kind]
        what = f"HTTP {status} {code}" if code else f"HTTP {status}"
        return ProviderError(self.name, kind, f"{what}: {message}; {advice}")
