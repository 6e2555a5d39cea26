"""Runway's video upscale on the Runway simulator, as the runwayml SDK 5.24.0 describes it.

- `POST /v1/video_upscale` {model: "magnific_video_upscaler_creative", videoUri, creativity,
  flavor, fpsBoost, resolution, sharpen, smartGrain} → {id, estimatedCost}; the task is then
  polled, cancelled and charged through `/v1/tasks/{id}` like any generation. Types and ranges
  are checked as the SDK's params type states them (ints 0-100, flavor vivid|natural, resolution
  720p|1k|2k|4k, default 2k); unknown fields are refused.
- videoUri: a `data:video/...;base64,` URI of at most 16 MB (docs.dev.runwayml.com/assets/inputs)
  or a runway:// upload (simulators/runway_uploads.py), holding a decodable video. The real API
  also fetches HTTPS URLs; the simulator fetches nothing, so it answers those with a 400 that
  says so.
- The output is the input itself scaled up with ffmpeg until its short side is the target
  (1k = 1080 px, 2k = 1440, 4k = 2160: ❓ Runway does not say), aspect kept, sound copied,
  so callers get real media at the larger size. The charge is the catalogue's price per second.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from pathlib import Path
from typing import Any, Callable

import ffmpeg

from blocks.catalogue import load_catalogue
from blocks.media import H264_OUTPUT, MediaError, probe, run_ffmpeg
from simulators.base import Request, Response, route

MODEL = "magnific_video_upscaler_creative"
SHORT_SIDE = {"720p": 720, "1k": 1080, "2k": 1440, "4k": 2160}
MAX_VIDEO_URI = 16 * 2**20
FIELDS = {"model", "videoUri", "creativity", "flavor", "fpsBoost", "resolution", "sharpen", "smartGrain"}


class Refused(Exception):
    """A video_upscale body the API answers with 400 and this message."""


class VideoUpscaleRoutes:
    """Mixed into RunwaySimulator, whose task lifecycle, keys and errors it shares."""

    @route("POST", r"/v1/video_upscale", "create")
    def video_upscale(self, request: Request) -> Response:
        body, refused = self.json_body(request)
        if refused:
            return refused
        try:
            resolution, video = _checked(body, self.resolve_upload)
            source = self.media / f"upscale-in-{uuid.uuid4().hex[:12]}.mp4"
            source.write_bytes(video)
            try:
                info = probe(source)
            except MediaError:
                raise Refused("videoUri: the video could not be decoded.") from None
        except Refused as exc:
            return Response(400, {"error": str(exc)})
        task = self.record_task(MODEL, body)
        task.video = self.renderer.submit(_upscaled, source, self.media / f"upscaled-{task.id}.mp4",
                                          SHORT_SIDE[resolution], bool(body.get("fpsBoost")), info.fps)
        return self.accepted(request, task, _price(resolution, info.duration))


def _checked(body: Any, resolve: Callable[[str, str], bytes]) -> tuple[str, bytes]:
    """(resolution, video bytes) of a valid body, a runway:// upload resolved with `resolve`;
    raises Refused otherwise."""
    if not isinstance(body, dict):
        raise Refused("The request body must be a JSON object.")
    if body.get("model") != MODEL:
        raise Refused(f"model: expected {MODEL}.")
    unknown = set(body) - FIELDS
    if unknown:
        raise Refused(f"Unrecognized key(s) in object: {', '.join(sorted(unknown))}.")
    for name in ("creativity", "sharpen", "smartGrain"):
        value = body.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise Refused(f"{name}: expected an integer from 0 to 100.")
    if body.get("flavor", "vivid") not in ("vivid", "natural"):
        raise Refused("flavor: expected one of vivid, natural.")
    if not isinstance(body.get("fpsBoost", False), bool):
        raise Refused("fpsBoost: expected a boolean.")
    resolution = body.get("resolution", "2k")
    if resolution not in SHORT_SIDE:
        raise Refused(f"resolution: expected one of {', '.join(SHORT_SIDE)}.")
    uri = body.get("videoUri")
    if not isinstance(uri, str) or not uri:
        raise Refused("videoUri: Required: an HTTPS URL, a runway:// upload URI or a data URI.")
    if uri.startswith("runway://"):
        try:
            return resolution, resolve("videoUri", uri)
        except ValueError as exc:
            raise Refused(str(exc)) from None
    if uri.startswith("https://"):
        raise Refused("videoUri: this simulator fetches nothing; send the video as a data URI or upload.")
    head, _, data = uri.partition(",")
    if not (head.startswith("data:video/") and head.endswith(";base64")):
        raise Refused("videoUri: use an HTTPS URL on a domain, a runway:// URI or a base64 data URI.")
    if len(uri) > MAX_VIDEO_URI:
        raise Refused("videoUri: data URIs may be at most 16MB; use an upload instead.")
    try:
        return resolution, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("videoUri: the data URI is not valid base64.") from None


def _price(resolution: str, seconds: float) -> int:
    """Credits at the catalogue's price per output second (0 if the catalogue has no entry)."""
    try:
        entry = load_catalogue().upscaler("runway", MODEL)
    except KeyError:
        return 0
    price = next((t.price for t in entry.resolutions.values() if t.api == resolution), 0.0)
    return round(price * seconds)


def _upscaled(source: Path, dest: Path, short_side: int, fps_boost: bool, fps: float) -> Path:
    info = probe(source)
    scale = short_side / min(info.width, info.height)
    width, height = (2 * round(side * scale / 2) for side in (info.width, info.height))
    streams = ffmpeg.input(str(source))
    video = streams.video.filter("scale", width, height, flags="bicubic")
    if fps_boost:  # frames doubled by repetition: the simulator invents no motion
        video = video.filter("fps", 2 * fps)
    outputs = [video, streams.audio] if info.has_audio else [video]
    run_ffmpeg(ffmpeg.output(*outputs, str(dest), acodec="copy", **{**H264_OUTPUT, "preset": "ultrafast"})
               .global_args("-loglevel", "error").overwrite_output(), "simulator video upscale")
    source.unlink(missing_ok=True)
    return dest
