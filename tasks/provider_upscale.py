"""Provider super-resolution of the chosen takes: checked and priced before any spend, then run as
a task cached on each take's content, before assembly.

`defaults.upscaler: local` (the default) leaves scaling to the assembly's single pass: Lanczos
and a mild unsharp mask, free. A provider upscaler (`runway/magnific_video_upscaler_creative`)
is a paid step like a take: it is in the estimate and the budget gate, a rerun never pays for
the same take twice, and the assembly then finds the take at the delivery size and does not
scale it again. A shot whose models all generate at the delivery size or above needs none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from blocks.catalogue import RESOLUTIONS
from blocks.providers import GenerationError, GenerationResult, VideoProvider
from blocks.super_resolution import SuperResolution, UpscaleRequest
from tasks.caching import content_key
from tasks.generate import limit_name, retry_unless_final
from tasks.spend import BudgetDraw, pay_for_call, work_key

if TYPE_CHECKING:
    from tasks.plan import ShotPlan
    from tasks.storyboard import Storyboard

LOCAL = "local"


def upscaler_of(storyboard: Storyboard) -> tuple[str, str] | None:
    """(provider, model) of the storyboard's provider upscaler; None when scaling stays local."""
    spec = storyboard.defaults.upscaler
    if spec == LOCAL:
        return None
    provider, _, model = spec.partition("/")
    return provider, model


def upscaling_provider(storyboard: Storyboard, providers: dict[str, VideoProvider]) -> SuperResolution | None:
    """The loaded block that upscales for this storyboard, or None for local scaling."""
    chosen = upscaler_of(storyboard)
    if chosen is None:
        return None
    block = providers[chosen[0]]
    if not isinstance(block, SuperResolution):
        raise GenerationError(f"defaults.upscaler: the {chosen[0]} block cannot upscale; use local")
    return block


def needs_upscale(plan: ShotPlan, providers: dict[str, VideoProvider], delivery: str) -> bool:
    """Whether any model the shot may use renders its takes below the delivery's short side."""
    choices = plan.choices + ([plan.fallback] if plan.fallback else [])
    sizes = [providers[c.provider].render_size(plan.request(0, None, c)) for c in choices]
    return any(min(size) < RESOLUTIONS[delivery] for size in sizes)


def estimate_upscale_credits(storyboard: Storyboard, plans: list[ShotPlan],
                             providers: dict[str, VideoProvider]) -> float:
    """Credits the provider upscaler would cost for every shot that needs it (0 when local)."""
    upscaler = upscaling_provider(storyboard, providers)
    if upscaler is None:
        return 0.0
    model, delivery = upscaler_of(storyboard)[1], storyboard.defaults.delivery
    return round(sum(upscaler.estimate_upscale_credits(model, delivery, plan.duration)
                     for plan in plans if needs_upscale(plan, providers, delivery)), 4)


@task(name="upscale-take", task_run_name="upscale-{shot_id}",
      cache_key_fn=content_key("shot_id", "dest", "spend", "key"),
      persist_result=True, retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5,
      retry_condition_fn=retry_unless_final)
def upscale_take(provider: SuperResolution, request: UpscaleRequest, shot_id: str, dest: Path,
                 spend: BudgetDraw | None = None, key: str | None = None) -> GenerationResult:
    """Upscale a chosen take into `dest` with a provider's model; the same take and settings
    anywhere are served from the cache. Like a take, it reserves its price on the run's budget
    first (under `key`, tasks.spend.upscale_key) and holds a slot of the provider's concurrency limit."""
    key = key or work_key("upscale-take", provider=provider, request=request)
    estimate = provider.estimate_upscale_credits(request.model, request.resolution, request.duration)
    return pay_for_call(spend, provider.provider_name, key, estimate,
                        f"{shot_id} upscale {provider.provider_name}/{request.model}", limit_name(provider),
                        lambda: provider.upscale(request, dest))
