"""Take generation: one provider call per take, cached by the content of everything it depends on."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import get_client, task
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound

from blocks.providers import GenerationError, GenerationRequest, GenerationResult, VideoProvider
from blocks.ledger import OverBudget
from blocks.slot_holders import forget_limit
from tasks.caching import content_key
from tasks.provider_slots import TAG_PREFIX, reclaim_dead_holders
from tasks.spend import BudgetDraw, pay_for_call, work_key

log = logging.getLogger("takeflow.slots")


def retry_unless_final(task, task_run, state) -> bool:
    """Retry transient failures only: a refused prompt or bad input fails the same way again."""
    try:
        state.result()
    except OverBudget:  # the budget is spent: trying again cannot fit either
        return False
    except GenerationError as exc:  # an unreachable provider was retried by its client already
        return exc.transient and "cannot reach" not in str(exc)
    except Exception:
        return True
    return False


def limit_name(provider: VideoProvider) -> str:
    """`tag:provider-<name>`: on a `tag:` limit Prefect finds a lease by its holder (provider_slots)."""
    return f"{TAG_PREFIX}provider-{provider.provider_name}"


def ensure_limits(providers: dict[str, VideoProvider]) -> None:
    """Create or update each provider's global concurrency limit from its block's max_concurrency.

    Prefect skips a missing limit with a warning; creating it here (and refusing to run a take
    without it, see provider_slots) makes the cap real instead of silently absent.
    """
    with get_client(sync_client=True) as client:
        for provider in providers.values():
            client.upsert_global_concurrency_limit_by_name(limit_name(provider), provider.max_concurrency)
            retire_limit(client, f"provider-{provider.provider_name}", limit_name(provider))  # before 2026-12
        reclaim_dead_holders(client, [limit_name(p) for p in providers.values()])  # runs killed earlier


def retire_limit(client: SyncPrefectClient, former: str, successor: str) -> None:
    """Replace the limit `former` of an earlier takeflow by `successor` (already created): a user's
    `prefect gcl disable` carries over, the old limit and its leases are deleted. Its value needs no
    move: every run sets it from the provider block's max_concurrency."""
    try:
        old = client.read_global_concurrency_limit_by_name(former)
    except ObjectNotFound:
        return
    if not old.active:
        client.update_global_concurrency_limit(successor, GlobalConcurrencyLimitUpdate(active=False))
    client.delete_global_concurrency_limit_by_name(former)
    forget_limit(str(client.api_url), former)
    log.warning("the concurrency limit %s is now %s (%s)", former, successor,
                "disabled, as the old one was" if not old.active else "its slots set from the provider block")


@task(name="generate-take", task_run_name="generate-{shot_id}-take-{take}",
      cache_key_fn=content_key("shot_id", "take", "dest", "spend"), persist_result=True,
      retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5,
      retry_condition_fn=retry_unless_final)
def generate_take(provider: VideoProvider, request: GenerationRequest, shot_id: str, take: int,
                  dest: Path, spend: BudgetDraw | None = None) -> GenerationResult:
    """Generate one take into `dest`; an identical request anywhere is served from the cache.

    With `spend`, its price is reserved on the run's budget before anything is sent (OverBudget
    when it does not fit) and settled to what the provider charged. The take holds one slot of
    its provider's concurrency limit while it runs, so a wide fan-out waits here instead of
    tripping the provider's own limits.
    """
    return pay_for_call(spend, provider.provider_name, work_key("generate-take", provider=provider, request=request),
                        provider.estimate_credits(request),
                        f"{shot_id} take {take} {provider.provider_name}/{request.model}", limit_name(provider),
                        lambda: provider.generate(request, dest))

