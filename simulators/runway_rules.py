"""What the Runway simulator accepts on `/v1/text_to_video` and `/v1/image_to_video`, per model.

The rules are the runwayml SDK's own types (blocks/runway_models.py, generated from them): which
fields a model takes, which are required, their types, enums, ranges and prompt limits. The API is
strict, so any other field is refused. Where the SDK leaves a duration open (a bare `int`), the
catalogue's durations for the model stand in (each with its source there): the simulator then
refuses what takeflow believes the API refuses, and the catalogue says how sure that is.

Images (`promptImage`, and `uri`s in `references`): a data URI of at most 5 MB, a runway:// upload,
or an HTTPS URL the API can fetch. The simulator cannot reach the internet, so it "fetches" from
`web` (URL → bytes, what tests publish) and refuses any other URL as the API refuses one it cannot
fetch; http://, IP hosts and URLs over 2048 characters are refused as the troubleshooting page says
(✅ https://docs.dev.runwayml.com/errors/troubleshooting; the exact wording of the fetch error ❓).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Callable

import cv2
import numpy as np

from blocks.catalogue import load_catalogue
from blocks.runway_models import MODELS

MAX_IMAGE_BYTES = 5 * 2**20
TYPES = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool), "str": lambda v: isinstance(v, str),
         "bool": lambda v: isinstance(v, bool), "float": lambda v: isinstance(v, (int, float)) and not
         isinstance(v, bool), "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
         "any": lambda v: True}


class Invalid(Exception):
    """A request the API answers with 400 and this message."""


def fields_of(model: Any, endpoint: str) -> dict[str, dict[str, Any]]:
    fields = MODELS.get(model, {}).get(endpoint) if isinstance(model, str) else None
    if fields is None:
        known = sorted(m for m, eps in MODELS.items() if endpoint in eps)
        raise Invalid(f"model: expected one of {', '.join(known)}.")
    return fields


def check_value(name: str, rule: dict[str, Any], value: Any) -> None:
    """One field against its SDK rule: type or enum, range, length, and nested item fields."""
    enum, types = rule.get("enum"), rule.get("types", [])
    in_enum = enum is not None and not isinstance(value, bool) and value in enum
    typed = any(TYPES[t](value) for t in types)
    if not in_enum and not typed:
        expected = (f"one of {', '.join(map(str, enum))}" if enum else "") + (" or " if enum and types else "") \
            + (" or ".join(types) if types else "")
        raise Invalid(f"{name}: expected {expected}.")
    if in_enum:
        return
    if "range" in rule and isinstance(value, int) and not rule["range"][0] <= value <= rule["range"][1]:
        raise Invalid(f"{name}: must be an integer from {rule['range'][0]} to {rule['range'][1]}.")
    if isinstance(value, str) and name == "promptText" and not value.strip():
        raise Invalid("promptText: must be a non-empty string.")
    if isinstance(value, str) and "max_length" in rule and len(value.encode("utf-16-le")) // 2 > rule["max_length"]:
        raise Invalid(f"{name}: must be at most {rule['max_length']} characters.")
    if isinstance(value, list) and "items" in rule:
        for index, item in enumerate(value):
            check_object(f"{name}[{index}]", rule["items"], item)
    if isinstance(value, dict) and "fields" in rule:
        check_object(name, rule["fields"], value)


def check_object(name: str, fields: dict[str, dict[str, Any]], value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"{name}: expected an object.")
    unknown = set(value) - set(fields)
    if unknown:
        raise Invalid(f"{name}: Unrecognized key(s) in object: {', '.join(sorted(unknown))}.")
    for key, rule in fields.items():
        if key in value:
            check_value(f"{name}.{key}", rule, value[key])
        elif rule.get("required"):
            raise Invalid(f"{name}.{key}: Required.")


def check_body(body: Any, endpoint: str) -> dict[str, dict[str, Any]]:
    """The model's field rules, once `body` passes them; raises Invalid with the API's message."""
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object.")
    fields = fields_of(body.get("model"), endpoint)
    unknown = set(body) - set(fields) - {"model"}
    if unknown:
        raise Invalid(f"Unrecognized key(s) in object: {', '.join(sorted(unknown))}.")
    for name, rule in fields.items():
        if name in body:
            check_value(name, rule, body[name])
        elif rule.get("required"):
            raise Invalid(f"{name}: Required.")
    duration = body.get("duration")
    if isinstance(duration, int) and "range" not in fields["duration"] and "enum" not in fields["duration"]:
        allowed = catalogue_durations(body["model"])
        if allowed and duration not in allowed:
            raise Invalid(f"duration: expected an integer in {', '.join(map(str, allowed))}.")
    multi = (body.get("providerSettings") or {}).get("multiPrompt")
    if multi:  # ✅ SDK docstring: the segments' total must be between 3 and 15 seconds
        total = sum(segment.get("duration", 0) for segment in multi)
        if not 3 <= total <= 15:
            raise Invalid(f"providerSettings.multiPrompt: the segments total {total} s; it must be 3 to 15 s.")
    return fields


def catalogue_durations(model: str) -> list[int]:
    try:
        return [int(d) for d in load_catalogue().model("runway", model).durations]
    except KeyError:
        return []


def image_bytes(field: str, value: Any, resolve: Callable[[str, str], bytes], web: dict[str, bytes]) -> bytes:
    """The bytes of one image reference: a data URI, a runway:// upload or a fetchable HTTPS URL."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"{field}: Required: an HTTPS URL, a runway:// upload URI or a data URI.")
    if value.startswith("runway://"):
        try:
            raw = resolve(field, value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    elif value.startswith("data:"):
        head, _, data = value.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64")):
            raise Invalid(f"{field}: a data URI must be a base64-encoded image.")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{field}: the data URI is not valid base64.") from None
        if len(raw) > MAX_IMAGE_BYTES:
            raise Invalid(f"{field}: data URIs may be at most 5MB; use an upload instead.")
    else:
        raw = fetch(field, value, web)
    if cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        raise Invalid(f"{field}: the image could not be decoded.")
    return raw


def fetch(field: str, url: str, web: dict[str, bytes]) -> bytes:
    if not url.startswith("https://"):
        raise Invalid(f"{field}: Only HTTPS URLs are allowed.")
    if len(url) > 2048:
        raise Invalid(f"{field}: URLs may be at most 2048 characters.")
    host = url.split("/")[2].rsplit(":", 1)[0].strip("[]")
    if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", host):
        raise Invalid(f"{field}: URLs must be hosted on a domain, not an IP address.")
    if url not in web:
        raise Invalid(f"{field}: the URL could not be fetched ({url.split('?')[0]}). It must answer HEAD "
                      "and GET over HTTPS with Content-Type and Content-Length, without redirects.")
    return web[url]


def prompt_images(value: Any) -> list[tuple[str | None, Any]]:
    """[(position, uri)] of a promptImage: a string is the first frame."""
    if isinstance(value, list):
        return [(item.get("position") if isinstance(item, dict) else None,
                 item.get("uri") if isinstance(item, dict) else item) for item in value]
    return [("first", value)]


def output_size(model: str, body: dict[str, Any], first: bytes | None) -> tuple[int, int]:
    """What the model renders: the pixel ratio sent, else the catalogue's size for the aspect ratio
    or tier sent (or the first frame's shape)."""
    ratio = body.get("ratio")
    if isinstance(ratio, str) and re.fullmatch(r"\d+:\d+", ratio) and int(ratio.split(":")[0]) > 100:
        width, height = ratio.split(":")
        return int(width), int(height)
    try:
        entry = load_catalogue().model("runway", model)
    except KeyError:
        return 1280, 720
    tier = ratio.removeprefix("auto_") if isinstance(ratio, str) and ratio.startswith("auto_") else None
    resolution = tier or body.get("resolution", "").lower() or entry.default_resolution
    res = entry.resolutions.get(resolution) or entry.resolutions[entry.default_resolution]
    if isinstance(ratio, str) and ratio in res.sizes:
        aspect = ratio
    elif first is not None:
        height, width = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
        aspect = min(res.sizes, key=lambda a: abs(math.log(int(a.split(":")[0]) / int(a.split(":")[1])
                                                           / (width / height))))
    else:
        aspect = "16:9" if "16:9" in res.sizes else next(iter(res.sizes))
    width, height = res.sizes[aspect].split("x")
    return int(width), int(height)
