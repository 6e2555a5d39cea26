"""How a take's frames hold: frozen output, a freeze inside the take, and stutter.

A frame "repeats" when it shows the last frame that changed again (`Frame.repeat`, freezedetect's
noise floor). Holds are runs of repeats; what they mean depends on their length and on the take's
own cadence. Thresholds: /work/shared/reference/scoring.md §8.1 (freezedetect d=0.5).
"""

from __future__ import annotations

from collections import Counter

from tasks.metrics_temporal import Frame

# freezedetect d=0.5 (scoring.md §8.1): holds shorter than this are stutter, not freezes.
MIN_FREEZE_S = 0.5
MAX_FROZEN_SHARE = 0.5
# Stutter: a hold this long (a fifth of a second is plainly visible) and this many times the
# take's typical hold (its cadence).
MIN_STALL_S = 0.2
STALL_CADENCE = 3


class FrozenFrames:
    """Frozen output (freezedetect's rule): frames that repeat the last changed frame, in runs of
    at least MIN_FREEZE_S; frozen for MAX_FROZEN_SHARE of the clip fails, unless the shot allows
    it; a shorter freeze is a defect. A slow drift makes short runs only, so it does not count.

    Stutter: holds shorter than a freeze but of at least MIN_STALL_S and STALL_CADENCE times the
    take's typical hold. A file carrying slower motion than its frame rate (Show-1's 30 fps files
    repeat each frame about 4 times) repeats at a steady cadence; a stalling picture does not."""

    def __init__(self, fps: float, still_allowed: bool = False) -> None:
        self._fps = fps
        self._min_run = max(1, round(fps * MIN_FREEZE_S))
        self._still_allowed = still_allowed
        self._pairs = 0   # frames after the first
        self._frozen = 0  # of them, in runs long enough to count
        self._run = 0     # repeats in a row so far
        self._holds: Counter[int] = Counter()  # frames each changed frame is shown for

    def update(self, frame: Frame) -> None:
        if frame.index == 0:
            return
        self._pairs += 1
        if not frame.repeat:
            self._holds[self._run + 1] += 1
        self._run = self._run + 1 if frame.repeat else 0
        if self._run == self._min_run:
            self._frozen += self._min_run  # the run has just become long enough: count all of it
        elif self._run > self._min_run:
            self._frozen += 1

    def result(self) -> dict[str, float]:
        return {"frozen_share": self._frozen / self._pairs} if self._pairs else {}

    def hard_fails(self) -> list[str]:
        frozen = self.result().get("frozen_share", 0.0)
        if self._still_allowed or frozen < MAX_FROZEN_SHARE:
            return []
        return [f"frozen {frozen:.0%} of the clip"]

    def defects(self) -> list[str]:
        """A freeze under the hard fail's share (the picture stops while the take runs on: real
        models' GIFs repeat their last frames), and stutter (`_stalls`)."""
        frozen = self.result().get("frozen_share", 0.0)
        if self._still_allowed or frozen >= MAX_FROZEN_SHARE:
            return []
        out = []
        if frozen:
            out.append(f"picture freezes for {self._frozen / self._fps:.1f} s ({frozen:.0%} of the clip)")
        if stalls := self._stalls():
            out.append(f"motion stalls {len(stalls)} times (holds of up to {max(stalls) / self._fps:.2f} s "
                       f"where the take's frames change every {self._typical_hold() / self._fps:.2f} s)")
        return out

    def _typical_hold(self) -> int:
        holds = sorted(self._holds.elements())
        return holds[len(holds) // 2] if holds else 1

    def _stalls(self) -> list[int]:
        """Lengths (frames) of the holds that are stutter, not cadence or a freeze."""
        floor = max(STALL_CADENCE * self._typical_hold(), MIN_STALL_S * self._fps)
        return [hold for hold, count in self._holds.items() for _ in range(count)
                if floor <= hold <= self._min_run]
