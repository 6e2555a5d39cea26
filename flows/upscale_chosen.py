"""Provider upscaling in the produce flow: every chosen take below the delivery size goes through
the storyboard's super-resolution model before assembly. All requests are checked, and the
budget passed, before the first one is sent; an upscale that fails after that is reported and
the assembly scales that take itself, so the edit is still delivered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import get_run_logger

from blocks.ledger import ledger_for
from blocks.media import place, probe
from blocks.providers import GenerationError, VideoProvider
from blocks.super_resolution import UpscaleRequest
from flows.progress import RunProgress
from tasks.caching import work_name
from tasks.plan import ShotPlan
from tasks.report import ShotRecord, UpscaleRecord
from tasks.storyboard import DELIVERY_SHORT_SIDE, Storyboard
from tasks.spend import BudgetDraw, upscale_key, work_key
from tasks.provider_upscale import upscale_take, upscaler_of, upscaling_provider


@dataclass(frozen=True)
class Upscaled:
    """What the upscaling stage made: the clip to assemble for each shot (in shot order) and the
    provider upscale of each shot that had one, by shot id."""

    clips: list[Path]
    records: dict[str, UpscaleRecord]


class UpscaleStopped(Exception):
    """The upscales cannot start; `state` names the run's final state (InvalidInput, BudgetExceeded)."""

    def __init__(self, state: str, message: str):
        super().__init__(message)
        self.state = state


def upscale_chosen(storyboard: Storyboard, plans: list[ShotPlan], shots: list[ShotRecord],
                   providers: dict[str, VideoProvider], folder: Path, spend: BudgetDraw | None,
                   progress: RunProgress, paid: bool = True) -> Upscaled:
    """The clip to assemble for each shot: its chosen take, or that take upscaled by the
    storyboard's provider upscaler when it is smaller than the delivery size (not when `paid` is
    False: the assembly then scales every take itself)."""
    chosen = [next(t for t in shot.takes if t.take == shot.chosen) for shot in shots]
    takes = [folder / take.file for take in chosen]
    upscaler = upscaling_provider(storyboard, providers)
    if upscaler is None or not paid:
        return Upscaled(takes, {})
    provider, model = upscaler_of(storyboard)
    delivery = storyboard.defaults.delivery
    jobs: dict[int, UpscaleRequest] = {}
    for index, take in enumerate(takes):
        info = probe(take)
        if min(info.width, info.height) >= DELIVERY_SHORT_SIDE[delivery]:
            continue  # a take generated at the delivery size needs no super-resolution
        request = UpscaleRequest(source=take, model=model, resolution=delivery, duration=info.duration)
        try:
            upscaler.check_upscale(request)
        except GenerationError as exc:
            raise UpscaleStopped("InvalidInput", (
                f"{plans[index].shot_id}: {exc}; set defaults.upscaler: local to scale it in the assembly "
                "(nothing was spent on upscaling; every take is kept)")) from None
        jobs[index] = request
    keys = {i: upscale_key(upscaler, chosen[i].key, model, delivery) if chosen[i].key
            else work_key("upscale-take", provider=upscaler, request=r) for i, r in jobs.items()}
    ledger = ledger_for(spend.state_url) if spend else None
    done = ledger.paid_keys(list(keys.values()), held=True) if ledger else {}
    cost = sum(upscaler.estimate_upscale_credits(model, delivery, r.duration)
               for i, r in jobs.items() if keys[i] not in done)
    left = ledger.status(spend.budget).left if ledger else None
    if left is not None and cost > left + 1e-9:
        raise UpscaleStopped("BudgetExceeded", (
            f"upscaling {len(jobs)} takes ({cost:g} credits) would pass budget '{spent_name(spend)}', which has "
            f"{left:g} left; raise its limit or set defaults.upscaler: local (nothing was spent on upscaling; "
            "every take is kept)"))
    progress.start("upscale", len(jobs))
    futures = {}
    for index, request in jobs.items():
        shot_id = plans[index].shot_id
        dest = folder / "work" / f"{shot_id}-upscaled-{work_name(upscaler, request)}.mp4"
        futures[index] = (upscale_take.submit(upscaler, request, shot_id, dest, spend, keys[index]), request, dest)
    records = {}
    for index, (future, request, dest) in futures.items():
        shot_id = shots[index].shot_id
        records[shot_id], clip = _finished(future, upscaler, request, shot_id, dest, provider, model, spend,
                                           keys[index])
        if clip is not None:
            takes[index] = clip
        progress.advance("upscale", shot_id)
    return Upscaled(takes, records)


def spent_name(spend: BudgetDraw | None) -> str:
    return spend.budget if spend else ""


def _finished(future, upscaler, request: UpscaleRequest, shot_id: str, dest: Path, provider: str,
              model: str, spend: BudgetDraw | None, key: str) -> tuple[UpscaleRecord, Path | None]:
    """The record of one upscale and the clip it made (None when it failed)."""
    made = dict(provider=provider, model=model, key=key,
                estimate=upscaler.estimate_upscale_credits(model, request.resolution, request.duration))
    try:
        result = future.result()
        from_cache = future.state.name == "Cached"
        if not Path(result.path).is_file():  # the cached clip was deleted since: upscale again
            result = upscale_take.with_options(refresh_cache=True)(upscaler, request, shot_id, dest, spend, key)
            from_cache = False
    except Exception as exc:  # a failed upscale never costs the edit: the assembly scales the take
        error = str(exc).splitlines()[0][:300]
        get_run_logger().warning(f"{shot_id}: upscale failed, the assembly scales the take instead: {error}")
        return UpscaleRecord(**made, error=error), None
    clip = place(result.path, dest)
    return UpscaleRecord(**made, file=str(clip.relative_to(dest.parents[1])),
                         from_cache=from_cache, credits=result.credits, seconds=round(result.seconds, 3)), clip
