"""The produce flow: a storyboard becomes takes, scores, chosen takes, an upscaled, captioned edit and
a report.

Every expensive step is a Prefect task cached by the content of its inputs, so a re-run of the
same storyboard generates, scores, upscales and assembles nothing again.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field, ValidationError

from blocks.media import place
from blocks.providers import GenerationError, VideoProvider
from blocks.registry import load_provider
from flows.progress import RunProgress
from tasks.caching import work_name
from flows.takes import ShotTakes, choose, continuation_jobs, first_jobs, next_jobs, run_round
from tasks.generate import ensure_limits
from tasks.contact_sheet import make_contact_sheet_task
from blocks.storage import Storage
from flows.deliver import cached_file, deliver, load_captions, local_input, publish
from flows.upscaling import UpscaleStopped, upscale_chosen
from tasks.deliver import load_storage
from tasks.learned import default_registry, split_available
from tasks.plan import ShotPlan, delivery_size, estimate_credits, plan_shot, providers_used, takes_for
from tasks.prompts import expand_prompt
from tasks.report import ProductionReport, ShotRecord, write_report
from tasks.checks import accept_run
from tasks.storyboard import Storyboard, StoryboardError, describe_error, slug
from tasks.super_resolution import estimate_upscale_credits, upscaler_of

# Takes run in threads; providers are remote APIs waiting on the network (previz shares the CPU).
MAX_PARALLEL_TASKS = 8
STAGE_WEIGHTS = {"generate": 6, "score": 2, "assemble": 2}


class RunOptions(BaseModel):
    """How to run a production; storyboard values apply where these are left empty."""

    out_dir: str = Field("out", description="Folder receiving <project>/final.mp4, takes/ and report.json.")
    takes: int | None = Field(None, ge=1, le=16, description="Takes per shot; overrides the storyboard.")
    budget: float | None = Field(None, ge=0, description="Credit budget; overrides the storyboard's.")
    storage: str | None = Field(None, description="Saved storage block ('<type-slug>/<name>', e.g. "
                                "'takeflow-s3-storage/media') that receives the deliverables and "
                                "reads s3:// inputs.")
    inputs_dir: str | None = Field(None, description="Folder (or s3:// prefix) the storyboard's relative "
                                   "input paths are read from; default: the folder the worker runs in.")


def _run_name() -> str:
    board = flow_run.parameters["storyboard"]
    title = board.title if isinstance(board, Storyboard) else str((board or {}).get("title", ""))
    return f"produce-{slug(title)}"


# Parameters are validated inside, by the CLI's own checks, so a deployment run with a bad
# storyboard fails with the same one-line message instead of pydantic's multi-line report.
@flow(name="produce", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_TASKS),
      validate_parameters=False)
def produce(storyboard: Storyboard, options: RunOptions = RunOptions()) -> ProductionReport:
    """Turn a storyboard into final.mp4, takes, scores and report.json under out_dir/<project>/."""
    logger = get_run_logger()
    try:
        options = RunOptions.model_validate(options)
        storyboard, _ = accept_run(storyboard, options.takes, options.budget, options.inputs_dir,
                                   load_storage(options.storage) if options.storage else None)
    except ValidationError as exc:
        return Failed(name="InvalidInput", message=f"options.{describe_error(exc)} (nothing was spent)")
    except (StoryboardError, ValueError) as exc:
        return Failed(name="InvalidInput", message=f"{exc} (nothing was spent)")
    folder = Path(options.out_dir).resolve() / storyboard.project_slug
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    plans = [plan_shot(storyboard, i, expand_prompt(shot, shot_id, storyboard.title,
                                                     takes_for(storyboard, i, options.takes)))
             for i, (shot, shot_id) in enumerate(zip(storyboard.shots, storyboard.shot_ids()))]
    for plan in plans:
        for issue in plan.prompts.lint:
            logger.warning(f"{plan.shot_id} prompt, {issue.part}: {issue.problem}; {issue.suggestion}")
    upscaler = upscaler_of(storyboard)
    names = sorted({*providers_used(plans), *([upscaler[0]] if upscaler else [])})
    providers = {name: load_provider(name) for name in names}
    try:  # a provider that cannot work (no key, retired) stops the run before anything is spent
        for provider in providers.values():
            provider.preflight()
        upscaling = estimate_upscale_credits(storyboard, plans, providers)
        estimate = round(estimate_credits(plans, providers) + upscaling, 4)
    except GenerationError as exc:
        return Failed(name="InvalidInput", message=f"{exc} (nothing was spent)")
    budget = options.budget if options.budget is not None else storyboard.defaults.budget
    if budget is not None and estimate > budget:
        return Failed(name="BudgetExceeded", message=(
            f"estimated cost {estimate:g} credits" + (f" ({upscaling:g} of them upscaling)" if upscaling else "")
            + f" is over the budget of {budget:g}; raise the budget, use fewer takes or shorten shots"
            + (" or set defaults.upscaler: local" if upscaling else "") + " (nothing was spent)"))
    storage = load_storage(options.storage) if options.storage else None
    ensure_limits(providers)
    sound = storyboard.sound
    inputs = ([p.reference_image for p in plans] + ([sound.music, sound.voice_over] if sound else [])
              + [storyboard.captions])
    if storage is None and any((uri or "").startswith("s3://") for uri in inputs):
        return Failed(name="InvalidInput", message=(
            "an input is an s3:// URI; pass a storage block (--storage) that can read it"))
    try:  # a remote subtitle file is read now, so a bad one costs nothing
        captions = load_captions(storyboard, folder, storage)
    except Exception as exc:
        return Failed(name="InvalidInput", message=f"captions: {str(exc).splitlines()[0]} (nothing was spent)")
    timings["plan"] = time.perf_counter() - clock

    progress = RunProgress({**STAGE_WEIGHTS, "upscale": 1} if upscaler else STAGE_WEIGHTS)
    clock = time.perf_counter()
    registry, notices = default_registry()
    ready, skipped = split_available(registry.scorers())
    shots = _shot_takes(plans, providers, folder, budget, estimate, tuple(s.name for s in ready), storage)
    jobs = [job for shot in shots.values() if not shot.plan.continues_from for job in first_jobs(shot)]
    while jobs:  # each round: generate and score, choose, add takes where none is good enough,
        run_round(jobs, shots, providers, folder, progress)  # then start shots continuing others
        touched, jobs = dict.fromkeys(job.plan.shot_id for job in jobs), []
        for shot_id in touched:
            shot = shots[shot_id]
            choose(shot)
            jobs += next_jobs(shot, storyboard.title, providers)
        jobs += continuation_jobs(shots, folder)
    records = [_shot_record(shot, folder) for shot in shots.values()]
    timings["generate+score"] = time.perf_counter() - clock

    width, height = delivery_size(storyboard.defaults.aspect_ratio, storyboard.defaults.delivery)
    report = ProductionReport(
        title=storyboard.title, status="complete", width=width, height=height, fps=storyboard.defaults.fps,
        duration=storyboard.total_duration(), estimate=estimate, budget=budget,
        credits_spent=round(sum(s.credits_spent for s in records), 4),
        generated=sum(not t.from_cache for s in records for t in s.takes if t.file),
        cached=sum(t.from_cache for s in records for t in s.takes), timings=timings, shots=records,
        notices=notices + skipped)

    missing = [s for s in records if s.chosen is None]
    if missing:  # every take stays in takes/; an edit with a hole in it is not cut
        report.status = "; ".join(f"{s.shot_id}: {s.reason}" for s in missing)
        report.timings = timings
        write_report(report, folder)
        return Failed(name="NoAcceptableTake", message=(
            f"{report.status}. Every take is kept in {folder / 'takes'}; adjust the prompt, "
            "lower the quality bar or allow more takes, and rerun"))

    clock = time.perf_counter()
    try:
        takes = upscale_chosen(storyboard, plans, records, providers, folder, budget, progress)
    except UpscaleStopped as exc:
        report.status = str(exc)
        write_report(report, folder)
        return Failed(name=exc.state, message=str(exc))
    report.credits_spent = round(sum(s.credits_spent for s in records), 4)
    if upscaler:
        timings["upscale"] = time.perf_counter() - clock
    clock = time.perf_counter()
    files = deliver(storyboard, plans, records, report, folder, storage, progress, takes, captions)
    timings["assemble"] = time.perf_counter() - clock
    report.final, report.poster, report.timings = next(iter(files)), "poster.jpg", timings
    report.deliverables = sorted(files)
    files["report.json"] = write_report(report, folder)
    if storage is not None:
        report.published = publish(storage, files, records, folder, storyboard.project_slug, str(flow_run.id))
        write_report(report, folder)
    logger.info(f"{report.final}: {report.generated} takes generated, {report.cached} from cache")
    return report


def _shot_takes(plans: list[ShotPlan], providers: dict[str, VideoProvider], folder: Path,
                budget: float | None, estimate: float, learned: tuple[str, ...],
                storage: Storage | None) -> dict[str, ShotTakes]:
    """Each shot's reference image (remote ones fetched) and its share of the budget."""
    shots = {}
    for plan in plans:
        reference = plan.reference_image
        reference = local_input(reference, plan.shot_id, folder / "references", storage, "image")
        share = None
        if budget is not None and estimate > 0:
            own = estimate_credits([plan], providers)
            share = budget * own / estimate
        shots[plan.shot_id] = ShotTakes(plan, reference, share=share,
                                        learned=learned)
    return shots


def _shot_record(shot: ShotTakes, folder: Path) -> ShotRecord:
    plan, selection = shot.plan, shot.selection
    takes = [shot.records[n] for n in sorted(shot.records)]
    chosen = None
    if selection is not None and selection.acceptable and selection.index is not None:
        chosen = sorted(shot.metrics)[selection.index]
    if not takes:
        reason = shot.history[-1] if shot.history else "not generated"
    elif selection and shot.metrics:
        reason = selection.reason
    else:
        errors = dict.fromkeys(t.error for t in takes)
        reason = "every take failed to generate: " + ("; ".join(f"take {t.take}: {t.error}" for t in takes)
                                                      if len(errors) > 1 else f"{next(iter(errors))}")
    files = [folder / t.file for t in takes if t.file]
    sheet = None
    if files:
        labels = [f"take {t.take}" + (" chosen" if t.take == chosen else "")
                  + (f"  q {t.quality:.2f}" if t.quality is not None else "")
                  + (f"  {t.hard_fails[0]}" if t.hard_fails else "") for t in takes if t.file]
        sheet = cached_file(make_contact_sheet_task, files, labels,
                        folder / "work" / f"{plan.shot_id}-sheet-{work_name(files, labels)}.jpg")
        sheet = place(sheet, folder / "contact-sheets" / f"{plan.shot_id}.jpg").relative_to(folder)
    return ShotRecord(
        shot_id=plan.shot_id, provider=plan.provider, model=plan.model, duration=plan.duration,
        prompt=plan.prompts.prompt.text(), prompt_parts=plan.prompts.prompt, lint=plan.prompts.lint,
        takes=takes, state="ok" if chosen is not None else "NoAcceptableTake", chosen=chosen,
        reason=reason, history=shot.history, contact_sheet=str(sheet) if sheet else None)
