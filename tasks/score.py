"""Score the takes of a shot (technical QC + weight-free metrics) and pick the best one.

`score_take` is the cached Prefect task around `measure_take`; `select_best` is pure. It ranks the
takes of ONE shot against each other, because good takes differ only in the third decimal
(scoring.md §2) and absolute thresholds would not separate them; `quality` then places a take on
an absolute 0–1 scale so a shot whose best take is still poor can be sent back for more takes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.caching import content_key
from tasks.learned import default_registry, score_with_learned
from tasks.metrics import Expectation, TakeMetrics, measure_take
from tasks.metrics_defects import barely_moves
from tasks.metrics_motion_ref import NAME as MOTION_REF, motion_reference_adherence

# (worst, best) of each metric on an absolute scale, for `quality`. Values outside are clamped.
# sharpness (raw Laplacian variance, content-dependent) and dynamic_degree (raw px/frame, not a
# quality) have no absolute range: they only ever rank takes within one shot.
RANGES: dict[str, tuple[float, float]] = {
    # VBench scripts/constant.py NORMALIZE_DIC, the empirical min/max over models (scoring.md §1.3).
    "temporal_flicker": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    # 1 - BRISQUE / 100 (tasks/learned.BrisqueScorer); BRISQUE's own 0-100 scale.
    "image_naturalness": (0.0, 1.0),
    # Real models' takes in the labelled corpus (bench/corpus_bench.py): the softest and most
    # boiling clean-looking takes at the bottom, the crispest and steadiest at the top.
    "crispness": (0.45, 0.75),
    "warp_stability": (0.4, 0.95),
    "motion_presence": (0.0, 1.0),
    # Our own 0..1 scores (1 = perfect). Nothing published to calibrate them, so the full scale.
    **{name: (0.0, 1.0) for name in ("brightness_stability", "low_noise", "exposure", "motion_amount_match",
                                     "camera_adherence", "brush_adherence", "reference_fidelity",
                                     MOTION_REF)},
}

# The smallest spread of a metric within a shot that means something; a smaller one (measurement
# and encoding noise) is not stretched to the full 0..1, so noise on several metrics cannot
# outvote a real difference on one. For the VBench-calibrated metrics it is 1-2 units of the third
# decimal, where good takes differ (scoring.md §2). Sharpness, raw and content-dependent, uses a share of
# the sharpest take's value instead (15 %: real models' takes of one prompt differ by more before
# one looks softer, bench/corpus_bench.py). Unlisted metrics are compared however small the spread.
NOTICEABLE_SPREAD: dict[str, float] = {
    "temporal_flicker": 0.001, "motion_smoothness": 0.001, "brightness_stability": 0.001,
    "subject_consistency": 0.002, "background_consistency": 0.002, "aesthetic_quality": 0.005,
    "low_noise": 0.01, "exposure": 0.01, "image_naturalness": 0.02, "motion_amount_match": 0.02,
    "camera_adherence": 0.02, "brush_adherence": 0.02, "reference_fidelity": 0.02, "crispness": 0.02, "warp_stability": 0.03,
    "motion_presence": 0.05, MOTION_REF: 0.02,
}
NOTICEABLE_SHARPNESS_SHARE = 0.15

# A visible defect: trailing the shot's best take on one of these by more than the gap. An editor
# sets such a take aside however well it does elsewhere, so it cannot win on a pile of small
# leads. Each gap must lie beyond the natural spread between real models' good takes of one
# prompt: in the labelled real corpus (bench/corpus_bench.py, ../shared/corpus) a label-best clip
# trailed its group's best by at most 0.008 on flicker, 0.004 on brightness stability, 0.028 on
# motion smoothness and 0.39 on exposure (a dark space scene humans preferred), so the gaps sit
# above those (the previz twins' 0.004 smoothness gap was far inside that spread). The adherence
# gaps come from the previz corpus (tests/test_metric_corpus.py: a clean take trails by at most
# 0.013 on camera adherence, a take moving the wrong way by at least 0.89).
DEFECT_GAP: dict[str, float] = {
    "camera_adherence": 0.3, "brush_adherence": 0.3, "reference_fidelity": 0.2,
    "temporal_flicker": 0.015, "brightness_stability": 0.006, "motion_smoothness": 0.04,
    "exposure": 0.45, MOTION_REF: 0.3,  # as camera adherence: a take moving against the reference
}

# Metrics computed from high-frequency frame differences, which blur lowers: a softer take looks
# steadier and cleaner on them than its sharp twin. A take with less than CLEARLY_SOFTER of
# another take's sharpness therefore gets no credit on them over that take.
DETAIL_CONFOUNDED = ("temporal_flicker", "motion_smoothness", "subject_consistency",
                     "background_consistency", "low_noise", "warp_stability", "brightness_stability")
CLEARLY_SOFTER = 0.7
CLEARLY_STILLER = 0.5
# Each flaw (TakeMetrics.flaws: a corner logo, a fade at an end) costs this much of the rank total.
FLAW_PENALTY = 0.1
# A take whose crispness (frame-relative Crété-Roffet blur, tasks/metrics_defects.py) trails the
# shot's crispest take by more than this is visibly softer: set aside. In the real corpus a
# label-best clip trailed its group's crispest by up to 0.18 (a showcase clip), a hazy take its
# sharp sibling by 0.11 and a soft Gen-2 take by 0.22 (bench/corpus_bench.py).
SOFTER_GAP = 0.2


class ScoringWeights(BaseModel):
    """Weight of each metric in a take's total, in VBench's proportions (scoring.md §8.3).

    Every metric is oriented so that higher is better, so weights are never negative. Metrics a
    take does not report are skipped, so adherence terms only count on shots that asked for them.
    Other names, such as a learned scorer's metric, can be weighted as extra keyword arguments.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotated[float, Field(ge=0)]] = Field(init=False)

    temporal_flicker: float = Field(1.0, ge=0, description="Temporal: frame-to-frame flicker.")
    brightness_stability: float = Field(1.0, ge=0, description="Temporal: exposure pumping and flashes.")
    motion_smoothness: float = Field(1.0, ge=0, description="Temporal: judder, predicted vs real frames.")
    subject_consistency: float = Field(1.0, ge=0, description="Temporal: the subject stays itself.")
    background_consistency: float = Field(1.0, ge=0, description="Temporal: the background stays put.")
    sharpness: float = Field(1.0, ge=0, description="Imaging: Laplacian variance, ranked within the shot.")
    crispness: float = Field(1.0, ge=0, description="Imaging: frame-relative no-reference blur (Crété-Roffet).")
    warp_stability: float = Field(1.0, ge=0, description="Temporal: change no motion explains (morphing, boiling).")
    motion_presence: float = Field(0.5, ge=0, description="Dynamic: moves at all, on shots that ask for motion "
                                   "(VBench weighs dynamic degree 0.5).")
    low_noise: float = Field(0.5, ge=0, description="Aesthetic-ish proxy: little sensor-like noise.")
    exposure: float = Field(0.5, ge=0, description="Aesthetic-ish proxy: well exposed, little clipping.")
    aesthetic_quality: float = Field(0.5, ge=0, description="Learned LAION aesthetic score, when its weights exist.")
    image_naturalness: float = Field(1.0, ge=0, description="Imaging: BRISQUE no-reference quality, where its "
                                     "package is installed (VBench weighs imaging quality 1).")
    camera_adherence: float = Field(1.0, ge=0, description="Adherence: does the requested camera move.")
    brush_adherence: float = Field(1.0, ge=0, description="Adherence: motion stays in the brushed regions.")
    motion_amount_match: float = Field(1.0, ge=0, description="Adherence: as much motion as requested.")
    reference_fidelity: float = Field(1.0, ge=0, description="Adherence: looks like the reference image.")
    motion_reference_adherence: float = Field(1.0, ge=0, description="Adherence: moves like the shot's motion "
                                              "reference video, at its timing (tasks/metrics_motion_ref.py).")
    dynamic_degree: float = Field(0.0, ge=0, description="Raw motion magnitude: informative only; whether "
                                  "the amount is right is motion_amount_match's job.")

    def as_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in self.model_dump().items()}


DEFAULT_WEIGHTS: dict[str, float] = ScoringWeights().as_dict()

# How the reason names a take that is best on a metric; other metrics read "best <name>".
_BEST_ON = {
    "temporal_flicker": "least flicker", "brightness_stability": "steadiest exposure",
    "motion_smoothness": "smoothest motion", "subject_consistency": "most consistent subject",
    "background_consistency": "steadiest background", "sharpness": "sharpest", "low_noise": "least noise",
    "exposure": "best exposure", "aesthetic_quality": "most aesthetic",
    "image_naturalness": "cleanest picture (BRISQUE)", "crispness": "crispest",
    "warp_stability": "steadiest picture", "motion_presence": "most lively",
    "brush_adherence": "follows the motion brush", "motion_amount_match": "right amount of motion",
    "reference_fidelity": "closest to the reference", MOTION_REF: "follows the motion reference",
}
_NAMED_AT_MOST = 3  # dimensions named in a reason; more would not fit in a report cell
# A dimension is named only when the winner leads some rival by half the shot's spread on it, or
# half a noticeable difference: "steadiest exposure" must not rest on measurement noise.
_NAMED_FROM_LEAD = 0.5
REASON_LIMIT = 200
# How a note says a take trails the winner on a metric.
_WORSE_ON = {
    "temporal_flicker": "flickers more", "brightness_stability": "exposure pumps",
    "motion_smoothness": "jerkier motion", "subject_consistency": "subject drifts or morphs more",
    "background_consistency": "background shifts more", "sharpness": "softer", "crispness": "blurrier",
    "low_noise": "noisier", "exposure": "worse exposure", "aesthetic_quality": "less aesthetic",
    "image_naturalness": "less natural-looking picture (BRISQUE)",
    "camera_adherence": "follows the camera instruction less", "brush_adherence": "follows the brush less",
    "motion_amount_match": "wrong amount of camera motion", "reference_fidelity": "further from the reference",
    "warp_stability": "picture morphs more", "motion_presence": "moves less",
    MOTION_REF: "follows the motion reference less",
}


class Selection(BaseModel):
    """The chosen take, named by its number (None when no take is acceptable), and why.

    The per-take lists are in the order of `numbers`. `totals` holds each take's weighted score
    relative to the shot's other passing takes, in [0, 1]; `quality` its absolute quality in
    [0, 1] (see `quality`). Both are None for takes that failed QC; `quality` is also None when a
    take has no metric with an absolute range.
    """

    take: int | None = Field(description="Number of the chosen take; None when no take is acceptable.")
    numbers: list[int] = Field(description="Take numbers ranked, in the order of the per-take lists.")
    totals: list[float | None]
    quality: list[float | None]
    acceptable: bool = Field(description="A take passed QC and reached the quality bar.")
    reason: str
    standing: list[str] = Field([], description="Per take: chosen, ranked, set aside, below the bar or "
                                "failed QC.")
    notes: list[str] = Field([], description="Per take, in words: why it was chosen, or why it lost.")

    @property
    def index(self) -> int | None:
        """Position of the chosen take in the per-take lists."""
        return None if self.take is None else self.numbers.index(self.take)


def _run_name(parameters: dict[str, Any]) -> str:
    # A callable rather than "score-{take.stem}": it also works when a caller passes a str path.
    return f"score-{Path(parameters['take']).stem}"


# The scorer's version: takes scored by an earlier scorer are measured again, not read from the cache.
@task(name="score-take", task_run_name=_run_name, cache_key_fn=content_key(version="real-footage-8"),
      persist_result=True, retries=1)
def score_take(take: Path, expected: Expectation, learned: tuple[str, ...] = (),
               prompt: str = "", motion_reference: Path | None = None) -> TakeMetrics:
    """QC and measure one take, adding the `learned` scorers' metrics (those whose weights are
    here) and, for a shot with a motion reference, how closely it follows it; the cache key is
    the files' content and the scorer names, so a re-run costs nothing."""
    metrics = measure_take(take, expected)
    if motion_reference is not None and metrics.passed:
        value = motion_reference_adherence(take, motion_reference)
        if value is not None:
            metrics.metrics[MOTION_REF] = value
    if learned and metrics.passed:
        registry, _ = default_registry()
        values, _ = score_with_learned(take, prompt, [s for s in registry.scorers() if s.name in learned])
        metrics.metrics.update(values)
    return metrics


def _weight_table(weights: ScoringWeights | dict[str, float] | None) -> dict[str, float]:
    if weights is None:
        return DEFAULT_WEIGHTS
    if isinstance(weights, ScoringWeights):
        return weights.as_dict()
    if any(weight < 0 for weight in weights.values()):
        raise ValueError(f"weights must be >= 0 (metrics are higher-is-better): {weights}")
    return weights


def _metric_value(take: TakeMetrics, name: str) -> float | None:
    value = take.metrics.get(name)
    return value if value is not None and math.isfinite(value) else None


def quality(metrics: TakeMetrics, weights: ScoringWeights | dict[str, float] | None = None) -> float | None:
    """Absolute quality in [0, 1]: the weighted mean of the take's metrics placed on RANGES.

    Metrics without a range or weight, and those the take lacks, are skipped; None when nothing
    is left to judge (a number then would be invented, not measured).
    """
    table = _weight_table(weights)
    placed, total_weight = 0.0, 0.0
    for name, (worst, best) in RANGES.items():
        value, weight = _metric_value(metrics, name), table.get(name, 0.0)
        if value is None or not weight:
            continue
        placed += weight * min(1.0, max(0.0, (value - worst) / (best - worst)))
        total_weight += weight
    return placed / total_weight if total_weight else None


def _relative_scores(values: list[float | None], noticeable: float) -> list[float] | None:
    """Min-max normalise within the shot: best 1, worst 0, missing 0, all equal 1 (a tie). A
    spread under `noticeable` is divided by `noticeable` instead, so the worst stays near 1.

    None when no take reported the metric, so it is left out of the total.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    high = max(present)
    spread = max(high - min(present), noticeable)
    if spread <= 1e-12 * max(1.0, abs(high)):
        return [0.0 if v is None else 1.0 for v in values]
    return [0.0 if v is None else 1 - (high - v) / spread for v in values]


def _noticeable(name: str, values: list[float | None]) -> float:
    if name == "sharpness":
        return NOTICEABLE_SHARPNESS_SHARE * max((abs(v) for v in values if v is not None), default=0.0)
    return NOTICEABLE_SPREAD.get(name, 0.0)


def _clearly_stiller(metrics: list[TakeMetrics], i: int, j: int) -> bool:
    """On a shot that asks for motion, take i barely moves (`barely_moves`) and take j moves
    more than 1 / CLEARLY_STILLER times as fast. Only a still take loses credit so: a faster
    take is not always a better one (a boiling picture reads as motion too)."""
    own, other = _metric_value(metrics[i], "motion_speed"), _metric_value(metrics[j], "motion_speed")
    return (metrics[i].motion_wanted and barely_moves(metrics[i].metrics) and own is not None
            and other is not None and own < CLEARLY_STILLER * other)


def _discount_softness(scores: dict[str, dict[int, float]], metrics: list[TakeMetrics],
                       passing: list[int]) -> list[int]:
    """Cap a clearly softer or (when the shot asks for motion) clearly stiller take's
    DETAIL_CONFOUNDED scores at those of the takes clearly sharper or moving more than it (only
    ones that report the metric), in place; return the takes that lost credit. Blur and
    stillness both make a take read steadier: neither is a merit."""
    original = {name: dict(scores[name]) for name in DETAIL_CONFOUNDED if name in scores}
    discounted = set()
    for i in passing:
        better = [j for j in passing if _clearly_softer(metrics, j, i) or _clearly_stiller(metrics, i, j)]
        for name, relative in original.items():
            caps = [relative[j] for j in better if _metric_value(metrics[j], name) is not None]
            if caps and max(caps) < scores[name][i]:
                scores[name][i] = max(caps)
                discounted.add(i)
    return sorted(discounted)


def _clip(text: str, limit: int = REASON_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _below_bar(value: float) -> str:
    # Rounded down, so a take at 0.596 under a 0.60 bar never reads "scored 0.60, below 0.60".
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


def _failures(metrics: list[TakeMetrics], numbers: list[int]) -> str:
    # The first fail per take says enough here; the report lists every fail of every take.
    return "; ".join(f"take {n} {m.hard_fails[0]}" + (f" (+{len(m.hard_fails) - 1} more)"
                                                     if len(m.hard_fails) > 1 else "")
                     for n, m in zip(numbers, metrics) if not m.passed and m.hard_fails)


def _label(name: str, camera: str) -> str:
    if name == "camera_adherence":
        return f"follows '{_clip(camera, 40)}'" if camera else "follows the camera instruction"
    return _BEST_ON.get(name, f"best {name}")


def _strengths(winner: int, rivals: list[int], scores: dict[str, dict[int, float]],
               weights: dict[str, float], camera: str) -> list[str]:
    """Dimensions where the winner is (jointly) best among `rivals` and clearly ahead of one,
    the ones that set it furthest ahead of the runner-up first."""
    ranked = []
    for order, (name, relative) in enumerate(scores.items()):
        others = [relative[i] for i in rivals]
        if relative[winner] >= max(others) and relative[winner] - min(others) >= _NAMED_FROM_LEAD:
            lead = weights[name] * (relative[winner] - max(others))
            spread = weights[name] * (relative[winner] - min(others))
            ranked.append((-lead, -spread, order, name))
    return [_label(name, camera) for *_, name in sorted(ranked)[:_NAMED_AT_MOST]]


def _why_winner(winner: int, acceptable: list[int], passing: list[int], totals: dict[int, float],
                scores: dict[str, dict[int, float]], weights: dict[str, float], camera: str,
                min_quality: float, set_aside: bool = False) -> str:
    rivals = [i for i in acceptable if i != winner]
    if not rivals:
        if set_aside:
            return "only take without a visible defect"
        return "only take to pass QC" if len(passing) == 1 else f"only take above the quality bar {min_quality:.2f}"
    strengths = _strengths(winner, rivals, scores, weights, camera)
    if strengths:
        return ", ".join(strengths)
    if all(totals[i] == totals[winner] for i in rivals):
        return "passing takes tie, first one kept"
    return f"best balance of metrics (total {totals[winner]:.2f})"


def _rank(metrics: list[TakeMetrics], passing: list[int], weights: dict[str, float]
          ) -> tuple[dict[str, dict[int, float]], dict[int, float], list[int]]:
    """Each weighted metric's relative scores over the passing takes, each take's weighted total,
    and the takes whose steadiness was not counted because they are clearly softer."""
    scores: dict[str, dict[int, float]] = {}
    for name, weight in weights.items():
        values = [_metric_value(metrics[i], name) for i in passing]
        relative = _relative_scores(values, _noticeable(name, values))
        if weight and relative is not None:
            scores[name] = dict(zip(passing, relative))
    softer = _discount_softness(scores, metrics, passing)
    weight_sum = sum(weights[name] for name in scores) or 1.0
    totals = {i: max(0.0, sum(weights[name] * relative[i] for name, relative in scores.items()) / weight_sum
                     - FLAW_PENALTY * len(metrics[i].flaws)) for i in passing}
    return scores, totals, softer


def _clearly_softer(metrics: list[TakeMetrics], i: int, j: int) -> bool:
    """Take j has less than CLEARLY_SOFTER of take i's sharpness."""
    own, other = _metric_value(metrics[i], "sharpness"), _metric_value(metrics[j], "sharpness")
    return own is not None and other is not None and other < CLEARLY_SOFTER * own


def _defects(metrics: list[TakeMetrics], candidates: list[int], gaps: dict[str, float],
             weights: dict[str, float]) -> dict[int, list[str]]:
    """Visible defects of each of `candidates`, in words: its own (TakeMetrics.defects), being
    much softer than the shot's crispest take, and trailing the best take on a weighted metric by
    more than its gap. On DETAIL_CONFOUNDED metrics the best is taken among the takes that are not
    clearly softer than the one judged, since blur alone makes a take read steadier."""
    defects: dict[int, list[str]] = {i: list(metrics[i].defects) for i in candidates}
    crisp = {i: _metric_value(metrics[i], "crispness") for i in candidates}
    known = {i: v for i, v in crisp.items() if v is not None}
    if len(known) >= 2:
        best = max(known, key=known.get)
        for i, value in known.items():
            if known[best] - value > SOFTER_GAP:
                defects[i].append(f"much softer than take {{{best}}} (crispness {value:.2f} vs {known[best]:.2f})")
    for name, gap in gaps.items():
        if not weights.get(name):
            continue
        values = {i: _metric_value(metrics[i], name) for i in candidates}
        for i, value in values.items():
            if value is None:
                continue
            rivals = [v for j, v in values.items() if v is not None and j != i
                      and not (name in DETAIL_CONFOUNDED and (_clearly_softer(metrics, i, j)
                                                              or _clearly_stiller(metrics, j, i)))]
            if rivals and max(rivals) - value > gap:
                defects[i].append(f"{_WORSE_ON.get(name, name)} ({name} {value:.3f} vs {max(rivals):.3f})")
    return {i: found for i, found in defects.items() if found}


def _numbered(text: str, numbers: list[int]) -> str:
    """Defect texts name rival takes by index as {i}; the report uses take numbers."""
    return re.sub(r"\{(\d+)\}", lambda m: str(numbers[int(m.group(1))]), text)


def _rank_note(i: int, winner: int, scores: dict[str, dict[int, float]], totals: dict[int, float],
               numbers: list[int], metrics: list[TakeMetrics]) -> str:
    """Why a ranked take lost to the winner: the metrics where it trails most."""
    behind = sorted(((scores[name][winner] - scores[name][i], name) for name in scores
                     if scores[name][winner] - scores[name][i] >= _NAMED_FROM_LEAD), reverse=True)
    words = []
    for _, name in behind[:2]:
        mine, theirs = _metric_value(metrics[i], name), _metric_value(metrics[winner], name)
        if mine is not None and theirs is not None:
            words.append(f"{_WORSE_ON.get(name, 'lower ' + name)} ({name} {mine:.3g} vs {theirs:.3g})")
    detail = ": " + ", ".join(words) if words else ""
    return f"ranked below take {numbers[winner]} (score {totals[i]:.2f} vs {totals[winner]:.2f}){detail}"


def select_best(metrics: list[TakeMetrics], weights: ScoringWeights | dict[str, float] | None = None,
                numbers: list[int] | None = None, *, min_quality: float = 0.0,
                camera: str = "", defect_gaps: dict[str, float] | None = None) -> Selection:
    """Pick the best take of one shot: QC failures are excluded, the rest ranked by weighted sum.

    Each weighted metric is min-max normalised over the passing takes (a spread smaller than
    NOTICEABLE_SPREAD is not stretched), so a total in [0, 1] says where a take sits within this
    shot, not how good it is. Metrics without a weight are ignored; a weighted metric no take
    reported is skipped; a take missing it counts as worst on it; a clearly softer take gets no
    credit on DETAIL_CONFOUNDED metrics. Ties go to the first take. Takes whose `quality` is
    below `min_quality` are not acceptable: the best acceptable take wins, and with none the
    take is None. `numbers` are the take numbers the reason uses (default 1, 2, …); `camera` is
    the shot's camera instruction, quoted when following it set the winner apart. Takes with a
    visible defect (`_defects`: their own, much softer than a sibling, or, with `defect_gaps`
    (the product passes DEFECT_GAP), trailing the best on a weighted metric by more than its
    gap) are set aside before ranking for the takes with the fewest defects.
    """
    if not 0.0 <= min_quality <= 1.0:
        raise ValueError(f"min_quality must be in [0, 1], got {min_quality}")
    numbers = numbers or list(range(1, len(metrics) + 1))
    table = _weight_table(weights)
    qualities = [quality(take, table) if take.passed else None for take in metrics]
    passing = [i for i, take in enumerate(metrics) if take.passed]
    failures = _failures(metrics, numbers)
    standing = ["failed QC"] * len(metrics)
    notes = [f"failed QC: {'; '.join(m.hard_fails)}" if m.hard_fails else "failed QC" for m in metrics]
    if not passing:
        reason = f"no take passed QC: {failures}" if metrics else "no takes to score"
        return Selection(take=None, numbers=numbers, totals=[None] * len(metrics), quality=qualities,
                         acceptable=False, reason=_clip(reason), standing=standing, notes=notes)

    scores, ranked, softer = _rank(metrics, passing, table)
    totals = [ranked.get(i) for i in range(len(metrics))]
    below = [i for i in passing if qualities[i] is not None and qualities[i] < min_quality]
    acceptable = [i for i in passing if i not in below]
    defects = {i: [_numbered(d, numbers) for d in found]
               for i, found in _defects(metrics, acceptable, defect_gaps or {}, table).items()}
    for i in below:
        standing[i], notes[i] = "below the bar", f"quality {_below_bar(qualities[i])} below the bar {min_quality:.2f}"
    if acceptable:
        fewest = min(len(defects.get(i, ())) for i in acceptable)
        preferred = [i for i in acceptable if len(defects.get(i, ())) == fewest]
        if len(preferred) < len(passing):  # rank the contenders among themselves only
            scores, ranked, softer = _rank(metrics, preferred, table)
        winner = max(preferred, key=lambda i: (ranked[i], -i))
        parts = [f"take {numbers[winner]}: "
                 + _why_winner(winner, preferred, passing, ranked, scores, table, camera, min_quality,
                               set_aside=len(preferred) < len(acceptable))]
        if set_aside := [i for i in acceptable if i not in preferred]:
            parts.append("set aside: " + ", ".join(f"take {numbers[i]} ({'; '.join(defects[i])})" for i in set_aside))
        if softer := [i for i in softer if i in acceptable and i != winner]:
            parts.append("softer or stiller, steadiness not counted: " + ", ".join(f"take {numbers[i]}" for i in softer))
        if below:
            parts.append(f"below the quality bar {min_quality:.2f}: " + ", ".join(
                f"take {numbers[i]} ({_below_bar(qualities[i])})" for i in below))
        for i in acceptable:
            if i == winner:
                standing[i], notes[i] = "chosen", "chosen: " + parts[0].split(": ", 1)[1]
            elif i in preferred:
                standing[i], notes[i] = "ranked", _rank_note(i, winner, scores, ranked, numbers, metrics)
            else:
                standing[i], notes[i] = "set aside", "set aside: " + "; ".join(defects[i])
            if defects.get(i) and standing[i] != "set aside":
                notes[i] += " (also: " + "; ".join(defects[i]) + ")"
            if metrics[i].flaws:
                notes[i] += " (flaws: " + "; ".join(metrics[i].flaws) + ")"
    else:
        winner = None
        best = max(below, key=lambda i: (qualities[i], -i))
        parts = [f"best take {numbers[best]} scored {_below_bar(qualities[best])}, "
                 f"below the quality bar {min_quality:.2f}"]
    if failures:
        parts.append(f"failed QC: {failures}")
    return Selection(take=None if winner is None else numbers[winner], numbers=numbers, totals=totals,
                     quality=qualities, acceptable=winner is not None,
                     reason=_clip("; ".join(parts)), standing=standing, notes=[_clip(n) for n in notes])
