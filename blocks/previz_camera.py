"""Camera moves for the motion-preview renderer: which move a prompt asks for, and where the
camera is at every moment of the clip.

Positions are in *frame units*: offsets are fractions of the frame's width and height measured
from the centre of the plate (the still image being filmed), and zoom 1 shows exactly one
frame's worth of plate. Conventions follow the camera, not the picture: "pan left" moves the
camera left, so the scene slides right across the frame.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

CameraKind = Literal["push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "tilt_down",
                     "static", "orbit"]


@dataclass(frozen=True)
class CameraMove:
    """The camera move a prompt names; `phrase` holds the words it was read from ("" = none named)."""

    kind: CameraKind
    phrase: str = ""
    leftward: bool = False  # orbit only: the camera circles to its left, so the scene sweeps right


# Verbs in the tenses prompts use ("pan", "pans", "panning", "panned").
_DOLLY, _PUSH = r"doll(?:y|ies|ied|ying)", r"push(?:es|ed|ing)?"
_PULL, _MOVE = r"pull(?:s|ed|ing)?", r"mov(?:e|es|ed|ing)"
_ZOOM, _PAN = r"zoom(?:s|ed|ing)?", r"pan(?:s|ned|ning)?"
_TRUCK, _TRACK = r"truck(?:s|ed|ing)?", r"track(?:s|ed|ing)?"
# Tilts, crane and pedestal moves all raise or lower the view: the preview treats them alike.
_RISE = r"(?:tilt(?:s|ed|ing)?|cran(?:e|es|ed|ing)|pedestal(?:s|ed|ing|led|ling)?|boom(?:s|ed|ing)?)"
_LATERAL = rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK}|crab(?:s|bing)?|lateral(?:ly)?|sideways)\b"
# "push in the door", "pull out a gun", "leaves move in the wind" are the subject acting, not the camera.
_NO_OBJECT = r"(?!\s+(?:the|a|an|his|her|its|their|some)\b)"
_SIDE = r"[\s-]+(?:to\s+(?:the\s+)?)?"


def _across(start: str, end: str) -> str:
    """'... tracks from left to right' or 'from left to right, the camera tracks' within one sentence."""
    span = rf"\b(?:from\s+)?{start}\s+to\s+{end}\b"
    return rf"{_LATERAL}[^.;!?]*?{span}|{span}[^.;!?]*?{_LATERAL}"


_PATTERNS: tuple[tuple[CameraKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern)) for kind, pattern in (
        ("pan_right", _across("left", "right")),
        ("pan_left", _across("right", "left")),
        ("push_in", rf"\b(?:(?:{_DOLLY}|{_ZOOM})[\s-]+in\b|(?:{_PUSH}|{_MOVE})[\s-]+in\b{_NO_OBJECT})"),
        ("pull_out", rf"\b(?:(?:{_DOLLY}|{_ZOOM})[\s-]+(?:out|back)\b"
                     rf"|{_PULL}[\s-]+(?:out|back)\b{_NO_OBJECT})"),
        # The lookahead leaves "pan left to right" to the across-the-frame patterns above.
        ("pan_left", rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK})\b{_SIDE}left\b(?!\s+to\s+right)"),
        ("pan_right", rf"\b(?:{_PAN}|{_TRUCK}|{_TRACK})\b{_SIDE}right\b(?!\s+to\s+left)"),
        ("tilt_up", rf"\b{_RISE}[\s-]+up(?:ward)?s?\b"),
        ("tilt_down", rf"\b{_RISE}[\s-]+down(?:ward)?s?\b"),
        ("static", r"\bstatic\b|\blocked[\s-]?off\b|\bstill\s+camera\b|\btripod\b|\bfixed\s+camera\b"
                   r"|\bcamera\s+(?:is\s+|stays\s+|remains\s+)?still\b"),
        ("orbit", rf"(?:\borbit(?:s|ed|ing)?\b|\barc(?:s|ed|ing)?\b(?!\s+of\b)"
                  rf"|\b(?:circles?|circled|circling)\s+(?:a)?round\b)(?:{_SIDE}(?P<side>left|right)\b)?"),
    ))


def parse_camera(prompt: str) -> CameraMove:
    """Read the camera move from a prompt (case-insensitive); the first move named wins.

    With no camera words the preview gets a gentle slow push-in, as most video models do.
    """
    text = prompt.lower()
    found = [(match.start(), -len(match.group(0)), kind, match)
             for kind, pattern in _PATTERNS for match in pattern.finditer(text)]
    if not found:
        return CameraMove("push_in")
    # Earliest first: prompts name the camera once, and a later move is usually a second beat
    # the preview cannot show. At the same start the longer phrase wins.
    _, _, kind, match = min(found, key=lambda item: item[:2])
    side = match.groupdict().get("side")
    return CameraMove(kind, phrase=" ".join(match.group(0).split()), leftward=side == "left")


def _linear(t: float) -> float:
    return t


def _ease_in_out(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def _ease_out(t: float) -> float:
    return 1.0 - (1.0 - t) ** 2


_EASINGS: tuple[Callable[[float], float], ...] = (_linear, _ease_in_out, _ease_out)

PAN_TRAVEL = 0.20       # share of the frame a pan, tilt or orbit (nearest rows) covers at motion 1
ZOOM_GAIN = 0.35        # a dolly at motion 1 ends 1.35x closer (or starts there, pulling out)
DEFAULT_SHARE = 0.4     # the unnamed push-in uses this share of the motion amount: a gentle drift
ORBIT_FAR_SHARE = 0.25  # the top rows of an orbit move this share of the nearest rows' travel
_EDGE_MARGIN = 0.01     # extra plate, in frames, so interpolation never samples past the edge
_CAMERA_STREAM = zlib.crc32(b"previz camera")  # keeps camera draws apart from the plate's


@dataclass(frozen=True)
class CameraPlan:
    """One take's camera: the move, how far it travels and the seed's easing and framing."""

    move: CameraMove
    travel: float                        # frames covered (pan, tilt, orbit) or zoom gain (dolly)
    easing: Callable[[float], float]
    offset: tuple[float, float]          # start framing, fractions of frame width and height
    zoom: float                          # start scale, >= 1 so a frame never shows past the plate

    @property
    def overscan(self) -> float:
        """How many frames wide the plate must be so that no view ever runs past its edge."""
        lateral = self.travel if self.move.kind in ("pan_left", "pan_right", "orbit") else 0.0
        vertical = self.travel if self.move.kind in ("tilt_up", "tilt_down") else 0.0
        need_x = 1.0 / self.zoom + lateral + 2 * abs(self.offset[0])
        need_y = 1.0 / self.zoom + vertical + 2 * abs(self.offset[1])
        return max(1.0, need_x, need_y) + _EDGE_MARGIN

    def view(self, t: float) -> tuple[float, float, float]:
        """Centre (x, y) in frame units and zoom of the view at time t (0 = first frame, 1 = last)."""
        progress = self.easing(t)
        # Moves are centred on the start framing so the plate is used symmetrically.
        sweep = self.travel * (progress - 0.5)
        x, y = self.offset
        kind = self.move.kind
        if kind == "pan_left":
            return x - sweep, y, self.zoom
        if kind == "pan_right":
            return x + sweep, y, self.zoom
        if kind == "tilt_up":
            return x, y - sweep, self.zoom
        if kind == "tilt_down":
            return x, y + sweep, self.zoom
        if kind == "push_in":
            return x, y, self.zoom * math.exp(math.log1p(self.travel) * progress)
        if kind == "pull_out":
            return x, y, self.zoom * math.exp(math.log1p(self.travel) * (1.0 - progress))
        return x, y, self.zoom

    def plate_to_frame(self, t: float, plate_size: tuple[int, int],
                       frame_size: tuple[int, int]) -> np.ndarray:
        """2x3 affine matrix taking plate pixels to frame pixels at time t (orbit sweep excluded)."""
        (plate_w, plate_h), (width, height) = plate_size, frame_size
        unit_x, unit_y = plate_w / self.overscan, plate_h / self.overscan  # one frame in plate px
        x, y, zoom = self.view(t)
        scale_x, scale_y = zoom * width / unit_x, zoom * height / unit_y
        centre_x, centre_y = plate_w / 2 + x * unit_x, plate_h / 2 + y * unit_y
        # Pixel centres sit at +0.5, so scaling about them keeps the picture from drifting.
        return np.array([[scale_x, 0.0, width / 2 - (centre_x - 0.5) * scale_x - 0.5],
                         [0.0, scale_y, height / 2 - (centre_y - 0.5) * scale_y - 0.5]])

    def orbit_sweep(self, t: float, plate_width: int, frame_height: int) -> np.ndarray:
        """Orbit parallax: how far each frame row's view has moved, in plate pixels.

        Nearer ground at the bottom of the frame travels furthest, the horizon least.
        """
        rows = (np.arange(frame_height, dtype=np.float32) + 0.5) / frame_height
        depth = ORBIT_FAR_SHARE + (1.0 - ORBIT_FAR_SHARE) * rows ** 2
        direction = -1.0 if self.move.leftward else 1.0
        sweep = direction * self.travel * (self.easing(t) - 0.5) * depth
        return (sweep * plate_width / self.overscan).astype(np.float32)


def plan_camera(move: CameraMove, motion_amount: float, seed: int) -> CameraPlan:
    """Size the move by the motion amount (0 = still) and let the seed vary easing, speed
    (about ±20%) and start framing, never the direction."""
    rng = np.random.default_rng((seed, _CAMERA_STREAM))
    easing = _EASINGS[int(rng.integers(len(_EASINGS)))]
    speed = float(rng.uniform(0.8, 1.2))
    offset = (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02)))
    zoom = float(rng.uniform(1.0, 1.04))
    amount = min(max(motion_amount, 0.0), 1.0) * (DEFAULT_SHARE if not move.phrase else 1.0)
    base = {"push_in": ZOOM_GAIN, "pull_out": ZOOM_GAIN, "static": 0.0}.get(move.kind, PAN_TRAVEL)
    return CameraPlan(move, travel=base * amount * speed, easing=easing, offset=offset, zoom=zoom)
