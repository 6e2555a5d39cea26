"""What a storyboard will cost, take by take, before anything is spent: one function for
`takeflow estimate`, `takeflow validate` and the produce flow's gate.

A take whose work (its content key) the ledger has already charged for costs nothing again: its
output is reused from the cache, so a resumed run needs only what is still missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, Field

from blocks.providers import VideoProvider
from tasks.plan import ShotPlan, plan_storyboard, providers_used
from tasks.provider_upscale import needs_upscale, upscaler_of, upscaling_provider
from tasks.spend import upscale_key, work_key
from tasks.storyboard import Storyboard

Stage = Literal["take", "draft", "final", "upscale"]


class Quote(BaseModel):
    """The price of one paid call of the plan."""

    shot_id: str = Field(description="Shot it belongs to.")
    take: int | None = Field(None, description="Take number (None for a final render or an upscale).")
    stage: Stage = Field(description="take, draft (explored on the draft model), final (the draft winner "
                                     "on the shot's model) or upscale.")
    model: str = Field(description="provider/model.")
    seconds: float = Field(description="Clip length it is priced for.")
    credits: float = Field(description="Catalogue (or block) price.")
    key: str | None = Field(None, description="Content key of the work, when known before the run.")
    paid: float = Field(0.0, description="Credits the ledger already charged for this exact work.")

    @property
    def needed(self) -> float:
        return 0.0 if self.paid > 0 else self.credits


class Estimate(BaseModel):
    """Every paid call the plan makes at most once through (resampling comes on top, within budget)."""

    quotes: list[Quote]

    @property
    def total(self) -> float:
        return round(sum(q.credits for q in self.quotes), 4)

    @property
    def needed(self) -> float:
        """What is still to pay: the total less work already charged for."""
        return round(sum(q.needed for q in self.quotes), 4)

    @property
    def upscaling(self) -> float:
        return round(sum(q.credits for q in self.quotes if q.stage == "upscale"), 4)

    def shot_total(self, shot_id: str) -> float:
        return round(sum(q.credits for q in self.quotes if q.shot_id == shot_id), 4)

    def rows(self) -> list[dict]:
        return [{"shot": q.shot_id, "take": q.take if q.take is not None else "", "stage": q.stage,
                 "model": q.model, "seconds": q.seconds, "credits": q.credits,
                 "to pay": q.needed, "note": "already paid, reused" if q.paid else ""} for q in self.quotes]

    def shot_rows(self) -> list[dict]:
        shots = dict.fromkeys(q.shot_id for q in self.quotes)
        return [{"shot": s, "calls": sum(q.shot_id == s for q in self.quotes), "credits": self.shot_total(s),
                 "to pay": round(sum(q.needed for q in self.quotes if q.shot_id == s), 4)} for s in shots]

    def text(self) -> str:
        """The per-shot, per-take table printed by `takeflow estimate`."""
        lines = [f"{'shot':14} {'take':>4} {'stage':8} {'model':34} {'s':>5} {'credits':>9} {'to pay':>9}"]
        for q in self.quotes:
            lines.append(f"{q.shot_id:14} {q.take if q.take is not None else '':>4} {q.stage:8} {q.model:34} "
                         f"{q.seconds:>5g} {q.credits:>9g} {q.needed:>9g}" + ("  (paid, reused)" if q.paid else ""))
        lines.append(f"{'total':14} {'':>4} {'':8} {'':34} {'':>5} {self.total:>9g} {self.needed:>9g}")
        return "\n".join(lines)

    def markdown(self, left: float | None, budget: str | None) -> str:
        cap = (f"budget **{budget}** has **{left:g}** credits left" if left is not None
               else f"budget **{budget}** has no cap" if budget else "no budget")
        lines = [f"Estimate **{self.total:g}** credits, **{self.needed:g}** still to pay; {cap}.", "",
                 "| shot | calls | credits | to pay |", "|---|---|---|---|"]
        lines += [f"| {r['shot']} | {r['calls']} | {r['credits']:g} | {r['to pay']:g} |" for r in self.shot_rows()]
        return "\n".join(lines)


def estimate_run(storyboard: Storyboard, plans: list[ShotPlan], providers: dict[str, VideoProvider],
                 references: dict[str, Path | None] | None = None,
                 paid: Callable[[list[str]], dict[str, float]] | None = None) -> Estimate:
    """Price every take, draft-winner render and provider upscale of the plan.

    `references` are the shots' local reference images (content keys need their bytes; a shot
    continuing another has none yet); `paid` looks content keys up in the ledger."""
    quotes: list[Quote] = []
    for plan in plans:
        reference = (references or {}).get(plan.shot_id, _local(plan.reference_image))
        for take, seed in enumerate(plan.prompts.seeds, 1):
            choice = plan.choice_for(take)
            provider = providers[choice.provider]
            request = plan.request(seed, reference, choice)
            known = plan.continues_from is None and (reference is not None or plan.reference_image is None)
            quotes.append(Quote(shot_id=plan.shot_id, take=take, stage="draft" if plan.draft else "take",
                                model=choice.label, seconds=request.duration,
                                credits=_price(plan, choice.label, lambda: provider.estimate_credits(request)),
                                key=work_key("generate-take", provider=provider, request=request) if known else None))
        if plan.draft:
            final = plan.choices[0]
            request = plan.request(plan.prompts.seeds[0], reference, final, final=True)
            quotes.append(Quote(shot_id=plan.shot_id, stage="final", model=final.label, seconds=request.duration,
                                credits=_price(plan, final.label,
                                               lambda: providers[final.provider].estimate_credits(request))))
    upscaler, upscales = upscaling_provider(storyboard, providers), {}
    if upscaler is not None:
        model, delivery = upscaler_of(storyboard)[1], storyboard.defaults.delivery
        for plan in plans:
            if needs_upscale(plan, providers, delivery):
                takes = [q.key for q in quotes if q.shot_id == plan.shot_id]
                if plan.draft is None and takes and all(takes):  # the upscale of whichever take wins
                    upscales[len(quotes)] = [upscale_key(upscaler, k, model, delivery) for k in takes]
                quotes.append(Quote(shot_id=plan.shot_id, stage="upscale", model=storyboard.defaults.upscaler,
                                    seconds=plan.duration,
                                    credits=upscaler.estimate_upscale_credits(model, delivery, plan.duration)))
    if paid is not None:
        charged = paid([q.key for q in quotes if q.key] + [k for keys in upscales.values() for k in keys])
        quotes = [q.model_copy(update={"paid": charged.get(q.key, 0.0)}) if q.key else q for q in quotes]
        for index, keys in upscales.items():  # every take reused: the same take wins, its upscale is reused too
            shot = [q for q in quotes if q.shot_id == quotes[index].shot_id and q.stage != "upscale"]
            done = next((k for k in keys if charged.get(k)), None)
            if done and all(q.paid for q in shot):
                quotes[index] = quotes[index].model_copy(update={"key": done, "paid": charged[done]})
    return Estimate(quotes=quotes)


@dataclass(frozen=True)
class RunPlan:
    """What a run of a storyboard will do and whom it calls: its shot plans and every provider they
    (and the storyboard's upscaler) use, loaded."""

    plans: list[ShotPlan]
    providers: dict[str, VideoProvider]

    def estimate(self, storyboard: Storyboard, paid: Callable[[list[str]], dict[str, float]] | None = None,
                 plans: list[ShotPlan] | None = None) -> Estimate:
        """The estimate of these plans (or of `plans`, a shrunk version of them)."""
        return estimate_run(storyboard, self.plans if plans is None else plans, self.providers, paid=paid)


def plan_run(storyboard: Storyboard, takes: int | None, load: Callable[[str], VideoProvider],
             expand=None) -> RunPlan:
    """Plan every shot and load the providers the plan needs with `load`: the one planning step of
    `takeflow validate`, `takeflow estimate`, the produce precheck and the produce flow, so what
    the CLI prices is what the flow runs."""
    plans = plan_storyboard(storyboard, takes, expand=expand)
    upscaler = upscaler_of(storyboard)
    names = sorted({*providers_used(plans), *([upscaler[0]] if upscaler else [])})
    return RunPlan(plans, {name: load(name) for name in names})


class PriceMissing(ValueError):
    """A model the plan uses has no price in the catalogue: nothing can be reserved for it."""


def _price(plan: ShotPlan, label: str, price: Callable[[], float]) -> float:
    try:
        return price()
    except KeyError as exc:
        raise PriceMissing(f"shots[{plan.index}]: {label} has no price in the catalogue ({exc.args[0]}); add "
                           "it to your catalogue (TAKEFLOW_CATALOGUE) or choose a listed model") from None


def _local(uri: str | None) -> Path | None:
    if uri is None or uri.startswith(("s3://", "https://", "http://")):
        return None
    return Path(uri)
