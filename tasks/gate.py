"""The budget gate before a run spends anything: which budget it draws on, and what happens when
the estimate is over what that budget has left (policy stop, pause or fit)."""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from blocks.catalogue import load_catalogue
from blocks.ledger import BudgetError, BudgetStatus, Ledger
from blocks.providers import VideoProvider
from tasks.estimate import Estimate
from tasks.plan import ModelChoice, ShotPlan
from tasks.spend import BudgetDraw
from tasks.storyboard import Storyboard, shot_needs


class BudgetDecision(RunInput):
    """The form a paused run shows in the Prefect UI when its estimate is over the budget."""

    action: Literal["approve", "reduce", "cancel"] = Field(
        "cancel", description="approve: run (it stops when the budget runs out, or raise the limit below); "
                              "reduce: shrink the plan to fit; cancel: spend nothing.")
    new_limit: float | None = Field(None, ge=0, allow_inf_nan=False,
                                    description="With approve: raise the budget's limit to this many credits.")


def project_budget(slug: str) -> str:
    """The ledger budget a storyboard's own `budget` number is kept in."""
    return f"project-{slug}"[:63].rstrip("-")


def resolve_draw(storyboard: Storyboard, ledger: Ledger, budget: float | None, budget_name: str | None,
                 run_id: str = "", sync=None) -> tuple[BudgetDraw, BudgetStatus]:
    """The budget this run draws on and its status; BudgetError for an unknown name.

    A named budget (`--budget-name`, `defaults.budget_name`) is shared with every run naming it;
    otherwise the storyboard's `budget` number is the limit of its own budget, counted over all
    its runs and resumes (no number: no cap, spend is still recorded)."""
    name = budget_name or (None if budget is not None else storyboard.defaults.budget_name)
    if name:
        status = sync(ledger, name) if sync else ledger.status(name)
    else:
        name = project_budget(storyboard.project_slug)
        limit = budget if budget is not None else storyboard.defaults.budget
        status = ledger.ensure_budget(name, limit)
    return BudgetDraw(budget=name, state_url=ledger.url, project=storyboard.project_slug, run_id=run_id), status


def over_message(estimate: Estimate, status: BudgetStatus) -> str:
    return (f"the plan needs {estimate.needed:g} credits but budget '{status.name}' has {max(0.0, status.left):g} left "
            f"(limit {status.limit:g}, {status.spent:g} spent, {status.reserved:g} reserved"
            + (f", this {status.period} period" if status.period else "") + ")")


def fits(estimate: Estimate, status: BudgetStatus) -> bool:
    return status.left is None or estimate.needed <= status.left + 1e-9


def fit_plans(storyboard: Storyboard, plans: list[ShotPlan], providers: dict[str, VideoProvider],
              price, left: float) -> tuple[list[ShotPlan], list[str]]:
    """Shrink the plan until `price(plans)` (an Estimate) fits in `left`: first explore on the
    provider's cheapest suitable model at its shortest length and render only the winner on the
    shot's model (draft-then-final), then fewer takes, then the cheapest model outright."""
    plans, changes = list(plans), []

    def needed() -> float:
        return price(plans).needed

    for i, plan in enumerate(plans):  # 1. draft-then-final where it is cheaper
        if needed() <= left:
            return plans, changes
        draft = _cheapest(storyboard, plan, shortest=True)
        if plan.draft is None and draft is not None and plan.takes > 1:
            trial = plan.model_copy(update={"draft": draft[0], "draft_duration": draft[1]})
            if price([trial]).total < price([plan]).total:
                plans[i] = trial
                changes.append(f"{plan.shot_id}: drafts on {draft[0].label} at {draft[1]:g} s, the winner "
                               f"rendered on {plan.choices[0].label}")
    while needed() > left:  # 2. fewer takes, from the shot with the most
        i = max(range(len(plans)), key=lambda n: (plans[n].takes, price([plans[n]]).total))
        plan = plans[i]
        if plan.takes <= 1:
            break
        plans[i] = plan.model_copy(update={"prompts": plan.prompts.model_copy(
            update={"seeds": plan.prompts.seeds[:-1]})})
        changes.append(f"{plan.shot_id}: {plan.takes - 1} takes instead of {plan.takes}")
    for i, plan in enumerate(plans):  # 3. the cheapest suitable model, no final render
        if needed() <= left:
            break
        cheap = _cheapest(storyboard, plan, shortest=False)
        if cheap is not None and cheap[0] != plan.choices[0]:
            trial = plan.model_copy(update={"choices": [cheap[0]], "draft": None, "draft_duration": None,
                                            "fallback": None})
            if price([trial]).total < price([plan]).total:
                plans[i] = trial
                changes.append(f"{plan.shot_id}: {cheap[0].label} instead of {plan.choices[0].label}")
    return plans, changes


def _cheapest(storyboard: Storyboard, plan: ShotPlan, shortest: bool) -> tuple[ModelChoice, float] | None:
    """The shot provider's cheapest model that can make the shot (at its shortest allowed length
    when `shortest`), with that length."""
    catalogue, provider = load_catalogue(), plan.provider
    needs = shot_needs(storyboard, plan.index)
    best = None
    for entry in catalogue.models_of(provider):
        if entry.retired:
            continue
        lengths = sorted(entry.durations_at(None)) or [needs.duration]
        if entry.duration_range and not entry.resolutions[entry.default_resolution].durations:
            lengths = [max(entry.duration_range[0], 1.0)]
        seconds = next((s for s in lengths if s <= needs.duration), needs.duration) if shortest else needs.duration
        trial = type(needs)(**{**vars(needs), "duration": seconds, "resolution": None})
        if entry.unmet(trial):
            continue
        cost = catalogue.credits(provider, entry.model, seconds, None, needs.audio)
        if best is None or cost < best[0]:
            best = (cost, ModelChoice(provider=provider, model=entry.model), seconds)
    return (best[1], best[2]) if best else None


__all__ = ["BudgetDecision", "BudgetError", "fit_plans", "fits", "over_message", "resolve_draw"]
