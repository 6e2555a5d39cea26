"""How the takes of one shot are ranked: each metric placed relative to the shot's other takes,
softness and stillness discounted, and the visible defects that set a take aside.

The rules and their calibration (what counts as a noticeable difference, a defect, clearly
softer) are here; `tasks/score.py` combines them into a Selection and `tasks/score_words.py`
says it in words.
"""

from __future__ import annotations

from tasks.metrics import TakeMetrics
from tasks.metrics_defects import barely_moves
from tasks.metrics_motion_ref import NAME as MOTION_REF
from tasks.score_words import WORSE_ON

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
    "camera_adherence": 0.02, "brush_adherence": 0.02, "reference_fidelity": 0.02, "crispness": 0.02,
    "warp_stability": 0.03, "motion_presence": 0.05, MOTION_REF: 0.02,
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
    own, other = metrics[i].value("motion_speed"), metrics[j].value("motion_speed")
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
            caps = [relative[j] for j in better if metrics[j].value(name) is not None]
            if caps and max(caps) < scores[name][i]:
                scores[name][i] = max(caps)
                discounted.add(i)
    return sorted(discounted)


def rank_takes(metrics: list[TakeMetrics], passing: list[int], weights: dict[str, float]
          ) -> tuple[dict[str, dict[int, float]], dict[int, float], list[int]]:
    """Each weighted metric's relative scores over the passing takes, each take's weighted total,
    and the takes whose steadiness was not counted because they are clearly softer."""
    scores: dict[str, dict[int, float]] = {}
    for name, weight in weights.items():
        values = [metrics[i].value(name) for i in passing]
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
    own, other = metrics[i].value("sharpness"), metrics[j].value("sharpness")
    return own is not None and other is not None and other < CLEARLY_SOFTER * own


def visible_defects(metrics: list[TakeMetrics], candidates: list[int], gaps: dict[str, float],
             weights: dict[str, float]) -> dict[int, list[str]]:
    """Visible defects of each of `candidates`, in words: its own (TakeMetrics.defects), being
    much softer than the shot's crispest take, and trailing the best take on a weighted metric by
    more than its gap. On DETAIL_CONFOUNDED metrics the best is taken among the takes that are not
    clearly softer than the one judged, since blur alone makes a take read steadier."""
    defects: dict[int, list[str]] = {i: list(metrics[i].defects) for i in candidates}
    crisp = {i: metrics[i].value("crispness") for i in candidates}
    known = {i: v for i, v in crisp.items() if v is not None}
    if len(known) >= 2:
        best = max(known, key=known.get)
        for i, value in known.items():
            if known[best] - value > SOFTER_GAP:
                defects[i].append(f"much softer than take {{{best}}} (crispness {value:.2f} vs {known[best]:.2f})")
    for name, gap in gaps.items():
        if not weights.get(name):
            continue
        values = {i: metrics[i].value(name) for i in candidates}
        for i, value in values.items():
            if value is None:
                continue
            rivals = [v for j, v in values.items() if v is not None and j != i
                      and not (name in DETAIL_CONFOUNDED and (_clearly_softer(metrics, i, j)
                                                              or _clearly_stiller(metrics, j, i)))]
            if rivals and max(rivals) - value > gap:
                defects[i].append(f"{WORSE_ON.get(name, name)} ({name} {value:.3f} vs {max(rivals):.3f})")
    return {i: found for i, found in defects.items() if found}
