"""The global motion of a motion reference video, and a previz camera that replays it.

Kling motion control moves a character the way a reference video moves. The previz renderer
cannot move a character, but it can preview what matters for an edit: the reference's timing and
its global (camera) motion. Each pair of consecutive reference frames gives a similarity
transform (shift and zoom) from sparse optical flow (Shi-Tomasi corners tracked by pyramidal
Lucas-Kanade, fitted with RANSAC so a moving subject does not count as camera motion); frames
with too little texture to track fall back to phase correlation (shift only). The running sum is
the camera's path, which `ReferenceCamera` replays at the reference's own clock.

Scoring uses the same estimate on a take to measure how closely it follows the reference
(tasks/metrics_motion_ref.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blocks.camera_vocabulary import CameraMove
from blocks.media import iter_frames, probe
from blocks.previz_camera import CameraPlan, _linear

ANALYSIS_SIDE = 192      # frames are measured at this long side: global motion needs no detail
MIN_TRACKED = 12         # corners a pair needs for the flow fit; fewer falls back to phase correlation
MAX_EXCURSION = 0.75     # the replayed path goes at most this many frames from its centre (the plate
                         # has to cover it; a longer path is scaled down, keeping direction and timing)
_EDGE_MARGIN = 0.01


@dataclass(frozen=True)
class MotionTrack:
    """A camera path sampled at each reference frame: `x`, `y` in frame widths and heights
    (positive = the camera moves right / down, so the picture moves left / up), `zoom` relative to
    the first frame (> 1 = closer), `times` in seconds from the first frame."""

    times: np.ndarray
    x: np.ndarray
    y: np.ndarray
    zoom: np.ndarray

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def at(self, seconds: float) -> tuple[float, float, float]:
        """Position and zoom at `seconds` (held at the ends)."""
        return (float(np.interp(seconds, self.times, self.x)), float(np.interp(seconds, self.times, self.y)),
                float(np.exp(np.interp(seconds, self.times, np.log(self.zoom)))))

    def velocities(self, step: float, span: float) -> np.ndarray:
        """(n, 3) motion per `step` seconds over the first `span` seconds: dx, dy and d(log zoom)."""
        grid = np.arange(0.0, span + 1e-9, step)
        samples = np.array([self.at(t) for t in grid])
        if len(samples) < 2:
            return np.zeros((0, 3))
        samples[:, 2] = np.log(samples[:, 2])
        return np.diff(samples, axis=0)


def _pair_motion(previous: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """How the picture moved from `previous` to `current`: centre shift (px) and zoom factor."""
    height, width = previous.shape
    corners = cv2.goodFeaturesToTrack(previous, maxCorners=200, qualityLevel=0.01, minDistance=6)
    if corners is not None and len(corners) >= MIN_TRACKED:
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None, winSize=(15, 15),
                                                    maxLevel=3)
        good = status.ravel() == 1
        if good.sum() >= MIN_TRACKED:
            matrix, _ = cv2.estimateAffinePartial2D(corners[good], moved[good], method=cv2.RANSAC,
                                                    ransacReprojThreshold=1.5)
            if matrix is not None:
                centre = np.array([width / 2, height / 2])
                shift = matrix[:, :2] @ centre + matrix[:, 2] - centre
                return float(shift[0]), float(shift[1]), float(math.hypot(matrix[0, 0], matrix[1, 0]))
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(previous.astype(np.float32), current.astype(np.float32), window)
    return float(dx), float(dy), 1.0


def estimate_motion(path: Path) -> MotionTrack:
    """The camera path of the video at `path` (see the module notes); MediaError if unreadable."""
    info = probe(path)
    fps = info.fps or 24.0
    x = y = 0.0
    zoom = 1.0
    xs, ys, zooms = [0.0], [0.0], [1.0]
    previous = None
    for frame in iter_frames(path, max_side=ANALYSIS_SIDE, gray=True, info=info):
        if previous is not None:
            dx, dy, scale = _pair_motion(previous, frame)
            height, width = frame.shape
            # the picture moving left is the camera moving right; a shift seen while zoomed in is
            # a smaller move of the camera
            x -= dx / width / zoom
            y -= dy / height / zoom
            zoom *= min(max(scale, 0.8), 1.25)  # one frame never zooms further: a bad fit, not a move
            xs.append(x), ys.append(y), zooms.append(zoom)
        previous = frame
    times = np.arange(len(xs)) / fps
    return MotionTrack(times=times, x=np.array(xs), y=np.array(ys), zoom=np.array(zooms))


@dataclass(frozen=True)
class ReferenceCamera(CameraPlan):
    """A previz camera that replays a reference's path in real time: frame t of a clip of
    `clip_seconds` shows the view at t * clip_seconds on the reference's clock."""

    track: MotionTrack = field(default=None)  # type: ignore[assignment]
    clip_seconds: float = 1.0
    reach: float = 1.0                          # path scale that keeps it inside MAX_EXCURSION

    @classmethod
    def following(cls, track: MotionTrack, clip_seconds: float) -> ReferenceCamera:
        centre_x, centre_y = (float(np.ptp(a) / 2 + a.min()) for a in (track.x, track.y))
        spread = max(float(np.abs(track.x - centre_x).max()), float(np.abs(track.y - centre_y).max()), 1e-9)
        reach = min(1.0, MAX_EXCURSION / spread)
        # centring the path uses the plate symmetrically; the start zoom keeps every view inside it
        start_zoom = max(1.0, 1.0 / float(track.zoom.min()))
        return cls(CameraMove("static", "motion reference"), travel=0.0, easing=_linear,
                   offset=(-centre_x * reach, -centre_y * reach), zoom=start_zoom, track=track,
                   clip_seconds=clip_seconds, reach=reach)

    @property
    def overscan(self) -> float:
        x, y = self.track.x * self.reach + self.offset[0], self.track.y * self.reach + self.offset[1]
        return 1.0 + 2 * max(float(np.abs(x).max()), float(np.abs(y).max())) + _EDGE_MARGIN

    def view(self, t: float) -> tuple[float, float, float]:
        x, y, zoom = self.track.at(t * self.clip_seconds)
        return self.offset[0] + x * self.reach, self.offset[1] + y * self.reach, self.zoom * zoom
