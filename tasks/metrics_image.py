"""What the pictures of one take look like, and the picture QC gates, from the shared frame stream.

Image quality (noise, exposure) is measured on a few detail frames per second; subject and
background consistency, scene cuts and the other gates (black runs, letterboxing) on every frame
at the motion size, the first two on the frame's luma thumbnail.
Formulas and thresholds: /work/shared/reference/scoring.md §1.1, §4 and §8.
"""

from __future__ import annotations

from array import array

import cv2
import numpy as np

from tasks.metrics_temporal import CLIPPED_HIGH, CLIPPED_LOW, Frame, Measurement, normalised

# ffmpeg blackdetect defaults (pix_th=0.10 of full range, pic_th=0.98): a frame is black when 98 %
# of its pixels are that dark. Unlike a mean-luma test, a night sky with a few lights is not black.
BLACK_PIXEL_LUMA = 25
BLACK_PIXEL_SHARE = 0.98
MAX_BLACK_RUN_S = 0.2
# Letterbox/pillarbox: rows (columns) that are black by the blackdetect rule, on both opposite
# edges of every non-black frame, each at least this share of the frame (2.39:1 in 16:9 is 12 %).
BAR_MIN_SHARE = 0.03
BAR_MAX_LUMA = 2 * BLACK_PIXEL_LUMA
BAR_EDGE_STEP = 12  # grey levels between a bar's last lines and the picture's first
# A cut changes the picture's structure and its tones at once, each by at least this much and far
# beyond the clip's typical frame-to-frame change (corpus cuts between look-alike previz scenes:
# structure >= 0.34, tones >= 0.08; every other frame pair of those clips: tones <= 0.02).
CUT_MIN_STRUCTURE = 0.15
CUT_MIN_TONES = 0.05
CUT_TYPICAL_RATIO = 8.0
# Exposure: a mean luma within this distance of black or white starts to cost.
EXPOSURE_MARGIN = 32
# Immerkær's noise kernel: the difference of two Laplacians cancels smooth image structure; on
# Gaussian noise of sigma s its output has sigma 6 s.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# Mean of the smaller half of |x| for x ~ N(0, s), in units of s.
_LOWER_HALF_MEAN = 0.3247


def is_black(gray: np.ndarray) -> bool:
    return np.count_nonzero(gray <= BLACK_PIXEL_LUMA) >= BLACK_PIXEL_SHARE * gray.size


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkær's fast noise estimate, from the smaller half of the residuals (flat areas; edges
    and texture land in the larger half) and over unclipped pixels only: sigma in grey levels."""
    residual = np.abs(cv2.filter2D(gray, cv2.CV_16S, _NOISE_KERNEL)[1:-1, 1:-1])
    inner = gray[1:-1, 1:-1]
    residual = residual[(inner > CLIPPED_LOW) & (inner < CLIPPED_HIGH)]
    if residual.size < 2:
        return 0.0
    counts = np.bincount(residual)
    cumulative = np.cumsum(counts)
    half = residual.size // 2
    median = int(np.searchsorted(cumulative, half))  # the half-th smallest value
    below = int(cumulative[median - 1]) if median else 0
    lower_sum = float(np.arange(median) @ counts[:median]) + median * (half - below)
    return lower_sum / half / _LOWER_HALF_MEAN / 6


class LowNoise(Measurement):
    """Noise flipped to higher-is-better: 1 / (1 + sigma), sigma the median over detail frames."""

    def __init__(self) -> None:
        self._sigmas = array("d")

    def update(self, frame: Frame) -> None:
        if frame.detail:
            self._sigmas.append(noise_sigma(frame.detail_gray))

    def result(self) -> dict[str, float]:
        return {"low_noise": 1 / (1 + float(np.median(self._sigmas)))} if self._sigmas else {}


class Exposure(Measurement):
    """Mean over detail frames of (1 - clipped share) x min(1, mean / 32, (255 - mean) / 32) of
    the grey frame at the motion size: 1 when nothing is crushed or blown out and the average is
    not close to black or white (a night scene may be dark; it must not be clipped)."""

    def __init__(self) -> None:
        self._sum = 0.0
        self._frames = 0

    def update(self, frame: Frame) -> None:
        if not frame.detail:
            return
        gray = frame.gray
        clipped = np.count_nonzero((gray <= CLIPPED_LOW) | (gray >= CLIPPED_HIGH)) / gray.size
        mean = cv2.mean(gray)[0]
        self._sum += (1 - clipped) * min(1.0, mean / EXPOSURE_MARGIN, (255 - mean) / EXPOSURE_MARGIN)
        self._frames += 1

    def result(self) -> dict[str, float]:
        return {"exposure": self._sum / self._frames} if self._frames else {}


_CENTRE = np.zeros((32, 32), bool)
_CENTRE[8:24, 8:24] = True


def _subject_and_background(thumbnail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised features of the centre quarter of the frame (the subject, by framing habit)
    and of the ring around it (the background)."""
    return normalised(thumbnail[_CENTRE]), normalised(thumbnail[~_CENTRE])


class Consistency(Measurement):
    """VBench subject_consistency and background_consistency with classical features.

    Per frame i >= 1: s_i = (max(0, cos(f_i-1, f_i)) + max(0, cos(f_0, f_i))) / 2, averaged over
    the clip; f is the zero-mean, unit-norm luma thumbnail (32x32 of the whole frame) of the
    subject or of the background. Exposure changes leave it alone; content that drifts, morphs or
    jumps does not. Like VBench's, it is lower for takes that move more. (Skipping repeated frames
    was tried: it lets a noisy twin outscore its clean source, whose slow moments it drops.)
    """

    def __init__(self) -> None:
        self._first: tuple[np.ndarray, np.ndarray] | None = None
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._sums = [0.0, 0.0]
        self._measured = 0

    def update(self, frame: Frame) -> None:
        features = _subject_and_background(frame.thumbnail)
        if self._first is None:
            self._first = features
        else:
            for part, (now, before, first) in enumerate(zip(features, self._previous, self._first)):
                self._sums[part] += (max(0.0, float(now @ before)) + max(0.0, float(now @ first))) / 2
            self._measured += 1
        self._previous = features

    def result(self) -> dict[str, float]:
        if not self._measured:
            return {}
        subject, background = (total / self._measured for total in self._sums)
        return {"subject_consistency": subject, "background_consistency": background}


class SceneCuts(Measurement):
    """A cut inside the shot: between two frames both the picture's structure (1 - cosine of the
    normalised thumbnails) and its tones (1 - intersection of the 32-bin luma histograms) jump,
    each far beyond its typical frame-to-frame change in this clip. Motion alone moves the
    structure, an exposure jump or flicker only the tones; a cut moves both. Flat frames (black,
    fades) are skipped: a black gap is the black-frame gate's business."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        # Structure and tone change into each frame (NaN next to a flat frame): 16 bytes a frame,
        # the clip-wide median needs them all; takes over 10 minutes are refused.
        self._structure, self._tones = array("d"), array("d")

    def update(self, frame: Frame) -> None:
        if frame.repeat:  # compare the frames that changed: a repeated frame hides no cut
            return
        structure, tones = frame.structure, frame.tones
        if self._previous is not None:
            measurable = structure.any() and self._previous[0].any()
            self._structure.append(1.0 - float(structure @ self._previous[0]) if measurable else np.nan)
            self._tones.append(1.0 - float(np.minimum(tones, self._previous[1]).sum()))
        self._previous = structure, tones

    def hard_fails(self) -> list[str]:
        structure, tones = np.asarray(self._structure), np.asarray(self._tones)
        measured = ~np.isnan(structure)
        if np.count_nonzero(measured) < 2:
            return []
        jumps = np.ones(structure.shape, bool)
        for change, floor in ((structure, CUT_MIN_STRUCTURE), (tones, CUT_MIN_TONES)):
            typical = float(np.median(change[measured]))
            jumps &= measured & (change > max(floor, CUT_TYPICAL_RATIO * typical))
        cuts = [f"{(index + 1) / self._fps:.2f} s" for index in np.flatnonzero(jumps)]
        return [f"scene cut at {', '.join(cuts)}"] if cuts else []


class BlackFrames:
    """Runs of black frames (blackdetect's rule); a run longer than MAX_BLACK_RUN_S fails."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._runs: list[list[int]] = []  # [first, last] frame index of each black run
        self._frames = 0

    def update(self, frame: Frame) -> None:
        self._frames += 1
        if not is_black(frame.gray):
            return
        if self._runs and self._runs[-1][1] == frame.index - 1:
            self._runs[-1][1] = frame.index
        else:
            self._runs.append([frame.index, frame.index])

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


def _edge_run(dark: np.ndarray) -> int:
    """How many leading entries of a boolean line profile are dark."""
    light = np.flatnonzero(~dark)
    return int(light[0]) if light.size else dark.size


def _bar(dark: np.ndarray, means: np.ndarray) -> int:
    """The bar's width at the start of a line profile: its dark lines, if the picture starts with
    a step in brightness after them (a matte's hard edge), else 0 (a dark scene fading out)."""
    run = _edge_run(dark)
    if run == 0 or run >= dark.size - 2:
        return run
    return run if means[run:run + 2].mean() - means[max(0, run - 2):run].mean() >= BAR_EDGE_STEP else 0


class Letterbox(Measurement):
    """Black bars on opposite edges (letterbox top and bottom, pillarbox left and right) in every
    non-black detail frame; no request asks for them, so they are a hard fail."""

    def __init__(self) -> None:
        self._bars: np.ndarray | None = None  # smallest top, bottom, left, right bar seen, in px
        self._size = (1, 1)

    def update(self, frame: Frame) -> None:
        if not frame.detail or is_black(frame.gray):
            return
        gray = frame.gray
        dark = gray <= BLACK_PIXEL_LUMA
        # A bar is flat: dark by the blackdetect rule and nothing bright in it (a night sky's
        # stars or a lit window are picture, not a bar).
        rows = (dark.mean(axis=1) >= BLACK_PIXEL_SHARE) & (gray.max(axis=1) <= BAR_MAX_LUMA)
        columns = (dark.mean(axis=0) >= BLACK_PIXEL_SHARE) & (gray.max(axis=0) <= BAR_MAX_LUMA)
        line_means = (gray.mean(axis=1), gray.mean(axis=0))
        bars = np.array([_bar(rows, line_means[0]), _bar(rows[::-1], line_means[0][::-1]),
                         _bar(columns, line_means[1]), _bar(columns[::-1], line_means[1][::-1])])
        self._bars = bars if self._bars is None else np.minimum(self._bars, bars)
        self._size = frame.gray.shape

    def flaws(self) -> list[str]:
        """A bar on one edge only: the picture does not fill the frame."""
        if self._bars is None:
            return []
        height, width = self._size
        out = []
        for name, size, (one, other) in (("top", height, self._bars[:2]), ("bottom", height, self._bars[1::-1]),
                                         ("left", width, self._bars[2:]), ("right", width, self._bars[:1:-1])):
            if one >= BAR_MIN_SHARE * size and other < BAR_MIN_SHARE * size:
                out.append(f"black bar along the {name} edge ({one / size:.0%} of the frame)")
        return out

    def hard_fails(self) -> list[str]:
        if self._bars is None:
            return []
        top, bottom, left, right = self._bars
        height, width = self._size
        fails = []
        if min(top, bottom) >= BAR_MIN_SHARE * height:
            fails.append(f"letterboxed: black bars {top / height:.0%} top, {bottom / height:.0%} bottom")
        if min(left, right) >= BAR_MIN_SHARE * width:
            fails.append(f"pillarboxed: black bars {left / width:.0%} left, {right / width:.0%} right")
        return fails
