"""Technical QC and weight-free quality metrics of one take, measured in a single decode pass.

Every frame is decoded once and handed to each `FrameMetric` in turn; a new metric is one more
class in `frame_metrics()`, never a second decode. Metrics report raw values (all oriented so
that higher is better, or purely informative) and may also raise hard QC fails.
Formulas and thresholds follow /work/shared/reference/scoring.md §1.1, §4 and §8.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field

from blocks.providers import MotionRegion
from blocks.media import MediaError, VideoInfo, iter_frames, probe

# Frames are shrunk so their longer side is at most this before any metric sees them. Takes of one
# shot share the expected size (anything else fails QC), so they are analysed at the same size and
# their sharpness is comparable; flicker and black/frozen detection barely change at this size.
ANALYSIS_MAX_SIDE = 480

FPS_TOLERANCE = 0.01  # 23.976 and 24 must differ; probe() rounds to 3 decimals
# ffmpeg blackdetect defaults (pix_th=0.10 of full range, pic_th=0.98): a frame is black when 98 %
# of its pixels are that dark. Unlike a mean-luma test, a night sky with a few lights is not black.
BLACK_PIXEL_LUMA = 25
BLACK_PIXEL_SHARE = 0.98
MAX_BLACK_RUN_S = 0.2
# freezedetect's noise floor n=0.003 (mean absolute frame difference over all planes / 255).
FROZEN_MAFD = 0.003 * 255
MAX_FROZEN_SHARE = 0.5
# Brightness is compared with its own moving average over this span, so a deliberate slow fade or
# lighting change is not punished, while pumping and flashes faster than ~2 Hz are.
BRIGHTNESS_WINDOW_S = 0.5

# Reading a broken file can fail in ffmpeg (MediaError), OpenCV, the OS or the probe subprocess.
_UNREADABLE = (MediaError, cv2.error, OSError, subprocess.SubprocessError)


class Expectation(BaseModel):
    """What every take of a shot must be, and what it was asked to do (for adherence metrics)."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)
    duration: float = Field(gt=0, description="seconds")
    still_allowed: bool = Field(False, description="The shot asks for no motion, so a still take is no fault.")
    camera: str = Field("", description="The shot's camera instruction as written ('' when none).")
    motion_amount: float | None = Field(None, ge=0, le=1, description="Requested motion, 0 still to 1 strong.")
    regions: tuple[MotionRegion, ...] = Field(
        (), description="Motion-brush regions, polygons in fractions of the FRAME (not the reference).")
    reference_image: Path | None = Field(None, description="Reference image for image-to-video fidelity.")
    audio_expected: bool = Field(False, description="The model promises an audio track.")


class TakeMetrics(BaseModel):
    """QC verdict and raw metric values of one take (metric names are the keys of `metrics`)."""

    passed: bool
    hard_fails: list[str]
    metrics: dict[str, float]
    frames: int = Field(description="frames actually decoded")


class FrameMetric(Protocol):
    """One measurement fed frame by frame during the single decode pass of a take."""

    def update(self, gray: np.ndarray, bgr: np.ndarray, index: int) -> None:
        """Take the next frame (analysis size; uint8 grey and BGR) and its 0-based index."""

    def result(self) -> dict[str, float]:
        """Raw values by metric name; empty when the clip is too short to measure."""

    def hard_fails(self) -> list[str]:
        """Human-readable reasons to reject the take outright; empty when it is fine."""


class FrameDifference:
    """VBench temporal_flickering, and frozen-output detection from the same frame differences.

    `temporal_flicker` is VBench's raw formula (255 - mean_t MAE(F_t, F_t+1)) / 255 on all three
    channels. VBench applies it to static videos only; on moving takes it also counts real motion,
    so it ranks takes of the same shot but says little across shots.
    """

    def __init__(self, still_allowed: bool = False) -> None:
        self._still_allowed = still_allowed
        self._previous: np.ndarray | None = None
        self._mae_sum = 0.0
        self._pairs = 0
        self._frozen_pairs = 0

    def update(self, gray: np.ndarray, bgr: np.ndarray, index: int) -> None:
        if self._previous is not None:
            # absdiff on uint8 is exact |a - b|, the same as VBench's float32 absdiff.
            mae = float(cv2.absdiff(bgr, self._previous).mean())
            self._mae_sum += mae
            self._pairs += 1
            self._frozen_pairs += int(mae < FROZEN_MAFD)
        self._previous = bgr

    def result(self) -> dict[str, float]:
        if not self._pairs:
            return {}
        return {"temporal_flicker": (255 - self._mae_sum / self._pairs) / 255,
                "frozen_share": self._frozen_pairs / self._pairs}

    def hard_fails(self) -> list[str]:
        frozen = self.result().get("frozen_share", 0.0)
        if self._still_allowed or frozen < MAX_FROZEN_SHARE:
            return []
        return [f"frozen {frozen:.0%} of the clip"]


class BrightnessStability:
    """Exposure pumping and brightness flashes: 1 - std(mean luma - its moving average) / 255."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._mean_luma: list[float] = []

    def update(self, gray: np.ndarray, bgr: np.ndarray, index: int) -> None:
        self._mean_luma.append(float(gray.mean()))

    def result(self) -> dict[str, float]:
        luma = np.asarray(self._mean_luma)
        if luma.size < 3:
            return {}
        # `| 1` makes the window odd so the average is centred on each frame.
        window = min(max(3, round(self._fps * BRIGHTNESS_WINDOW_S)) | 1, (luma.size - 1) | 1)
        padded = np.pad(luma, window // 2, mode="edge")
        trend = np.convolve(padded, np.full(window, 1 / window), mode="valid")
        return {"brightness_stability": 1 - float(np.std(luma - trend)) / 255}

    def hard_fails(self) -> list[str]:
        return []


class Sharpness:
    """Median over frames of the Laplacian variance of the grey frame at the analysis size."""

    def __init__(self) -> None:
        self._per_frame: list[float] = []

    def update(self, gray: np.ndarray, bgr: np.ndarray, index: int) -> None:
        self._per_frame.append(float(cv2.Laplacian(gray, cv2.CV_64F).var()))

    def result(self) -> dict[str, float]:
        return {"sharpness": float(np.median(self._per_frame))} if self._per_frame else {}

    def hard_fails(self) -> list[str]:
        return []


class BlackFrames:
    """Runs of black frames (blackdetect's rule); a run longer than MAX_BLACK_RUN_S fails."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._runs: list[list[int]] = []  # [first, last] frame index of each black run
        self._frames = 0

    def update(self, gray: np.ndarray, bgr: np.ndarray, index: int) -> None:
        self._frames += 1
        if np.count_nonzero(gray <= BLACK_PIXEL_LUMA) < BLACK_PIXEL_SHARE * gray.size:
            return
        if self._runs and self._runs[-1][1] == index - 1:
            self._runs[-1][1] = index
        else:
            self._runs.append([index, index])

    def result(self) -> dict[str, float]:
        if not self._frames:
            return {}
        black = sum(last - first + 1 for first, last in self._runs)
        return {"black_share": black / self._frames}

    def hard_fails(self) -> list[str]:
        spans = [(first / self._fps, (last + 1) / self._fps) for first, last in self._runs]
        long_spans = [f"{start:.2f}–{end:.2f} s" for start, end in spans
                      if end - start > MAX_BLACK_RUN_S]
        return [f"black frames {', '.join(long_spans)}"] if long_spans else []


def frame_metrics(fps: float, still_allowed: bool = False) -> list[FrameMetric]:
    """The active metrics, fresh for one take; add new ones here."""
    return [FrameDifference(still_allowed), BrightnessStability(fps), Sharpness(), BlackFrames(fps)]


def container_fails(info: VideoInfo, expected: Expectation) -> list[str]:
    """Size, frame rate and duration checks against what the container declares."""
    fails = []
    if (info.width, info.height) != (expected.width, expected.height):
        fails.append(f"size {info.width}x{info.height}, "
                     f"expected {expected.width}x{expected.height}")
    if abs(info.fps - expected.fps) > FPS_TOLERANCE:
        fails.append(f"fps {info.fps:g}, expected {expected.fps:g}")
    # One frame of slack: a duration is only ever a whole number of frames.
    if abs(info.duration - expected.duration) > 1 / expected.fps + 1e-9:
        fails.append(f"duration {info.duration:.2f} s, expected {expected.duration:.2f} s")
    return fails


def _decode_into(path: Path, metrics: list[FrameMetric]) -> int:
    """Decode the take once, feeding every frame to every metric; return the frame count."""
    count = 0
    for index, bgr in enumerate(iter_frames(path, max_side=ANALYSIS_MAX_SIDE)):
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for metric in metrics:
            metric.update(gray, bgr, index)
        count += 1
    return count


def _unreadable(path: Path, exc: Exception) -> TakeMetrics:
    # MediaError messages start with the file name; the caller already knows which take it is.
    reason = str(exc).removeprefix(f"{path.name}: ") or type(exc).__name__
    return TakeMetrics(passed=False, hard_fails=[f"unreadable: {reason}"], metrics={}, frames=0)


def measure_take(path: str | Path, expected: Expectation) -> TakeMetrics:
    """QC and measure one take. Never raises on a bad file: it becomes a hard fail instead.

    Deterministic: the same file always gives the same numbers.
    """
    path = Path(path)
    try:
        info = probe(path)
        metrics = frame_metrics(info.fps, expected.still_allowed)
        decoded = _decode_into(path, metrics)
    except _UNREADABLE as exc:
        return _unreadable(path, exc)

    fails = container_fails(info, expected)
    if decoded == 0:
        fails.append(f"no decodable frames (container declares {info.frames})")
    elif decoded != info.frames:
        fails.append(f"decoded {decoded} frames, container declares {info.frames}")
    values: dict[str, float] = {}
    for metric in metrics:
        values.update(metric.result())
        fails.extend(metric.hard_fails())
    return TakeMetrics(passed=not fails, hard_fails=fails, metrics=values, frames=decoded)
