"""Score the takes of a shot (technical QC + weight-free metrics) and pick the best one.

`score_take` is the cached Prefect task around `measure_take`; `select_best` is pure and ranks the
takes of ONE shot against each other, because good takes differ only in the third decimal
(scoring.md §2) and absolute thresholds would not separate them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.caching import content_key
from tasks.metrics import Expectation, TakeMetrics, measure_take

# scoring.md §8.3 starts every temporal and imaging term at weight 1. Every metric is oriented so
# that higher is better, so weights are never negative: a lower-is-better metric is flipped where
# it is measured.
DEFAULT_WEIGHTS: dict[str, float] = {
    "temporal_flicker": 1.0,
    "brightness_stability": 1.0,
    "sharpness": 1.0,
}

# How the reason names a take that is best on a metric; other metrics read "best <name>".
_BEST_ON = {
    "temporal_flicker": "least flicker",
    "brightness_stability": "steadiest exposure",
    "sharpness": "sharpest",
}


class Selection(BaseModel):
    """The chosen take (0-based index, None when no take passed QC) and why.

    `totals` holds each take's weighted score in [0, 1] (None for takes that failed QC).
    """

    index: int | None
    totals: list[float | None]
    reason: str


def _run_name(parameters: dict[str, Any]) -> str:
    # A callable rather than "score-{take.stem}": it also works when a caller passes a str path.
    return f"score-{Path(parameters['take']).stem}"


@task(name="score-take", task_run_name=_run_name, cache_key_fn=content_key(),
      persist_result=True, retries=1)
def score_take(take: Path, expected: Expectation) -> TakeMetrics:
    """QC and measure one take; the cache key is the file's content, so a re-run costs nothing."""
    return measure_take(take, expected)


def _relative_scores(values: list[float | None]) -> list[float] | None:
    """Min-max normalise within the shot: best 1, worst 0, missing 0, all equal 1 (a tie).

    None when no take reported the metric, so it is left out of the total.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    low, high = min(present), max(present)
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return [0.0 if v is None else 1.0 for v in values]
    return [0.0 if v is None else (v - low) / (high - low) for v in values]


def _metric_value(take: TakeMetrics, name: str) -> float | None:
    value = take.metrics.get(name)
    return value if value is not None and math.isfinite(value) else None


def _failures(metrics: list[TakeMetrics], numbers: list[int]) -> str:
    return "; ".join(f"take {n} {', '.join(m.hard_fails)}"
                     for n, m in zip(numbers, metrics) if not m.passed)


def _winner_reason(winner: int, passing: list[int], scores: dict[str, list[float]],
                   totals: list[float]) -> str:
    if len(passing) == 1:
        return "only take to pass QC"
    slot = passing.index(winner)
    best_on = [_BEST_ON.get(name, f"best {name}") for name, relative in scores.items()
               if relative[slot] == 1.0 and min(relative) < 1.0]
    if best_on:
        return ", ".join(best_on)
    if len(set(totals)) == 1:
        return "passing takes tie, first one kept"
    return f"best balance of metrics (total {totals[slot]:.2f})"


def select_best(metrics: list[TakeMetrics], weights: dict[str, float] | None = None,
                numbers: list[int] | None = None) -> Selection:
    """Pick the best take of one shot: QC failures are excluded, the rest ranked by weighted sum.

    Each weighted metric is min-max normalised over the passing takes, so the total in [0, 1] says
    where a take sits within this shot, not how good it is in absolute terms. Metrics without a
    weight are ignored; a weighted metric no take reported is skipped. Ties go to the first take.
    `numbers` are the take numbers the reason uses (default 1, 2, …).
    """
    numbers = numbers or list(range(1, len(metrics) + 1))
    weights = DEFAULT_WEIGHTS if weights is None else weights
    if any(weight < 0 for weight in weights.values()):
        raise ValueError(f"weights must be >= 0 (metrics are higher-is-better): {weights}")
    passing = [i for i, take in enumerate(metrics) if take.passed]
    if not passing:
        reason = "no take passed QC: " + _failures(metrics, numbers) if metrics else "no takes to score"
        return Selection(index=None, totals=[None] * len(metrics), reason=reason)

    scores: dict[str, list[float]] = {}
    for name, weight in weights.items():
        relative = _relative_scores([_metric_value(metrics[i], name) for i in passing])
        if weight and relative is not None:
            scores[name] = relative
    weight_sum = sum(weights[name] for name in scores) or 1.0
    passing_totals = [
        sum(weights[name] * relative[slot] for name, relative in scores.items()) / weight_sum
        for slot in range(len(passing))]

    best_slot = max(range(len(passing)), key=lambda slot: (passing_totals[slot], -slot))
    winner = passing[best_slot]
    totals: list[float | None] = [None] * len(metrics)
    for slot, i in enumerate(passing):
        totals[i] = passing_totals[slot]

    reason = f"take {numbers[winner]}: {_winner_reason(winner, passing, scores, passing_totals)}"
    if len(passing) < len(metrics):
        reason += "; failed QC: " + _failures(metrics, numbers)
    return Selection(index=winner, totals=totals, reason=reason)
