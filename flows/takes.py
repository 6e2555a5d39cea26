"""Takes of the produce flow: generate them in rounds, score them, choose, and add takes where
no take is good enough (new seeds first, then the shot's fallback model) within the shot's share
of the budget. A shot that drafts first explores its takes on the draft model, then renders only
the winner on its own model at full length (same prompt, seed and reference): that render is the
shot's take.

Each stage returns what it decided as new records (ShotTakes is frozen; its dicts are never
written after construction), so the produce flow reads forward: a round's takes in, the shots as
chosen and the next round's jobs out (`decide_round`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect.futures import as_completed

from blocks.ledger import OverBudget
from blocks.media import place, read_image, save_last_frame
from blocks.providers import VideoProvider
from flows.progress import RunProgress
from tasks.caching import work_name
from tasks.generate import generate_take
from tasks.metrics import Expectation, TakeMetrics
from tasks.plan import ModelChoice, ShotPlan, frame_regions
from tasks.prompts import take_seeds
from tasks.report import TakeRecord
from tasks.score import DEFECT_GAP, Selection, score_take, select_best
from tasks.spend import BudgetDraw, work_key


UNKNOWN_OUTCOME = "unknown outcome, held on the budget"


@dataclass(frozen=True)
class TakeJob:
    plan: ShotPlan
    take: int
    seed: int
    choice: ModelChoice
    final: bool = False  # the full-length render of a draft winner


@dataclass(frozen=True)
class ShotTakes:
    """Everything known about one shot's takes at one point of the run; stages return a new one."""

    plan: ShotPlan
    reference: Path | None
    records: dict[int, TakeRecord] = field(default_factory=dict)
    metrics: dict[int, TakeMetrics] = field(default_factory=dict)
    history: tuple[str, ...] = ()
    selection: Selection | None = None
    chosen: int | None = None  # the take number chosen for the edit
    draft_winner: int | None = None  # the draft whose seed the final render uses
    learned: tuple[str, ...] = ()  # learned scorers whose weights are present
    pending: bool = False  # more takes were just requested for this shot
    share: float | None = None  # credits this shot may spend, None without a budget

    def with_takes(self, results: list[TakeResult]) -> ShotTakes:
        """This shot with the takes a round made for it."""
        mine = [r for r in results if r.shot_id == self.plan.shot_id]
        return replace(self, records={**self.records, **{r.record.take: r.record for r in mine}},
                       metrics={**self.metrics, **{r.record.take: r.metrics for r in mine if r.metrics is not None}})

    def noted(self, line: str, **changes) -> ShotTakes:
        """This shot with `line` added to its history (and `changes` made)."""
        return replace(self, history=(*self.history, line), **changes)

    @property
    def spent(self) -> float:
        return sum(r.credits for r in self.records.values() if not r.from_cache)

    def expectation(self, provider: VideoProvider, choice: ModelChoice, final: bool = False) -> Expectation:
        plan = self.plan
        request = plan.request(0, self.reference, choice, final=final)
        width, height = provider.render_size(request)
        size = read_image(self.reference).shape[1::-1] if self.reference else None
        return Expectation(
            width=width, height=height, fps=provider.render_fps(request), duration=request.duration,
            still_allowed=plan.motion_amount == 0 or plan.prompts.prompt.asks_for_still_camera(),
            camera=plan.prompts.prompt.camera, motion_amount=plan.motion_amount,
            regions=frame_regions(plan.motion_regions, size, plan.aspect_ratio),
            reference_image=self.reference)


def first_jobs(shot: ShotTakes) -> list[TakeJob]:
    plan = shot.plan
    return [TakeJob(plan, k, seed, plan.choice_for(k)) for k, seed in enumerate(plan.prompts.seeds, 1)]


@dataclass(frozen=True)
class NextTakes:
    """A shot as a decision left it, and the takes it asks for next (none: it is done for now)."""

    shot: ShotTakes
    jobs: tuple[TakeJob, ...] = ()


@dataclass(frozen=True)
class Round:
    """The shots after a round was decided, and the jobs of the next round (none: the loop ends)."""

    shots: dict[str, ShotTakes]
    jobs: tuple[TakeJob, ...]


def continuation_jobs(shots: dict[str, ShotTakes], folder: Path) -> Round:
    """Start continuing shots whose previous shot has its final choice: the chosen take's last
    frame becomes their reference image. A shot whose predecessor never passed cannot start."""
    shots, jobs = dict(shots), []
    for shot_id in list(shots):
        shot = shots[shot_id]
        previous = shots.get(shot.plan.continues_from or "")
        if previous is None or shot.records or shot.history:
            continue  # not a continuing shot, or already started or given up
        if previous.selection is None or previous.pending:
            continue  # the previous shot is still being generated or resampled
        if previous.chosen is None:
            shots[shot_id] = shot.noted(f"not generated: {previous.plan.shot_id} has no acceptable take to "
                                        "continue from")
            continue
        take = previous.chosen
        frame = folder / "references" / f"{shot.plan.shot_id}-from-{previous.plan.shot_id}-take{take}.png"
        shot = shot.noted(f"continues {previous.plan.shot_id} from the last frame of its take {take}",
                          reference=save_last_frame(folder / previous.records[take].file, frame))
        shots[shot_id] = shot
        jobs += first_jobs(shot)
    return Round(shots, tuple(jobs))


def decide_round(shots: dict[str, ShotTakes], made: list[TakeResult], title: str,
                 providers: dict[str, VideoProvider], folder: Path, within: bool) -> Round:
    """Take in a round's takes, choose for every shot it touched and, while the budget holds,
    ask for more takes where none is good enough and start the shots that continue a decided one."""
    shots, jobs = {shot_id: shot.with_takes(made) for shot_id, shot in shots.items()}, []
    for shot_id in dict.fromkeys(result.shot_id for result in made):
        shot = choose(shots[shot_id])
        if within:
            step = next_jobs(shot, title, providers)
            shot, jobs = step.shot, jobs + list(step.jobs)
        shots[shot_id] = shot
    if not within:
        return Round(shots, ())
    started = continuation_jobs(shots, folder)
    return Round(started.shots, (*jobs, *started.jobs))


@dataclass(frozen=True)
class TakeResult:
    """One take a round made: its record (with its QC result when it was generated) and its metrics."""

    shot_id: str
    record: TakeRecord
    metrics: TakeMetrics | None = None


def run_round(jobs: list[TakeJob], shots: dict[str, ShotTakes], providers: dict[str, VideoProvider],
              folder: Path, progress: RunProgress, spend: BudgetDraw | None = None) -> list[TakeResult]:
    """Generate `jobs` in parallel, then score every new take; returns the takes in job order
    (`shots` is only read). A take marked over_budget could not reserve its price: the budget is
    spent and nothing more is to be submitted."""
    futures = {}
    for job in jobs:
        shot, provider = shots[job.plan.shot_id], providers[job.choice.provider]
        request = job.plan.request(job.seed, shot.reference, job.choice, final=job.final)
        dest = folder / "takes" / f"{job.plan.shot_id}-take{job.take}-{work_name(provider, request)}.mp4"
        futures[generate_take.submit(provider, request, job.plan.shot_id, job.take, dest, spend)] = (job, request, dest)
    progress.start("generate", len(jobs))
    made: dict[tuple[str, int], TakeRecord] = {}
    for future in as_completed(list(futures)):
        job, request, dest = futures[future]
        provider = providers[job.choice.provider]
        made[job.plan.shot_id, job.take] = _take_record(future, provider, job, request, dest, spend)
        progress.advance("generate", f"{job.plan.shot_id} take {job.take}")
    scoring = {}
    for job in jobs:
        shot, record = shots[job.plan.shot_id], made[job.plan.shot_id, job.take]
        if record.file:
            expected = shot.expectation(providers[job.choice.provider], job.choice, job.final)
            scoring[job.plan.shot_id, job.take] = score_take.submit(
                folder / record.file, expected, shot.learned, job.plan.prompts.prompt.text(),
                motion_reference=job.plan.motion_fields().get("motion_reference"))
    progress.start("score", len(scoring))
    results = []
    for job in jobs:
        key = job.plan.shot_id, job.take
        record, metrics = made[key], None
        if key in scoring:
            metrics = scoring[key].result()
            record = record.model_copy(update={"passed": metrics.passed, "hard_fails": metrics.hard_fails,
                                               "metrics": metrics.metrics})
            progress.advance("score", f"{job.plan.shot_id} take {job.take}")
        results.append(TakeResult(job.plan.shot_id, record, metrics))
    return results


def _take_record(future, provider: VideoProvider, job: TakeJob, request, dest: Path,
                 spend: BudgetDraw | None) -> TakeRecord:
    stage = "final" if job.final else "draft" if job.plan.draft else "take"
    base = dict(take=job.take, seed=job.seed, model=job.choice.model, provider=job.choice.provider, stage=stage,
                estimate=provider.estimate_credits(request),
                key=work_key("generate-take", provider=provider, request=request))
    try:
        result = future.result()
        from_cache = future.state.name == "Cached"
        if not result.path.is_file():  # the cached take was deleted since: generate it again
            result = generate_take.with_options(refresh_cache=True)(provider, request, job.plan.shot_id,
                                                                    job.take, dest, spend)
            from_cache = False
    except Exception as exc:  # a failed take is reported, never fatal for the shot's other takes
        error = str(exc).splitlines()[0][:300]
        if getattr(exc, "kind", None) == "unknown_outcome":  # the ledger holds it: say so where users look
            error = f"{UNKNOWN_OUTCOME} at {base['estimate']:g} credits: {error}"
        return TakeRecord(**base, error=error, over_budget=isinstance(exc, OverBudget))
    place(result.path, dest)
    return TakeRecord(**base, file=str(dest.relative_to(dest.parents[1])),
                      from_cache=from_cache, credits=result.credits, seconds=round(result.seconds, 3))


def choose(shot: ShotTakes) -> ShotTakes:
    """Rank the shot's scored takes and apply its quality bar. A drafting shot ranks its drafts
    (the winner is rendered next); once that render exists, it is the shot's take if it passes."""
    finals = [n for n in sorted(shot.metrics) if shot.records[n].stage == "final"]
    numbers = finals[-1:] or sorted(shot.metrics)
    selection = select_best([shot.metrics[n] for n in numbers], numbers=numbers,
                            min_quality=shot.plan.quality_bar, camera=shot.plan.prompts.prompt.camera,
                            defect_gaps=DEFECT_GAP)
    records = dict(shot.records)
    for number, total, quality, note in zip(numbers, selection.totals, selection.quality, selection.notes):
        records[number] = records[number].model_copy(update={"score": total, "quality": quality, "note": note,
                                                             "place": selection.order.index(number) + 1})
    if shot.plan.draft and not finals:
        return replace(shot, records=records, selection=selection, draft_winner=selection.take, chosen=None)
    return replace(shot, records=records, selection=selection, chosen=selection.take)


def unreachable_error(records) -> str | None:
    """The error of a shot whose takes all failed because their provider could not be reached."""
    records = list(records)
    errors = sorted({r.error or "" for r in records})
    if records and all("cannot reach" in error for error in errors):
        return errors[0]
    return None


def next_jobs(shot: ShotTakes, title: str, providers: dict[str, VideoProvider]) -> NextTakes:
    """More takes for a shot with no acceptable take: new seeds, then the fallback model; none
    when the shot is fine, out of extra takes, or out of its share of the budget."""
    shot = replace(shot, pending=False)
    unreachable = unreachable_error(shot.records.values())
    if unreachable:  # more seeds would only knock on the same closed door
        return NextTakes(shot.noted(f"stopped: {unreachable}; no more takes tried"))
    plan, count = shot.plan, max(shot.records, default=0)
    if shot.chosen is not None or (shot.selection is not None and shot.selection.acceptable
                                   and shot.draft_winner is None):
        return NextTakes(shot)
    if any(r.stage == "final" for r in shot.records.values()):
        return NextTakes(shot.noted("the final render of the winning draft missed the bar; every take is kept"))
    if shot.draft_winner is not None:  # draft-then-final: render the winner on the shot's model
        winner, final = shot.records[shot.draft_winner], plan.choices[0]
        job = TakeJob(plan, count + 1, winner.seed, final, final=True)
        cost = providers[final.provider].estimate_credits(plan.request(winner.seed, shot.reference, final, final=True))
        if shot.share is not None and shot.spent + cost > shot.share + 1e-9:
            return NextTakes(shot.noted(f"stopped: the final render ({cost:g} credits) would pass the shot's "
                                        f"share of the budget ({shot.share:g} credits, {shot.spent:g} spent)"))
        return NextTakes(shot.noted(f"draft take {shot.draft_winner} won: rendered on {final.label} at "
                                    f"{plan.duration:g} s as take {count + 1}", pending=True), (job,))
    extra = count - plan.takes
    fallback = plan.fallback
    fallback_used = fallback and any((r.provider, r.model) == (fallback.provider, fallback.model)
                                     for r in shot.records.values())
    if extra < plan.extra_takes:
        batch, why = min(plan.takes, plan.extra_takes - extra), "new seeds"
        choose_model = plan.choice_for
    elif fallback and not fallback_used:
        batch, why = plan.takes, f"fallback model {fallback.label}"
        choose_model = lambda take: fallback  # noqa: E731
    else:
        return NextTakes(shot.noted("no more takes allowed: extra takes and fallback model used up"))
    seeds = take_seeds(title, plan.shot_id, count + batch)[count:]
    jobs = tuple(TakeJob(plan, count + i, seed, choose_model(count + i)) for i, seed in enumerate(seeds, 1))
    cost = sum(providers[j.choice.provider].estimate_credits(plan.request(j.seed, shot.reference, j.choice))
               for j in jobs)
    if shot.share is not None and shot.spent + cost > shot.share + 1e-9:
        return NextTakes(shot.noted(f"stopped: {batch} more takes ({cost:g} credits) would pass the shot's "
                                    f"share of the budget ({shot.share:g} credits, {shot.spent:g} spent)"))
    return NextTakes(shot.noted(f"no take passed the bar: {batch} more takes with {why}", pending=True), jobs)
