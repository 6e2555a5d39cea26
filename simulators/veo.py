"""A contract simulator of Google Veo on the Gemini Developer API (providers.md §3.1).

- `POST /v1beta/models/{model}:predictLongRunning` {instances:[{prompt, image?}], parameters}
  → `{"name": "models/{model}/operations/{id}"}`; `GET /v1beta/{name}` → `{name, done:false}`,
  then `{name, done:true, response:{generateVideoResponse:{generatedSamples:[{video:{uri}}]}}}`,
  or `done:true` with `error` (google.rpc.Status), or with `raiMediaFilteredCount` and no samples
  (a video the safety filters blocked). There is no progress and no cancel.
- The video URI is the real API's `https://generativelanguage.googleapis.com/v1beta/files/{id}:download
  ?alt=media` (what google-genai's `files.download` parses); the simulator serves that path on
  its own host, needs the API key and redirects to a signed, expiring storage URL.
- `lastFrame` (Veo 3.1 and 3.1 Fast, with a first frame) and `referenceImages` (Veo 3.1: 1-3
  `asset` images, 8 s only) are checked like `image`; other models refuse them. Veo 3.1 Lite
  makes 720p/1080p at any of its lengths.
- Errors use Google's envelope {"error":{"code","message","status","details"}}: a wrong key is
  400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID, no key 403 PERMISSION_DENIED, rate limits
  429 RESOURCE_EXHAUSTED with the wait only in RetryInfo.retryDelay (Gemini sends no
  Retry-After header; dcdpr/jp PR #1061), billing off 403 ErrorInfo BILLING_DISABLED.
- Parameter values follow the Gemini "Veo API parameters" table: durationSeconds as an int (the
  SDK) or a string (the docs), 1080p/4k only at 8 s, Veo 2 takes no `resolution`. `seed` is
  accepted and ignored (the docs and the SDK disagree about it); unknown parameters are refused.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import cv2
import numpy as np

from simulators.base import ProviderSimulator, Request, Response, SimTask, collect_routes, route

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
VEO3 = {"durations": {4, 6, 8}, "resolutions": ("720p", "1080p", "4k"), "samples": 1, "long_only": True,
        "people_t2v": {"allow_all"}, "people_i2v": {"allow_adult"}, "frames": ()}
VEO2 = {"durations": {5, 6, 7, 8}, "resolutions": None, "samples": 2, "long_only": True,
        "people_t2v": {"allow_all", "allow_adult", "dont_allow"}, "people_i2v": {"allow_adult", "dont_allow"},
        "frames": ()}
# ◐ Veo 3.1 takes a last frame (interpolation) and up to 3 "asset" reference images; 3.1 Fast the last
# frame only; 3.1 Lite neither, and 720p/1080p at any length (Gemini video docs copy; civitai and
# krea.ai Veo 3.1 Lite pages)
VEO31 = {**VEO3, "frames": ("lastFrame", "referenceImages")}
VEO31_FAST = {**VEO3, "frames": ("lastFrame",)}
VEO31_LITE = {**VEO3, "resolutions": ("720p", "1080p"), "long_only": False}
MODELS = {"veo-3.1-generate-preview": VEO31, "veo-3.1-fast-generate-preview": VEO31_FAST,
          "veo-3.1-lite-generate-001": VEO31_LITE, "veo-3.0-generate-001": VEO3,
          "veo-3.0-fast-generate-001": VEO3, "veo-2.0-generate-001": VEO2}
API_HOST = "https://generativelanguage.googleapis.com"  # where the real API's file URIs point
PARAMETERS = {"aspectRatio", "resolution", "durationSeconds", "personGeneration", "sampleCount",
              "negativePrompt", "enhancePrompt", "seed"}
STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
RPC = {"INVALID_ARGUMENT": 3, "FAILED_PRECONDITION": 9, "INTERNAL": 13}
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
SAFETY = ("The prompt could not be submitted. This prompt contains sensitive words that violate Google's "
          "Responsible AI practices. Try rephrasing the prompt. Support codes: 29310472")


class Invalid(Exception):
    """A request the API refuses with 400 INVALID_ARGUMENT."""


def _id() -> str:
    return uuid.uuid4().hex[:12]  # Gemini operation and file ids are lower-case alphanumerics


@collect_routes
class VeoSimulator(ProviderSimulator):
    """Veo through `generativelanguage.googleapis.com`, on loopback.

    `storage_host` serves the signed redirect target under another host name (e.g. "localhost")
    so tests can check the API key is not sent there; `inline_video` answers with the video
    inline (`encodedVideo`), which the SDK's `_Video_from_mldev` also accepts.
    """

    name = "veo"

    def __init__(self, *, storage_host: str | None = None, inline_video: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.storage_host, self.inline_video = storage_host, inline_video
        self.bodies: list[dict] = []  # every create body, for contract checks in tests
        self.files: dict[str, str] = {}  # file id -> operation id
        self.keys_at_storage = 0  # storage downloads that carried the API key (there should be none)

    # ---- provider's spelling of auth and errors ------------------------------------------------

    def default_key(self) -> str:
        return "AIza" + uuid.uuid4().hex

    def authorised(self, request: Request) -> bool:
        key = request.headers.get("x-goog-api-key") or (request.query.get("key") or [None])[0]
        return key == self.api_key

    def auth_error(self, request: Request) -> Response:
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return self._error(403, "Method doesn't allow unregistered callers (callers without established "
                                    "identity). Please use API Key or other form of API consumer identity "
                                    "to call this API.")
        return self._error(400, "API key not valid. Please pass a valid API key.",
                           details=[self._info("API_KEY_INVALID")])

    def error(self, status: int, kind: str, message: str, retry_after: float | None = None) -> Response:
        if kind == "rate_limit":
            details: list[dict] = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/predict_long_running_requests",
                "quotaId": "PredictLongRunningRequestsPerMinutePerProjectPerModel"}]}]
            if retry_after is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": f"{retry_after:g}s"})
            return self._error(429, "You exceeded your current quota, please check your plan and billing "
                                    "details.", details=details)
        if kind in ("moderation", "moderation_output"):
            return self._error(400, SAFETY)
        if kind == "insufficient_credits":
            return self._error(403, "This API method requires billing to be enabled. Enable billing for "
                                    "the project and retry.", details=[self._info("BILLING_DISABLED")])
        if kind in ("internal", "bad_output"):
            return self._error(500, "Internal error encountered.")
        if kind == "invalid_input":
            return self._error(400, message)
        return self._error(status, message)

    def _error(self, status: int, message: str, details: list[dict] | None = None) -> Response:
        body: dict[str, Any] = {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}
        if details:
            body["details"] = details
        return Response(status, {"error": body})

    @staticmethod
    def _info(reason: str) -> dict:
        return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}}

    # ---- routes ----------------------------------------------------------------------------------

    @route("POST", r"/v1beta/models/([a-z0-9.-]+):predictLongRunning", "create")
    def create(self, request: Request, model: str) -> Response:
        spec = MODELS.get(model)
        if spec is None:
            return self._error(404, f"models/{model} is not found for API version v1beta, or is not supported "
                                    "for predictLongRunning. Call ListModels to see the list of available "
                                    "models and their supported methods.")
        try:
            body = request.json()
            prompt, image, params = self._validate(spec, body)
        except ValueError:
            return self._error(400, "Invalid JSON payload received.")
        except Invalid as exc:
            return self._error(400, str(exc))
        with self.lock:
            self.bodies.append(body)
        resolution = params.get("resolution") or "720p"
        width, height = SIZES[resolution]
        size = (width, height) if params.get("aspectRatio", "16:9") == "16:9" else (height, width)
        task = self.new_task(model, params, size=size, duration=float(params["durationSeconds"]), fps=24,
                             prompt=prompt, image=image, task_id=_id())
        task.extra["samples"] = int(params.get("sampleCount", 1))
        return Response(200, {"name": f"models/{model}/operations/{task.id}"})

    def _validate(self, spec: dict, body: Any) -> tuple[str, bytes | None, dict]:
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
            raise Invalid("instances must hold exactly one instance.")
        instance, params = instances[0], dict(body.get("parameters") or {})
        prompt, image = instance.get("prompt"), None
        if unknown := sorted(set(instance) - {"prompt", "image", "lastFrame", "referenceImages", "video"}):
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'instances[0]': "
                          "Cannot find field.")
        if "image" in instance:
            image = self._image(instance["image"])
        frames = self._frames(spec, instance, image)
        if not image and not (isinstance(prompt, str) and prompt.strip()):
            raise Invalid("A prompt is required for text-to-video generation.")
        if not isinstance(params, dict) or (unknown := sorted(set(params) - PARAMETERS)):
            raise Invalid(f"`{unknown[0] if unknown else 'parameters'}` isn't supported by this model.")
        if params.setdefault("aspectRatio", "16:9") not in ("16:9", "9:16"):
            raise Invalid(f"Unsupported aspect ratio: {params['aspectRatio']}. Supported: 16:9, 9:16.")
        seconds = params.get("durationSeconds", 8 if spec is VEO3 else 5)
        if isinstance(seconds, str) and seconds.isdigit():  # the docs write strings, the SDK ints
            seconds = int(seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in spec["durations"]:
            allowed = ", ".join(str(s) for s in sorted(spec["durations"]))
            raise Invalid(f"The requested duration {params.get('durationSeconds')!r} is not supported; "
                          f"supported durations are {allowed} seconds.")
        params["durationSeconds"] = seconds
        if "resolution" in params:
            if spec["resolutions"] is None:
                raise Invalid("`resolution` isn't supported by this model.")
            if params["resolution"] not in spec["resolutions"]:
                raise Invalid(f"Unsupported resolution: {params['resolution']}.")
            if params["resolution"] != "720p" and seconds != 8 and spec["long_only"]:
                raise Invalid(f"{params['resolution']} videos must be 8 seconds long.")
        if "referenceImages" in frames and seconds != 8:
            raise Invalid("Videos with reference images must be 8 seconds long.")
        people = spec["people_i2v"] if image or frames else spec["people_t2v"]
        if "personGeneration" in params and params["personGeneration"] not in people:
            raise Invalid(f"personGeneration {params['personGeneration']!r} is not supported for this use case; "
                          f"use one of: {', '.join(sorted(people))}.")
        samples = params.get("sampleCount", 1)
        if not isinstance(samples, int) or not 1 <= samples <= spec["samples"]:
            raise Invalid(f"sampleCount must be between 1 and {spec['samples']}.")
        for name, kind in (("negativePrompt", str), ("enhancePrompt", bool), ("seed", int)):
            if name in params and not isinstance(params[name], kind):
                raise Invalid(f"Invalid value for `{name}`.")
        return prompt or "", image, params

    def _frames(self, spec: dict, instance: dict, image: bytes | None) -> set[str]:
        """Check `lastFrame` (needs a first frame) and `referenceImages` (1-3 {image, referenceType
        "asset"}) against what the model takes; return which of them the request uses."""
        used = {name for name in ("lastFrame", "referenceImages") if name in instance}
        for name in used - set(spec["frames"]):
            raise Invalid(f"`{name}` isn't supported by this model.")
        if "lastFrame" in used:
            if image is None:
                raise Invalid("`lastFrame` needs `image`: interpolation goes from a first to a last frame.")
            self._image(instance["lastFrame"], "lastFrame")
        if "referenceImages" in used:
            refs = instance["referenceImages"]
            if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
                raise Invalid("`referenceImages` takes 1 to 3 images.")
            for index, ref in enumerate(refs):
                if not isinstance(ref, dict) or ref.get("referenceType", "asset") != "asset":
                    raise Invalid(f"referenceImages[{index}].referenceType must be \"asset\" on the Gemini API.")
                self._image(ref.get("image"), f"referenceImages[{index}].image")
        return used

    @staticmethod
    def _image(image: Any, field: str = "image") -> bytes:
        if not isinstance(image, dict):
            raise Invalid(f"{field} must be an object.")
        if "gcsUri" in image:
            raise Invalid(f"{field}: gcsUri isn't supported in the Gemini API; send bytesBase64Encoded.")
        if image.get("mimeType") not in ("image/png", "image/jpeg", "image/webp"):
            raise Invalid(f"{field}.mimeType must be image/png, image/jpeg or image/webp.")
        try:
            data = base64.b64decode(image.get("bytesBase64Encoded") or "", validate=True)
        except (binascii.Error, TypeError):
            raise Invalid(f"{field}.bytesBase64Encoded is not valid base64.") from None
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise Invalid("Unable to process input image. Please retry or report in "
                          "https://developers.generativeai.google/guide/troubleshooting")
        return data

    @route("GET", r"/v1beta/models/([a-z0-9.-]+)/operations/([a-z0-9]+)", "poll")
    def poll(self, request: Request, model: str, op: str) -> Response:
        task = self.tasks.get(op)
        if task is None or task.model != model:
            return self._error(404, f"Operation models/{model}/operations/{op} not found.")
        return Response(200, self.operation(task))

    def operation(self, task: SimTask) -> dict:
        name = f"models/{task.model}/operations/{task.id}"
        state, _ = self.status(task)
        if state not in ("succeeded", "failed"):
            return {"name": name, "done": False}
        done: dict[str, Any] = {"name": name, "done": True}
        if state == "failed" and task.failure in ("invalid_input", "internal", "insufficient_credits"):
            status, message = {
                "invalid_input": ("INVALID_ARGUMENT", "Unable to process input image."),
                "internal": ("INTERNAL", "Video generation failed due to an internal error."),
                "insufficient_credits": ("FAILED_PRECONDITION", "Billing is not enabled for this project."),
            }[task.failure]
            return {**done, "error": {"code": RPC[status], "message": message}}
        result: dict[str, Any] = {}
        if state == "failed" and task.failure in ("moderation", "moderation_output"):
            result = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [
                "Your video couldn't be generated because it may violate our usage guidelines."]}
        elif state == "succeeded":
            result = {"generatedSamples": [{"video": self._video(task)}] * task.extra.get("samples", 1)}
        # failure "bad_output": done, with neither samples nor an error nor a filter count
        return {**done, "response": {"@type": RESPONSE_TYPE, "generateVideoResponse": result}}

    def _video(self, task: SimTask) -> dict:
        if self.inline_video:
            return {"encodedVideo": base64.b64encode(task.video.result().read_bytes()).decode(),
                    "encoding": "video/mp4"}
        with self.lock:
            if "file" not in task.extra:
                task.extra["file"] = _id()
                self.files[task.extra["file"]] = task.id
        # the real API's URI, which google-genai's files.download parses for the file id and then
        # fetches from its own base URL (here, the simulator)
        return {"uri": f"{API_HOST}/v1beta/files/{task.extra['file']}:download?alt=media"}

    @route("GET", r"/v1beta/files/([a-z0-9]+):download", "media")
    def file_download(self, request: Request, file_id: str) -> Response:
        if request.query.get("alt") != ["media"]:
            return self._error(400, "Only alt=media downloads are supported for generated videos.")
        task = self.tasks.get(self.files.get(file_id, ""))
        if task is None:
            return self._error(404, f"File {file_id} not found.")
        url = self.output_url(task)
        if self.storage_host:
            url = url.replace("//127.0.0.1:", f"//{self.storage_host}:", 1)
        return Response(302, None, {"Location": url})

    def serve_file(self, request: Request, task_id: str) -> Response:
        if request.headers.get("x-goog-api-key"):
            with self.lock:
                self.keys_at_storage += 1
        return super().serve_file(request, task_id)
