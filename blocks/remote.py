"""The client half every hosted provider shares: submit, poll, download, cancel, over one httpx client.

An adapter (one per API family) only says how its API spells a create, a status and an error;
this module decides what is retried and when:

- HTTP-level retries cover transient failures only (connection refused, 408/429/5xx, a poll or
  download cut off), with jittered exponential backoff that honours `retry-after-ms` and
  `Retry-After`.
- A create is never retried blindly: once its bytes may have reached the provider, a dropped
  connection means "maybe created", and the take fails with `unknown_outcome` rather than risk
  paying twice (adapters with a client-side task id look it up instead).
- Polling starts fast and backs off to `poll_interval`; the generation deadline counts only
  time the provider spends running the task, not time queued or throttled behind other work.
- Never paid twice (blocks/journal.py): the intent is journalled, keyed by the work's content,
  before the create is sent, and the task id the moment it returns, in the state database every
  run shares; the output goes to the store of paid outputs (blocks/outputs.py) after it decodes to
  the end. A rerun anywhere reuses the stored output, resumes the task, waits for a create another
  run has in flight, or (a create whose answer was lost) looks the task up where the API can.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import random
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import cv2
import httpx
from pydantic import BaseModel, Field, PrivateAttr, SecretStr

from blocks import journal
from blocks.catalogue import ModelEntry, Needs, Unmet, load_catalogue
from blocks.ledger import note_resolved, note_task
from blocks.media import atomic_path, file_digest, place, read_image
from blocks.outputs import intact, output_path
from blocks.providers import GenerationError, GenerationRequest, GenerationResult, VideoProvider
from blocks.verify import decode_check

Status = Literal["queued", "throttled", "running", "succeeded", "failed", "cancelled"]
ErrorKind = Literal["transient", "rate_limited", "invalid_input", "moderation", "insufficient_credits",
                    "auth", "retired", "bad_output", "timeout", "unknown_outcome", "cancelled"]
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 120.0

log = logging.getLogger("takeflow.providers")


class ProviderError(GenerationError):
    """A provider refused or failed a take, classified so the flow knows whether to try again.

    Messages name the provider and say what to do; they never carry credentials.
    """

    def __init__(self, provider: str, kind: ErrorKind, message: str, retry_after: float | None = None):
        super().__init__(f"{provider}: {message}", transient=kind in ("transient", "rate_limited"))
        self.provider, self.kind, self.retry_after = provider, kind, retry_after
        # What the provider charged for this failure (a billed moderation refusal, a paid task
        # whose output cannot be fetched): the ledger commits it; 0 means nothing was charged.
        self.credits = 0.0

    def __reduce__(self):
        return type(self), (self.provider, self.kind, str(self).removeprefix(f"{self.provider}: "),
                            self.retry_after), {"credits": self.credits}


class DamagedOutput(ProviderError):
    """A downloaded video that does not decode (kind bad_output): possibly a damaged transfer, so
    `fetch` downloads it again before giving up."""


class TaskEnded(ProviderError):
    """The provider ended the task failed or cancelled: even when trying again may succeed
    (transient), resuming this task cannot, so `generate` forgets it and a retry creates anew."""


@dataclass(frozen=True)
class ErrorBody:
    """An unsuccessful answer's body, read the one way every adapter reads it: the message one line,
    bounded and without any credential; the rest as the API spelt it."""

    message: str
    code: str | int | None = None  # error.code (OpenAI, ModelArk, Google's number) or Kling's top-level code
    type: str = ""  # error.type (OpenAI, LTX), error.status (Google) or fal's detail[0].type
    param: str | None = None  # the request field it is about, where the API says
    error: dict = field(default_factory=dict)  # the error object itself (Google's details live there)


# What a request's sender does about each need a model cannot meet (the facts: ModelEntry.unmet).
REQUEST_FIXES = {"resolution": "ask for one of {resolutions}", "aspect_ratio": "ask for one of those ratios",
                 "duration": "change the request's duration", "image": "send no reference image, or use an "
                 "image-to-video model", "no_image": "add a reference image, or use a text-to-video model",
                 "brush": "send no motion regions, or use a model with a motion brush",
                 "motion": "send no motion reference, or use a motion-control model",
                 "no_motion": "add a motion reference video, or use another model",
                 "audio": "ask for no sound, or use a model that makes it"}


def request_needs(request: GenerationRequest) -> Needs:
    """What a request asks of its model, in the catalogue's terms."""
    return Needs(duration=request.duration, aspect_ratio=request.aspect_ratio,
                 image=request.reference_image is not None, brush=bool(request.motion_regions),
                 audio=request.audio, resolution=request.resolution,
                 motion=bool(request.motion_reference or request.motion_reference_url))


class TaskState(BaseModel):
    """A provider task as the adapter read it, in normalised terms."""

    id: str = Field(description="The provider's task id.")
    status: Status = Field(description="Normalised status.")
    progress: float | None = Field(None, description="0 to 1, where the provider reports it.")
    output_url: str | None = Field(None, description="Where the finished video can be fetched.")
    cost: float | None = Field(None, description="The provider's own cost report, in its billing unit.")
    error_kind: ErrorKind | None = Field(None, description="Why a failed task failed.")
    error: str | None = Field(None, description="The provider's failure message.")


class RemoteVideoProvider(VideoProvider):
    """Base for hosted video APIs: credentials, timeouts, retries, polling and downloads."""

    api_key: SecretStr | None = Field(None, description="API key (kept secret; never logged).")
    base_url: str = Field(description="API root; point it at a simulator or a proxy to test.")
    request_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one HTTP response.")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    max_retries: int = Field(4, ge=0, le=10, description="HTTP-level retries of transient failures per request.")
    poll_interval: float = Field(5.0, gt=0, description="Longest wait between two status checks (seconds).")
    first_poll: float = Field(1.0, gt=0, description="First wait before checking a new task (seconds).")
    generation_timeout: float = Field(
        900.0, gt=0, description="Seconds a task may run before it is cancelled; time spent queued or "
                                 "throttled does not count.")
    queue_timeout: float = Field(3600.0, gt=0, description="Seconds a task may wait queued or throttled.")
    max_download_mb: int = Field(1024, ge=1, description="Largest video accepted, in MB.")

    # Whether the API takes only whole seconds, whatever range the catalogue gives (Runway, fal).
    whole_seconds: ClassVar[bool] = False
    # Where a user looks for a task whose create was answered without its id (see `created_id`).
    task_history: ClassVar[str] = "the provider's dashboard"

    cache_neutral: ClassVar[tuple[str, ...]] = (
        "max_concurrency", "api_key", "request_timeout", "connect_timeout", "max_retries", "poll_interval",
        "first_poll", "generation_timeout", "queue_timeout", "max_download_mb")
    unit_cost_field: ClassVar[str] = ""  # the provider's cost report, named in docs

    _http: httpx.Client | None = PrivateAttr(None)

    # ---- what each adapter provides -------------------------------------------------------

    @abstractmethod
    def submit(self, request: GenerationRequest) -> str:
        """Create the provider task; return its id."""

    @abstractmethod
    def poll(self, task_id: str) -> TaskState:
        """Read the task's state."""

    def cancel(self, task_id: str) -> None:
        """Ask the provider to stop the task (best effort; some APIs have no cancel)."""

    @abstractmethod
    def error_for(self, response: httpx.Response) -> ProviderError:
        """The classified error an unsuccessful response stands for."""

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret()}"}

    def download_headers(self, url: str) -> dict[str, str]:
        """Headers a download needs (most output URLs are pre-signed and need none)."""
        return {}

    def credits_for(self, request: GenerationRequest, state: TaskState) -> float:
        """Credits a finished task cost: the provider's report where it gives one, else the
        catalogue's price."""
        return self.credits_or(state, lambda: self.estimate_credits(request))

    def credits_or(self, state: TaskState, price: Callable[[], float]) -> float:
        """A finished task's credits: its own report where it gives one, else `price()`."""
        reported = self.reported_credits(state)
        return price() if reported is None else reported

    def reported_credits(self, state: TaskState) -> float | None:
        """The one credits-from-report rule: the task's own cost report (`state.cost`, in the
        provider's billing unit) at the catalogue's rate; None when the task reports no cost."""
        if state.cost is None:
            return None
        return state.cost * load_catalogue().providers[self.name].credits_per_unit

    def failure_credits(self, state: TaskState) -> float:
        """Credits the provider charged for a task that ended without output: what it reports
        (Runway bills input-moderation refusals), else nothing (the others do not bill failures)."""
        if not state.cost:
            return 0.0
        return round(self.reported_credits(state), 4)

    # ---- the rules every adapter shares ---------------------------------------------------

    def model_entry(self, model: str) -> ModelEntry:
        """The catalogue entry of one of this provider's models; an unknown model is refused."""
        try:
            return load_catalogue().model(self.name, model)
        except KeyError as exc:
            raise ProviderError(self.name, "invalid_input", exc.args[0]) from None

    def checked(self, request: GenerationRequest) -> ModelEntry:
        """The request's catalogue entry, once the catalogue's capability check (ModelEntry.unmet,
        the same one routing and storyboard validation use) finds nothing the model cannot do;
        otherwise the first problem is refused before anything is sent."""
        entry = self.model_entry(request.model)
        unmet = entry.unmet(request_needs(request))
        if unmet:
            raise self.refuse(f"{unmet[0].fact}; {self.request_fix(entry, unmet[0])}")
        if self.whole_seconds and not float(request.duration).is_integer():
            raise self.refuse(f"{self.name}/{request.model} takes whole seconds, not {request.duration:g} s; "
                              "change the request's duration")
        return entry

    @staticmethod
    def request_fix(entry: ModelEntry, unmet: Unmet) -> str:
        return REQUEST_FIXES[unmet.need].format(resolutions=", ".join(entry.resolutions))

    def refuse(self, message: str) -> ProviderError:
        """A request this provider's API would refuse, refused before sending (invalid_input)."""
        return ProviderError(self.name, "invalid_input", message)

    def secrets(self) -> list[str]:
        """Every credential a message could echo."""
        return [self.api_key.get_secret_value()] if self.api_key is not None else []

    def redact(self, text: object, limit: int = 300) -> str:
        """The one redaction: provider text fit for a message or a log line: one line, at most
        `limit` characters, every credential replaced by ***."""
        text = " ".join(str(text).split())
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text if len(text) <= limit else text[:limit - 1] + "…"

    def error_body(self, response: httpx.Response, fallback: str | None = None) -> ErrorBody:
        """The one error-body reader, for every shape the adapters' APIs answer with:
        {"error": "text"} (Runway), {"error": {"code", "type" or "status", "message", "param"}}
        (OpenAI, Google, LTX, ModelArk; Google's sometimes in a list), {"detail": text or
        [{"loc", "msg", "type"}]} (fal) and {"code", "message"} (Kling). A body that is none of
        them gives `fallback`, else the HTTP reason, as its message."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, list) and body:
            body = body[0]
        body = body if isinstance(body, dict) else {}
        error, message, code, kind, param = body.get("error"), None, None, "", None
        if isinstance(error, dict):
            message, code, param = error.get("message"), error.get("code"), error.get("param")
            kind = str(error.get("type") or error.get("status") or "")
        elif isinstance(error, str):
            message, error = error, {}
        elif "detail" in body:
            detail, error = body["detail"], {}
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                first = detail[0]
                kind = str(first.get("type") or "")
                where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
                detail = f"{where}: {first.get('msg')}" if where else first.get("msg")
            message = detail
        else:
            message, code, error = body.get("message"), body.get("code"), {}
        text = self.redact(message or fallback or response.reason_phrase or "no message")
        return ErrorBody(text, code, kind, str(param) if param else None, error)

    def created_id(self, response: httpx.Response, task_id: object, what: str = "task id") -> str:
        """The one rule for a create answered without its task id: the task may exist and be
        charged, so it is never sent again (unknown_outcome) and the user is told where to look."""
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or not str(task_id):
            raise ProviderError(self.name, "unknown_outcome", (
                f"the create answered HTTP {response.status_code} without a {what}; the task may exist and "
                f"be charged, so it is not sent again: check {self.task_history} before trying again"))
        return str(task_id)

    # ---- shared machinery ------------------------------------------------------------------

    def preflight(self) -> None:
        self.auth_headers()  # raises a one-line auth error when credentials are missing

    @property
    def name(self) -> str:
        return self.provider_name

    def secret(self) -> str:
        if self.api_key is None or not self.api_key.get_secret_value():
            raise ProviderError(self.name, "auth", f"no API key; save one in the '{self.name}' block "
                                                   "(takeflow blocks in the Prefect UI)")
        return self.api_key.get_secret_value()

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.base_url.rstrip("/"), follow_redirects=True,
                timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout))
        return self._http

    def send(self, method: str, url: str, *, create: bool = False,
             read: Callable[[httpx.Response], Any] | None = None, **kwargs: Any) -> Any:
        """One API call with transient retries; an unsuccessful final answer raises ProviderError.

        The one send/retry policy: connection failures before anything was sent and 408/429/5xx
        answers are retried with backoff; once a create's bytes may have reached the provider, a
        broken connection is `lost_create` and never sent again. With `read`, the answer is
        streamed and a successful one is handed to `read` (its return value is returned): for
        APIs whose create answers with the video itself (LTX); a break mid-body counts as lost."""
        kwargs["headers"] = {**self.auth_headers(), **kwargs.get("headers", {})}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                if read is None:
                    response = value = self.http.request(method, url, **kwargs)
                else:
                    with self.http.stream(method, url, **kwargs) as response:
                        value = read(response) if response.is_success else response.read()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if last:  # nothing reached the provider: safe to say so and let the take retry
                    raise ProviderError(self.name, "transient", f"cannot reach {self.base_url}: "
                                                                f"{type(exc).__name__}") from None
                self._sleep(attempt, None)
                continue
            except httpx.TransportError as exc:
                if create:
                    raise self.lost_create(exc) from None
                if last:
                    raise ProviderError(self.name, "transient", f"{method} {url}: {type(exc).__name__}") from None
                self._sleep(attempt, None)
                continue
            if response.is_success:
                return value
            hint = retry_after(response)
            if response.status_code in RETRYABLE_STATUS and not last and self.retryable(response):
                log.info("%s %s %s: HTTP %s, retrying", self.name, method, url, response.status_code)
                self._sleep(attempt, hint)
                continue
            error = self.error_for(response)
            error.retry_after = error.retry_after or hint
            raise error
        raise AssertionError("unreachable")

    def lost_create(self, exc: httpx.TransportError) -> ProviderError:
        """The error for a create whose connection broke after it was sent: it may have made a task."""
        return ProviderError(self.name, "unknown_outcome", (
            f"the connection broke after the create was sent ({type(exc).__name__}); the task may exist and "
            "be charged, so it is not sent again"))

    def retryable(self, response: httpx.Response) -> bool:
        """Whether a retryable-looking status really is (e.g. out-of-credit 429s are not)."""
        return response.headers.get("x-should-retry", "true") != "false"

    def _sleep(self, attempt: int, hint: float | None) -> None:
        delay = hint if hint is not None else min(8.0, 0.5 * 2 ** attempt) * random.uniform(0.75, 1.25)
        time.sleep(min(delay, MAX_RETRY_AFTER))

    def generate(self, request: GenerationRequest, dest: Path) -> GenerationResult:
        started = time.perf_counter()
        self.checked(request)  # what the model cannot do is refused before anything is sent
        credits = self.run_task(request_key(request), lambda: self.submit(request), dest,
                                lambda state: self.credits_for(request, state), lambda: self.lookup(request))
        return GenerationResult(path=dest, provider=self.get_block_type_slug(), model=request.model,
                                credits=round(credits, 4), seconds=time.perf_counter() - started)

    def lookup(self, request: GenerationRequest) -> str | None:
        """Find the task a create for `request` may have made (the create's answer was lost): its id,
        or None when the provider certainly has none. APIs with no way to tell raise unknown_outcome."""
        return self._no_lookup()

    def work_key(self, key: str) -> str:
        """The journal's and the output store's key: the provider's settings and the request's content."""
        return hashlib.sha256(json.dumps([self.name, self.cache_identity(), key], sort_keys=True,
                                         default=str).encode()).hexdigest()[:40]

    def run_task(self, key: str, create: Callable[[], str], dest: Path,
                 credits_of: Callable[[TaskState], float], lookup: Callable[[], str | None] | None = None) -> float:
        """Make the output of `key` exist at `dest` with at most one paid provider task, whatever
        process died when: reuse a stored output, resume a journalled task, wait for another run's
        create in flight, or journal the intent and create. Returns the credits this call reports:
        the task's cost for the one call that finished its entry, 0 for every other."""
        work = self.work_key(key)
        out = output_path(work)
        while True:
            entry, mine = journal.claim(work, self.name)
            if entry.state == "done":
                if intact(out, entry.size):
                    log.info("%s: %s is already paid for and stored; reusing it", self.name, dest.name)
                    # counted once, by whoever commits first
                    note_task(self.task_ref(work, entry.task_id), entry.credits)
                    place(out, dest)
                    return 0.0
                journal.reopen(work)  # the stored copy is gone: fetch it again from its task
                continue
            if mine:
                task_id = self._journalled_create(work, create, entry.claimed_at)
                log.info("%s: created task %s for %s", self.name, task_id, dest.name)
                break
            if entry.task_id:
                task_id = entry.task_id
                log.info("%s: resuming task %s for %s", self.name, entry.task_id, dest.name)
                break
            if entry.state == "intent" and journal.alive(entry.owner, entry.claimed_at, self.create_window()):
                time.sleep(random.uniform(0.2, 0.5))  # another run is sending this create: wait for it
                continue
            try:  # the create's sender died, or its answer was lost
                found = (lookup or self._no_lookup)()
            except ProviderError as exc:
                if exc.kind == "unknown_outcome":  # the same unknown create is counted once, however often asked
                    note_task(self.task_ref(work, None, entry.claimed_at))
                raise
            # an earlier run that counted this create as of unknown outcome was wrong either way
            note_resolved(self.task_ref(work, None, entry.claimed_at), found and self.task_ref(work, found))
            if found is not None:
                log.info("%s: found task %s, created by an earlier run, for %s", self.name, found, dest.name)
                journal.created(work, found)
                continue
            taken, mine = journal.claim(work, self.name, take_over=entry.state)  # it never reached the provider
            if mine:  # ours now: create it (another run that took it over first is waited for above)
                task_id = self._journalled_create(work, create, taken.claimed_at)
                log.info("%s: created task %s for %s", self.name, task_id, dest.name)
                break
        note_task(self.task_ref(work, task_id))  # a restart reconciles the reservation against this task
        try:
            state = self.wait(task_id)
        except ProviderError as exc:
            if not exc.transient or isinstance(exc, TaskEnded):  # over: the next attempt creates afresh
                exc.credits = getattr(exc, "credits", 0.0) if journal.forget(work) else 0.0
            raise
        try:
            self.fetch(task_id, state, out)
        except ProviderError as exc:
            if not exc.transient:  # paid for, but its output cannot be had: a retry pays again
                exc.credits = credits_of(state) if journal.forget(work) else 0.0
            raise
        credits = credits_of(state)
        note_task(self.task_ref(work, task_id), credits)
        finished = journal.finish(work, out, credits)
        place(out, dest)
        return credits if finished else 0.0

    def create_window(self) -> float:
        """Longest a create can take with its retries: past it, another host's intent is orphaned."""
        return (self.max_retries + 1) * (self.request_timeout + self.connect_timeout + MAX_RETRY_AFTER)

    def _no_lookup(self) -> str | None:
        raise ProviderError(self.name, "unknown_outcome", (
            "a create for this work was sent by a run that stopped before its answer came, and this API "
            "cannot find a task by anything but the id it never returned; check the provider's dashboard, "
            "then `python -m blocks.journal forget KEY` (KEY from `python -m blocks.journal`) to create it again"))

    def task_ref(self, work: str, task_id: str | None, claimed_at: float = 0.0) -> str:
        """The ledger's name for the provider task of `work`, or for its create whose outcome nobody
        can know (by when it was claimed). The work is part of it: some APIs' ids are not unique."""
        return f"{self.name}:{work}:{task_id}" if task_id else f"{self.name}:{work}:unknown@{claimed_at!r}"

    def _journalled_create(self, work: str, create: Callable[[], str], claimed_at: float) -> str:
        try:
            task_id = create()
        except ProviderError as exc:
            if exc.kind == "unknown_outcome":
                journal.unknown(work)
                note_task(self.task_ref(work, None, claimed_at))
            else:  # refused before any task existed
                journal.forget(work)
            raise
        except Exception:
            journal.unknown(work)  # cannot tell whether it was sent
            note_task(self.task_ref(work, None, claimed_at))
            raise
        journal.created(work, task_id)
        return task_id

    def wait(self, task_id: str) -> TaskState:
        """Poll until the task ends; cancel it if it runs past the generation deadline."""
        delay, running, waiting = self.first_poll, 0.0, 0.0
        last_progress = None
        while True:
            pause = delay * random.uniform(0.8, 1.2)
            time.sleep(pause)
            state = self.poll(task_id)
            if state.status == "succeeded":
                return state
            if state.status in ("failed", "cancelled"):
                kind = state.error_kind or ("cancelled" if state.status == "cancelled" else "transient")
                ended = TaskEnded(self.name, kind, f"task {task_id} {state.status}: "
                                                   f"{state.error or 'no reason given'}")
                ended.credits = self.failure_credits(state)
                raise ended
            if state.status == "running":
                running += pause
            else:
                waiting += pause
            if state.progress is not None and state.progress != last_progress:
                last_progress = state.progress
                log.info("%s: task %s %.0f%%", self.name, task_id, 100 * state.progress)
            if running > self.generation_timeout or waiting > self.queue_timeout:
                self.cancel(task_id)
                what = "ran" if running > self.generation_timeout else "waited in the queue"
                raise ProviderError(self.name, "timeout", (
                    f"task {task_id} {what} past its deadline and was cancelled; raise the block's "
                    "generation_timeout or queue_timeout"))
            delay = min(self.poll_interval, delay * 1.5)

    def fetch(self, task_id: str, state: TaskState, dest: Path) -> None:
        """Download the output; an expired or cut-off download re-reads the task for a fresh URL."""
        for attempt in range(self.max_retries + 1):
            try:
                self.download(state.output_url or "", dest)
                return
            except ProviderError as exc:
                # a copy that does not decode may be a damaged transfer: fetch it again too
                if not (exc.transient or isinstance(exc, DamagedOutput)) or attempt == self.max_retries:
                    raise
                self._sleep(attempt, exc.retry_after)
                state = self.poll(task_id)

    def download(self, url: str, dest: Path) -> None:
        """Stream a video to `dest` with a size cap, then check it decodes as video."""
        if not url:
            raise ProviderError(self.name, "bad_output", "the task succeeded without an output URL")
        with atomic_path(dest) as tmp:
            try:
                with self.http.stream("GET", url, headers=self.download_headers(url)) as response:
                    if response.status_code in (401, 403, 404, 410):
                        raise ProviderError(self.name, "transient", f"output URL refused (HTTP "
                                                                    f"{response.status_code}); it may have expired")
                    if not response.is_success:
                        raise ProviderError(self.name, "transient" if response.status_code >= 500 or
                                            response.status_code == 429 else "bad_output",
                                            f"output download failed with HTTP {response.status_code}",
                                            retry_after(response))
                    self.write_capped(response, tmp)
            except httpx.TransportError as exc:
                raise ProviderError(self.name, "transient", f"output download cut off ({type(exc).__name__})") from None
            verify_video(self.name, tmp)

    def write_capped(self, response: httpx.Response, path: Path) -> None:
        """Stream a response body to `path`, refusing anything over `max_download_mb`."""
        cap, size = self.max_download_mb * 2**20, 0
        with path.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
                if size > cap:
                    raise ProviderError(self.name, "bad_output", (
                        f"the video is over {self.max_download_mb} MB; raise the block's "
                        "max_download_mb if that is expected"))
                out.write(chunk)

    def json_body(self, response: httpx.Response) -> dict:
        """A response's JSON object; anything else is a transient fault of the provider."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(self.name, "transient", f"HTTP {response.status_code} answer is not JSON")
        return body

    def render_size(self, request: GenerationRequest) -> tuple[int, int]:
        return load_catalogue().model(self.name, request.model).size(request.aspect_ratio, request.resolution)

    def render_fps(self, request: GenerationRequest) -> float:
        return load_catalogue().model(self.name, request.model).fps

    def estimate_credits(self, request: GenerationRequest) -> float:
        return load_catalogue().credits(self.name, request.model, request.duration, request.resolution,
                                        request.audio)

    # Upscaling adapters (blocks.super_resolution.SuperResolution) price and look up their models here.
    def estimate_upscale_credits(self, model: str, resolution: str, duration: float) -> float:
        try:
            return load_catalogue().upscale_credits(self.name, model, duration, resolution)
        except KeyError as exc:
            raise ProviderError(self.name, "invalid_input", exc.args[0]) from None

    def upscaler_entry(self, model: str, resolution: str):
        """The catalogue entry of this provider's upscaler `model`, which must reach `resolution`."""
        try:
            entry = load_catalogue().upscaler(self.name, model)
            entry.target(resolution)
        except KeyError as exc:
            raise ProviderError(self.name, "invalid_input", exc.args[0]) from None
        return entry

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def image_bytes(path: Path, max_bytes: int = 5 * 2**20) -> tuple[bytes, str]:
    """A reference image as (bytes, mime type) for upload: PNG/JPEG as they are, anything else or
    anything over `max_bytes` re-encoded as JPEG (scaled down until it fits)."""
    data = path.read_bytes()
    mime = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}
    kind = next((m for magic, m in mime.items() if data.startswith(magic)), None)
    if kind and len(data) <= max_bytes:
        return data, kind
    image = read_image(path)
    for scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        ok, encoded = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok and len(encoded) <= max_bytes:
            return encoded.tobytes(), "image/jpeg"
    raise ProviderError("takeflow", "invalid_input", f"{path.name} cannot be made smaller than "
                                                     f"{max_bytes // 2**20} MB; use a smaller reference image")


def data_uri(path: Path, max_bytes: int = 5 * 2**20) -> str:
    data, mime = image_bytes(path, max_bytes)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def verify_video(provider: str, path: Path) -> None:
    """A take counts only if it decodes to the end: corrupt or truncated output is refused."""
    check = decode_check(path)
    if check.problem:
        raise DamagedOutput(provider, "bad_output", f"the output is not a whole video: {check.problem}")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, then `Retry-After` (seconds or a date)."""
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def request_key(request: GenerationRequest) -> str:
    """A request by content: the reference image by its bytes' hash, not its path."""
    data = request.model_dump(mode="json")
    if request.reference_image is not None:
        data["reference_image"] = file_digest(request.reference_image)
    return json.dumps(data, sort_keys=True)
