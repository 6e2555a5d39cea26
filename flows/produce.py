"""The produce flow: a storyboard becomes takes, scores, chosen takes, an upscaled, captioned edit and
a report.

Every expensive step is a Prefect task cached by the content of its inputs, so a re-run of the
same storyboard generates, scores, upscales and assembles nothing again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blocks.budget import sync_budget
from blocks.ledger import BudgetError, Ledger, ledger_for
from blocks.media import place
from blocks.providers import GenerationError, VideoProvider
from blocks.registry import load_provider
from flows.progress import RunProgress
from flows.runners import TakeflowTaskRunner
from tasks.caching import work_name
from flows.takes import UNKNOWN_OUTCOME, ShotTakes, decide_round, first_jobs, run_round
from tasks.generate import ensure_limits
from tasks.contact_sheet import make_contact_sheet_task
from blocks.storage import Storage
from flows.deliverables import cached_file, deliver, load_captions, local_input, publish
from flows.upscale_chosen import UpscaleStopped, upscale_chosen
from tasks.publish import load_storage
from tasks.estimate import Estimate, PriceMissing, plan_run
from tasks.gate import BudgetDecision, fit_plans, fits, over_message, resolve_draw
from tasks.learned import default_registry, split_available
from tasks.plan import ShotPlan, delivery_size
from tasks.prompts import expand_prompt
from tasks import events
from tasks.report import ProductionReport, ShotRecord, publish_history, publish_media, settled_spend, write_report
from tasks.spend import BudgetDraw, reconcile_orphans, settle_unknown_creates
from tasks.checks import accept_run
from tasks.storyboard import Real, Storyboard, StoryboardError, Whole, describe_error, slug
from tasks.provider_upscale import upscaler_of

# Takes run in threads; providers are remote APIs waiting on the network (previz shares the CPU).
MAX_PARALLEL_TASKS = 8
STAGE_WEIGHTS = {"generate": 6, "score": 2, "assemble": 2}
PAUSE_TIMEOUT = 4 * 3600  # seconds a paused budget gate waits for a decision


class RunOptions(BaseModel):
    """How to run a production; storyboard values apply where these are left empty."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is refused, not silently ignored

    out_dir: str = Field("out", description="Folder receiving <project>/final.mp4, takes/ and report.json.")
    takes: Whole | None = Field(None, ge=1, le=16, description="Takes per shot; overrides the storyboard.")
    budget: Real | None = Field(None, ge=0, allow_inf_nan=False,
                                 description="Credit budget of this storyboard over all its runs; overrides "
                                             "the storyboard's.")
    budget_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                                    description="Named ledger budget to draw on (shared with other runs); "
                                                "overrides the storyboard's budget and budget_name.")
    policy: Literal["stop", "pause", "fit"] | None = Field(
        None, description="What to do when the estimate is over what the budget has left; overrides "
                          "defaults.budget_policy.")
    storage: str | None = Field(None, description="Saved storage block ('<type-slug>/<name>', e.g. "
                                "'takeflow-s3-storage/media') that receives the deliverables and "
                                "reads s3:// inputs.")
    inputs_dir: str | None = Field(None, description="Folder (or s3:// prefix) the storyboard's relative "
                                   "input paths are read from; default: the folder the worker runs in.")


def _run_name() -> str:
    board = flow_run.parameters["storyboard"]
    title = (board.title if isinstance(board, Storyboard) else
             str(board.get("title", "")) if isinstance(board, dict) else "")
    return f"produce-{slug(title)}"


# Parameters are validated inside, by the CLI's own checks, so a deployment run with a bad
# storyboard fails with the same one-line message instead of pydantic's multi-line report.
@flow(name="produce", flow_run_name=_run_name, task_runner=TakeflowTaskRunner(MAX_PARALLEL_TASKS),
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

    run = plan_run(storyboard, options.takes, load_provider, expand=expand_prompt)
    plans, providers = run.plans, run.providers
    for plan in plans:
        for issue in plan.prompts.lint:
            logger.warning(f"{plan.shot_id} prompt, {issue.part}: {issue.problem}; {issue.suggestion}")
    upscaler = upscaler_of(storyboard)
    ledger = ledger_for()

    def price(candidate: list[ShotPlan]) -> Estimate:
        return run.estimate(storyboard, paid=lambda keys: ledger.paid_keys(keys, held=True), plans=candidate)

    try:  # a provider that cannot work (no key, retired) or an unknown budget stops the run before any spend
        for provider in providers.values():
            provider.preflight()
        draw, status = resolve_draw(storyboard, ledger, options.budget, options.budget_name, str(flow_run.id),
                                    sync=sync_budget)
        for line in reconcile_orphans(ledger, draw.budget, providers) + settle_unknown_creates(ledger, providers):
            logger.warning(line)  # what killed runs left open, and creates of unknown outcome decided
        status = ledger.status(draw.budget)
        estimate = price(plans)
    except (GenerationError, BudgetError, PriceMissing) as exc:
        return Failed(name="InvalidInput", message=f"{exc} (nothing was spent)")
    _publish_estimate(storyboard, estimate, status)
    gated = _gate(storyboard, plans, providers, price, estimate, status, ledger, draw,
                  options.policy or storyboard.defaults.budget_policy)
    if isinstance(gated, State):
        return gated
    plans, estimate, changes = gated
    storage = load_storage(options.storage) if options.storage else None
    ensure_limits(providers)
    sound = storyboard.sound
    inputs = ([p.reference_image for p in plans] + [p.motion_reference for p in plans] + ([sound.music, sound.voice_over] if sound else [])
              + [storyboard.captions])
    if storage is None and any((uri or "").startswith("s3://") for uri in inputs):
        return Failed(name="InvalidInput", message=(
            "an input is an s3:// URI; pass a storage block (--storage) that can read it"))
    try:  # a remote subtitle file is read now, so a bad one costs nothing
        captions = load_captions(storyboard, folder, storage)
    except Exception as exc:
        return Failed(name="InvalidInput", message=f"captions: {str(exc).splitlines()[0]} (nothing was spent)")
    timings["plan"] = time.perf_counter() - clock

    progress = RunProgress({**STAGE_WEIGHTS, "upscale": 1} if upscaler else STAGE_WEIGHTS,
                           key=slug(f"{storyboard.project_slug}-progress", 100))
    clock = time.perf_counter()
    registry, notices = default_registry()
    ready, skipped = split_available(registry.scorers())
    shots = _shot_takes(plans, folder, ledger.status(draw.budget).left, estimate,
                        tuple(s.name for s in ready), storage)
    jobs = [job for shot in shots.values() if not shot.plan.continues_from for job in first_jobs(shot)]
    within = True
    while jobs:  # each round: generate and score, choose, add takes where none is good enough,
        made = run_round(jobs, shots, providers, folder, progress, draw)  # then start continuing shots
        for result in made:
            if result.record.file:
                events.take_generated(storyboard.project_slug, result.shot_id, result.record)
        within = not any(result.record.over_budget for result in made)  # else the budget is spent
        decided = decide_round(shots, made, storyboard.title, providers, folder, within)
        shots, jobs = decided.shots, list(decided.jobs)
    records = [_shot_record(shot, folder) for shot in shots.values()]
    for record in records:
        events.shot_decided(storyboard.project_slug, record)
    timings["generate+score"] = time.perf_counter() - clock

    unknown = [f"{s.shot_id} take {t.take}: {t.error}" for s in records for t in s.takes
               if (t.error or "").startswith(UNKNOWN_OUTCOME)]
    for line in unknown:  # paid for or not, nobody can tell: the user checks the provider's dashboard
        logger.warning(line)
    width, height = delivery_size(storyboard.defaults.aspect_ratio, storyboard.defaults.delivery)
    stopped = None if within else _budget_stop(ledger, draw)

    def report(summary: str, shots: list[ShotRecord] = records, **outcome) -> ProductionReport:
        """The run's report, built once at whichever end the run reaches, with the ledger's charges
        (creates of unknown outcome decided first, where the provider's usage record can)."""
        for line in settle_unknown_creates(ledger, providers):
            logger.warning(line)
        return ProductionReport(
            title=storyboard.title, status=summary,
            width=width, height=height, fps=storyboard.defaults.fps, duration=storyboard.total_duration(),
            estimate=estimate.total, estimate_to_pay=estimate.needed, budget=status.limit, budget_name=draw.budget,
            plan_changes=changes, generated=sum(not t.from_cache for s in records for t in s.takes if t.file),
            cached=sum(t.from_cache for s in records for t in s.takes), timings=dict(timings),
            notices=notices + skipped + unknown, **settled_spend(shots, ledger, draw), **outcome)

    missing = [s for s in records if s.chosen is None]
    if missing:  # every take stays in takes/; an edit with a hole in it is not cut
        reasons = "; ".join(f"{s.shot_id}: {s.reason}" for s in missing)
        return _finish(report(_stop_first(stopped, reasons)), folder, ledger, draw, stopped, "NoAcceptableTake", (
            f"{reasons}. Every take is kept in {folder / 'takes'}; adjust the prompt, "
            "lower the quality bar or allow more takes, and rerun"))

    clock = time.perf_counter()
    try:
        upscaled = upscale_chosen(storyboard, plans, records, providers, folder, None if stopped else draw, progress)
    except UpscaleStopped as exc:
        if exc.state != "BudgetExceeded":
            return _finish(report(_stop_first(stopped, str(exc))), folder, ledger, draw, stopped, exc.state, str(exc))
        stopped = stopped or str(exc)  # the assembly scales the takes itself: what was paid is delivered
        upscaled = upscale_chosen(storyboard, plans, records, providers, folder, None, progress, paid=False)
    if upscaler:
        timings["upscale"] = time.perf_counter() - clock
    clock = time.perf_counter()
    delivered = deliver(storyboard, plans, records, folder, storage, progress, upscaled.clips, captions)
    timings["assemble"] = time.perf_counter() - clock
    files = dict(delivered.files)
    finished = [s.model_copy(update={"upscale": upscaled.records.get(s.shot_id),
                                     "grade": delivered.grades.get(s.shot_id)}) for s in records]
    done = report(stopped or "complete", finished, final=next(iter(files)), poster="poster.jpg",
                  deliverables=sorted(files))
    files["report.json"] = write_report(done, folder)
    if storage is not None:  # the upload includes report.json, so where it went is written after it
        done = done.model_copy(update={"published": publish(storage, files, done.shots, folder,
                                                            storyboard.project_slug, str(flow_run.id))})
        write_report(done, folder)
    publish_history(ledger, draw.budget)
    publish_media(done, folder, done.published.get(done.final))
    events.video_published(storyboard.project_slug, done,
                           done.published.get(done.final) or (folder / done.final).as_uri())
    progress.finish()
    if stopped:
        return _budget_exceeded(done, draw, f"{stopped}; {_spend_line(done)}")
    logger.info(f"{done.final}: {done.generated} takes generated, {done.cached} from cache")
    return done


def _gate(storyboard: Storyboard, plans: list[ShotPlan], providers: dict[str, VideoProvider], price,
          estimate: Estimate, status, ledger: Ledger, draw: BudgetDraw, policy: str):
    """The plan to run, its estimate and what was changed to fit; or the state the run ends in."""
    if fits(estimate, status):
        return plans, estimate, []
    logger, message = get_run_logger(), over_message(estimate, status)
    if policy == "pause":
        logger.warning(f"{message}: paused for a decision (resume the run in the Prefect UI)")
        decision = pause_flow_run(wait_for_input=BudgetDecision.with_initial_data(
            description=_pause_markdown(storyboard, estimate, status), action="cancel"), timeout=PAUSE_TIMEOUT)
        if decision.action == "cancel":
            return Cancelled(message=f"{message}; cancelled at the budget gate (nothing was spent)")
        if decision.action == "approve":
            if decision.new_limit is not None:
                ledger.set_budget(draw.budget, decision.new_limit)
            logger.warning(f"approved: runs until budget '{draw.budget}' is spent")
            return plans, estimate, ["approved at the budget gate"
                                     + (f" with the limit raised to {decision.new_limit:g}" if decision.new_limit
                                        is not None else "")]
        policy = "fit"
    if policy == "fit":
        fitted, changes = fit_plans(storyboard, plans, providers, price, status.left)
        fitted_estimate = price(fitted)
        if fits(fitted_estimate, status):
            for change in changes:
                logger.warning(f"fitted to the budget: {change}")
            _publish_estimate(storyboard, fitted_estimate, status)
            return fitted, fitted_estimate, changes
        message += f"; even shrunk to fit it needs {fitted_estimate.needed:g}"
    upscaling = f" ({estimate.upscaling:g} of them upscaling)" if estimate.upscaling else ""
    refusal = (
        f"{message.replace(' credits but', f' credits{upscaling} but', 1)}; raise the limit (takeflow budget set "
        f"{draw.budget} --limit CREDITS), use fewer takes or shorter shots"
        + (", set defaults.upscaler: local" if upscaling else "")
        + ", or set defaults.budget_policy: fit (nothing was spent)")
    events.budget_exceeded(storyboard.project_slug, draw.budget, refusal, status.spent, status.limit)
    return Failed(name="BudgetExceeded", message=refusal)


def _pause_markdown(storyboard: Storyboard, estimate: Estimate, status) -> str:
    return (f"## Budget gate: {storyboard.title}\n\n{over_message(estimate, status)}.\n\n"
            + estimate.markdown(status.left, status.name)
            + "\n\n**approve** runs anyway and stops when the budget is spent (or raise the limit), "
              "**reduce** shrinks the plan to fit, **cancel** spends nothing.")


def _publish_estimate(storyboard: Storyboard, estimate: Estimate, status) -> None:
    key = slug(f"{storyboard.project_slug}-estimate", 100)
    create_table_artifact(estimate.rows(), key=key, description=(
        f"{storyboard.title}: estimate {estimate.total:g} credits, {estimate.needed:g} to pay; "
        + (f"budget '{status.name}' has {status.left:g} left" if status.left is not None
           else f"budget '{status.name}' has no cap")))


def _budget_stop(ledger: Ledger, draw: BudgetDraw) -> str:
    status = ledger.status(draw.budget)
    return (f"budget '{draw.budget}' is spent ({status.spent:g} of {status.limit:g} credits): nothing more was "
            "submitted; what was paid for was scored and, where every shot had a take, assembled")


def _spend_line(report: ProductionReport) -> str:
    return (f"{report.credits_this_run:g} credits spent by this run, {report.credits_spent:g} on this storyboard "
            f"in all; estimate {report.estimate:g}; see report.json")


def _stop_first(stopped: str | None, status: str) -> str:
    """A run that stops before its edit: the budget's stop, when there was one, leads its status."""
    return f"{stopped}; {status}" if stopped else status


def _finish(report: ProductionReport, folder: Path, ledger: Ledger, draw: BudgetDraw, stopped: str | None,
            state: str, message: str) -> State:
    """Write the report of a run that stops before its edit; the budget's stop wins the state."""
    write_report(report, folder)
    publish_history(ledger, draw.budget)
    publish_media(report, folder, None)
    if stopped:
        return _budget_exceeded(report, draw, f"{stopped}; {_spend_line(report)}")
    return Failed(name=state, message=message)


def _budget_exceeded(report: ProductionReport, draw: BudgetDraw, message: str) -> State:
    """The run's final state when the budget stopped it, announced for automations."""
    events.budget_exceeded(slug(report.title), draw.budget, message, report.credits_spent, report.budget)
    return Failed(name="BudgetExceeded", message=message)


def _shot_takes(plans: list[ShotPlan], folder: Path, left: float | None, estimate: Estimate,
                learned: tuple[str, ...], storage: Storage | None) -> dict[str, ShotTakes]:
    """Each shot's reference image (remote ones fetched) and its share of what the budget has left."""
    shots = {}
    for plan in plans:
        reference = plan.reference_image
        reference = local_input(reference, plan.shot_id, folder / "references", storage, "image")
        if plan.motion_reference and plan.motion_reference.startswith(("https://", "http://", "s3://")):
            plan = plan.model_copy(update={"motion_reference_file": local_input(
                plan.motion_reference, f"{plan.shot_id}-motion", folder / "references", storage, "video")})
        share = None
        if left is not None and estimate.needed > 0:
            share = max(0.0, left) * estimate.shot_total(plan.shot_id) / estimate.total
        shots[plan.shot_id] = ShotTakes(plan, reference, share=share, learned=learned)
    return shots


def _shot_record(shot: ShotTakes, folder: Path) -> ShotRecord:
    plan, selection, chosen = shot.plan, shot.selection, shot.chosen
    takes = [shot.records[n] for n in sorted(shot.records)]
    if not takes:
        reason = shot.history[-1] if shot.history else "not generated"
    elif chosen is None and shot.draft_winner is not None and shot.history:  # its final render was not made
        reason = f"draft take {shot.draft_winner} won, but {shot.history[-1]}"
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
                  + (f"  {t.note or (t.hard_fails[0] if t.hard_fails else '')}") for t in takes if t.file]
        sheet = cached_file(make_contact_sheet_task, files, labels,
                        folder / "work" / f"{plan.shot_id}-sheet-{work_name(files, labels)}.jpg")
        sheet = place(sheet, folder / "contact-sheets" / f"{plan.shot_id}.jpg").relative_to(folder)
    return ShotRecord(
        shot_id=plan.shot_id, provider=plan.provider, model=plan.model, duration=plan.duration,
        prompt=plan.prompts.prompt.text(), prompt_parts=plan.prompts.prompt, lint=plan.prompts.lint,
        takes=takes, state="ok" if chosen is not None else "NoAcceptableTake", chosen=chosen,
        reason=reason, history=list(shot.history), contact_sheet=str(sheet) if sheet else None)
