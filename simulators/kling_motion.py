"""The checks of Kling's `POST /v1/videos/motion-control`, as the Kling simulator applies them.

Contract (the sources are in the catalogue's kling-*-motion-control entries, ◐ transcriptions):
{model_name, prompt ≤ 2500, image_url (raw base64 here, or a URL), video_url (a URL Kling
fetches: .mp4/.mov, at most 100 MB, at least 3 s), character_orientation image|video (required),
mode std|pro (required), keep_original_sound yes|no (default yes), callback_url,
external_task_id, watermark_info}. The clip lasts as long as the reference: 3-30 s with
orientation video, 3-10 s with image; the reference is 340-3850 px a side. A field the endpoint
does not have (`duration`, `aspect_ratio`, `sound`) is refused rather than ignored, so an adapter
that sends one finds out here.

The simulator fetches `video_url` for real, but only from loopback hosts (tests reach nothing
else) or from its `web` table; any other URL "cannot be fetched", as an unreachable one would.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np

from blocks.catalogue import load_catalogue
from blocks.media import MediaError, probe

FIELDS = {"model_name", "prompt", "image_url", "video_url", "keep_original_sound", "character_orientation",
          "mode", "callback_url", "external_task_id", "watermark_info"}
MODELS = ("kling-v2-6", "kling-v3")
SHORT_SIDE = {"std": 720, "pro": 1080}
RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}
MAX_VIDEO_BYTES, MAX_IMAGE_BYTES = 100 * 2**20, 10 * 2**20
LONGEST = {"video": 30.0, "image": 10.0}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Invalid(Exception):
    """A 400/1201 answer with this message."""


@dataclass(frozen=True)
class MotionCreate:
    model: str          # the catalogue's name, e.g. kling-v3-motion-control
    image: bytes
    video: Path         # the fetched reference, for the render to follow
    seconds: float
    size: tuple[int, int]
    units: float


def check_motion_control(body: Any, web: dict[str, bytes], folder: Path) -> MotionCreate:
    """The create Kling would make from `body`, or Invalid with Kling's reason."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise Invalid(f"{', '.join(unknown)} is not a parameter of motion-control")
    model = body.get("model_name", "kling-v2-6")
    if model not in MODELS:
        raise Invalid(f"model_name {model!r} is not supported by motion-control")
    mode, orientation = body.get("mode"), body.get("character_orientation")
    if mode not in SHORT_SIDE:
        raise Invalid("mode is required: std or pro")
    if orientation not in LONGEST:
        raise Invalid("character_orientation is required: image or video")
    if body.get("keep_original_sound", "yes") not in ("yes", "no"):
        raise Invalid("keep_original_sound must be yes or no")
    prompt = body.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 2500):
        raise Invalid("prompt must be a string of at most 2500 characters")
    image, (width, height) = _image(body.get("image_url"))
    video = _fetch(body.get("video_url"), web, folder)
    try:
        info = probe(video)
    except MediaError:
        raise Invalid("video_url must be an .mp4/.mov video") from None
    if info.duration < 3:
        raise Invalid(f"video duration must be at least 3s, got {info.duration:.1f}s")
    if info.duration > LONGEST[orientation]:
        raise Invalid(f"video duration must be at most {LONGEST[orientation]:g}s with character_orientation "
                      f"{orientation}, got {info.duration:.1f}s")
    if min(info.width, info.height) < 340 or max(info.width, info.height) > 3850:
        raise Invalid("video resolution must be between 340px and 3850px a side")
    # the output takes the reference video's shape (orientation video) or the image's
    aspect = info.width / info.height if orientation == "video" else width / height
    ratio = min(RATIOS, key=lambda r: abs(np.log(aspect / RATIOS[r])))
    name = f"{model}-motion-control"
    entry = load_catalogue().model("kling", name)
    resolution = f"{SHORT_SIDE[mode]}p"
    units = round(entry.price_per_second(resolution, False) * info.duration, 2)
    return MotionCreate(model=name, image=image, video=video, seconds=info.duration,
                        size=entry.size(ratio, resolution), units=units)


def _image(value: Any) -> tuple[bytes, tuple[int, int]]:
    if not isinstance(value, str) or not value:
        raise Invalid("image_url is required")
    if value.startswith("data:"):
        raise Invalid("image_url must be raw base64 without a data: prefix")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("image_url is neither a URL this simulator fetches nor valid base64") from None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or not data.startswith((b"\x89PNG", b"\xff\xd8\xff")) or len(data) > MAX_IMAGE_BYTES:
        raise Invalid("image_url must be a jpg/jpeg/png of at most 10MB")
    height, width = pixels.shape[:2]
    if min(width, height) < 300 or not 1 / 2.5 <= width / height <= 2.5:
        raise Invalid("image_url must be at least 300px a side with an aspect ratio from 1:2.5 to 2.5:1")
    return data, (width, height)


def _fetch(url: Any, web: dict[str, bytes], folder: Path) -> Path:
    """The reference video at `url`, saved under `folder` by content."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise Invalid("video_url is required and must be a URL")
    data = web.get(url)
    if data is None and urlsplit(url).hostname in LOOPBACK:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, connect=2), follow_redirects=True) as client:
                with client.stream("GET", url) as response:
                    if response.status_code == 200:
                        chunks = bytearray()
                        for chunk in response.iter_bytes():
                            chunks += chunk
                            if len(chunks) > MAX_VIDEO_BYTES:
                                raise Invalid("video_url must be at most 100MB")
                        data = bytes(chunks)
        except httpx.HTTPError:
            data = None
    if data is None:
        raise Invalid(f"video_url could not be fetched ({url.split('?')[0]})")
    if len(data) > MAX_VIDEO_BYTES:
        raise Invalid("video_url must be at most 100MB")
    path = folder / f"motion-{hashlib.sha256(data).hexdigest()[:16]}.mp4"
    path.write_bytes(data)
    return path
