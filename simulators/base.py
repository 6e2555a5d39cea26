"""What every provider simulator shares: an HTTP server on loopback, a task lifecycle, rendered
outputs behind expiring URLs, request counting and fault injection.

A simulator is not the provider: it speaks the provider's contract (paths, fields, statuses,
error shapes) closely enough that our adapters and the official SDKs work against it, and its
videos are motion previews rendered by the previz engine at the size the model would return.
Each family (simulators/runway.py, ...) adds its routes and its own spelling of errors.

Faults are injected on demand (`inject`) or at random (`fault_rate`, seeded):

| kind       | effect                                                                  |
|------------|-------------------------------------------------------------------------|
| rate_limit | 429 in the provider's shape; `retry_after` adds Retry-After (seconds)   |
| server     | 503 (or `status`) in the provider's shape                               |
| drop       | the connection closes without an answer, before the request is handled  |
| reject     | the create is refused at once with `failure` (e.g. moderation)          |
| fail       | the task is accepted, then ends failed with `failure`                   |
| corrupt    | the output download serves bytes that are not a video                   |
| truncate   | the output download stops halfway                                       |
| slow       | the output download trickles (`delay` seconds per 64 KB)                |
| expire     | the output URL is already expired on the next download                  |
| cut        | the output download serves its first half, with a Content-Length to match |

The simulator also keeps the provider's own books: `record()` (and `GET /_sim/record`, no key
needed) lists every create, each task's status and what the provider charged for it, in takeflow
credits (1 = 0.01 USD), billed as the real provider bills (`charge`: by default a succeeded task
costs its catalogue price and a failed one nothing; Runway bills input-moderation refusals).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import secrets
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import parse_qs, urlsplit

import ffmpeg

from blocks.catalogue import load_catalogue
from blocks.media import H264_OUTPUT, run_ffmpeg
from blocks.previz_render import render_previz
from blocks.providers import frame_size

FaultKind = Literal["rate_limit", "server", "drop", "reject", "fail", "corrupt", "truncate", "slow", "expire",
                    "cut"]
Failure = Literal["moderation", "moderation_output", "invalid_input", "internal", "insufficient_credits",
                  "bad_output"]
Endpoint = Literal["create", "poll", "download", "upload", "storage", "any"]
RANDOM_FAULTS: tuple[FaultKind, ...] = ("rate_limit", "rate_limit", "server", "drop")


@dataclass
class Fault:
    """One injected fault, used up after `times` matching requests."""

    kind: FaultKind
    on: Endpoint = "any"
    times: int = 1
    retry_after: float | None = None
    status: int = 503
    failure: Failure = "moderation"
    delay: float = 0.05

    def matches(self, endpoint: str) -> bool:
        if self.kind in ("reject", "fail"):
            return endpoint == "create"
        if self.kind in ("corrupt", "truncate", "slow", "expire", "cut"):
            return endpoint == "download"
        return self.on in ("any", endpoint)


class Drop(Exception):
    """Close the connection without answering."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    endpoint: str = "other"

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
        """multipart/form-data fields and files ({name: (content_type, bytes)})."""
        head = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        fields, files = {}, {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                files[name] = (part.get_content_type(), part.get_payload(decode=True))
            else:
                fields[name] = part.get_payload(decode=True).decode()
        return fields, files


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON, bytes → raw, Path → file
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SimTask:
    """One generation in the simulator: its lifecycle is a function of the clock."""

    id: str
    model: str
    params: dict[str, Any]
    created: float
    kind: str = "video"
    video: Future | None = None
    failure: Failure | None = None
    cancelled: bool = False
    started: float | None = None  # left the throttle queue
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[..., Response]


class ProviderSimulator:
    """An HTTP server speaking one provider's contract; subclasses add routes with `route`."""

    name = "provider"
    routes: list[tuple[str, re.Pattern, str, str]] = []
    keyless_endpoints: tuple[str, ...] = ("download",)  # signed URLs: no API key expected

    def __init__(self, *, latency: float = 2.0, queue_latency: float = 0.0, concurrency: int | None = None,
                 fault_rate: float = 0.0, seed: int = 0, url_ttl: float = 3600.0, render_height: int = 144,
                 api_key: str | None = None, port: int = 0, host: str = "127.0.0.1"):
        self.latency, self.queue_latency, self.concurrency = latency, queue_latency, concurrency
        self.fault_rate, self.url_ttl, self.render_height = fault_rate, url_ttl, render_height
        self.api_key = api_key or self.default_key()
        self.rng = random.Random(seed)
        self.faults: list[Fault] = []
        self.tasks: dict[str, SimTask] = {}
        self.creates = 0
        self.peak_active = 0  # most tasks in flight at once, as the provider would count them
        self.requests: list[tuple[str, str, str]] = []  # (method, path, endpoint) of every request
        # called with (request, "before" | "after") around every routed request; crash tests kill
        # the client from here, e.g. after a create is recorded but before its answer is sent
        self.hook: Callable[[Request, str], None] | None = None
        self.lock = threading.RLock()
        self.renderer = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{self.name}-render")
        self.media = Path(tempfile.mkdtemp(prefix=f"takeflow-sim-{self.name}-"))
        self._renders: dict[str, Future] = {}
        self._signing = secrets.token_bytes(16)
        self._expire_next = 0
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProviderSimulator:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=f"sim-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.renderer.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def default_key(self) -> str:
        return "sim-" + uuid.uuid4().hex

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def count(self, endpoint: str) -> int:
        return sum(1 for _, _, e in self.requests if e == endpoint)

    # ---- hooks for each family ---------------------------------------------------------------

    def authorised(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def auth_error(self, request: Request) -> Response:
        return Response(401, {"error": "invalid API key"})

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        """A provider-shaped error; `kind` is rate_limit, server, moderation, invalid_input, ..."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return Response(status, {"error": message}, headers)

    # ---- task lifecycle ----------------------------------------------------------------------

    def new_task(self, model: str, params: dict[str, Any], *, size: tuple[int, int], duration: float,
                 fps: int, prompt: str, seed: int = 0, image: bytes | None = None,
                 task_id: str | None = None, motion: Path | None = None) -> SimTask:
        """Record a create (counted) and start rendering its output in the background; `motion` is a
        motion reference video whose global motion the output follows."""
        task = self.record_task(model, params, task_id)
        task.extra.setdefault("price", self.catalogue_price(model, duration, size, params))
        task.video = self.render(size=size, duration=duration, fps=fps, prompt=prompt, seed=seed, image=image,
                                 motion=motion)
        return task

    # ---- the provider's books ----------------------------------------------------------------

    def catalogue_price(self, model: str, duration: float, size: tuple[int, int], params: dict[str, Any]) -> float:
        """What a task costs, in takeflow credits, at the catalogue's price for its output size."""
        try:
            entry = load_catalogue().model(self.name, model)
            per_unit = load_catalogue().providers[self.name].credits_per_unit
        except KeyError:
            return 0.0
        text = f"{size[0]}x{size[1]}"
        resolution = next((name for name, res in entry.resolutions.items() if text in res.sizes.values()), None)
        audio = any(bool(params.get(k)) for k in ("audio", "generate_audio", "generateAudio", "sound"))
        return round(entry.price_per_second(resolution, audio) * duration * per_unit, 4)

    def charge(self, task: SimTask, status: str) -> float:
        """Credits the provider bills for `task` in `status`: its price once it succeeded, nothing
        for a failed or cancelled task (Kling, Veo, Seedance, LTX and Sora bill only outputs)."""
        return float(task.extra.get("price", 0.0)) if status == "succeeded" else 0.0

    def record(self) -> dict[str, Any]:
        """The provider's own record: creates, every task's status, and the credits it charged."""
        with self.lock:
            tasks = list(self.tasks.values())
        rows = []
        for task in tasks:
            status, _ = self.status(task)
            rows.append({"id": task.id, "model": task.model, "kind": task.kind, "status": status,
                         "credits": round(self.charge(task, status), 4)})
        return {"provider": self.name, "creates": self.creates, "tasks": rows,
                "charged": round(sum(row["credits"] for row in rows), 4)}

    def record_task(self, model: str, params: dict[str, Any], task_id: str | None = None) -> SimTask:
        """Count a create and track its task; the caller sets `task.video` to its output's future."""
        with self.lock:
            self.creates += 1
            active = sum(1 for t in self.tasks.values() if "finished" not in t.extra and not t.cancelled)
            self.peak_active = max(self.peak_active, active + 1)
            task = SimTask(id=task_id or str(uuid.uuid4()), model=model, params=params, created=time.monotonic())
            fault = self._take_fault("create", kinds=("fail",))
            if fault is not None:
                task.failure = fault.failure
            self.tasks[task.id] = task
        return task

    def status(self, task: SimTask) -> tuple[str, float]:
        """('queued' | 'throttled' | 'running' | 'succeeded' | 'failed' | 'cancelled', progress)."""
        status, progress = self.lifecycle(task)
        if status in ("succeeded", "failed", "cancelled"):
            task.extra.setdefault("finished", time.monotonic())
        return status, progress

    def lifecycle(self, task: SimTask) -> tuple[str, float]:
        """The task's state as a function of the clock; families with their own rules override it."""
        now = time.monotonic()
        with self.lock:
            if task.cancelled:
                return "cancelled", 0.0
            self.start_waiting(now)
            if task.started is None:
                return ("queued" if now - task.created < self.queue_latency else "throttled"), 0.0
            elapsed = now - task.started
        if elapsed < self.latency or not task.video.done():
            return "running", min(0.99, elapsed / self.latency) if self.latency else 0.99
        if task.failure is not None:
            return "failed", 1.0
        task.video.result()  # a render error surfaces here as a 500
        return "succeeded", 1.0

    def start_waiting(self, now: float) -> None:
        """Give each waiting task the moment the provider started it: once `queue_latency` has passed
        and, under `concurrency`, as soon as a slot was free (a task holds one for `latency` s), in
        submission order. A provider starts work whether or not anyone asks: a task that started when
        it was first polled made a client that polls less often wait longer for the same work."""
        live = [t for t in self.tasks.values() if not t.cancelled and self.holds_slot(t)]
        # a task seen finished has let its slot go (it may have run at an earlier, shorter latency)
        ends = [min(t.started + self.latency, t.extra.get("finished", math.inf)) for t in live if t.started is not None]
        for task in sorted((t for t in live if t.started is None), key=lambda t: t.created):
            start = task.created + self.queue_latency
            busy = sorted(end for end in ends if end > start)
            if self.concurrency is not None and len(busy) >= self.concurrency:
                start = busy[len(busy) - self.concurrency]  # when enough of them have ended
            if start > now:
                return  # it still waits, and so does every task sent after it
            task.started = start
            ends.append(start + self.latency)

    def holds_slot(self, task: SimTask) -> bool:
        """Whether the task runs at all (and so takes a concurrency slot); fal's refused inputs do not."""
        return True

    def render(self, *, size: tuple[int, int], duration: float, fps: int, prompt: str, seed: int,
               image: bytes | None, motion: Path | None = None) -> Future:
        """A motion preview of `size`, rendered small and scaled up; identical requests share one."""
        key = hashlib.sha256(json.dumps([size, duration, fps, prompt, seed, str(motion)]).encode()
                             + (image or b"")).hexdigest()[:24]
        with self.lock:
            if key not in self._renders:
                self._renders[key] = self.renderer.submit(self._render, key, size, duration, fps, prompt,
                                                          seed, image, motion)
            return self._renders[key]

    def _render(self, key: str, size: tuple[int, int], duration: float, fps: int, prompt: str, seed: int,
                image: bytes | None, motion: Path | None = None) -> Path:
        width, height = size
        aspect = "16:9" if width > height * 1.2 else "9:16" if height > width * 1.2 else "1:1"
        small = frame_size(aspect, min(self.render_height, min(size)))
        reference = None
        if image:
            reference = self.media / f"{key}-ref"
            reference.write_bytes(image)
        preview = self.media / f"{key}-small.mp4"
        render_previz(preview, width=small[0], height=small[1], fps=fps, duration=duration, prompt=prompt,
                      seed=seed, motion_amount=0.5, reference_image=reference, regions=(), crf=23,
                      motion_reference=motion)
        out = self.media / f"{key}.mp4"
        stream = ffmpeg.input(str(preview)).video.filter("scale", width, height, flags="bilinear")
        run_ffmpeg(ffmpeg.output(stream, str(out), **{**H264_OUTPUT, "preset": "ultrafast"})
                   .global_args("-loglevel", "error").overwrite_output(), "simulator upscale")
        preview.unlink(missing_ok=True)
        return out

    # ---- output URLs -------------------------------------------------------------------------

    def output_url(self, task: SimTask) -> str:
        """A signed URL for the task's video that stops working after `url_ttl` seconds."""
        expires = int(time.time() + self.url_ttl)
        with self.lock:
            if self._expire_next:
                self._expire_next -= 1
                expires = int(time.time()) - 1
        token = self._sign(f"{task.id}:{expires}")
        return f"{self.url}/files/{task.id}.mp4?expires={expires}&sig={token}"

    def _sign(self, text: str) -> str:
        return hmac.new(self._signing, text.encode(), "sha256").hexdigest()[:32]

    def serve_file(self, request: Request, task_id: str) -> Response:
        expires = (request.query.get("expires") or ["0"])[0]
        sig = (request.query.get("sig") or [""])[0]
        task = self.tasks.get(task_id)
        if task is None or not hmac.compare_digest(sig, self._sign(f"{task_id}:{expires}")):
            return Response(403, b"AccessDenied", {"Content-Type": "text/plain"})
        if int(expires) < time.time():
            return Response(403, b"Request has expired", {"Content-Type": "text/plain"})
        return self.video_response(task)

    def video_response(self, task: SimTask) -> Response:
        return Response(200, task.video.result(), {"Content-Type": "video/mp4"})

    # ---- faults ------------------------------------------------------------------------------

    def _take_fault(self, endpoint: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(endpoint) and (kinds is None or fault.kind in kinds):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
            if kinds != ("fail",) and self.fault_rate and endpoint in ("create", "poll", "download") \
                    and self.rng.random() < self.fault_rate:
                # a dropped create is ambiguous to any client, so random drops spare creates
                choices = [k for k in RANDOM_FAULTS if not (k == "drop" and endpoint == "create")]
                return Fault(self.rng.choice(choices), retry_after=self.rng.choice([None, 0.2]))
        return None

    def dispatch(self, request: Request) -> Response:
        for method, pattern, endpoint, attr in self.routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.endpoint = endpoint
                break
        else:
            if request.method == "GET" and (m := re.fullmatch(r"/files/([\w.-]+)\.mp4", request.path)):
                request.endpoint, attr, match = "download", None, m
            elif request.method == "GET" and request.path.rstrip("/").endswith("/_sim/record"):
                return Response(200, self.record())  # the simulator's books: not part of the API
            else:
                return self.error(404, "not_found", f"no route {request.method} {request.path}")
        with self.lock:
            self.requests.append((request.method, request.path, request.endpoint))
        if request.endpoint not in self.keyless_endpoints and not self.authorised(request):
            return self.auth_error(request)
        fault = self._take_fault(request.endpoint, kinds=None if request.endpoint != "create" else
                                 ("rate_limit", "server", "drop", "reject"))
        if fault is not None:
            response = self._apply(fault, request)
            if response is not None:
                return response
        if self.hook is not None:
            self.hook(request, "before")
        if attr is None:
            response = self.serve_file(request, match.group(1))
        else:
            response = getattr(self, attr)(request, *match.groups())
        if self.hook is not None:
            self.hook(request, "after")
        return response

    def _apply(self, fault: Fault, request: Request) -> Response | None:
        if fault.kind == "drop":
            raise Drop()
        if fault.kind == "rate_limit":
            return self.error(429, "rate_limit", "too many requests", fault.retry_after)
        if fault.kind == "server":
            return self.error(fault.status, "server", "service unavailable", fault.retry_after)
        if fault.kind == "reject":
            return self.error(400, fault.failure, f"request rejected: {fault.failure}")
        if fault.kind == "expire":
            with self.lock:
                self._expire_next += 1
            return self.error(403, "expired", "Request has expired") if request.endpoint == "download" else None
        request.headers = {**dict(request.headers.items()), "X-Sim-Fault": fault.kind,
                           "X-Sim-Delay": str(fault.delay)}
        return None


def route(method: str, pattern: str, endpoint: str = "other") -> Callable[[Handler], Handler]:
    """Mark a simulator method as the handler of `method pattern` (a regex over the path)."""
    def mark(fn: Handler) -> Handler:
        fn._route = (method, re.compile(pattern), endpoint)  # type: ignore[attr-defined]
        return fn
    return mark


def collect_routes(cls: type[ProviderSimulator]) -> type[ProviderSimulator]:
    """Class decorator: gather the `route`-marked methods of a simulator and of the mixins it
    inherits routes from (e.g. Runway's video upscale)."""
    marked = {name: fn for klass in reversed(cls.__mro__) for name, fn in vars(klass).items()
              if hasattr(fn, "_route")}
    cls.routes = [(*fn._route[:1], fn._route[1], fn._route[2], name) for name, fn in marked.items()]
    return cls


def _handler_for(sim: ProviderSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: tests count requests instead
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, parts.path, parse_qs(parts.query), self.headers, body)
            try:
                response = sim.dispatch(request)
            except Drop:
                self.close_connection = True
                self.connection.close()
                return
            except Exception as exc:  # a simulator bug answers 500 like a provider would
                response = sim.error(500, "server", f"simulator error: {type(exc).__name__}: {exc}")
            self._send(response, request)

        def _send(self, response: Response, request: Request) -> None:
            body = response.body
            headers = dict(response.headers)
            if isinstance(body, Path):
                data = body.read_bytes()
            elif isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            elif body is None:
                data = b""
            else:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
            fault = request.headers.get("X-Sim-Fault") if isinstance(request.headers, dict) else None
            if fault == "cut":  # a file cut short on the CDN: the length header agrees with it
                data = data[: len(data) // 2]
            if fault == "corrupt":
                data = bytes(random.Random(len(data)).getrandbits(8) for _ in range(min(len(data), 65536)))
            self.send_response(response.status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "truncate":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            delay = float(request.headers.get("X-Sim-Delay", 0)) if fault == "slow" else 0.0
            for start in range(0, len(data), 65536):
                self.wfile.write(data[start:start + 65536])
                if delay:
                    self.wfile.flush()
                    time.sleep(delay)

        do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _handle

    return Handler
