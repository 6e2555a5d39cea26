"""Why a take won or lost, in words for the report, contact sheets and the score table."""

from __future__ import annotations

import math
import re

from tasks.metrics import TakeMetrics
from tasks.metrics_motion_ref import NAME as MOTION_REF

# How the reason names a take that is best on a metric; other metrics read "best <name>".
BEST_ON = {
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
WORSE_ON = {
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


def clip_text(text: str, limit: int = REASON_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def below_bar(value: float) -> str:
    # Rounded down, so a take at 0.596 under a 0.60 bar never reads "scored 0.60, below 0.60".
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


def failures_text(metrics: list[TakeMetrics], numbers: list[int]) -> str:
    # The first fail per take says enough here; the report lists every fail of every take.
    return "; ".join(f"take {n} {m.hard_fails[0]}" + (f" (+{len(m.hard_fails) - 1} more)"
                                                     if len(m.hard_fails) > 1 else "")
                     for n, m in zip(numbers, metrics) if not m.passed and m.hard_fails)


def _label(name: str, camera: str) -> str:
    if name == "camera_adherence":
        return f"follows '{clip_text(camera, 40)}'" if camera else "follows the camera instruction"
    return BEST_ON.get(name, f"best {name}")


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


def why_winner(winner: int, acceptable: list[int], passing: list[int], totals: dict[int, float],
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


def numbered(text: str, numbers: list[int]) -> str:
    """Defect texts name rival takes by index as {i}; the report uses take numbers."""
    return re.sub(r"\{(\d+)\}", lambda m: str(numbers[int(m.group(1))]), text)


def rank_note(i: int, winner: int, scores: dict[str, dict[int, float]], totals: dict[int, float],
               numbers: list[int], metrics: list[TakeMetrics]) -> str:
    """Why a ranked take lost to the winner: the metrics where it trails most."""
    behind = sorted(((scores[name][winner] - scores[name][i], name) for name in scores
                     if scores[name][winner] - scores[name][i] >= _NAMED_FROM_LEAD), reverse=True)
    words = []
    for _, name in behind[:2]:
        mine, theirs = metrics[i].value(name), metrics[winner].value(name)
        if mine is not None and theirs is not None:
            words.append(f"{WORSE_ON.get(name, 'lower ' + name)} ({name} {mine:.3g} vs {theirs:.3g})")
    detail = ": " + ", ".join(words) if words else ""
    return f"ranked below take {numbers[winner]} (score {totals[i]:.2f} vs {totals[winner]:.2f}){detail}"
