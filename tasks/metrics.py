"""Technical QC and weight-free quality metrics of one take, measured in a single decode pass.

Every frame is decoded once, grey at the detail size, by an ffmpeg process that works on another
core while the metrics run, and handed as a shared `Frame` to each `FrameMetric` in turn; optical
flow is computed at most once per sampled pair of frames and shared too. A new metric is one more
class in `frame_metrics()`, never a second decode. Metrics report raw values (higher is better, or
purely informative) and may raise hard QC fails.

- tasks/metrics_temporal.py: the shared frame stream and flow; flicker, smoothness, brightness
- tasks/metrics_image.py: noise, exposure, consistency; the picture QC gates (black, bars, cuts)
- tasks/metrics_holds.py: frozen output, freezes inside a take, stutter
- tasks/metrics_detail.py: sharpness, counting only fine detail that persists between frames
- tasks/metrics_adherence.py: motion amount, camera move, motion brush, reference image
- tasks/metrics_defects.py: what real video models get wrong: blur, stillness, morphing, burnt-in
  marks, fades, gradual cuts

Formulas and thresholds follow /work/shared/reference/scoring.md §1.1, §4 and §8.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from pathlib import Path
from threading import Lock
from typing import Iterator, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field

from blocks.media import MAX_DECODE_PIXELS, MediaError, VideoInfo, iter_frames, probe, read_image
from blocks.camera_vocabulary import parse_camera
from blocks.providers import MotionRegion
from tasks.metrics_adherence import BrushAdherence, CameraAdherence, MotionAmount, ReferenceFidelity
from tasks.metrics_defects import (BurntInOverlay, Crispness, EdgeBlack, GradualCut, Instability,
                                   Stillness)
from tasks.metrics_detail import Sharpness
from tasks.metrics_holds import FrozenFrames
from tasks.metrics_image import (BlackFrames, Consistency, Exposure, Letterbox, LowNoise,
                                 SceneCuts)
from tasks.metrics_temporal import (BrightnessStability, Frame, FrameStream, MotionSmoothness,
                                    TemporalFlicker)

# Every metric a take can report: name -> meaning; orientation; typical range (clean previz takes
# in tests/test_metric_corpus.py). All are higher-is-better except the INFORMATIVE ones, which no
# selector should weight. Adherence metrics appear only when the shot asked for something.
METRICS: dict[str, str] = {
    "temporal_flicker": "VBench (255 - mean_t D) / 255, D = change of average brightness per cell "
                        "between motion-compensated frames; higher = less flicker; 0.998-1",
    "brightness_stability": "1 - std(mean luma - its 0.5 s moving average) / 255; higher = no "
                            "exposure pumping or flashes; 0.999-1",
    "motion_smoothness": "VBench recipe, frames between sampled frames predicted by flow-warped "
                         "interpolation: (255 - mean |actual - predicted|) / 255; higher = smoother; "
                         "0.99-1",
    "subject_consistency": "VBench formula on the centre quarter of zero-mean unit-norm luma "
                           "thumbnails; higher = steadier subject; 0.65-1 (lower when moving)",
    "background_consistency": "VBench formula on the thumbnail ring around the centre; higher = "
                              "steadier background; 0.7-1 (lower when moving)",
    "sharpness": "median Laplacian-of-Gaussian (sigma 1 px) variance / grey variance at a 384 px long "
                 "side, times detail_persistence; higher = sharper; real models 0.002-0.09, compare "
                 "within a shot only",
    "low_noise": "1 / (1 + sigma), sigma Immerkær's noise estimate in grey levels; higher = "
                 "cleaner; 0.4-0.8",
    "exposure": "(1 - clipped share) x min(1, mean / 32, (255 - mean) / 32); higher = nothing "
                "crushed or blown out; 0.9-1",
    "dynamic_degree": "INFORMATIVE: median top-5 % |flow| in px per frame at a 256 px short side; "
                      "0 still, ~2 VBench's 'dynamic', previz moves 0.5-2.5",
    "motion_amount_match": "1 / (1 + |log2(level / requested)| / 2), level = the camera's global "
                           "motion path over the clip / a fifth of the frame (1 - level when a still "
                           "take is asked or allowed); higher = as much camera motion as asked; 0-1",
    "camera_adherence": "cosine of the accumulated global motion with the instructed move (static: "
                        "1 - path / 0.05); higher = follows it; 0 wrong way, 0.9-1 right",
    "brush_adherence": "per brushed region, max(0, cosine) x length ratio of its own motion to its "
                       "vector, averaged; higher = follows the brush; 0 wrong way, 0.35-0.9 right",
    "reference_fidelity": "normalised cross-correlation of the first frame with the cover-cropped "
                          "reference; higher = closer; ~0.3 unrelated, 0.9-1 same picture",
    "crispness": "1 - Crété-Roffet no-reference blur (2007) of grey detail frames at a 384 px long side "
                 "(frame-relative); higher = crisper; real models 0.45-0.75",
    "warp_stability": "1 - median over sampled pairs of |frame - next frame warped back by the flow| / "
                      "mean gradient, at half the motion size; higher = nothing changes that motion does "
                      "not explain (morphing, boiling); real clean takes 0.55-0.95",
    "long_stability": "INFORMATIVE: the same between frames 1 s apart (DIS flow over the second)",
    "motion_presence": "min(1, motion_speed / 0.1) on shots that ask for motion; higher = moves at all "
                       "(VBench's dynamic degree, which weighs 0.5); 0-1",
    "motion_speed": "INFORMATIVE: median over sampled pairs of the top-5 % flow, frame shares per second; "
                    "under 0.045 (and not VBench-dynamic) a take barely moves",
    "dynamic_share": "INFORMATIVE: share of sampled pairs VBench's dynamic_degree rule calls moving "
                     "(DIS threshold at half RAFT's 6 px per 256 px); 0-1",
    "overlay_share": "INFORMATIVE: share of the most marked corner covered by strong edges that never "
                     "change (a burnt-in mark); 0-0.07 seen",
    "detail_persistence": "INFORMATIVE: median over sampled pairs of the correlation of the fine detail "
                          "(Laplacian of Gaussian) with the next sampled frame's, warped back by the flow; "
                          "1 = real detail that moves with the picture, near 0 = texture drawn anew each frame "
                          "(under 1/3 a defect: the texture boils)",
    "frozen_share": "INFORMATIVE: share of frames in holds of 0.5 s or more; 0-1",
    "black_share": "INFORMATIVE: share of black frames; 0-1",
}

DETAIL_MAX_SIDE = 640  # frames are decoded at most this long; image quality is measured here
FPS_TOLERANCE = 0.01  # 23.976 and 24 must differ; probe() rounds to 3 decimals
# Inputs refused before decoding: nothing a video model returns is this big, and decoding it
# would take minutes or exhaust memory.
MAX_FILE_BYTES = 4 * 1024**3
MAX_FRAME_PIXELS = MAX_DECODE_PIXELS  # 8K UHD: nothing larger is decoded at all
MAX_DURATION_S = 600.0
MIN_FRAME_SIDE = 16

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
    motion_wanted: bool = Field(False, description="The shot asked for motion (camera move, brush or amount).")
    defects: list[str] = Field([], description="Visible generative defects of the take on its own (no motion "
                               "where the shot asks for it, a morphing picture, a gradual cut): not a reason "
                               "to exclude it, but to set it aside for a sibling without them.")
    flaws: list[str] = Field([], description="Lesser faults an editor can live with or trim (a burnt-in corner "
                             "logo, a fade to black at an end, a bar on one edge): they cost rank, in words.")

    def value(self, name: str) -> float | None:
        """The metric's value, None when the take does not report it or it is not a finite number."""
        value = self.metrics.get(name)
        return value if value is not None and math.isfinite(value) else None


class FrameMetric(Protocol):
    """One measurement fed frame by frame during the single decode pass of a take."""

    def update(self, frame: Frame) -> None:
        """Take the next frame (shared with every other metric; never modify it)."""

    def result(self) -> dict[str, float]:
        """Raw values by metric name; empty when the clip is too short to measure."""

    def hard_fails(self) -> list[str]:
        """Human-readable reasons to reject the take outright; empty when it is fine."""

    # Optional: `defects()` and `flaws()` -> list[str], in words (TakeMetrics.defects and .flaws).


def _reference_gray(path: Path | None) -> np.ndarray | None:
    """The reference image in grey, shrunk to a working size; None without a usable one (a bad
    reference is the request's fault, not the take's, so the metric is just left out)."""
    if path is None:
        return None
    try:
        image = read_image(path)
    except MediaError:
        return None
    scale = 2 * DETAIL_MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def motion_wanted(expected: Expectation) -> bool:
    """Whether the shot asks for motion: a camera move, a motion brush, or an amount above still."""
    if expected.still_allowed:
        return False
    moving_camera = bool(parse_camera(expected.camera).phrase) and parse_camera(expected.camera).kind != "static"
    return moving_camera or bool(expected.regions) or (expected.motion_amount or 0) > 0


def motion_asked(expected: Expectation) -> str:
    """What motion the shot asks of the whole frame, in words for a take's notes ('' when none)."""
    if not motion_wanted(expected):
        return ""
    move = parse_camera(expected.camera)
    if move.phrase and move.kind != "static":
        return f"a {move.phrase}"
    if expected.regions:
        # A brushed region may be a small part of the frame: whether it moved is brush_adherence's
        # measure, not the whole frame's stillness, so a brush-only shot asks nothing of Stillness.
        return ""
    return f"motion (amount {expected.motion_amount:g})"


def frame_metrics(expected: Expectation, fps: float, frame_count: int) -> list[FrameMetric]:
    """The metrics that apply to this shot, fresh for one take; add new ones here."""
    metrics: list[FrameMetric] = [
        TemporalFlicker(), BrightnessStability(fps), MotionSmoothness(), Consistency(), Sharpness(frame_count),
        LowNoise(), Exposure(), MotionAmount(expected.motion_amount, expected.still_allowed, frame_count),
        FrozenFrames(fps, expected.still_allowed), BlackFrames(fps), Letterbox(), SceneCuts(fps),
        Crispness(), Stillness(fps, motion_asked(expected)), BurntInOverlay(frame_count), EdgeBlack(fps),
        GradualCut(fps), Instability(fps)]
    move = parse_camera(expected.camera)
    if move.phrase:  # no camera words means no instruction to adhere to
        metrics.append(CameraAdherence(move))
    if expected.regions:
        metrics.append(BrushAdherence(expected.regions, frame_count))
    reference = _reference_gray(expected.reference_image)
    if reference is not None:
        metrics.append(ReferenceFidelity(reference))
    return metrics


def container_fails(info: VideoInfo, expected: Expectation) -> list[str]:
    """Size, frame rate, duration and audio checks against what the container declares."""
    fails = []
    if (info.width, info.height) != (expected.width, expected.height):
        fails.append(f"size {info.width}x{info.height}, "
                     f"expected {expected.width}x{expected.height}")
    if abs(info.fps - expected.fps) > FPS_TOLERANCE:
        fails.append(f"fps {info.fps:g}, expected {expected.fps:g}")
    # One frame of slack: a duration is only ever a whole number of frames.
    if abs(info.duration - expected.duration) > 1 / expected.fps + 1e-9:
        fails.append(f"duration {info.duration:.2f} s, expected {expected.duration:.2f} s")
    if expected.audio_expected and not info.has_audio:
        fails.append("no audio track")
    return fails


def _refusal(info: VideoInfo) -> str | None:
    """Why a stream is not worth decoding at all (absurdly large, or too small to analyse)."""
    if info.width * info.height > MAX_FRAME_PIXELS:
        return f"refused: {info.width}x{info.height} frames, over the {MAX_FRAME_PIXELS} pixel limit (8K)"
    if info.duration > MAX_DURATION_S:
        return f"refused: {info.duration:.0f} s long, over the {MAX_DURATION_S:.0f} s limit"
    if min(info.width, info.height) < MIN_FRAME_SIDE:
        return f"{info.width}x{info.height} frames are too small to analyse"
    return None


def analysis_side(width: int, height: int) -> int:
    """Longest side to decode at: at most DETAIL_MAX_SIDE, by a whole factor where the size
    allows, because an area shrink is a plain box average, and cheapest, at whole factors."""
    longest = max(width, height)
    return math.ceil(longest / math.ceil(longest / DETAIL_MAX_SIDE))


# On frames this small OpenCV's worker threads make the metrics no faster (measured) but burn
# about half again as much CPU, on the core the decoding ffmpeg needs, so scoring keeps OpenCV on
# one thread (same numbers). The setting is process-wide: the first of concurrent scorings sets
# it, the last restores it.
_ONE_THREAD = Lock()
_scoring, _threads_before = 0, 0


@contextlib.contextmanager
def _opencv_on_one_thread() -> Iterator[None]:
    global _scoring, _threads_before
    with _ONE_THREAD:
        if not _scoring:
            _threads_before = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _scoring += 1
    try:
        yield
    finally:
        with _ONE_THREAD:
            _scoring -= 1
            if not _scoring:
                cv2.setNumThreads(_threads_before)


def _decode_into(frames: Iterator[np.ndarray], fps: float, metrics: list[FrameMetric]) -> int:
    """Feed every decoded (grey) frame to every metric; return the frame count."""
    stream = FrameStream(fps)
    count = 0
    with _opencv_on_one_thread():
        for index, detail_gray in enumerate(frames):
            frame = stream.frame(index, detail_gray)
            for metric in metrics:
                metric.update(frame)
            count += 1
    return count


def _rejected(reason: str) -> TakeMetrics:
    return TakeMetrics(passed=False, hard_fails=[reason], metrics={}, frames=0)


def _unreadable(path: Path, exc: Exception) -> TakeMetrics:
    # MediaError messages start with the file name; the caller already knows which take it is.
    reason = str(exc).removeprefix(f"{path.name}: ") or type(exc).__name__
    return _rejected(f"unreadable: {reason}")


def measure_take(path: str | Path, expected: Expectation) -> TakeMetrics:
    """QC and measure one take. Never raises on a bad file: it becomes a hard fail instead.

    Deterministic: the same file always gives the same numbers.
    """
    path = Path(path)
    try:
        if path.is_file() and (size := path.stat().st_size) > MAX_FILE_BYTES:
            return _rejected(f"refused: {size / 1024**3:.1f} GiB file, over the "
                             f"{MAX_FILE_BYTES / 1024**3:g} GiB limit")
        with contextlib.ExitStack() as stack:
            # The decoder starts first, at the size the shot expects, and decodes on one core while
            # the probe reads the file on the other; the wrong guess (a take of another size) is
            # stopped and decoded again at its own size. closing() stops a decoder should anything
            # fail before it is done.
            expected_size = (expected.width, expected.height)
            frames = stack.enter_context(contextlib.closing(iter_frames(
                path, max_side=analysis_side(*expected_size), gray=True, size=expected_size)))
            info = probe(path)
            if refusal := _refusal(info):
                return _rejected(refusal)
            if (info.width, info.height) != expected_size:
                frames.close()
                frames = stack.enter_context(contextlib.closing(iter_frames(
                    path, max_side=analysis_side(info.width, info.height), gray=True, info=info)))
            metrics = frame_metrics(expected, info.fps, info.frames)
            decoded = _decode_into(frames, info.fps, metrics)
    except _UNREADABLE as exc:
        return _unreadable(path, exc)

    fails = container_fails(info, expected)
    if decoded == 0:
        fails.append(f"no decodable frames (container declares {info.frames})")
    elif decoded != info.frames:
        fails.append(f"damaged or truncated: ffmpeg decoded {decoded} of the {info.frames} frames the container lists")
    values: dict[str, float] = {}
    defects: list[str] = []
    flaws: list[str] = []
    for metric in metrics:
        values.update(metric.result())
        fails.extend(metric.hard_fails())
        defects.extend(metric.defects() if hasattr(metric, "defects") else ())
        flaws.extend(metric.flaws() if hasattr(metric, "flaws") else ())
    return TakeMetrics(passed=not fails, hard_fails=fails, metrics=values, frames=decoded, defects=defects, flaws=flaws,
                       motion_wanted=motion_wanted(expected))
