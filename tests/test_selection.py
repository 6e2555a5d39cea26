"""Choosing a take (normalisation, weights, ties, quality bar, reasons), learned-scorer plug-ins and
contact sheets. Metrics are synthetic so every expected number can be worked out by hand; clips
are tiny and encode a frame's index in its grey level, so sampling can be checked pixel by pixel.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pydantic
import pytest

from blocks.media import FrameWriter
from tasks import learned
from blocks.media import evenly_spaced
from tasks.contact_sheet import (CHOSEN_BGR, HEADER_BGR, LABEL_COLUMN_RATIO, UNREADABLE_BGR,
                                 make_contact_sheet, make_contact_sheet_task)
from tasks.learned import (LaionAestheticScorer, ScorerRegistry, clip_blob, default_registry,
                           score_with_learned, split_available)
from tasks.metrics import TakeMetrics
from tasks.score import DEFAULT_WEIGHTS, NOTICEABLE_SHARPNESS_SHARE, RANGES, ScoringWeights, quality, select_best


def take(**metrics: float) -> TakeMetrics:
    return TakeMetrics(passed=True, hard_fails=[], metrics=metrics, frames=24)


def failed(*fails: str) -> TakeMetrics:
    return TakeMetrics(passed=False, hard_fails=list(fails), metrics={}, frames=0)


# --- ranking within a shot -------------------------------------------------------------------

def test_each_dimension_is_min_max_normalised_over_the_passing_takes() -> None:
    takes = [take(camera_adherence=0.35, sharpness=300.0),
             take(camera_adherence=0.45, sharpness=100.0),
             take(camera_adherence=0.65, sharpness=200.0),
             failed("frozen 100% of the clip")]  # its missing values must not widen the range
    selection = select_best(takes, weights={"camera_adherence": 3.0, "sharpness": 1.0})
    # camera 0, 1/3, 1 (weight 3); sharpness 1, 0, 1/2 (weight 1)
    assert selection.totals[:3] == [pytest.approx(1 / 4), pytest.approx(1 / 4), pytest.approx(3.5 / 4)]
    assert selection.totals[3] is None
    assert selection.index == 2


def test_the_selection_names_the_take_it_chose_not_a_position() -> None:
    # take numbers as a resampled shot has them: the winner is named by its number, not its rank slot
    takes = [take(sharpness=100.0), failed("frozen 100% of the clip"), take(sharpness=300.0)]
    selection = select_best(takes, numbers=[3, 5, 8])
    assert selection.take == 8 and selection.numbers == [3, 5, 8]
    assert selection.index == 2 and selection.standing[selection.index] == "chosen"
    assert selection.reason.startswith("take 8: ")
    nothing = select_best([failed("black frames 0.00–1.00 s")], numbers=[4])
    assert nothing.take is None and nothing.index is None


def test_noise_sized_differences_do_not_outvote_a_real_one() -> None:
    follows = take(camera_adherence=0.9, motion_smoothness=0.9901, temporal_flicker=0.9810,
                   background_consistency=0.9500, sharpness=100.0)
    ignores = take(camera_adherence=0.3, motion_smoothness=0.9902, temporal_flicker=0.9812,
                   background_consistency=0.9505, sharpness=101.0)
    selection = select_best([ignores, follows], camera="pan left")
    assert selection.index == 1
    assert selection.totals[0] == pytest.approx(4 / 5)  # best on four metrics, by noise
    # a quarter to a fifth of a noticeable difference behind on each of those four
    assert selection.totals[1] == pytest.approx((1 + 0.9 + 0.8 + 0.75 + (1 - 1 / (NOTICEABLE_SHARPNESS_SHARE * 101))) / 5)
    assert selection.reason == "take 2: follows 'pan left'"


SHARP = dict(sharpness=400.0, temporal_flicker=0.84, subject_consistency=0.41, background_consistency=0.40,
             low_noise=0.40, motion_smoothness=0.9980, brightness_stability=0.9993, exposure=0.99)
STEADIER = dict(temporal_flicker=0.90, subject_consistency=0.445, background_consistency=0.44,
                low_noise=0.50, motion_smoothness=0.9986, brightness_stability=0.9992, exposure=0.99)


def test_a_blurred_take_gets_no_credit_for_looking_steadier() -> None:
    # Blur lowers every frame difference, so the soft twin wins flicker, consistency and noise.
    blurred = take(**STEADIER, sharpness=130.0)
    selection = select_best([blurred, take(**SHARP)])
    assert selection.index == 1
    assert selection.reason == "take 2: sharpest; softer or stiller, steadiness not counted: take 1"


def test_a_slightly_softer_take_keeps_credit_for_being_steadier() -> None:
    selection = select_best([take(**SHARP), take(**STEADIER, sharpness=330.0)])
    assert selection.index == 1
    assert selection.reason == "take 2: least flicker, most consistent subject, steadiest background"


def test_default_weights_follow_scoring_md() -> None:
    temporal = ["temporal_flicker", "brightness_stability", "motion_smoothness",
                "subject_consistency", "background_consistency"]
    adherence = ["camera_adherence", "brush_adherence", "motion_amount_match", "reference_fidelity"]
    assert all(DEFAULT_WEIGHTS[name] == 1.0 for name in temporal + adherence + ["sharpness"])
    assert DEFAULT_WEIGHTS["exposure"] == DEFAULT_WEIGHTS["low_noise"] == 0.5
    assert DEFAULT_WEIGHTS["dynamic_degree"] == 0.0
    assert ScoringWeights().as_dict() == DEFAULT_WEIGHTS


def test_dynamic_degree_does_not_count_unless_weighted() -> None:
    takes = [take(sharpness=100.0, dynamic_degree=0.5), take(sharpness=90.0, dynamic_degree=9.0)]
    assert select_best(takes).index == 0
    assert select_best(takes, ScoringWeights(sharpness=0.0, dynamic_degree=1.0)).index == 1


def test_weights_decide_between_sharpness_and_camera_adherence() -> None:
    takes = [take(sharpness=200.0, camera_adherence=0.6), take(sharpness=100.0, camera_adherence=0.9)]
    assert select_best(takes, ScoringWeights(sharpness=2.0)).index == 0
    assert select_best(takes, ScoringWeights(camera_adherence=2.0)).index == 1


def test_scoring_weights_accept_extra_metrics_and_refuse_negative_ones() -> None:
    weights = ScoringWeights(aesthetic_quality=0.0, clip_prompt=2.0)
    assert weights.as_dict()["clip_prompt"] == 2.0
    takes = [take(clip_prompt=0.2, sharpness=50.0), take(clip_prompt=0.3, sharpness=40.0)]
    assert select_best(takes, weights).index == 1
    for bad in ({"sharpness": -1.0}, {"clip_prompt": -0.5}, {"clip_prompt": "high"}):
        with pytest.raises(pydantic.ValidationError):
            ScoringWeights(**bad)
    with pytest.raises(ValueError, match=">= 0"):
        select_best(takes, weights={"sharpness": -1.0})


def test_ties_go_to_the_first_passing_take() -> None:
    same = take(temporal_flicker=0.98, sharpness=50.0)
    selection = select_best([failed("fps 15, expected 12"), same, same], numbers=[4, 5, 6])
    assert selection.index == 1
    assert selection.totals == [None, 1.0, 1.0]
    assert selection.reason.startswith("take 5: passing takes tie, first one kept")


# --- absolute quality and the quality bar ----------------------------------------------------

def test_quality_places_metrics_on_their_documented_ranges() -> None:
    low, high = RANGES["temporal_flicker"]
    halfway = take(temporal_flicker=(low + high) / 2, brightness_stability=0.8, sharpness=1e6)
    assert quality(halfway) == pytest.approx((0.5 + 0.8) / 2)  # sharpness has no absolute range
    clamped = take(temporal_flicker=0.5, motion_smoothness=0.9999)  # below VBench's min, above its max
    assert quality(clamped) == pytest.approx(0.5)
    assert quality(take(exposure=0.2, camera_adherence=1.0)) == pytest.approx((0.5 * 0.2 + 1.0) / 1.5)
    assert quality(take(sharpness=80.0, dynamic_degree=3.0)) is None  # nothing absolute to judge


def test_no_quality_bar_keeps_every_passing_take_acceptable() -> None:
    takes = [take(exposure=0.1, sharpness=20.0), take(exposure=0.2, sharpness=10.0)]
    selection = select_best(takes)
    assert selection.acceptable and selection.index == 0
    assert selection.quality == [pytest.approx(0.1), pytest.approx(0.2)]


def test_shot_below_the_quality_bar_has_no_acceptable_take() -> None:
    takes = [take(exposure=0.30), take(exposure=0.41), failed("black frames 0.00–1.00 s")]
    selection = select_best(takes, numbers=[1, 2, 3], min_quality=0.6)
    assert selection.index is None and not selection.acceptable
    assert selection.quality == [pytest.approx(0.30), pytest.approx(0.41), None]
    assert selection.totals[:2] == [0.0, 1.0]  # still ranked, for the report
    assert selection.reason == ("best take 2 scored 0.41, below the quality bar 0.60; "
                                "failed QC: take 3 black frames 0.00–1.00 s")


def test_the_bar_passes_over_a_sharper_take_that_is_poor_in_absolute_terms() -> None:
    takes = [take(exposure=0.55, sharpness=200.0), take(exposure=0.65, sharpness=100.0)]
    weights = ScoringWeights(exposure=1.0, sharpness=2.0)
    assert select_best(takes, weights).index == 0
    selection = select_best(takes, weights, min_quality=0.6)
    assert selection.index == 1 and selection.acceptable
    assert selection.reason == "take 2: only take above the quality bar 0.60; below the quality bar 0.60: take 1 (0.55)"


def test_a_take_just_under_the_bar_never_reads_as_reaching_it() -> None:
    selection = select_best([take(exposure=0.596), take(exposure=0.29)], min_quality=0.6)
    assert selection.reason == "best take 1 scored 0.59, below the quality bar 0.60"


def test_quality_bar_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="min_quality"):
        select_best([take(exposure=0.5)], min_quality=60)


# --- reasons ---------------------------------------------------------------------------------

def test_reason_quotes_the_camera_instruction_when_it_set_the_winner_apart() -> None:
    takes = [take(temporal_flicker=0.985, camera_adherence=0.35, sharpness=90.0),
             take(temporal_flicker=0.985, camera_adherence=0.90, sharpness=90.0)]
    assert select_best(takes, camera="slow pan left").reason == "take 2: follows 'slow pan left'"
    assert select_best(takes).reason == "take 2: follows the camera instruction"


def test_reason_names_the_biggest_lead_first_and_at_most_three_dimensions() -> None:
    takes = [take(temporal_flicker=0.990, sharpness=200.0, exposure=0.8, low_noise=0.9, motion_smoothness=0.99),
             take(temporal_flicker=0.989, sharpness=100.0, exposure=0.7, low_noise=0.85, motion_smoothness=0.98),
             take(temporal_flicker=0.980, sharpness=90.0, exposure=0.6, low_noise=0.7, motion_smoothness=0.97)]
    reason = select_best(takes).reason
    # leads over take 2, weighted: sharpness 0.91, smoothness 0.5, exposure 0.25, noise 0.125, flicker 0.1
    assert reason == "take 1: sharpest, smoothest motion, best exposure"


def test_reason_lists_excluded_takes_with_their_hard_fails_and_stays_short() -> None:
    takes = [failed("frozen 100% of the clip", "black frames 0.00–2.00 s"),
             take(temporal_flicker=0.99), take(temporal_flicker=0.98),
             failed("unreadable: missing or empty file")]
    reason = select_best(takes).reason
    assert reason == ("take 2: least flicker; failed QC: take 1 frozen 100% of the clip (+1 more); "
                      "take 4 unreadable: missing or empty file")
    many = [take(temporal_flicker=0.99)] + [failed(f"duration {s}.00 s, expected 5.00 s") for s in range(9)]
    long_reason = select_best(many).reason
    assert len(long_reason) <= 200 and long_reason.endswith("…")
    assert long_reason.startswith("take 1: only take to pass QC; failed QC: take 2 duration 0.00 s")


# --- learned scorers -------------------------------------------------------------------------

WIDTH, HEIGHT, FPS, FRAMES = 64, 36, 12, 24
GREY_STEP = 10  # frame i is a flat grey of 10 * i, so a sampled frame tells its index


def write_clip(path: Path, tint: tuple[int, int, int] = (0, 0, 0)) -> Path:
    with FrameWriter(path, WIDTH, HEIGHT, FPS) as writer:
        for i in range(FRAMES):
            writer.write(np.full((HEIGHT, WIDTH, 3), np.add(GREY_STEP * i, tint), np.uint8))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    return {"grey": write_clip(folder / "grey.mp4"), "blue": write_clip(folder / "blue.mp4", (20, 0, 0)),
            "empty": empty}


class FakeScorer:
    def __init__(self, name: str = "fake", weights: Path | None = None, fail: bool = False) -> None:
        self.name, self._weights, self._fail = name, weights, fail
        self.seen: list[np.ndarray] = []

    def weights_path(self) -> Path:
        return self._weights or Path("/nonexistent/fake.onnx")

    def available(self) -> bool:
        return self._weights is None or self._weights.is_file()

    def score(self, frames: list[np.ndarray], prompt: str) -> dict[str, float]:
        if self._fail:
            raise RuntimeError("model exploded")
        self.seen = frames
        return {f"{self.name}_frames": float(len(frames)), f"{self.name}_prompt": float(len(prompt)),
                "not_a_number": float("nan")}


@pytest.fixture()
def no_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAKEFLOW_MODELS", str(tmp_path))
    return tmp_path


def test_scorer_without_weights_is_skipped_with_a_notice_and_nothing_decoded(no_models: Path) -> None:
    scorer = LaionAestheticScorer()
    assert scorer.weights_path() == no_models / "laion-aesthetic-vit-l14.onnx"
    metrics, notices = score_with_learned(no_models / "does-not-exist.mp4", "a kite", [scorer])
    assert metrics == {}
    assert notices == [f"laion-aesthetic skipped: no weights at {no_models / 'laion-aesthetic-vit-l14.onnx'}"]


def test_registered_scorer_runs_on_eight_evenly_spaced_frames(clips: dict[str, Path], no_models: Path) -> None:
    registry = ScorerRegistry()
    fake = registry.register(FakeScorer())
    registry.register(LaionAestheticScorer())
    metrics, notices = score_with_learned(clips["grey"], "a red kite", registry.scorers())
    assert metrics == {"fake_frames": 8.0, "fake_prompt": 10.0}  # NaN values are dropped
    assert [len(n.splitlines()) for n in notices] == [1] and notices[0].startswith("laion-aesthetic skipped")
    greys = [float(frame.mean()) for frame in fake.seen]
    assert greys == pytest.approx([GREY_STEP * i for i in evenly_spaced(FRAMES, 8)], abs=4)


def test_a_failing_scorer_costs_only_its_own_metrics(clips: dict[str, Path]) -> None:
    metrics, notices = score_with_learned(clips["grey"], "", [FakeScorer("bad", fail=True), FakeScorer()])
    assert metrics["fake_frames"] == 8.0 and not any(name.startswith("bad") for name in metrics)
    assert notices == ["bad failed on grey.mp4: model exploded"]
    _, unreadable = score_with_learned(clips["empty"], "", [FakeScorer()])
    assert unreadable == ["learned scorers not run on empty.mp4: missing or empty file"]


def test_registry_discovers_entry_points_and_reports_broken_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ImportError("No module named 'torch'")
    plugins = [SimpleNamespace(name="fake", value="pkg:FakeScorer", load=lambda: FakeScorer),
               SimpleNamespace(name="dover", value="takeflow_dover:DoverScorer", load=broken)]
    monkeypatch.setattr(learned, "entry_points",
                        lambda group: plugins if group == "takeflow.scorers" else [])
    registry, notices = default_registry()
    assert [s.name for s in registry.scorers()] == ["laion-aesthetic", "brisque", "fake"]
    assert notices == ["scorer plug-in dover (takeflow_dover:DoverScorer) not loaded: No module named 'torch'"]
    with pytest.raises(TypeError, match="not a LearnedScorer"):
        registry.register(object())


def test_availability_check_that_raises_counts_as_missing() -> None:
    class Broken(FakeScorer):
        def available(self) -> bool:
            raise PermissionError("models folder not readable")
    ready, notices = split_available([Broken("locked"), FakeScorer()])
    assert [s.name for s in ready] == ["fake"]
    assert notices == ["locked skipped: availability check failed: models folder not readable"]


def test_aesthetic_scorer_feeds_clip_input_to_the_onnx_model(no_models: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (no_models / "laion-aesthetic-vit-l14.onnx").write_bytes(b"stand-in: the net is faked below")
    inputs, loaded = [], []

    class Net:
        def setInput(self, blob: np.ndarray) -> None:
            inputs.append(blob)

        def forward(self) -> np.ndarray:
            return np.array([[5.0 + len(inputs)]], np.float32)  # 6, then 7

    monkeypatch.setattr(cv2.dnn, "readNetFromONNX", lambda path: loaded.append(path) or Net())
    scorer = LaionAestheticScorer()
    assert split_available([scorer]) == ([scorer], [])
    red = np.zeros((36, 64, 3), np.uint8)
    red[..., 2] = 255
    assert scorer.score([red, red], "ignored") == {"aesthetic_quality": pytest.approx(0.65)}
    assert loaded == [str(no_models / "laion-aesthetic-vit-l14.onnx")]
    assert inputs[0].shape == (1, 3, 224, 224) and inputs[0].dtype == np.float32
    # RGB order and CLIP's normalisation: red channel (1 - 0.4815) / 0.2686, green (0 - 0.4578) / 0.2613
    assert inputs[0][0, :, 112, 112] == pytest.approx([1.9303, -1.7521, -1.4802], abs=1e-3)
    assert np.array_equal(clip_blob(red), inputs[1])


# --- contact sheets --------------------------------------------------------------------------

THUMB = 64
THUMB_WIDTH = round(THUMB * WIDTH / HEIGHT)  # 114
LABEL = LABEL_COLUMN_RATIO * THUMB


def near(pixel: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - bgr) <= tolerance))


@pytest.fixture(scope="module")
def sheet(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    dest = tmp_path_factory.mktemp("sheet") / "s01.jpg"
    labels = ["take 1  0.40", "take 2 chosen  1.00", "take 3 unreadable: missing or empty file"]
    written = make_contact_sheet([clips["grey"], clips["blue"], clips["empty"]], labels, dest,
                                 frames_per_take=5, thumb_height=THUMB)
    assert written == dest and [p.name for p in dest.parent.iterdir()] == ["s01.jpg"]  # no temp left
    assert dest.read_bytes()[:2] == b"\xff\xd8"  # JPEG
    return cv2.imread(str(dest))


def test_sheet_is_one_row_per_take_and_one_column_per_frame(sheet: np.ndarray) -> None:
    assert sheet.shape == (3 * THUMB, LABEL + 5 * THUMB_WIDTH, 3)


def test_sheet_rows_show_evenly_spaced_frames(sheet: np.ndarray) -> None:
    for column, index in enumerate(evenly_spaced(FRAMES, 5)):  # 0, 6, 12, 17, 23
        centre = sheet[THUMB // 2, LABEL + column * THUMB_WIDTH + THUMB_WIDTH // 2]
        assert near(centre, (GREY_STEP * index,) * 3), (column, centre)


def test_chosen_row_is_highlighted_and_others_are_not(sheet: np.ndarray) -> None:
    row_bottom = 2 * THUMB - 5
    assert near(sheet[row_bottom, LABEL - 5], CHOSEN_BGR)  # label cell of take 2
    assert near(sheet[THUMB + 1, LABEL + THUMB_WIDTH // 2], CHOSEN_BGR)  # frame around its thumbnails
    assert near(sheet[THUMB - 5, LABEL - 5], HEADER_BGR)  # take 1's label cell stays dark
    assert not near(sheet[1, LABEL + THUMB_WIDTH // 2], CHOSEN_BGR)


def test_unreadable_take_is_a_grey_row_with_the_reason(sheet: np.ndarray) -> None:
    cells = sheet[2 * THUMB:, LABEL:]
    assert near(cells[-3, -3], UNREADABLE_BGR) and near(cells[THUMB // 2, -3], UNREADABLE_BGR)
    text_area = cells[:THUMB // 2, :THUMB_WIDTH * 2]
    assert (text_area.max(axis=2) < 70).sum() > 20  # dark text written on the grey


def test_contact_sheet_rejects_labels_that_do_not_match_takes(tmp_path: Path, clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="2 takes but 1 labels"):
        make_contact_sheet([clips["grey"], clips["blue"]], ["take 1"], tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()


def test_contact_sheet_task_is_cached_on_content_not_destination(clips: dict[str, Path]) -> None:
    assert make_contact_sheet_task.name == "contact-sheet" and make_contact_sheet_task.persist_result
    context = SimpleNamespace(task=make_contact_sheet_task)
    key = make_contact_sheet_task.cache_key_fn

    def params(dest: str, label: str) -> dict:
        return {"takes": [clips["grey"]], "labels": [label], "dest": Path(dest),
                "frames_per_take": 6, "thumb_height": 120}
    assert key(context, params("/a/s.jpg", "take 1")) == key(context, params("/b/t.jpg", "take 1"))
    assert key(context, params("/a/s.jpg", "take 1")) != key(context, params("/a/s.jpg", "take 1 chosen"))


def test_evenly_spaced_spans_first_to_last_frame() -> None:
    assert evenly_spaced(24, 6) == [0, 5, 9, 14, 18, 23]
    assert evenly_spaced(3, 5) == [0, 0, 1, 2, 2]
    assert evenly_spaced(24, 1) == [11]
    assert evenly_spaced(0, 6) == []


def test_a_take_with_a_visible_defect_is_set_aside_however_well_it_does_elsewhere():
    from tasks.score import DEFECT_GAP

    wrong_way = TakeMetrics(passed=True, hard_fails=[], frames=24, metrics={
        "camera_adherence": 0.05, "sharpness": 300.0, "temporal_flicker": 0.999, "low_noise": 0.9})
    right_way = TakeMetrics(passed=True, hard_fails=[], frames=24, metrics={
        "camera_adherence": 0.97, "sharpness": 200.0, "temporal_flicker": 0.998, "low_noise": 0.8})
    assert select_best([wrong_way, right_way]).index == 0  # the pile of small leads wins
    gated = select_best([wrong_way, right_way], defect_gaps=DEFECT_GAP, camera="slow pan left")
    assert gated.index == 1
    assert gated.reason == ("take 2: only take without a visible defect; "
                            "set aside: take 1 (follows the camera instruction less (camera_adherence 0.050 vs 0.970))")
    unweighted = select_best([wrong_way, right_way], weights={"sharpness": 1.0}, defect_gaps=DEFECT_GAP)
    assert unweighted.index == 0  # a dimension the user weights at 0 sets nothing aside


def test_takes_set_aside_fall_back_by_absolute_quality_not_by_rank_total() -> None:
    weights = {"temporal_flicker": 1.0, "crispness": 1.0}
    clean = take(temporal_flicker=0.999, crispness=0.70)
    # Trails the clean take by a noise-sized 0.004 on flicker, which the shot's min-max stretches
    # to its whole rank point, but is as crisp as the best: the better take on fixed ranges.
    flickers = TakeMetrics(passed=True, hard_fails=[], metrics={"temporal_flicker": 0.995, "crispness": 0.70},
                           frames=24, defects=["picture freezes for 0.6 s"])
    softer = TakeMetrics(passed=True, hard_fails=[], metrics={"temporal_flicker": 0.999, "crispness": 0.69},
                         frames=24, defects=["texture boils"])
    selection = select_best([softer, flickers, failed("no decodable frames"), clean], weights=weights)
    assert selection.standing == ["set aside", "set aside", "failed QC", "chosen"]
    assert selection.totals[0] > selection.totals[1]  # the rank total would keep the softer take next
    assert selection.quality[1] > selection.quality[0]
    assert selection.order == [4, 2, 1, 3]
    nothing = select_best([failed("black frames 0.00–1.00 s")], numbers=[7])
    assert nothing.order == [7]


def test_contenders_fall_back_in_the_order_that_chose_the_winner() -> None:
    weights = {"temporal_flicker": 1.0, "crispness": 1.0}
    takes = [take(temporal_flicker=0.990, crispness=0.60), take(temporal_flicker=0.999, crispness=0.70),
             take(temporal_flicker=0.995, crispness=0.65)]
    selection = select_best(takes, weights=weights)
    assert selection.standing == ["ranked", "chosen", "ranked"]
    assert selection.order == [2, 3, 1]
