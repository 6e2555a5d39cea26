"""Adherence metrics: does the take move, and look, the way its shot asked?

All of them read the flow the frame stream computes once per sampled pair
(tasks/metrics_temporal.py) and the camera's global motion fitted to it once (`camera_motion`).
Directions follow blocks/camera_vocabulary.py: "pan left" moves the camera left, so the content
slides RIGHT across the frame (positive x); "tilt up" slides it DOWN (positive y, rows grow down).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence
from weakref import WeakKeyDictionary

import cv2
import numpy as np

from blocks.camera_vocabulary import CameraMove
from blocks.media import cover_box
from blocks.providers import MotionRegion
from tasks.metrics_temporal import Frame, Measurement, SampledPair, interior

TOP_SHARE = 0.05                # VBench dynamic_degree: mean of the top 5 % of |flow|
REFERENCE_SHORT_SIDE = 256      # dynamic_degree is in px per frame at this short side (VBench's)
# Motion amount 1 moves the content about a fifth of the frame over the clip: the previz
# renderer's full pan, tilt or orbit, and roughly a 1.35x dolly's corners (blocks/previz_camera.py).
FULL_TRAVEL = 0.2
ZOOM_CORNER_SHARE = 0.5        # a zoom by z moves the frame's corners about (z - 1) / 2 of it
MIN_LEVEL = 1 / 64              # camera levels below it read as it (log2 of 0 is no number)
MIN_CAMERA_TRAVEL = 0.02        # frame shares under which a requested move barely shows
STATIC_TOLERANCE = 0.05         # camera path (frame shares) over which "static" is fully broken
ORBIT_WITHOUT_PARALLAX = 0.5    # a sideways slide with no depth effect is half an orbit
REGION_CORE = 0.7               # regions are sampled on their core: flow blurs across edges
MIN_REGION_PIXELS = 12
STILL_REGION_TOLERANCE = 0.05   # frame shares a region asked to stay put may drift
MOVING_PX_PER_FRAME = 0.3       # own motion above flow noise: this pixel of a brushed region moves
MOVING_SHARE = 0.15             # a region whose moving pixels are fewer than this share did not move
REFERENCE_THUMB_WIDTH = 96
REFERENCE_TEMPLATE_SHARE = 0.7  # the frame's centre 70 % is searched for in the reference...
REFERENCE_ZOOMS = (1.0, 1.1, 1.2, 1.3, 1.4)  # ... at start framings up to a 1.4x dolly
_GRID_STEP = 8                  # px between the flow samples the camera-motion fit uses
# Unit direction of each straight move in (x travel, y travel, log zoom).
_MOVE_AXES = {"pan_left": (1, 0, 0), "pan_right": (-1, 0, 0), "tilt_up": (0, 1, 0),
              "tilt_down": (0, -1, 0), "push_in": (0, 0, 1), "pull_out": (0, 0, -1)}


@dataclass(frozen=True)
class GlobalMotion:
    """Camera motion between two sampled frames: an affine fit of the flow about the frame centre,
    in motion-size pixels (u = tx + du_dx·x + du_dy·y, v = ty + dv_dx·x + dv_dy·y)."""

    tx: float
    ty: float
    du_dx: float
    du_dy: float
    dv_dx: float
    dv_dy: float

    @property
    def zoom(self) -> float:  # > 1 when the content grows (push in)
        return 1.0 + (self.du_dx + self.dv_dy) / 2

    def at(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The camera's flow at centred coordinates x, y."""
        return (self.tx + self.du_dx * x + self.du_dy * y, self.ty + self.dv_dx * x + self.dv_dy * y)


@lru_cache(maxsize=8)
def _fit_grid(height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The flow samples inside the borders (a slice), their centred design matrix [1, x, y] and
    its pseudo-inverse (the least-squares fit to all of them)."""
    rows, columns = interior(height, width)
    grid = (slice(rows.start, rows.stop, _GRID_STEP), slice(columns.start, columns.stop, _GRID_STEP))
    ys, xs = np.mgrid[grid]
    design = np.column_stack([np.ones(xs.size), xs.ravel() - (width - 1) / 2, ys.ravel() - (height - 1) / 2])
    return grid, design, np.linalg.pinv(design)


# Each pair is fitted once, for every metric; an entry goes when its pair does.
_FITTED: WeakKeyDictionary[SampledPair, GlobalMotion] = WeakKeyDictionary()


def camera_motion(pair: SampledPair) -> GlobalMotion:
    """The camera's global motion over a sampled pair (fitted on first use, then shared)."""
    if (motion := _FITTED.get(pair)) is None:
        motion = _FITTED[pair] = _fit_camera(pair.flow)
    return motion


def _fit_camera(flow: np.ndarray) -> GlobalMotion:
    """Least-squares affine fit of the flow, refitted once without the outliers (moving subjects,
    brushed regions, bad flow), so it follows the camera rather than what moves in front of it."""
    grid, design, fit_all = _fit_grid(*flow.shape[:2])
    targets = flow[grid].reshape(-1, 2).astype(np.float64)
    residual = np.hypot(*(targets - design @ (fit_all @ targets)).T)
    keep = residual <= max(0.5, 2.5 * float(np.median(residual)))
    kept = design[keep]
    # The refit solves the 3x3 normal equations: far cheaper than another SVD on this grid.
    (tx, ty), (du_dx, dv_dx), (du_dy, dv_dy) = np.linalg.solve(kept.T @ kept, kept.T @ targets[keep])
    return GlobalMotion(tx, ty, du_dx, du_dy, dv_dx, dv_dy)


def _top_mean(values: np.ndarray) -> float:
    flat = values.ravel()
    count = max(1, int(flat.size * TOP_SHARE))
    return float(np.partition(flat, flat.size - count)[-count:].mean())


class MotionAmount(Measurement):
    """`dynamic_degree`: median over sampled pairs of the mean top-5 % |flow|, in px per frame at a
    256 px short side (informative; VBench calls a pair dynamic above ~2 px per frame at 24 fps).

    `motion_amount_match` (with a requested amount, which the storyboard defines as CAMERA motion):
    the camera's level is the length of its path over the clip (the global motion fitted to the
    flow, `camera_motion`: its slide in shares of the frame plus half its log zoom, which is how
    far a zoom moves the corners) divided by FULL_TRAVEL. The match is
    1 / (1 + |log2(level / requested)| / 2): 1 on the request, 2/3 at twice or half of it, 1/2 at
    four times, and never flat, so two takes that both overshoot still differ (a capped level read
    0.5 on most real clips). Asked for no motion, or when the shot allows a still take, it is
    1 - level (capped at 0), a still take matching best.
    """

    def __init__(self, requested: float | None, still_allowed: bool, frame_count: int) -> None:
        self._requested, self._still_allowed = requested, still_allowed
        self._frame_steps = max(1, frame_count - 1)
        self._degrees = array("d")  # one per sampled pair; takes over 10 minutes are refused
        self._camera_path = 0.0     # frame shares, summed over pairs
        self._pair_frames = 0       # frames the pairs span

    def update(self, frame: Frame) -> None:
        if frame.pair is None:
            return
        pair = frame.pair
        height, width = pair.start.shape
        flow = pair.flow[::3, ::3]  # every third pixel: the same statistics at a ninth of the cost
        pixels = np.hypot(flow[..., 0], flow[..., 1])
        self._degrees.append(_top_mean(pixels) * REFERENCE_SHORT_SIDE / min(height, width) / pair.step)
        if self._requested is not None:
            camera = camera_motion(pair)
            self._camera_path += (math.hypot(camera.tx / width, camera.ty / height)
                                  + ZOOM_CORNER_SHARE * abs(math.log(max(camera.zoom, 1e-3))))
            self._pair_frames += pair.step

    def result(self) -> dict[str, float]:
        if not self._degrees:
            return {}
        values = {"dynamic_degree": float(np.median(self._degrees))}
        if self._requested is not None and self._pair_frames:
            level = self._camera_path * self._frame_steps / self._pair_frames / FULL_TRAVEL
            still = max(0.0, 1 - level)
            if self._requested <= 0:
                match = still
            else:
                match = 1 / (1 + abs(math.log2(max(level, MIN_LEVEL) / self._requested)) / 2)
            values["motion_amount_match"] = max(match, still) if self._still_allowed else match
        return values


class CameraAdherence(Measurement):
    """How well the camera's global motion, accumulated over the clip, follows the instruction.

    The per-pair fits add up to x and y travel (shares of the frame width and height), log zoom,
    the path length (sum of per-pair move sizes) and the orbit parallax (how much further the
    bottom rows travel than the top rows, in frame widths). Straight moves score the cosine
    between that (x, y, log zoom) travel and the move's direction, times a ramp up to
    MIN_CAMERA_TRAVEL, so the wrong direction scores 0. "Static" scores 1 - path / tolerance;
    "orbit" scores a sideways move (the named side, if any), halved without parallax.
    """

    def __init__(self, move: CameraMove) -> None:
        self._move = move
        self._travel = np.zeros(3)  # x share, y share, log zoom
        self._path = 0.0
        self._parallax = 0.0
        self._pairs = 0

    def update(self, frame: Frame) -> None:
        if frame.pair is None:
            return
        height, width = frame.pair.start.shape
        camera = camera_motion(frame.pair)
        step = np.array([camera.tx / width, camera.ty / height, math.log(max(camera.zoom, 1e-3))])
        self._travel += step
        self._path += float(np.linalg.norm(step))
        self._parallax += camera.du_dy * height / width
        self._pairs += 1

    def result(self) -> dict[str, float]:
        if not self._pairs:
            return {}
        kind = self._move.kind
        if kind == "static":
            return {"camera_adherence": max(0.0, 1 - self._path / STATIC_TOLERANCE)}
        if kind == "orbit":
            return {"camera_adherence": self._orbit_score()}
        return {"camera_adherence": self._along(np.array(_MOVE_AXES[kind], float))}

    def _along(self, axis: np.ndarray) -> float:
        along = float(self._travel @ axis)
        size = float(np.linalg.norm(self._travel))
        if along <= 0 or size == 0:
            return 0.0
        return along / size * min(1.0, along / MIN_CAMERA_TRAVEL)

    def _orbit_score(self) -> float:
        words = self._move.phrase.split()
        # An orbit to the camera's left sweeps the scene right; an unnamed side may go either way.
        side = 1.0 if "left" in words else -1.0 if "right" in words else math.copysign(1.0, self._travel[0])
        score = self._along(np.array([side, 0.0, 0.0]))
        near_rows_faster = self._parallax * side > 0
        return score if near_rows_faster else score * ORBIT_WITHOUT_PARALLAX


def _pixels_inside(polygon: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the frame pixels inside a polygon (px), drawn only in its bounding box."""
    low = np.clip(np.floor(polygon.min(axis=0)).astype(int), 0, (width, height))
    high = np.clip(np.ceil(polygon.max(axis=0)).astype(int) + 1, 0, (width, height))
    if (high <= low).any():
        return np.empty(0, int), np.empty(0, int)
    mask = np.zeros((high[1] - low[1], high[0] - low[0]), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon - low).astype(np.int32)], 1)
    ys, xs = np.nonzero(mask)
    return ys + low[1], xs + low[0]


class BrushAdherence(Measurement):
    """Motion-brush regions: does each move along its vector, apart from the camera?

    Each region is looked for where it should be: its drawn polygon, moved along its vector in
    step with the clip and carried by the camera's global motion. Per sampled pair its own motion
    is the median flow over the core of that polygon minus the camera's motion there; a region
    that does not go where it was asked leaves ground that does not move under the polygon. The
    clip total is compared with the vector: max(0, cosine) x min(ratio, 1 / ratio) of the lengths
    (a region asked to stay put scores by how little it drifts), averaged over the regions.
    Wrong way round scores 0.
    """

    def __init__(self, regions: Sequence[MotionRegion], frame_count: int) -> None:
        self._regions = regions
        self._frame_steps = max(1, frame_count - 1)
        self._carried = np.zeros((len(regions), 2))  # camera motion at each region so far, px
        self._own = np.zeros((len(regions), 2))      # its own motion so far, camera removed
        self._steps = np.zeros(len(regions))         # frames over which it was measured
        self._size = (1, 1)

    def update(self, frame: Frame) -> None:
        if frame.pair is None:
            return
        pair = frame.pair
        height, width = pair.start.shape
        self._size = (width, height)
        progress = (frame.index - pair.step) / self._frame_steps  # of the pair's first frame
        for index, region in enumerate(self._regions):
            points = (np.array(region.polygon) + np.array(region.vector) * progress) * (width, height)
            points += self._carried[index]
            centre = points.mean(axis=0)
            ys, xs = _pixels_inside(centre + REGION_CORE * (points - centre), width, height)
            if xs.size < MIN_REGION_PIXELS:
                continue  # off the frame
            camera_x, camera_y = camera_motion(pair).at(xs - (width - 1) / 2, ys - (height - 1) / 2)
            own = pair.flow[ys, xs] - np.stack([camera_x, camera_y], axis=-1)
            self._own[index] += _moving_part(own, pair.step)
            self._carried[index] += (np.median(camera_x), np.median(camera_y))
            self._steps[index] += pair.step

    def result(self) -> dict[str, float]:
        size = np.array(self._size, float)
        scores = [self._score(region.vector, self._own[i] * self._frame_steps / self._steps[i], size)
                  for i, region in enumerate(self._regions) if self._steps[i]]
        return {"brush_adherence": float(np.mean(scores))} if scores else {}

    @staticmethod
    def _score(vector: tuple[float, float], moved: np.ndarray, size: np.ndarray) -> float:
        wanted = np.array(vector) * size
        wanted_length, moved_length = float(np.linalg.norm(wanted)), float(np.linalg.norm(moved))
        if wanted_length < STILL_REGION_TOLERANCE * size.min():
            return max(0.0, 1 - moved_length / (STILL_REGION_TOLERANCE * size.min()))
        if moved_length == 0:
            return 0.0
        cosine = float(wanted @ moved) / (wanted_length * moved_length)
        return max(0.0, cosine) * min(moved_length / wanted_length, wanted_length / moved_length)


def _moving_part(own: np.ndarray, step: int) -> tuple[float, float]:
    """The motion of what moves inside a brushed polygon (px over the pair), camera removed.

    A model moves the thing the brush was drawn over, not the polygon: the ground around a kite
    or a boat inside the stroke stays where it is. So when enough of the polygon moves, its
    motion is the median over the pixels that move; otherwise (nothing moves) the median of all.
    """
    moving = np.linalg.norm(own, axis=1) > MOVING_PX_PER_FRAME * step
    chosen = own[moving] if moving.mean() >= MOVING_SHARE else own
    return float(np.median(chosen[:, 0])), float(np.median(chosen[:, 1]))


def cover_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest centred part of `image` with the frame's aspect ratio (what 'cover' shows)."""
    rows, columns = image.shape[:2]
    _, _, crop_w, crop_h = cover_box(columns, rows, width / height)
    keep_w, keep_h = round(crop_w), round(crop_h)
    left, top = (columns - keep_w) // 2, (rows - keep_h) // 2
    return image[top:top + keep_h, left:left + keep_w]


def reference_similarity(first_frame: np.ndarray, reference: np.ndarray) -> float:
    """Normalised cross-correlation of the first frame's centre with the reference, cover-cropped
    to the frame's aspect, best over small offsets and start zooms (takes start slightly off the
    reference's framing: a pan begins half its travel aside, a pull-out starts close in)."""
    height, width = first_frame.shape[:2]
    thumb_size = (REFERENCE_THUMB_WIDTH, max(8, round(REFERENCE_THUMB_WIDTH * height / width)))
    frame = cv2.resize(first_frame, thumb_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    margin_x = round(thumb_size[0] * (1 - REFERENCE_TEMPLATE_SHARE) / 2)
    margin_y = round(thumb_size[1] * (1 - REFERENCE_TEMPLATE_SHARE) / 2)
    template = frame[margin_y:thumb_size[1] - margin_y, margin_x:thumb_size[0] - margin_x]
    covered = cover_crop(reference, width, height)
    best = -1.0
    for zoom in REFERENCE_ZOOMS:
        size = (round(thumb_size[0] * zoom), round(thumb_size[1] * zoom))
        scaled = cv2.resize(covered, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        best = max(best, float(cv2.matchTemplate(scaled, template, cv2.TM_CCOEFF_NORMED).max()))
    return min(1.0, max(0.0, best))


class ReferenceFidelity(Measurement):
    """Image-to-video fidelity: `reference_similarity` of the first frame (grey) and the reference."""

    def __init__(self, reference_gray: np.ndarray) -> None:
        self._reference = reference_gray
        self._values: dict[str, float] = {}

    def update(self, frame: Frame) -> None:
        if frame.index == 0:
            self._values["reference_fidelity"] = reference_similarity(frame.detail_gray, self._reference)

    def result(self) -> dict[str, float]:
        return self._values
