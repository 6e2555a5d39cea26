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

from tasks.metrics_temporal import FROZEN_MAFD, Frame, Measurement, _warp, interior

# Fine detail is the Laplacian of a grey frame after a Gaussian blur of this many px (a Laplacian
# of Gaussian): coarser than encoder noise, finer than shapes.
DETAIL_SIGMA = 1.0


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


class Sharpness(Measurement):
    """`sharpness`: the fine detail a take shows and keeps.

    Its detail is the median over detail frames of the variance of `fine_detail` of the grey frame
    at RELATIVE_LONG_SIDE (frame-relative), relative to the frame's own grey variance: detail, not
    contrast (a contrast boost alone would otherwise read as sharper, since both variances grow
    with its square); the blur before the Laplacian keeps noise from reading as detail.
    `detail_persistence` is the median over sampled pairs of `detail_correlation` from the pair's
    first frame to its last, on the shared flow (pairs showing one picture twice, repeated or
    frozen frames, tell nothing and are skipped). `sharpness` is detail x persistence, so texture
    drawn anew in every frame does not outscore a clean take's real detail.
    """

    def __init__(self) -> None:
        # One value per detail frame and per sampled pair; takes over 10 minutes are refused.
        self._detail, self._persistence = array("d"), array("d")

    def update(self, frame: Frame) -> None:
        if frame.detail:
            gray = frame.relative_gray
            contrast = max(float(gray.var()), 1.0)  # a flat frame has no detail to speak of
            self._detail.append(float(fine_detail(gray).var()) / contrast)
        pair = frame.pair
        if pair is not None and cv2.mean(cv2.absdiff(pair.start, pair.end))[0] >= FROZEN_MAFD:
            self._persistence.append(detail_correlation(pair.start, pair.end, pair.flow))

    def result(self) -> dict[str, float]:
        if not self._detail:
            return {}
        persistence = float(np.median(self._persistence)) if self._persistence else 1.0
        return {"sharpness": float(np.median(self._detail)) * max(0.0, persistence),
                "detail_persistence": persistence}
