"""Paying for a provider call through the ledger: reserve its quoted price first, then commit what
the provider charged or release what it did not.

Which failures a provider bills (anchors-2026-12 §4, providers.md): a task that succeeded is billed
even when its download then fails; Veo does not bill a video its safety filter blocked, Kling,
Seedance, LTX and fal bill only successful tasks; Runway documents no refund for API tasks that
fail, so a Runway (or Sora) task that ends failed or is cancelled at its deadline is counted as
charged until the provider says otherwise. A create whose outcome is unknown is held (reserved, not
spent) until the provider's usage record decides it (`settle_unknown_creates`).
Where the provider client knows the exact charge it sets `credits` on the error, and that wins.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import combinations
from typing import Callable, Iterator, TypeVar

from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel, ConfigDict, Field

from blocks.catalogue import load_catalogue
from blocks.ledger import SCALE, Hold, Ledger, OverBudget, holding, ledger_for, to_units
from blocks.ledger.held import claimed_at
from tasks.caching import PIPELINE_VERSION, content_identity
from tasks.provider_slots import provider_slot

log = logging.getLogger("takeflow.ledger")

# providers that bill a task which ended failed (or was cancelled at its deadline) after creation
BILLS_FAILED_TASKS = frozenset({"runway", "sora"})


class BudgetDraw(BaseModel):
    """Which budget a run's paid calls draw on; passed to the paying tasks (not part of their cache key)."""

    model_config = ConfigDict(frozen=True)

    budget: str = Field(description="Ledger budget name.")
    state_url: str | None = Field(None, description="Ledger database URL; None for TAKEFLOW_STATE_URL / the default.")
    project: str = Field("", description="Storyboard the spend is for (its slug).")
    run_id: str = Field("", description="Flow run that spends.")


def work_key(task_name: str, **parameters) -> str:
    """The content key of a paid call: the same key the task's cache uses (see tasks.caching)."""
    return hash_objects(task_name, PIPELINE_VERSION, content_identity(parameters))


def upscale_key(upscaler, take_key: str, model: str, resolution: str) -> str:
    """The ledger key of upscaling a take, from the take's own key (known before the run), so the
    estimate of a rerun whose takes are all reused sees the upscale it already paid for."""
    return work_key("upscale-take", provider=upscaler, take=take_key, model=model, resolution=resolution)


def charged_for_failure(provider: str, exc: BaseException, estimate: float) -> float:
    """Credits a failed call cost: the provider's own figure where the client has one, else the
    estimate when the provider bills this kind of failure, else 0."""
    credits = getattr(exc, "credits", None)
    kind = getattr(exc, "kind", None)
    if kind == "unknown_outcome":  # maybe created, nobody knows its task: at most the quote (held, see paying)
        return max(estimate, float(credits or 0.0))
    if credits is not None:
        return max(0.0, float(credits))
    if kind == "bad_output":  # succeeded, then lost
        return estimate
    created = type(exc).__name__ == "TaskEnded" or kind == "timeout"
    return estimate if created and provider in BILLS_FAILED_TASKS else 0.0


def reconcile_orphans(ledger: Ledger, budget: str, providers: dict) -> list[str]:
    """Settle what killed runs left open on `budget`: each reservation naming its provider task is
    committed at what the provider reports for that task (GET task: its cost when it reports one,
    else the reserved price; a failed task at what the provider bills for it) or released. A task
    still running is left for the rerun that resumes it. Returns one line per settled entry."""
    said = []
    for entry in ledger.orphans(budget):
        name, _, task_id = (entry.task_id or "").partition(":")
        task_id = task_id.partition(":")[2]  # provider:work:task id
        provider = providers.get(name)
        if provider is None or not hasattr(provider, "poll") or task_id.startswith("sync:"):
            continue  # a provider this run does not use (a run that does settles it), or no task to ask
        try:
            state = provider.poll(task_id)
        except Exception as exc:  # noqa: BLE001 - unreachable or unknown: leave it open, it expires as charged
            log.warning("ledger: cannot read %s task %s to settle its reservation: %s", name, task_id,
                        str(exc).splitlines()[0][:160])
            continue
        if state.status == "succeeded":  # the provider's own cost report, converted to credits
            credits = entry.estimate if state.cost is None else round(
                state.cost * load_catalogue().providers[name].credits_per_unit, 4)
        elif state.status in ("failed", "cancelled"):
            credits = provider.failure_credits(state)
            if state.cost is None and name in BILLS_FAILED_TASKS:
                credits = entry.estimate
        else:
            continue
        note = f"reconciled at restart: {name} task {task_id} {state.status}"
        if ledger.settle_orphan(entry, credits, note):
            said.append(f"{entry.label}: {note}, {credits:g} credits")
    return said


def settle_unknown_creates(ledger: Ledger, providers: dict) -> list[str]:
    """Decide the held creates of unknown outcome (blocks/ledger/held.py) by the provider's own usage
    record, where its API keeps one (`usage_since`: Runway's credits used per day). From a UTC
    midnight at or before the oldest held create, what the usage shows beyond everything the ledger
    knows that provider charged since is what the held creates cost: 0 (none made a task: all are
    released), all of them (all are committed), or the prices of some of them (those are committed;
    where several sets add up to it, as with equal prices, the total is certain but not which
    create made a task, and the earliest are counted). Anything else leaves them held, never counted
    at less than could have been charged: work still in flight or counted as charged on a lapsed
    lease, a charge that may fall either side of that midnight, usage no set of held creates adds
    up to (another client on the same account). Returns one line per decided entry."""
    said = []
    for name, provider in providers.items():
        held = ledger.held(name)
        if not held or not hasattr(provider, "usage_since"):
            continue
        try:
            decided = _decide_by_usage(ledger, name, provider, held)
        except Exception as exc:  # noqa: BLE001 - e.g. unreachable: they stay held, the next run asks again
            decided = f"cannot read its usage record: {str(exc).splitlines()[0][:160]}"
        if isinstance(decided, str):
            log.warning("ledger: %d %s create(s) of unknown outcome stay held (%g credits): %s", len(held), name,
                        sum(e.credits for e in held), decided)
            continue
        made, note = decided
        for entry in held:
            charged = entry in made
            ledger.settle_held(entry, charged, f"{'charged' if charged else 'not charged'}: {note}")
            said.append(f"{entry.label}: {'charged' if charged else 'not charged'}: {note}, "
                        f"{entry.credits if charged else 0:g} credits")
    return said


def _decide_by_usage(ledger: Ledger, name: str, provider, held: list) -> tuple[list, str] | str:
    """(the held creates that made a task, why), or why the usage record cannot decide them."""
    first = datetime.fromtimestamp(min(claimed_at(e.task_id) for e in held), timezone.utc).date()
    for back in range(90):  # the latest midnight no charge of this provider's straddles
        day = first - timedelta(days=back)
        since = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
        touching = [e for e in ledger.touching(since) if e.status != "held" and (
            e.task_id is None or e.task_id.startswith(f"{name}:"))]  # no task named: it may be this provider's
        if not any(e.created_at < since for e in touching):
            break
    else:
        return "no midnight in the last 90 days that no charge straddles"
    unsure = [e for e in touching if e.status in ("reserved", "expired") or (e.task_id is None and e.credits)]
    if unsure:
        return f"{len(unsure)} reservation(s) since {day} still open, lapsed or naming no task"
    used = provider.usage_since(day)
    if used is None:
        return f"its usage record does not reach back to {day}"
    rate = load_catalogue().providers[name].credits_per_unit
    # net of refunds, so a refund of an earlier charge makes it less: that never matches, and stays held
    extra = round(used * rate * SCALE) - sum(to_units(e.credits) for e in touching if e.status == "committed")
    sets = _sets_adding_up(held, extra)
    beyond = f"{name}'s usage since {day} is {extra / SCALE:g} credits beyond what the ledger counted otherwise"
    if not sets:
        return f"{beyond}, which no set of the {len(held)} held create(s) adds up to"
    if len(sets) > 1:
        beyond += f": {len(sets[0])} of {len(held)} held creates made a task, the record cannot tell which"
    return sets[0], beyond


def _sets_adding_up(held: list, extra: int, most: int = 12) -> list[list]:
    """Up to two sets of `held` whose prices add up to `extra` units, earliest creates first."""
    if extra < 0 or len(held) > most:
        return []
    found = []
    for size in range(len(held) + 1):
        for chosen in combinations(held, size):
            if sum(to_units(e.credits) for e in chosen) == extra:
                found.append(list(chosen))
                if len(found) == 2:
                    return found
    return found


def retry_follows(exc: BaseException) -> bool:
    """Whether Prefect will run this task again after `exc` (a transient error with retries left)."""
    context = TaskRunContext.get()
    if context is None or not getattr(exc, "transient", False) or type(exc).__name__ == "TaskEnded":
        return False
    return context.task_run.run_count <= context.task.retries


@contextmanager
def paying(draw: BudgetDraw | None, provider: str, key: str, estimate: float, label: str) -> Iterator[Hold | None]:
    """Reserve `estimate` on the run's budget around a paid call; OverBudget when it does not fit.

    The body calls `hold.commit(credits)` on success. On failure the hold is committed at what
    the provider bills for it, or released; before a retry of a transient failure it is left
    for the retry to take over, so a resumed provider task is not held twice.
    """
    if draw is None or estimate <= 0:
        yield None
        return
    ledger = ledger_for(draw.state_url)
    entry = ledger.reserve(draw.budget, estimate, key=key, label=label, project=draw.project, run_id=draw.run_id)
    with holding(ledger, entry, estimate) as hold:
        try:
            yield hold
        except BaseException as exc:
            if hold.settled:
                raise
            if not isinstance(exc, Exception) or retry_follows(exc):
                ledger.abandon(entry)  # interrupted (a create may be in flight) or retried: taken over next
                raise
            charge = charged_for_failure(provider, exc, estimate)
            note = f"failed: {str(exc).splitlines()[0][:200]}" if str(exc) else f"failed: {type(exc).__name__}"
            if getattr(exc, "kind", None) == "unknown_outcome":
                hold.keep_unknown(f"unknown outcome, held until the provider's usage record decides: {note}")
            elif charge > 0:
                hold.commit(charge, note + " (billed by the provider)")
            else:
                hold.release(note)
            raise
        if not hold.settled:
            hold.commit(estimate, "settled at the estimate")


Paid = TypeVar("Paid")  # a provider call's result with its `credits` (GenerationResult)


def pay_for_call(draw: BudgetDraw | None, provider: str, key: str, estimate: float, label: str, slot: str,
                 call: Callable[[], Paid]) -> Paid:
    """The body of every paid provider task: reserve `estimate` (`paying`), hold one slot of the
    concurrency limit `slot` while `call` talks to the provider, then commit what it charged. The
    result's credits become what the ledger counted (0 for a task already counted elsewhere)."""
    with paying(draw, provider, key, estimate, label) as hold:
        with provider_slot(slot):
            result = call()
        if hold is not None:
            result = result.model_copy(update={"credits": hold.commit(result.credits)})
    return result


__all__ = ["BudgetDraw", "OverBudget", "charged_for_failure", "pay_for_call", "paying", "reconcile_orphans",
           "settle_unknown_creates", "upscale_key", "work_key"]
