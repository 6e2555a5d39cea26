"""Kling AI (Kuaishou) through its own API: JWT-signed create, poll by task or external id, download.

Contract (shared/reference/providers.md §2, ◐ transcriptions of the official docs):
- A JWT (HS256 with the SecretKey, {iss: AccessKey, exp: +30 min, nbf: -5 s}), reused until a
  minute before it expires. `POST /v1/videos/{text2video|image2video}`, `GET .../{kind}/{task_id or
  external_task_id}`: task_status submitted|processing|succeed|failed, task_status_msg,
  final_unit_deduction (units charged: the cost report), task_result.videos[].url. `duration` is a
  string, `image` raw base64 (no `data:`). No cancel endpoint.
- Errors {code, message}: 401/100x auth, 400/1201 input, 400/1301 moderation, 429/1302 and 1303
  (retried), 429/1101-1102 out of units (not retried: waiting does not refill it), 5xx transient.
- Motion control (`kling-*-motion-control`): `POST /v1/videos/motion-control` {model_name, image_url
  (raw base64), video_url (an https URL Kling fetches), character_orientation, mode,
  keep_original_sound yes|no, prompt}; polled at `/v1/videos/motion-control/{id}` like the others.
- A failed task whose message names risk control ("Failure to pass the risk control system", what
  integrators report) is moderation, one naming an invalid input is invalid_input, any other is
  transient: Kling does not charge failed tasks (◐ pricing.md) and its other reasons are its own.
- Each create carries an `external_task_id` hashed from body and seed. A create whose connection
  broke is looked up by it (found → that task; 404/1203 → create again); a duplicate (400/1201
  naming external_task_id) is adopted unless it failed, when a suffixed id starts a new task.
- Brush → `dynamic_masks`, else the prompt's camera move → simple `camera_control` (never both,
  never image_tail). Mode follows resolution: 720p std, 1080p pro, 4k "4k" (❓ Kling 3.0's spelling;
  its prices name a third "4k mode"); single-mode masters get none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any, ClassVar

import cv2
import httpx
import numpy as np
from pydantic import Field, PrivateAttr, SecretStr

from blocks.camera_vocabulary import parse_camera
from blocks.providers import GenerationRequest, MotionRegion
from blocks.remote import ErrorKind, ProviderError, RemoteVideoProvider, TaskState, image_bytes

log = logging.getLogger("takeflow.providers")

MODES = {"720p": "std", "1080p": "pro", "4k": "4k"}
SINGLE_MODE = ("kling-v2-1-master",)            # capability map: no std/pro choice
SOUND_MODES = {"kling-v2-6": ("pro",)}           # capability map: v2-6 std is silent only
# capability map: kling-v1-5 takes the brush and simple camera moves only in pro mode, 5 s
MOTION_CONTROL_ONLY = {"kling-v1-5": ("pro", "5")}
STATUSES = {"submitted": "queued", "processing": "running", "succeed": "succeeded", "failed": "failed"}
NOT_RETRYABLE = {1100, 1101, 1102, 1103, 1304}  # account states that waiting does not fix
CODE_KINDS: dict[int | None, ErrorKind] = {
    **dict.fromkeys((1000, 1001, 1002, 1003, 1004, 1100, 1103, 1304), "auth"), 1101: "insufficient_credits",
    1102: "insufficient_credits", 1300: "moderation", 1301: "moderation", 1302: "rate_limited",
    1303: "rate_limited"}
HINTS = {"auth": "check access_key and secret_key in the 'kling' block, the account's API and model "
                 "permissions, and this machine's clock",
         "insufficient_credits": "buy a resource pack or top up the Kling account",
         "moderation": "Kling's content policy refused it; change the prompt or image",
         "rate_limited": "too many requests or tasks at once; lower max_concurrency",
         "transient": "Kling had a server error; try again later", "invalid_input": "fix the request"}
FAILURE_WORDS: tuple[tuple[ErrorKind, tuple[str, ...]], ...] = (  # task_status_msg words, first match wins
    ("moderation", ("risk control", "content security", "sensitive")),
    ("insufficient_credits", ("resource pack", "arrears", "balance")),
    ("invalid_input", ("invalid", "not supported")))
MAX_REGIONS, TRAJECTORY_POINTS, PROMPT_LIMIT, TOKEN_TTL = 6, 16, 2500, 1800


def jwt_hs256(payload: dict[str, Any], secret: str) -> str:
    """A compact JWT signed with HMAC-SHA256 (RFC 7519), enough for Kling's token."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = part(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{part(signature)}"


def failure_kind(message: str) -> ErrorKind:
    """What a failed task's task_status_msg stands for (see the module notes)."""
    text = message.lower()
    return next((kind for kind, words in FAILURE_WORDS if any(w in text for w in words)), "transient")


def camera_control(prompt: str, motion_amount: float) -> dict[str, Any] | None:
    """The prompt's camera move as a simple camera_control (one non-zero axis), or None.

    Signs follow Kling's docs (◐ rawgenai text-to-video.md): pan/horizontal negative = left,
    tilt/vertical positive = up, zoom negative = narrower view (in). Orbits and locked-off
    shots have no simple equivalent, and an unnamed move is left to the model.
    """
    move = parse_camera(prompt)
    strength = round(10 * motion_amount, 1)
    axes = {"pan_left": ("pan", -1), "pan_right": ("pan", 1), "tilt_up": ("tilt", 1),
            "tilt_down": ("tilt", -1), "push_in": ("zoom", -1), "pull_out": ("zoom", 1)}
    if not move.phrase or move.kind not in axes or strength <= 0:
        return None
    axis, sign = axes[move.kind]
    if move.travels:  # the camera body travels (truck, crane) rather than turning on its head
        axis = {"pan": "horizontal", "tilt": "vertical"}.get(axis, axis)
    config = dict.fromkeys(("horizontal", "vertical", "pan", "tilt", "roll", "zoom"), 0)
    config[axis] = sign * strength
    return {"type": "simple", "config": config}


def dynamic_masks(image: bytes, regions: tuple[MotionRegion, ...]) -> list[dict[str, Any]]:
    """Motion-brush regions as Kling dynamic masks: a white-on-black PNG the image's size and a
    straight trajectory from the polygon's centre along its vector, in pixels, origin bottom-left."""
    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
    height, width = decoded.shape[:2]
    masks = []
    for region in regions:
        points = np.array(region.polygon, dtype=np.float64) * (width, height)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
        start = points.mean(axis=0)
        end = start + np.array(region.vector) * (width, height)
        path = np.clip(start + (end - start) * np.linspace(0, 1, TRAJECTORY_POINTS)[:, None], 0, (width, height))
        trajectory = [{"x": int(round(x)), "y": int(round(height - y))} for x, y in path]  # y flips up
        encoded = base64.b64encode(cv2.imencode(".png", mask)[1].tobytes()).decode()
        masks.append({"mask": encoded, "trajectories": trajectory})
    return masks


class KlingProvider(RemoteVideoProvider):
    """Kling AI video generation through Kling's own API (access key + secret key).

    Example:
        ```python
        from blocks.kling import KlingProvider
        kling = KlingProvider.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "takeflow kling"
    _documentation_url = "https://app.klingai.com/global/dev/document-api"
    _description = ("Kling AI (Kuaishou): text- and image-to-video, motion brush, camera control and motion "
                    "control (a character image moved like a reference video).")
    models: ClassVar[tuple[str, ...]] = ("kling-v2-6", "kling-v2-5-turbo", "kling-v2-1-master", "kling-v1-6",
                                         "kling-v1-5", "kling-v3", "kling-v2-6-motion-control",
                                         "kling-v3-motion-control")
    provider_name: ClassVar[str] = "kling"
    unit_cost_field: ClassVar[str] = "data.final_unit_deduction"
    task_history: ClassVar[str] = "the Kling console's task list"
    cache_neutral: ClassVar[tuple[str, ...]] = (*RemoteVideoProvider.cache_neutral, "access_key", "secret_key")

    access_key: SecretStr | None = Field(None, description="Kling AccessKey (kept secret; never logged).")
    secret_key: SecretStr | None = Field(None, description="Kling SecretKey that signs tokens (kept secret).")
    base_url: str = Field("https://api-singapore.klingai.com",
                          description="API root (China: https://api-beijing.klingai.com).")

    _token: tuple[str, float] | None = PrivateAttr(None)

    def secret(self) -> str:
        keys = [k.get_secret_value() if k is not None else "" for k in (self.access_key, self.secret_key)]
        if not all(keys):
            raise ProviderError(self.name, "auth", f"no access_key and secret_key; save both in the "
                                                   f"'{self.name}' block (takeflow blocks in the Prefect UI)")
        return keys[1]

    def auth_headers(self) -> dict[str, str]:
        now = time.time()
        if self._token is None or self._token[1] - 60 <= now:  # reuse until a minute before expiry
            secret = self.secret()
            payload = {"iss": self.access_key.get_secret_value(), "exp": int(now) + TOKEN_TTL, "nbf": int(now) - 5}
            self._token = (jwt_hs256(payload, secret), int(now) + TOKEN_TTL)
        return {"Authorization": f"Bearer {self._token[0]}"}

    def build(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """The endpoint kind and JSON body for a request; refuses (before any spend) what Kling would."""
        model, image, regions = request.model, request.reference_image, request.motion_regions
        entry = self.checked(request)
        resolution = request.resolution or entry.default_resolution
        if len(request.prompt) > PROMPT_LIMIT:
            raise self.refuse(f"the prompt is {len(request.prompt)} characters; Kling takes at most {PROMPT_LIMIT}")
        if entry.motion_reference == "required":
            return "motion-control", self.motion_control_body(request, resolution)
        kind = "image2video" if image else "text2video"
        mode, duration = MODES[resolution], f"{request.duration:g}"
        body: dict[str, Any] = {"model_name": model, "prompt": request.prompt, "duration": duration}
        if model not in SINGLE_MODE:
            body["mode"] = mode
        if request.audio and mode not in SOUND_MODES.get(model, (mode,)):
            raise self.refuse(f"{model} makes no sound at {resolution}; ask for no sound, or use kling-v3 or "
                          "kling-v2-6 at 1080p")
        if entry.audio != "none":  # sent both ways: Kling 3.0 makes sound unless told not to
            body["sound"] = "on" if request.audio else "off"
        limited = MOTION_CONTROL_ONLY.get(model)
        motion_ok = limited is None or limited == (mode, duration)
        if regions and not (entry.motion_brush and image and motion_ok and len(regions) <= MAX_REGIONS):
            raise self.refuse(f"{model} takes no motion brush here: the brush needs kling-v1-5 at 1080p, 5 s, a "
                          f"reference image and at most {MAX_REGIONS} regions")
        if kind == "text2video":
            body["aspect_ratio"] = request.aspect_ratio
        else:  # the output's aspect ratio follows the image
            data, _ = image_bytes(image, 10 * 2**20)
            body["image"] = base64.b64encode(data).decode()  # raw base64: Kling refuses a data: URI
            if regions:
                body["dynamic_masks"] = dynamic_masks(data, regions)
        control = entry.camera_control and motion_ok and not regions and camera_control(
            request.prompt, request.motion_amount)
        return kind, {**body, "camera_control": control} if control else body

    def motion_control_body(self, request: GenerationRequest, resolution: str) -> dict[str, Any]:
        """`POST /v1/videos/motion-control`: the reference image's character moved the way the motion
        reference video moves (see the catalogue entries' sources). Kling fetches `video_url`
        itself and makes a clip as long as it, so the body has no duration. The catalogue's check
        (`checked`) has made sure of the character image and of no motion brush."""
        model, url = request.model, request.motion_reference_url or ""
        if not url.startswith(("https://", "http://")):
            where = "a local file" if not url else url.split("://")[0] + "://"
            raise self.refuse(f"{model} fetches the motion reference itself, so it must be an https URL Kling can "
                          f"reach; this request's is {where}: publish it (e.g. a presigned S3 URL) and use that")
        data, _ = image_bytes(request.reference_image, 10 * 2**20)
        body: dict[str, Any] = {
            "model_name": model.removesuffix("-motion-control"), "image_url": base64.b64encode(data).decode(),
            "video_url": url, "mode": MODES[resolution],
            # 'video': orientation and camera follow the reference too, and it allows 3-30 s ('image': 10 s)
            "character_orientation": "video", "keep_original_sound": "yes" if request.audio else "no"}
        if request.prompt:
            body["prompt"] = request.prompt
        return body

    @staticmethod
    def external_ids(body: dict[str, Any], seed: int) -> list[str]:
        # Kling has no seed field, so the seed joins the hash: each seed of a request is its own task
        digest = hashlib.sha256(json.dumps([body, seed], sort_keys=True).encode()).hexdigest()[:32]
        return [f"takeflow-{digest}" + (f"-r{attempt}" if attempt else "") for attempt in range(10)]

    def lookup(self, request: GenerationRequest) -> str | None:
        """A create whose answer was lost (its run died) is found by its external_task_id."""
        kind, body = self.build(request)
        for external in self.external_ids(body, request.seed):
            found = self._lookup(kind, external)
            if found is None:
                return None  # this id was never used: neither is any later one
            if found.status != "failed":
                return found.id
        return None

    def submit(self, request: GenerationRequest) -> str:
        kind, body = self.build(request)
        for external in self.external_ids(body, request.seed):
            try:
                return self._create(kind, {**body, "external_task_id": external}, external)
            except ProviderError as exc:
                if exc.kind != "invalid_input" or "external_task_id" not in str(exc):
                    raise
            found = self._lookup(kind, external)  # an earlier attempt made it: resume unless it failed
            if found is not None and found.status != "failed":
                log.info("%s: resuming task %s made by an earlier attempt", self.name, found.id)
                return found.id
        raise self.refuse("ten earlier tasks for this exact request failed; change the prompt or seed")

    def _create(self, kind: str, body: dict[str, Any], external: str) -> str:
        for _ in range(self.max_retries + 1):
            try:
                response = self.send("POST", f"/v1/videos/{kind}", create=True, json=body)
                return f"{kind}/{self.created_id(response, self._data(response, create=True).get('task_id'))}"
            except ProviderError as exc:
                if exc.kind != "unknown_outcome":
                    raise
            found = self._lookup(kind, external)
            if found is not None:
                return found.id
            log.warning("%s: the create's connection broke before Kling saw it; creating again", self.name)
        raise ProviderError(self.name, "unknown_outcome", "every create's connection broke; check the network")

    def _lookup(self, kind: str, external: str) -> TaskState | None:
        try:
            return self.poll(f"{kind}/{external}")
        except ProviderError as exc:
            if getattr(exc, "code", None) != 1203:  # 1203: no such task
                raise
        return None

    def poll(self, task_id: str) -> TaskState:
        kind, _, ident = task_id.partition("/")
        data = self._data(self.send("GET", f"/v1/videos/{kind}/{ident}"))
        status = STATUSES.get(data.get("task_status", ""), "running")
        videos = (data.get("task_result") or {}).get("videos") or []
        message = data.get("task_status_msg") or None
        deduction = data.get("final_unit_deduction")
        return TaskState(
            id=f"{kind}/{data.get('task_id', ident)}", status=status,
            output_url=videos[0].get("url") if videos else None,
            cost=float(deduction) if deduction not in (None, "") and status == "succeeded" else None,
            error_kind=failure_kind(message or "") if status == "failed" else None, error=message)

    def _data(self, response: httpx.Response, create: bool = False) -> dict[str, Any]:
        """The answer's `data`; a create's answer without one is left to `created_id`."""
        code, _ = self._code(response)
        data = response.json().get("data") if code == 0 else None
        if not isinstance(data, dict):
            if code:
                raise self.error_for(response)
            if create:
                return {}
            raise ProviderError(self.name, "transient", f"Kling answered HTTP {response.status_code} without "
                                                        "a task; try again")
        return data

    def _code(self, response: httpx.Response) -> tuple[int | None, str]:
        error = self.error_body(response, fallback="no message")
        code = error.code if isinstance(error.code, int) and not isinstance(error.code, bool) else None
        return code, error.message

    def secrets(self) -> list[str]:
        keys = [k.get_secret_value() for k in (self.access_key, self.secret_key) if k is not None]
        return keys + ([self._token[0]] if self._token else [])

    def retryable(self, response: httpx.Response) -> bool:
        return self._code(response)[0] not in NOT_RETRYABLE and super().retryable(response)

    def error_for(self, response: httpx.Response) -> ProviderError:
        code, message = self._code(response)
        status = response.status_code
        kind = CODE_KINDS.get(code) or ("auth" if status == 401 else "rate_limited" if status == 429 else
                                        "transient" if status >= 500 or (code or 0) >= 5000 else "invalid_input")
        error = ProviderError(self.name, kind, f"HTTP {status} code {code}: {message}; {HINTS[kind]}")
        error.code = code  # type: ignore[attr-defined]  # lookups tell 'no such task' (1203) apart
        return error
