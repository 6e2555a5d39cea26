"""The frame stream every metric shares, and the temporal metrics: flicker, smoothness, brightness.

A take is decoded once, into grey frames at the detail size. `FrameStream` turns each into a
`Frame`: that frame, its shrink to the motion size, and whether it merely repeats one before. Every
`step`-th frame also closes a `SampledPair` whose DIS optical flow is computed at most once, on
first use, and shared by every metric that needs motion. Only one sampled pair's frames are ever
kept, so memory does not grow with clip length. Formulas: /work/shared/reference/scoring.md
§1.1 (VBench) and §8.2 (classical stand-ins).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

# Flow and the temporal metrics work on frames shrunk to this long side, flow on ~8
# pairs of frames a second (scoring.md §8); image quality on ~2 detail frames a second, since
# sharpness, noise and exposure barely change between neighbouring frames.
MOTION_MAX_SIDE = 320
FLOW_PAIRS_PER_S = 8.0
DETAIL_FRAMES_PER_S = 2.0
# A frame repeats when it is within freezedetect's noise floor n=0.003 (mean absolute difference
# / 255, here on luma) of the last frame that changed (so a slow drift adds up instead of hiding),
# and no cell of a FROZEN_GRID x FROZEN_GRID grid changed by FROZEN_CELL_MAFD: a still camera on a
# small moving subject (a brushed region) moves its cells by far more, encoder noise far less.
FROZEN_MAFD = 0.003 * 255
FROZEN_GRID = 8
FROZEN_CELL_MAFD = 3.0
# Grey levels at or beyond these are clipped: they carry no detail, so the temporal metrics leave
# them out (a blown-out take must not look steadier for it) and exposure counts them.
CLIPPED_LOW, CLIPPED_HIGH = 2, 253
# Brightness is compared with its own moving average over this span, so a deliberate slow fade or
# lighting change is not punished, while pumping and flashes faster than ~2 Hz are.
BRIGHTNESS_WINDOW_S = 0.5
# Under this temporal flicker a take visibly pumps or boils (real corpus, bench/corpus_bench.py:
# clean and showcase takes of real models stayed at 0.980 and above, the flickering and
# morphing ones went down to 0.88). VBench's good models average 0.97-0.995 on its raw formula.
HEAVY_FLICKER = 0.975
# Flicker is the change of average brightness in the cells of this grid (columns, rows).
FLICKER_CELLS = (16, 9)
# Sharpness and crispness judge detail frames brought to this long side (`to_long_side`): a take
# delivered at 256 px is upscaled to it and reads as soft as it will look beside a 720p one.
RELATIVE_LONG_SIDE = 384
# Flow and warps are unreliable where content enters the frame; these borders are left out.
BORDER_SHARE = 0.05


def flow_step(fps: float) -> int:
    """Frames between two sampled frames: ~8 pairs per second, and at least one frame between
    them so motion smoothness has a frame to predict."""
    return max(2, round(fps / FLOW_PAIRS_PER_S))


def motion_size(width: int, height: int) -> tuple[int, int]:
    """The motion-analysis size of a detail frame (an integer shrink, which INTER_AREA does fast)."""
    factor = -(-max(width, height) // MOTION_MAX_SIDE)
    return max(2, round(width / factor)), max(2, round(height / factor))


@lru_cache(maxsize=64)  # a handful of sizes per take, asked for on every frame
def _whole_factor(length: int, target: int) -> int:
    """The largest divisor of `length` that leaves at least `target`."""
    return max(d for d in range(1, max(1, length // target) + 1) if length % d == 0)


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average `image` down to `size` (width, height): first by whole factors, which OpenCV
    does several times faster, then the small remainder."""
    height, width = image.shape[:2]
    step = (width // _whole_factor(width, size[0]), height // _whole_factor(height, size[1]))
    if step != (width, height):
        image = cv2.resize(image, step, interpolation=cv2.INTER_AREA)
    return image if step == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_long_side(gray: np.ndarray, side: int) -> np.ndarray:
    """`gray` resized to `side` px on its long side: frame-relative measures judge every take at
    the same share of its frame, so a small delivery reads as soft as it will look on screen."""
    height, width = gray.shape
    scale = side / max(height, width)
    if abs(scale - 1) < 1e-3:
        return gray
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def normalised(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit norm (all zeros for a flat input), so a cosine is a plain dot product."""
    centred = values.astype(np.float32).ravel() - values.mean()
    norm = float(np.linalg.norm(centred))
    return centred / norm if norm > 1e-3 else np.zeros_like(centred)


class SampledPair:
    """Two sampled motion-size grey frames `step` frames apart and the frames between them. The
    DIS flow from the first frame to the last (on the first frame's grid) is computed once, when
    a metric first asks, and shared by all of them. `held`: every frame after the first merely
    repeats it (the pair lies inside a freeze), so it says nothing about how steadily the picture
    changes, only that it does not."""

    def __init__(self, start: np.ndarray, end: np.ndarray, between: list[np.ndarray],
                 dis: cv2.DISOpticalFlow, held: bool = False) -> None:
        self.start, self.end, self.between = start, end, between
        self.step = len(between) + 1
        self.held = held
        self._dis = dis

    @cached_property
    def flow(self) -> np.ndarray:
        return self._dis.calc(self.start, self.end, None)

    @cached_property
    def halved(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The pair's frames (start, between..., end) at half the motion size as float32, and the
        flow at that size: brightness over areas survives the shrink, noise and fine detail not."""
        frames = [cv2.pyrDown(gray).astype(np.float32) for gray in (self.start, *self.between, self.end)]
        height, width = frames[0].shape
        scale = np.array([width / self.start.shape[1], height / self.start.shape[0]], np.float32)
        return frames, cv2.resize(self.flow, (width, height), interpolation=cv2.INTER_AREA) * scale


@dataclass
class Frame:
    """One decoded frame as every metric sees it (shared: metrics must not modify it)."""

    index: int
    detail_gray: np.ndarray     # grey at the detail size (the decode size), for image quality
    gray: np.ndarray            # motion size
    repeat: bool                # it repeats the last frame that changed (never the first frame)
    pair: SampledPair | None    # set on every sampled frame after the first
    detail: bool                # one of the few frames per second image quality looks at

    @cached_property
    def relative_gray(self) -> np.ndarray:
        """The detail frame at RELATIVE_LONG_SIDE, for the frame-relative image-quality measures."""
        return to_long_side(self.detail_gray, RELATIVE_LONG_SIDE)

    @cached_property
    def thumbnail(self) -> np.ndarray:
        """32x32 float luma thumbnail: the classical feature behind consistency and cut detection."""
        return shrink(self.gray, (32, 32)).astype(np.float32)

    @cached_property
    def structure(self) -> np.ndarray:
        """The thumbnail zero-mean and unit-norm: what the picture shows, not how bright it is."""
        return normalised(self.thumbnail)

    @cached_property
    def tones(self) -> np.ndarray:
        """The 32-bin luma histogram as shares of the frame: how bright it is, not what it shows."""
        return cv2.calcHist([self.gray], [0], None, [32], [0, 256]).ravel() / self.gray.size


class FrameStream:
    """Builds the `Frame`s of one take from its decoded frames, in order."""

    def __init__(self, fps: float) -> None:
        self.step = flow_step(fps)
        self._detail_step = max(1, round(fps / DETAIL_FRAMES_PER_S))
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._changed: np.ndarray | None = None  # grey of the last frame that changed
        self._anchor: np.ndarray | None = None    # grey of the last sampled frame
        self._between: list[np.ndarray] = []
        self._held = True  # every frame since the last sampled one repeated it

    def frame(self, index: int, detail_gray: np.ndarray) -> Frame:
        height, width = detail_gray.shape
        size = motion_size(width, height)
        gray = (detail_gray if size == (width, height)
                else cv2.resize(detail_gray, size, interpolation=cv2.INTER_AREA))
        repeat = False
        if self._changed is not None:
            difference = cv2.absdiff(gray, self._changed)
            repeat = (cv2.mean(difference)[0] < FROZEN_MAFD
                      and shrink(difference, (FROZEN_GRID, FROZEN_GRID)).max() < FROZEN_CELL_MAFD)
        if not repeat:
            self._changed = gray
        frame = Frame(index, detail_gray, gray, repeat, None, index % self._detail_step == 0)
        if index % self.step == 0:
            if self._anchor is not None:
                frame.pair = SampledPair(self._anchor, gray, self._between, self._dis, self._held and repeat)
            self._anchor, self._between, self._held = gray, [], True
        elif self._anchor is not None:
            self._between.append(gray)
            self._held = self._held and repeat
        return frame


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    """Each pixel's own (x, y), as a two-channel float32 map like a flow field."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.dstack([xs, ys])


def interior(height: int, width: int) -> tuple[slice, slice]:
    """The frame without its BORDER_SHARE margins."""
    margin_y, margin_x = int(height * BORDER_SHARE), int(width * BORDER_SHARE)
    return slice(margin_y, height - margin_y), slice(margin_x, width - margin_x)


@lru_cache(maxsize=8)
def _interior_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[interior(height, width)] = 255
    return mask


def _informative(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mask (uint8, 255 = yes) of the pixels inside the borders and clipped in neither image."""
    return (cv2.inRange(first, CLIPPED_LOW + 1, CLIPPED_HIGH - 1)
            & cv2.inRange(second, CLIPPED_LOW + 1, CLIPPED_HIGH - 1) & _interior_mask(*first.shape))


def _warp(image: np.ndarray, flow: np.ndarray, along: float) -> np.ndarray:
    """`image` sampled at every pixel moved `along` times the flow (H x W x 2)."""
    # One two-channel map (grid + along * flow, by cv2.scaleAdd without numpy's temporaries):
    # the same samples as separate x and y maps, at half the cost.
    return cv2.remap(image, cv2.scaleAdd(flow, along, _pixel_grid(*image.shape)), None, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _cell_brightness_change(current: np.ndarray, following: np.ndarray) -> float:
    """Mean |change of average brightness| over the FLICKER_CELLS cells, on unclipped pixels
    inside the borders. Misregistration and noise change pixels both ways and cancel within a
    cell; flicker brightens or darkens whole areas and does not."""
    weight = _informative(current, following).astype(np.float32) / 255
    change, coverage = shrink((following - current) * weight, FLICKER_CELLS), shrink(weight, FLICKER_CELLS)
    covered = coverage > 0.5
    return float(np.abs(change[covered] / coverage[covered]).mean()) if covered.any() else 0.0


class Measurement:
    """A FrameMetric's defaults: nothing to report and no reason to reject the take."""

    def result(self) -> dict[str, float]:
        return {}

    def hard_fails(self) -> list[str]:
        return []


class TemporalFlicker(Measurement):
    """VBench temporal_flickering, motion-compensated: (255 - mean_t D(F_t, W(F_t+1))) / 255.

    W warps the next frame onto the current one with the shared flow (the pair's flow / step);
    D is `_cell_brightness_change`, on grey at half the motion size. VBench's raw D (mean
    |F_t - F_t+1| over pixels, no compensation) suits static videos only. In the labelled corpus
    (tests/test_metric_corpus.py) both catch every flicker twin, but the raw one ranks every twin
    with dropped or duplicated frames above its clean source (this one: 2 of 13 dropped, none of 13
    duplicated), so this one is reported. Pairs inside a freeze (`SampledPair.held`) are left out:
    a held picture cannot flicker, so they would only dilute the flicker of the frames that move
    (a real model's GIF that stops for a third of its length read steadier than its motion is).
    """

    def __init__(self) -> None:
        self._change_sum = 0.0
        self._compared = 0  # frame pairs compared
        self._held = False  # a sampled pair was left out as held

    def update(self, frame: Frame) -> None:
        if frame.pair is None:
            return
        if frame.pair.held:
            self._held = True
            return
        frames, flow = frame.pair.halved
        one_frame = 1 / frame.pair.step
        for current, following in zip(frames, frames[1:]):
            self._change_sum += _cell_brightness_change(current, _warp(following, flow, one_frame))
            self._compared += 1

    def result(self) -> dict[str, float]:
        if not self._compared:
            return {"temporal_flicker": 1.0} if self._held else {}  # all held: nothing flickers
        return {"temporal_flicker": (255 - self._change_sum / self._compared) / 255}

    def defects(self) -> list[str]:
        flicker = self.result().get("temporal_flicker")
        if flicker is None or flicker >= HEAVY_FLICKER:
            return []
        return [f"heavy flicker: areas brighten and darken from frame to frame (temporal flicker {flicker:.3f})"]


def _misprediction(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean |actual - predicted| on unclipped pixels inside the borders, each image taken relative
    to its own mean there, so a brightness change (flicker's business) is not counted."""
    informative = _informative(actual, predicted)
    if not (count := cv2.countNonZero(informative)):
        return 0.0
    # Each term is cv2.mean(image, mask) bit for bit (its exact integer sum times 1 / count, as
    # OpenCV computes it), ten times faster.
    share = 1.0 / count
    offset = cv2.sumElems(actual & informative)[0] * share - cv2.sumElems(predicted & informative)[0] * share
    difference = cv2.subtract(actual, predicted, dtype=cv2.CV_32F)
    return cv2.mean(cv2.absdiff(difference, offset), informative)[0]


class MotionSmoothness(Measurement):
    """VBench motion_smoothness with classical interpolation in place of AMT.

    Each frame between two sampled frames is predicted from them with the shared flow: both ends
    are warped to the frame's moment along the flow (linear motion) and blended by nearness.
    Score (255 - mean |actual - predicted|) / 255 on grey at the motion size (`_misprediction`).
    Smooth motion is predicted almost exactly; dropped or duplicated frames, judder and shake not.
    Pairs inside a freeze (`SampledPair.held`) are predicted exactly and say nothing of how the
    picture moves, so they are left out (a freeze is FrozenFrames' defect, not smooth motion).
    """

    def __init__(self) -> None:
        self._error_sum = 0.0
        self._predicted = 0
        self._held = False

    def update(self, frame: Frame) -> None:
        if (pair := frame.pair) is None:
            return
        if pair.held:
            self._held = True
            return
        for offset, actual in enumerate(pair.between, 1):
            along = offset / pair.step
            from_start, from_end = _warp(pair.start, pair.flow, -along), _warp(pair.end, pair.flow, 1 - along)
            predicted = cv2.addWeighted(from_start, 1 - along, from_end, along, 0)
            self._error_sum += _misprediction(actual, predicted)
            self._predicted += 1

    def result(self) -> dict[str, float]:
        if not self._predicted:
            return {"motion_smoothness": 1.0} if self._held else {}
        return {"motion_smoothness": (255 - self._error_sum / self._predicted) / 255}


class BrightnessStability(Measurement):
    """Exposure pumping and brightness flashes: 1 - std(mean luma - its moving average) / 255."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._mean_luma = array("d")  # 8 bytes a frame; takes over 10 minutes are refused

    def update(self, frame: Frame) -> None:
        self._mean_luma.append(cv2.mean(frame.gray)[0])

    def result(self) -> dict[str, float]:
        luma = np.asarray(self._mean_luma)
        if luma.size < 3:
            return {}
        # `| 1` makes the window odd so the average is centred on each frame.
        window = min(max(3, round(self._fps * BRIGHTNESS_WINDOW_S)) | 1, (luma.size - 1) | 1)
        padded = np.pad(luma, window // 2, mode="edge")
        trend = np.convolve(padded, np.full(window, 1 / window), mode="valid")
        return {"brightness_stability": 1 - float(np.std(luma - trend)) / 255}
