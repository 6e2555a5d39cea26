"""Camera moves for the motion-preview renderer: where the camera is at every moment of the clip
(which move a prompt asks for is read by blocks/camera_vocabulary.py, shared with prompts and scoring).

Positions are in *frame units*: offsets are fractions of the frame's width and height measured
from the centre of the plate (the still image being filmed), and zoom 1 shows exactly one
frame's worth of plate. Conventions follow the camera, not the picture: "pan left" moves the
camera left, so the scene slides right across the frame.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from blocks.camera_vocabulary import CameraMove


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
