"""What real video models get wrong, measured from the shared frame stream.

Each metric reports raw values and, where a take shows the failure plainly, a `defects()` line in
words (TakeMetrics.defects): a take with one is set aside for a sibling without it.

- `Crispness`: the no-reference blur measure of Crété-Roffet et al. (2007), frame-relative.
- `Stillness`: VBench's dynamic degree (scoring.md §1.1) on sampled frame pairs; repeated frames
  (a 30 fps file carrying 8 fps motion) are no stillness, a frozen take is FrozenFrames' business.
- `BurntInOverlay`: a watermark, logo or caption: strong edges that hold still in every sampled
  frame while the picture around them changes.
- `EdgeBlack`: black frames at the start or end (a fade in or out), which a longer black run
  inside the take already fails as a hard QC fail.
- `GradualCut`: a dissolve to another scene spread over several frames, which no single frame
  pair shows as a cut.
"""

from __future__ import annotations

from array import array
from collections import deque

import cv2
import numpy as np

from blocks.media import evenly_spaced
from tasks.metrics_image import is_black
from tasks.metrics_temporal import Frame, Measurement, _warp, interior

# Crété-Roffet blur: the frame is compared with itself re-blurred by a BLUR_TAPS box filter along
# rows and along columns; a sharp picture loses much of its neighbour differences, a blurred one
# little. Measured on grey frames brought to RELATIVE_LONG_SIDE (frame-relative: a take that only
# fills a 256 px frame is as soft, delivered, as the same picture blurred at 1080p).
BLUR_TAPS = 9

# VBench dynamic_degree: a pair of frames ~1/8 s apart is "moving" when the mean of its top 5 %
# flow magnitudes exceeds 6 px at a 256 px short side; a take is dynamic once
# round(4 * pairs / 16) of its pairs are. DIS flow reads large motions lower than RAFT
# (scoring.md §9), so the threshold is scaled by DIS_TO_RAFT, calibrated on the real corpus.
VBENCH_THRESHOLD_PX = 6.0
VBENCH_PAIR_S = 1 / 8
DIS_TO_RAFT = 0.5
LIVELY_SPEED = 0.1  # ... and over it a take plainly moves (motion_presence 1)
DYNAMIC_SHARE = 4 / 16  # VBench: dynamic once round(4 * pairs / 16) pairs move
STILL_SPEED = 0.045  # frame shares per second of the top-5 % motion: under it a take barely moves

# Burnt-in overlay: pixels whose gradient (Sobel magnitude, grey levels per px at the motion size)
# stays above OVERLAY_EDGE in every one of OVERLAY_SAMPLES frames spread over the take, where the
# picture within OVERLAY_SURROUND px changed by at least OVERLAY_CHANGE grey levels meanwhile.
OVERLAY_SAMPLES = 12
OVERLAY_EDGE = 100.0        # Sobel magnitude (3x3) at the detail size: a crisp letter's edge
OVERLAY_STILL = 8           # grey levels a pixel may vary by over the samples and still be still
OVERLAY_CORNER = 0.22       # corners: this share of the width and of the height
OVERLAY_MIN_SHARE = 0.008
OVERLAY_RATIO = 4.0
OVERLAY_MARGIN = 0.002

# Gradual cut: frames GRADUAL_SPAN_S apart differ in structure and tones far beyond the clip's
# typical change over that span, while no neighbouring pair jumps (that would be a hard cut).
GRADUAL_SPAN_S = 0.5
GRADUAL_MIN_STRUCTURE = 0.5
GRADUAL_MIN_TONES = 0.25
GRADUAL_TYPICAL_RATIO = 4.0

# Long-range stability compares frames this far apart (VBench-Long judges consistency on 2 s clips).
LONG_SPAN_S = 1.0
# Under this warp stability much of the picture changes in ways no motion explains: real models'
# clean and showcase takes, fast ones and an intended sand transformation included, stayed at
# 0.55 and above in the corpus, morphing and boiling ones went down to -0.54 (bench/corpus_bench.py).
MORPH_STABILITY = 0.5


def blur_effect(gray: np.ndarray) -> float:
    """Crété-Roffet perceptual blur in [0, 1] (0 sharp, 1 blurry), the larger of the row and
    column estimates, as in skimage.measure.blur_effect."""
    image = gray.astype(np.float32)
    worst = 0.0
    for axis, ksize in ((0, (1, BLUR_TAPS)), (1, (BLUR_TAPS, 1))):  # ksize is (width, height)
        blurred = cv2.blur(image, ksize, borderType=cv2.BORDER_REFLECT)
        sharp_diff = np.abs(np.diff(image, axis=axis))
        blur_diff = np.abs(np.diff(blurred, axis=axis))
        lost = np.maximum(0.0, sharp_diff - blur_diff)
        total = float(sharp_diff.sum())
        worst = max(worst, (total - float(lost.sum())) / total if total > 0 else 1.0)
    return worst


class Crispness(Measurement):
    """`crispness` = 1 - median Crété-Roffet blur over the detail frames at RELATIVE_LONG_SIDE."""

    def __init__(self) -> None:
        self._blur = array("d")

    def update(self, frame: Frame) -> None:
        if frame.detail:
            self._blur.append(blur_effect(frame.relative_gray))

    def result(self) -> dict[str, float]:
        return {"crispness": 1 - float(np.median(self._blur))} if self._blur else {}


def _top_mean(values: np.ndarray, share: float = 0.05) -> float:
    flat = values.ravel()
    count = max(1, int(flat.size * share))
    return float(np.partition(flat, flat.size - count)[-count:].mean())


def barely_moves(values: dict[str, float]) -> bool:
    """A take's motion (Stillness' values) is not VBench-dynamic and slower than STILL_SPEED."""
    share, speed = values.get("dynamic_share"), values.get("motion_speed")
    return share is not None and speed is not None and share < DYNAMIC_SHARE and speed < STILL_SPEED


class Stillness(Measurement):
    """`dynamic_share`: the share of sampled pairs VBench's dynamic_degree calls moving;
    `motion_speed`: the median over pairs of the top-5 % flow, in frame shares per second.

    When the shot asks for motion (`asked`, in words: '' when it does not), a take that VBench
    would not call dynamic and that moves under STILL_SPEED is a defect. Pairs whose frames
    repeat (frame-repeated files) carry the motion of the distinct frames around them, so
    repetition alone does not read as stillness.
    """

    def __init__(self, fps: float, asked: str) -> None:
        self._fps, self._asked = fps, asked
        self._moving = 0
        self._speeds = array("d")

    def update(self, frame: Frame) -> None:
        if (pair := frame.pair) is None:
            return
        height, width = pair.start.shape
        flow = pair.flow[::3, ::3]  # every third pixel: the same statistics at a ninth of the cost
        pixels = _top_mean(np.hypot(flow[..., 0], flow[..., 1]))
        seconds = pair.step / self._fps
        threshold = VBENCH_THRESHOLD_PX * min(height, width) / 256 * DIS_TO_RAFT * seconds / VBENCH_PAIR_S
        self._moving += pixels > threshold
        shares = _top_mean(np.hypot(flow[..., 0] / width, flow[..., 1] / height))
        self._speeds.append(shares / seconds)

    def result(self) -> dict[str, float]:
        if not self._speeds:
            return {}
        speed = float(np.median(self._speeds))
        values = {"dynamic_share": self._moving / len(self._speeds), "motion_speed": speed}
        if self._asked:
            values["motion_presence"] = min(1.0, speed / LIVELY_SPEED)
        return values

    def defects(self) -> list[str]:
        values = self.result()
        if not self._asked or not barely_moves(values):
            return []
        return [f"almost no motion (speed {values['motion_speed']:.3f} of the frame per second), "
                f"the shot asks for {self._asked}"]


_CORNERS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}


class BurntInOverlay(Measurement):
    """A logo or text mark burnt into a corner after generation (a provider's or a project's mark):
    strong edges whose pixels are identical in every sampled frame. `overlay_share` is the share
    of the most marked corner (OVERLAY_CORNER of the width and height) covered by such still
    edges. A still scene holds still in every corner alike; a mark makes one corner stand out, so
    a corner counts as marked when its share is at least OVERLAY_MIN_SHARE and OVERLAY_RATIO
    times the next corner's. Marks the model itself paints (a learnt stock-photo watermark)
    wobble like the rest of the picture and are not seen here."""

    def __init__(self, frame_count: int) -> None:
        self._wanted = set(evenly_spaced(frame_count, OVERLAY_SAMPLES))
        self._edge_min: np.ndarray | None = None  # weakest gradient seen at each pixel
        self._low: np.ndarray | None = None
        self._high: np.ndarray | None = None
        self._shares: dict[str, float] | None = None

    def update(self, frame: Frame) -> None:
        if frame.index not in self._wanted:
            return
        gray = frame.detail_gray
        edges = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        if self._edge_min is None:
            self._edge_min, self._low, self._high = edges, gray.copy(), gray.copy()
        else:
            np.minimum(self._edge_min, edges, out=self._edge_min)
            np.minimum(self._low, gray, out=self._low)
            np.maximum(self._high, gray, out=self._high)

    def _corner_shares(self) -> dict[str, float]:
        if self._shares is None and self._edge_min is not None:
            still = (cv2.subtract(self._high, self._low) <= OVERLAY_STILL) & (self._edge_min >= OVERLAY_EDGE)
            height, width = still.shape
            rows, columns = round(height * OVERLAY_CORNER), round(width * OVERLAY_CORNER)
            self._shares = {}
            for name, (bottom, right) in _CORNERS.items():
                band = still[height - rows:] if bottom else still[:rows]
                self._shares[name] = float((band[:, width - columns:] if right else band[:, :columns]).mean())
        return self._shares or {}

    def result(self) -> dict[str, float]:
        shares = self._corner_shares()
        return {"overlay_share": max(shares.values())} if shares else {}

    def flaws(self) -> list[str]:
        shares = sorted(self._corner_shares().items(), key=lambda item: -item[1])
        if len(shares) < 2:
            return []
        (corner, share), (_, runner_up) = shares[:2]
        if share < OVERLAY_MIN_SHARE or share < OVERLAY_RATIO * runner_up + OVERLAY_MARGIN:
            return []
        return [f"burnt-in logo or text in the {corner} corner ({share:.1%} of it never changes)"]


class EdgeBlack(Measurement):
    """Black frames opening or closing the take (a fade from or to black): a defect, since the
    editor's transitions, not the take, should decide how a shot starts and ends."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._leading = 0        # black frames from the first on
        self._trailing = 0       # black frames up to the latest
        self._frames = 0

    def update(self, frame: Frame) -> None:
        black = is_black(frame.gray)
        if black and self._leading == self._frames:
            self._leading += 1
        self._trailing = self._trailing + 1 if black else 0
        self._frames += 1

    def flaws(self) -> list[str]:
        if not self._frames or self._leading == self._frames:
            return []  # all black is the black-frame gate's hard fail
        out = []
        if self._leading:
            out.append(f"fades in from black (first {self._leading} frames, {self._leading / self._fps:.2f} s)")
        if self._trailing:
            out.append(f"fades out to black (last {self._trailing} frames, {self._trailing / self._fps:.2f} s)")
        return out


class GradualCut(Measurement):
    """A dissolve or other gradual transition to another scene: over GRADUAL_SPAN_S the picture's
    structure (1 - cosine of normalised thumbnails) and tones (1 - histogram intersection) both
    change far beyond the clip's typical change over the same span. Compared on the frames that
    changed only, so a frame-repeated file spans the same motion as any other."""

    def __init__(self, fps: float) -> None:
        self._span = max(2, round(fps * GRADUAL_SPAN_S))
        self._fps = fps
        self._recent: deque[tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=self._span + 1)
        self._structure, self._tones, self._at = array("d"), array("d"), array("d")

    def update(self, frame: Frame) -> None:
        if frame.repeat:
            return
        structure, tones = frame.structure, frame.tones
        self._recent.append((frame.index, structure, tones))
        if len(self._recent) == self._recent.maxlen and structure.any() and self._recent[0][1].any():
            _, old_structure, old_tones = self._recent[0]
            self._structure.append(1.0 - float(structure @ old_structure))
            self._tones.append(1.0 - float(np.minimum(tones, old_tones).sum()))
            self._at.append((self._recent[0][0] + frame.index) / 2 / self._fps)

    def defects(self) -> list[str]:
        structure, tones = np.asarray(self._structure), np.asarray(self._tones)
        if structure.size < 3:
            return []
        jumps = ((structure > max(GRADUAL_MIN_STRUCTURE, GRADUAL_TYPICAL_RATIO * float(np.median(structure))))
                 & (tones > max(GRADUAL_MIN_TONES, GRADUAL_TYPICAL_RATIO * float(np.median(tones)))))
        if not jumps.any():
            return []
        return [f"gradual scene change around {self._at[int(np.argmax(structure * jumps))]:.2f} s"]


def warp_residual(before: np.ndarray, after: np.ndarray, flow: np.ndarray) -> float:
    """How much of `before` the flow to `after` does not explain: mean |before - after warped
    back| over the interior, relative to the picture's own mean gradient (so busy texture does
    not read as change). Rigid motion and camera moves warp back almost exactly; a subject that
    melts, morphs or boils does not."""
    warped = _warp(after, flow, 1.0)
    rows, columns = interior(*before.shape)
    error = cv2.absdiff(before, warped)[rows, columns]
    gradient = cv2.magnitude(cv2.Sobel(before, cv2.CV_32F, 1, 0), cv2.Sobel(before, cv2.CV_32F, 0, 1))
    return float(error.mean()) / (float(gradient[rows, columns].mean()) / 4 + 2.0)


class Instability(Measurement):
    """`warp_stability` (neighbouring sampled frames) and `long_stability` (frames LONG_SPAN_S
    apart): 1 - median `warp_residual`, higher = steadier. Long-range change is what a slow melt
    or morph adds up to while each step looks smooth. Pairs inside a freeze (`SampledPair.held`)
    warp back exactly and are left out of the short-range median, as they are out of flicker and
    smoothness: a take that stops is not steadier for it."""

    def __init__(self, fps: float) -> None:
        self._span = max(1, round(fps * LONG_SPAN_S))
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._short, self._long = array("d"), array("d")
        self._anchor: tuple[int, np.ndarray] | None = None
        self._held = False

    def update(self, frame: Frame) -> None:
        if (pair := frame.pair) is None:
            if frame.index == 0:
                self._anchor = (0, frame.gray)
            return
        if pair.held:
            self._held = True
        else:
            frames, flow = pair.halved  # half the motion size: a morph is no fine detail
            self._short.append(warp_residual(frames[0], frames[-1], flow))
        if self._anchor is not None and frame.index - self._anchor[0] >= self._span:
            flow = self._dis.calc(self._anchor[1], frame.gray, None)
            self._long.append(warp_residual(self._anchor[1], frame.gray, flow))
            self._anchor = (frame.index, frame.gray)

    def defects(self) -> list[str]:
        stability = self.result().get("warp_stability")
        if stability is None or stability >= MORPH_STABILITY:
            return []
        return [f"picture morphs or boils from frame to frame (warp stability {stability:.2f})"]

    def result(self) -> dict[str, float]:
        values = {}
        if self._short:
            values["warp_stability"] = 1 - float(np.median(self._short))
        elif self._held:
            values["warp_stability"] = 1.0  # held throughout: nothing morphs
        if self._long:
            values["long_stability"] = 1 - float(np.median(self._long))
        return values
