"""Score the takes of a shot (technical QC + weight-free metrics) and pick the best one.

`score_take` is the cached Prefect task around `measure_take`; `select_best` is pure. It ranks the
takes of ONE shot against each other, because good takes differ only in the third decimal
(scoring.md §2) and absolute thresholds would not separate them; `quality` then places a take on
an absolute 0–1 scale so a shot whose best take is still poor can be sent back for more takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.caching import content_key
from tasks.learned import default_registry, score_with_learned
from tasks.metrics import Expectation, TakeMetrics, measure_take
from tasks.metrics_defects import barely_moves
from tasks.metrics_motion_ref import NAME as MOTION_REF, motion_reference_adherence
from tasks.score_rank import (  # noqa: F401  (the calibration is read from here too)
    CLEARLY_SOFTER, CLEARLY_STILLER, DEFECT_GAP, DETAIL_CONFOUNDED, FLAW_PENALTY, NOTICEABLE_SHARPNESS_SHARE,
    NOTICEABLE_SPREAD, RANGES, SOFTER_GAP, rank_takes, visible_defects)
from tasks.score_words import below_bar, clip_text, failures_text, numbered, rank_note, why_winner


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
    order: list[int] = Field([], description="Take numbers from best to worst, the order an editor would fall "
                             "back through (see `fallback_order`).")

    @property
    def index(self) -> int | None:
        """Position of the chosen take in the per-take lists."""
        return None if self.take is None else self.numbers.index(self.take)


def _run_name(parameters: dict[str, Any]) -> str:
    # A callable rather than "score-{take.stem}": it also works when a caller passes a str path.
    return f"score-{Path(parameters['take']).stem}"


# The scorer's version: takes scored by an earlier scorer are measured again, not read from the cache.
@task(name="score-take", task_run_name=_run_name, cache_key_fn=content_key(version="real-footage-9"),
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


# Steadiness that a still picture has by construction (DETAIL_CONFOUNDED less noise, which a
# still frame shows as plainly as a moving one).
STEADY_WHEN_STILL = tuple(name for name in DETAIL_CONFOUNDED if name != "low_noise")


def quality(metrics: TakeMetrics, weights: ScoringWeights | dict[str, float] | None = None) -> float | None:
    """Absolute quality in [0, 1]: the weighted mean of the take's metrics placed on RANGES.

    Metrics without a range or weight, and those the take lacks, are skipped; None when nothing
    is left to judge (a number then would be invented, not measured). A take that barely moves
    on a shot that asks for motion is not judged on STEADY_WHEN_STILL either: a picture that does
    not move is trivially steady, as VBench keeps temporal flicker to static videos and
    smoothness and consistency to moving ones, so its stillness must not read as quality.
    """
    table = _weight_table(weights)
    still = metrics.motion_wanted and barely_moves(metrics.metrics)
    placed, total_weight = 0.0, 0.0
    for name, (worst, best) in RANGES.items():
        value, weight = metrics.value(name), table.get(name, 0.0)
        if value is None or not weight or (still and name in STEADY_WHEN_STILL):
            continue
        placed += weight * min(1.0, max(0.0, (value - worst) / (best - worst)))
        total_weight += weight
    return placed / total_weight if total_weight else None


_STANDING_RANK = {"chosen": 0, "ranked": 1, "set aside": 2, "below the bar": 3, "failed QC": 4}


def fallback_order(standing: list[str], totals: list[float | None], qualities: list[float | None]) -> list[int]:
    """Positions from best to worst: the chosen take, the other contenders by the rank totals that
    chose among them (`totals`, None for the rest), then the takes set aside and those below the
    bar by absolute quality, failed takes last (ties keep the take order). A set-aside take's rank
    total only says how it fared against contenders it cannot beat (min-max normalised within the shot, where a noise-sized lead of the winner is
    stretched to a full point); how good it is on its own, which `quality` measures on fixed
    ranges, is what decides which of them an editor would use next."""
    def key(i: int) -> tuple[int, float]:
        group = _STANDING_RANK[standing[i]]
        value = totals[i] if group <= 1 else qualities[i]
        return group, -(value if value is not None else -1.0)
    return sorted(range(len(standing)), key=key)


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
    visible defect (`visible_defects`: their own, much softer than a sibling, or, with `defect_gaps`
    (the product passes DEFECT_GAP), trailing the best on a weighted metric by more than its
    gap) are set aside before ranking for the takes with the fewest defects.
    """
    if not 0.0 <= min_quality <= 1.0:
        raise ValueError(f"min_quality must be in [0, 1], got {min_quality}")
    numbers = numbers or list(range(1, len(metrics) + 1))
    table = _weight_table(weights)
    qualities = [quality(take, table) if take.passed else None for take in metrics]
    passing = [i for i, take in enumerate(metrics) if take.passed]
    failures = failures_text(metrics, numbers)
    standing = ["failed QC"] * len(metrics)
    notes = [f"failed QC: {'; '.join(m.hard_fails)}" if m.hard_fails else "failed QC" for m in metrics]
    if not passing:
        reason = f"no take passed QC: {failures}" if metrics else "no takes to score"
        return Selection(take=None, numbers=numbers, totals=[None] * len(metrics), quality=qualities,
                         acceptable=False, reason=clip_text(reason), standing=standing, notes=notes,
                         order=list(numbers))

    scores, ranked, softer = rank_takes(metrics, passing, table)
    totals = [ranked.get(i) for i in range(len(metrics))]
    below = [i for i in passing if qualities[i] is not None and qualities[i] < min_quality]
    acceptable = [i for i in passing if i not in below]
    defects = {i: [numbered(d, numbers) for d in found]
               for i, found in visible_defects(metrics, acceptable, defect_gaps or {}, table).items()}
    for i in below:
        standing[i], notes[i] = "below the bar", f"quality {below_bar(qualities[i])} below the bar {min_quality:.2f}"
    if acceptable:
        fewest = min(len(defects.get(i, ())) for i in acceptable)
        preferred = [i for i in acceptable if len(defects.get(i, ())) == fewest]
        if len(preferred) < len(passing):  # rank the contenders among themselves only
            scores, ranked, softer = rank_takes(metrics, preferred, table)
        winner = max(preferred, key=lambda i: (ranked[i], -i))
        parts = [f"take {numbers[winner]}: "
                 + why_winner(winner, preferred, passing, ranked, scores, table, camera, min_quality,
                               set_aside=len(preferred) < len(acceptable))]
        if set_aside := [i for i in acceptable if i not in preferred]:
            parts.append("set aside: " + ", ".join(f"take {numbers[i]} ({'; '.join(defects[i])})" for i in set_aside))
        if softer := [i for i in softer if i in acceptable and i != winner]:
            parts.append("softer or stiller, steadiness not counted: " + ", ".join(f"take {numbers[i]}" for i in softer))
        if below:
            parts.append(f"below the quality bar {min_quality:.2f}: " + ", ".join(
                f"take {numbers[i]} ({below_bar(qualities[i])})" for i in below))
        for i in acceptable:
            if i == winner:
                standing[i], notes[i] = "chosen", "chosen: " + parts[0].split(": ", 1)[1]
            elif i in preferred:
                standing[i], notes[i] = "ranked", rank_note(i, winner, scores, ranked, numbers, metrics)
            else:
                standing[i], notes[i] = "set aside", "set aside: " + "; ".join(defects[i])
            if defects.get(i) and standing[i] != "set aside":
                notes[i] += " (also: " + "; ".join(defects[i]) + ")"
            if metrics[i].flaws:
                notes[i] += " (flaws: " + "; ".join(metrics[i].flaws) + ")"
    else:
        winner = None
        best = max(below, key=lambda i: (qualities[i], -i))
        parts = [f"best take {numbers[best]} scored {below_bar(qualities[best])}, "
                 f"below the quality bar {min_quality:.2f}"]
    if failures:
        parts.append(f"failed QC: {failures}")
    contenders = [ranked.get(i) for i in range(len(metrics))]  # the totals the winner was chosen on
    return Selection(take=None if winner is None else numbers[winner], numbers=numbers, totals=totals,
                     quality=qualities, acceptable=winner is not None,
                     reason=clip_text("; ".join(parts)), standing=standing, notes=[clip_text(n) for n in notes],
                     order=[numbers[i] for i in fallback_order(standing, contenders, qualities)])
