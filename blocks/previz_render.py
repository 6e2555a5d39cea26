"""The motion-preview renderer behind the previz provider.

It films a still plate (the reference image, or a scene composed from the prompt) with a
virtual camera doing the move the prompt names, while motion-brush regions glide along their
vectors. Frames are made one at a time and streamed to x264, so clips of any length use the
same small amount of memory. It is a preview of timing, framing and motion, not a generative
model: nothing in the picture changes except by moving.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from blocks.camera_vocabulary import parse_camera
from blocks.media import FrameWriter
from blocks.previz_camera import CameraPlan, plan_camera
from blocks.previz_matte import content_matte, fill_uncovered
from blocks.previz_motion import ReferenceCamera, estimate_motion
from blocks.previz_plate import Plate, compose_plate, reference_plate
from blocks.providers import MotionRegion


def render_previz(dest: Path, *, width: int, height: int, fps: int, duration: float, prompt: str,
                  seed: int, motion_amount: float, reference_image: Path | None,
                  regions: Sequence[MotionRegion], crf: int = 18, motion_reference: Path | None = None) -> None:
    """Render a motion preview to `dest`: an H.264 MP4 of round(duration * fps) frames.

    The camera move comes from the prompt ("dolly in", "pan left", "static", "orbit", ...;
    a gentle push-in when none is named), scaled by `motion_amount` (0 = still camera, 1 = a
    pan across a fifth of the frame or a 1.35x dolly). The seed varies easing, speed and
    framing; the same inputs always give the same clip. Motion-brush `regions` (polygons in
    fractions of the reference image, or of the frame without one) travel along their
    vectors over the clip: what each polygon holds moves under a soft matte that follows it
    (blocks.previz_matte), and the ground it uncovers is filled in. With a `motion_reference`
    video the camera replays that video's global motion at its timing instead (previz_motion).
    """
    frames = round(duration * fps)
    if frames < 1:
        raise ValueError(f"{duration} s at {fps} fps is not a single frame")
    frame_size = (width, height)
    plan = (ReferenceCamera.following(estimate_motion(motion_reference), duration) if motion_reference
            else plan_camera(parse_camera(prompt), motion_amount, seed))
    plate = (reference_plate(reference_image, frame_size, plan.overscan) if reference_image
             else compose_plate(prompt, seed, frame_size, plan.overscan))
    brush = MotionBrush(plate, regions, unit=(plate.size[0] / plan.overscan, plate.size[1] / plan.overscan))
    camera = VirtualCamera(plan, plate.size, frame_size)
    frame = np.empty((height, width, 3), np.uint8)
    with FrameWriter(dest, width, height, fps, crf=crf) as writer:
        for index in range(frames):
            t = index / (frames - 1) if frames > 1 else 0.0
            writer.write(camera.film(brush.composite(t), t, out=frame))


class VirtualCamera:
    """Films a plate into frames: one warp per frame, straight from plate to frame size."""

    def __init__(self, plan: CameraPlan, plate_size: tuple[int, int], frame_size: tuple[int, int]):
        self.plan, self.plate_size, self.frame_size = plan, plate_size, frame_size
        # An orbit shifts every row differently, so it samples through maps made once and
        # refilled in place each frame.
        if plan.move.kind == "orbit":
            width, height = frame_size
            self._map_x = np.empty((height, width), np.float32)
            self._map_y = np.empty((height, width), np.float32)

    def film(self, plate: np.ndarray, t: float, out: np.ndarray) -> np.ndarray:
        """The frame at time t (0 = first, 1 = last), written into `out`."""
        matrix = self.plan.plate_to_frame(t, self.plate_size, self.frame_size)
        if self.plan.move.kind != "orbit":
            return cv2.warpAffine(plate, matrix, self.frame_size, dst=out, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
        width, height = self.frame_size
        columns = (np.arange(width, dtype=np.float32) - matrix[0, 2]) / matrix[0, 0]
        rows = (np.arange(height, dtype=np.float32) - matrix[1, 2]) / matrix[1, 1]
        sweep = self.plan.orbit_sweep(t, self.plate_size[0], height)
        np.add(columns[None, :], sweep[:, None], out=self._map_x)
        self._map_y[:] = rows[:, None]
        return cv2.remap(plate, self._map_x, self._map_y, cv2.INTER_LINEAR, dst=out,
                         borderMode=cv2.BORDER_REFLECT)


class _Sprite:
    """One brushed region cut from the plate: premultiplied colour and alpha in its bounding box,
    with a transparent 1 px border so sub-pixel shifts stay inside the box."""

    def __init__(self, plate: np.ndarray, mask: np.ndarray, travel: tuple[float, float]):
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        alpha = mask[y0:y1, x0:x1, None].astype(np.float32) / 255
        layers = np.concatenate([plate[y0:y1, x0:x1].astype(np.float32) * alpha, alpha], axis=2)
        self.layers = cv2.copyMakeBorder(layers, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        self.origin, self.travel = (int(x0) - 1, int(y0) - 1), travel

    def placed(self, t: float) -> tuple[int, int, np.ndarray]:
        """Top-left plate pixel and the 4-channel box, moved t of the way along the travel."""
        shift_x, shift_y = self.travel[0] * t, self.travel[1] * t
        whole_x, whole_y = math.floor(shift_x), math.floor(shift_y)
        fraction = np.float32([[1, 0, shift_x - whole_x], [0, 1, shift_y - whole_y]])
        box = self.layers.shape[1], self.layers.shape[0]
        moved = cv2.warpAffine(self.layers, fraction, box, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return self.origin[0] + whole_x, self.origin[1] + whole_y, moved


class MotionBrush:
    """The plate with its brushed regions in place at any moment of the clip.

    Each region's matte (the thing the polygon holds, feathered) and the ground under it are
    made once; each frame pastes the regions at their displaced positions, touching only their
    bounding boxes.
    """

    def __init__(self, plate: Plate, regions: Sequence[MotionRegion], unit: tuple[float, float]):
        self.plate = plate.image
        brushed = [(content_matte(plate.image, _region_mask(plate, region)), region) for region in regions]
        brushed = [(mask, region) for mask, region in brushed if mask.any()]  # off the plate: nothing moves
        self._sprites = [
            _Sprite(plate.image, mask, (region.vector[0] * unit[0], region.vector[1] * unit[1]))
            for mask, region in brushed]
        self._dirty: list[tuple[slice, slice]] = []
        if brushed:
            self.background = plate.image
            for mask, _ in brushed:  # one hole at a time: each is filled from its own surroundings
                self.background = fill_uncovered(self.background, mask)
            self.canvas = self.background.copy()

    def composite(self, t: float) -> np.ndarray:
        """The plate at time t with each region moved t of the way along its vector."""
        if not self._sprites:
            return self.plate
        for area in self._dirty:  # put back the ground the regions covered last frame
            self.canvas[area] = self.background[area]
        self._dirty = []
        height, width = self.canvas.shape[:2]
        for sprite in self._sprites:
            x, y, moved = sprite.placed(t)
            box_h, box_w = moved.shape[:2]
            left, top = max(x, 0), max(y, 0)
            right, bottom = min(x + box_w, width), min(y + box_h, height)
            if left >= right or top >= bottom:
                continue  # travelled off the plate
            area = (slice(top, bottom), slice(left, right))
            part = moved[top - y:bottom - y, left - x:right - x]
            under = self.canvas[area].astype(np.float32)
            blended = under * (1 - part[..., 3:]) + part[..., :3] + 0.5  # + 0.5 rounds
            self.canvas[area] = np.clip(blended, 0, 255).astype(np.uint8)
            self._dirty.append(area)
        return self.canvas


def _region_mask(plate: Plate, region: MotionRegion) -> np.ndarray:
    """Anti-aliased mask (uint8) of a brush polygon, mapped from its fractions onto the plate."""
    if len(region.polygon) < 3:
        raise ValueError("a motion-brush region needs a polygon of at least three vertices")
    x, y, w, h = plate.brush_rect
    points = np.array(region.polygon, dtype=np.float64) * (w, h) + (x, y)
    mask = np.zeros(plate.image.shape[:2], np.uint8)
    # Sub-pixel vertices (4 fractional bits) keep small regions where they were drawn.
    cv2.fillPoly(mask, [np.round(points * 16 - 8).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask
