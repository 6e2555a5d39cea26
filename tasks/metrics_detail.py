"""Whether a take's fine detail is real: detail that holds from one frame to the next.

A sharpness measure counts every fine grey-level change as detail, so a video model's boiling
texture (ModelScope-style noise that is drawn anew in every frame) reads as sharper than a clean
take's real detail. Real detail moves with the picture: once the next frame is warped back onto
this one by the optical flow, its fine structure lines up with this frame's. `Sharpness` measures
how much of it does (`detail_persistence`) and credits only that share of its detail.
"""

from __future__ import annotations

from array import array

import cv2
import numpy as np

from tasks.metrics_temporal import (
    DETAIL_FRAMES_PER_S,
    FLOW_PAIRS_PER_S,
    FROZEN_MAFD,
    Frame,
    Measurement,
    _warp,
    interior,
)

# Fine detail is the Laplacian of a grey frame after a Gaussian blur of this many px (a Laplacian
# of Gaussian): coarser than encoder noise, finer than shapes.
DETAIL_SIGMA = 1.0
# Persistence is measured at the detail's own scale (RELATIVE_LONG_SIDE), so the share that
# persists is the share of that detail; there it costs ~4x a motion-size warp, so only on every
# PERSISTENCE_STRIDE-th sampled pair (about two a second, as many as detail frames), but on at
# least MIN_PERSISTENCE_PAIRS pairs where the take has them (a 16-frame GIF has 7).
PERSISTENCE_STRIDE = max(1, round(FLOW_PAIRS_PER_S / DETAIL_FRAMES_PER_S))
MIN_PERSISTENCE_PAIRS = 8
# Under this persistence most of the fine detail is drawn anew between sampled frames (1/8 to
# 1/4 s apart): the texture boils, a defect on its own. Real models' takes in the labelled corpus
# (bench/corpus_bench.py) lie on both sides: ModelScope's boiling takes 0.09-0.41, the morphing,
# smeared or motion-blurred clips 0.05-0.45, every clip labelled good or clean 0.47 and above (fast
# camera moves included). A third keeps well clear of the good clips and catches only plain
# boiling, not every smear; the measure needs a few pairs to say so (a 16-frame GIF has 7).
BOILING_PERSISTENCE = 1 / 3
MIN_BOILING_PAIRS = 3


def fine_detail(gray: np.ndarray) -> np.ndarray:
    """Laplacian of Gaussian (DETAIL_SIGMA) of a grey image, float32."""
    smoothed = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), DETAIL_SIGMA)
    return cv2.Laplacian(smoothed, cv2.CV_32F)


def detail_correlation(before: np.ndarray, after: np.ndarray, flow: np.ndarray) -> float:
    """Correlation (uncentred: a Laplacian has zero mean) of `before`'s fine detail with that of
    `after` warped back onto it by `flow`, over the frame's interior; 1 when every fine edge is
    where the motion carried it, near 0 when the detail is drawn anew (boiling, shimmer)."""
    rows, columns = interior(*before.shape)
    own = fine_detail(before)[rows, columns]
    carried = fine_detail(_warp(after, flow, 1.0))[rows, columns]
    energy = float(np.sqrt(float((own * own).sum()) * float((carried * carried).sum())))
    return float((own * carried).sum()) / energy if energy > 1e-6 else 1.0


def _scaled(flow: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`flow` (px at its own size) resampled and rescaled to a frame of `shape` (rows, columns)."""
    scale = np.array([shape[1] / flow.shape[1], shape[0] / flow.shape[0]], np.float32)
    return cv2.resize(flow, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) * scale


class Sharpness(Measurement):
    """`sharpness`: the fine detail a take shows and keeps.

    Its detail is the median over detail frames of the variance of `fine_detail` of the grey frame
    at RELATIVE_LONG_SIDE (frame-relative), relative to the frame's own grey variance: detail, not
    contrast (a contrast boost alone would otherwise read as sharper, since both variances grow
    with its square); the blur before the Laplacian keeps noise from reading as detail.
    `detail_persistence` is the median of `detail_correlation` from a sampled pair's first frame
    to its last, at RELATIVE_LONG_SIDE on the shared flow, over every PERSISTENCE_STRIDE-th pair
    (pairs showing one picture twice, repeated or frozen frames, tell nothing and are skipped).
    `sharpness` is detail x persistence, the detail that persists, so texture drawn anew in every
    frame does not outscore a clean take's real detail.
    """

    def __init__(self, frame_count: int) -> None:
        # One value per detail frame and per measured pair; takes over 10 minutes are refused.
        self._detail, self._persistence = array("d"), array("d")
        self._frame_count = frame_count
        self._stride = 1  # set at the first pair, once the pairs' spacing is known
        self._previous: np.ndarray | None = None  # the next measured pair's first frame
        self._pairs = 0  # sampled pairs seen

    def update(self, frame: Frame) -> None:
        if frame.detail:
            gray = frame.relative_gray
            contrast = max(float(gray.var()), 1.0)  # a flat frame has no detail to speak of
            self._detail.append(float(fine_detail(gray).var()) / contrast)
        pair = frame.pair
        if pair is not None:
            if not self._pairs:
                pairs = self._frame_count // pair.step
                self._stride = max(1, min(PERSISTENCE_STRIDE, pairs // MIN_PERSISTENCE_PAIRS))
            if self._previous is not None and cv2.mean(cv2.absdiff(pair.start, pair.end))[0] >= FROZEN_MAFD:
                self._persistence.append(detail_correlation(self._previous, frame.relative_gray,
                                                            _scaled(pair.flow, self._previous.shape)))
            self._pairs += 1
        if pair is not None or frame.index == 0:  # a sampled frame: the next pair starts here
            self._previous = frame.relative_gray if self._pairs % self._stride == 0 else None

    def defects(self) -> list[str]:
        if len(self._persistence) < MIN_BOILING_PAIRS:
            return []
        persistence = float(np.median(self._persistence))
        if persistence >= BOILING_PERSISTENCE:
            return []
        return [f"texture boils: most fine detail is drawn anew from frame to frame "
                f"(detail persistence {persistence:.2f})"]

    def result(self) -> dict[str, float]:
        if not self._detail:
            return {}
        persistence = float(np.median(self._persistence)) if self._persistence else 1.0
        return {"sharpness": float(np.median(self._detail)) * max(0.0, persistence),
                "detail_persistence": persistence}
