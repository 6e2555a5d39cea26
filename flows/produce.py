"""The produce flow: a storyboard becomes takes, scores, chosen takes, an upscaled edit and a report.

Every expensive step is a Prefect task cached by the content of its inputs, so a re-run of the
same storyboard generates, scores, upscales and assembles nothing again.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from blocks.media import place
from blocks.providers import GenerationRequest, VideoProvider
from blocks.registry import load_provider
from flows.progress import RunProgress
from tasks.assemble import assemble_final, make_poster
from tasks.caching import work_name
from tasks.generate import fetch_reference, generate_take
from tasks.metrics import Expectation
from tasks.plan import ShotPlan, delivery_size, estimate_credits, plan_shot, takes_for
from tasks.prompts import expand_prompt
from tasks.report import ProductionReport, ShotRecord, TakeRecord, write_report
from tasks.score import score_take, select_best
from tasks.storyboard import Storyboard
from tasks.upscale import upscale_take

# Takes run in threads; providers are remote APIs waiting on the network (previz shares the CPU).
MAX_PARALLEL_TASKS = 8
STAGE_WEIGHTS = {"generate": 6, "score": 2, "upscale": 1, "assemble": 1}


class RunOptions(BaseModel):
    """How to run a production; storyboard values apply where these are left empty."""

    out_dir: str = Field("out", description="Folder receiving <project>/final.mp4, takes/ and report.json.")
    takes: int | None = Field(None, ge=1, le=16, description="Takes per shot; overrides the storyboard.")
    budget: float | None = Field(None, ge=0, description="Credit budget; overrides the storyboard's.")


def project_slug(title: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in title.lower())
    return "-".join(part for part in slug.split("-") if part)[:60] or "project"


def _run_name() -> str:
    return f"produce-{project_slug(flow_run.parameters['storyboard'].title)}"


@flow(name="produce", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_TASKS))
def produce(storyboard: Storyboard, options: RunOptions = RunOptions()) -> ProductionReport:
    """Turn a storyboard into final.mp4, takes, scores and report.json under out_dir/<project>/."""
    logger = get_run_logger()
    folder = Path(options.out_dir).resolve() / project_slug(storyboard.title)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    plans = [plan_shot(storyboard, i, expand_prompt(shot, shot_id, storyboard.title,
                                                     takes_for(storyboard, i, options.takes)))
             for i, (shot, shot_id) in enumerate(zip(storyboard.shots, storyboard.shot_ids()))]
    for plan in plans:
        for issue in plan.prompts.lint:
            logger.warning(f"{plan.shot_id} prompt, {issue.part}: {issue.problem}; {issue.suggestion}")
    providers = {name: load_provider(name) for name in sorted({p.provider for p in plans})}
    estimate = estimate_credits(plans, providers)
    budget = options.budget if options.budget is not None else storyboard.defaults.budget
    if budget is not None and estimate > budget:
        return Failed(name="BudgetExceeded", message=(
            f"estimated cost {estimate:g} credits is over the budget of {budget:g}; raise the budget, "
            "use fewer takes or shorten shots (nothing was spent)"))
    timings["plan"] = time.perf_counter() - clock

    progress = RunProgress(STAGE_WEIGHTS)
    clock = time.perf_counter()
    references = _fetch_references(plans, folder / "references")
    records = _generate(plans, providers, references, folder, progress)
    timings["generate"] = time.perf_counter() - clock

    clock = time.perf_counter()
    shots = _score_and_choose(plans, providers, records, folder, progress)
    timings["score"] = time.perf_counter() - clock

    width, height = delivery_size(storyboard.defaults.aspect_ratio, storyboard.defaults.delivery)
    fps = storyboard.defaults.fps
    report = ProductionReport(
        title=storyboard.title, status="complete", width=width, height=height, fps=fps,
        duration=storyboard.total_duration(), estimate=estimate, budget=budget,
        credits_spent=round(sum(s.credits_spent for s in shots), 4),
        generated=sum(not t.from_cache for s in shots for t in s.takes if t.file),
        cached=sum(t.from_cache for s in shots for t in s.takes), timings=timings, shots=shots)
    missing = [s for s in shots if s.chosen is None]
    if missing:
        report.status = "; ".join(f"{s.shot_id}: {s.reason}" for s in missing)
        report.timings = timings
        write_report(report, folder)
        return Failed(name="NoAcceptableTake", message=(
            f"{report.status}. Takes are kept in {folder / 'takes'}; adjust the prompt or add takes and rerun"))

    clock = time.perf_counter()
    clips = _upscale(plans, shots, folder, width, height, fps, progress)
    timings["upscale"] = time.perf_counter() - clock

    clock = time.perf_counter()
    progress.start("assemble", 2)
    transitions = [plan.transition for plan in plans[:-1]]
    edit = _cached(assemble_final, clips, transitions, fps,
                   folder / "work" / f"final-{work_name(clips, transitions, fps)}.mp4")
    final = place(edit, folder / "final.mp4")
    progress.advance("assemble", "final.mp4")
    poster_at = min(plans[0].duration / 2, report.duration / 2)
    poster = place(_cached(make_poster, edit, poster_at, folder / "work" / f"poster-{work_name(edit, poster_at)}.jpg"),
                   folder / "poster.jpg")
    progress.advance("assemble", "poster.jpg")
    timings["assemble"] = time.perf_counter() - clock

    report.final, report.poster, report.timings = final.name, poster.name, timings
    write_report(report, folder)
    logger.info(f"final video: {final} ({report.generated} takes generated, {report.cached} from cache)")
    return report


def _cached(task, *args):
    """Run a cached task; if its cached output file has since been deleted, redo the work."""
    result = task(*args)
    path = getattr(result, "path", result)
    if not Path(path).is_file():
        result = task.with_options(refresh_cache=True)(*args)
    return result


def _fetch_references(plans: list[ShotPlan], folder: Path) -> dict[str, Path]:
    references = {}
    for plan in plans:
        ref = plan.reference_image
        if ref and ref.startswith(("https://", "http://")):
            references[plan.shot_id] = fetch_reference(ref, plan.shot_id, folder)
        elif ref:
            references[plan.shot_id] = Path(ref)
    return references


def _generate(plans: list[ShotPlan], providers: dict[str, VideoProvider], references: dict[str, Path],
              folder: Path, progress: RunProgress) -> dict[tuple[str, int], TakeRecord]:
    """Submit every take at once; collect them as they finish."""
    jobs: dict = {}
    for plan in plans:
        provider = providers[plan.provider]
        for take, seed in enumerate(plan.prompts.seeds, 1):
            request = plan.request(seed, references.get(plan.shot_id))
            dest = folder / "takes" / f"{plan.shot_id}-take{take}-{work_name(provider, request)}.mp4"
            future = generate_take.submit(provider, request, plan.shot_id, take, dest)
            jobs[future] = (plan, provider, request, take, seed, dest)
    progress.start("generate", len(jobs))
    records = {}
    for future in as_completed(list(jobs)):
        plan, provider, request, take, seed, dest = jobs[future]
        records[plan.shot_id, take] = _take_record(future, provider, request, plan.shot_id, take, seed, dest)
        progress.advance("generate", f"{plan.shot_id} take {take}")
    return records


def _take_record(future, provider: VideoProvider, request: GenerationRequest, shot_id: str,
                 take: int, seed: int, dest: Path) -> TakeRecord:
    try:
        result = future.result()
    except Exception as exc:  # a failed take is reported, never fatal for the shot's other takes
        return TakeRecord(take=take, seed=seed, error=str(exc).splitlines()[0][:300])
    from_cache = future.state.name == "Cached"
    if not result.path.is_file():  # the cached take was deleted since: generate it again
        result = generate_take.with_options(refresh_cache=True)(provider, request, shot_id, take, dest)
        from_cache = False
    place(result.path, dest)
    return TakeRecord(take=take, seed=seed, file=str(dest.relative_to(dest.parents[1])),
                      from_cache=from_cache, credits=result.credits, seconds=round(result.seconds, 3))


def _score_and_choose(plans: list[ShotPlan], providers: dict[str, VideoProvider],
                      records: dict[tuple[str, int], TakeRecord], folder: Path,
                      progress: RunProgress) -> list[ShotRecord]:
    futures = {}
    for plan in plans:
        width, height = providers[plan.provider].render_size(plan.aspect_ratio)
        still = plan.motion_amount == 0 or plan.prompts.prompt.asks_for_still_camera()
        expected = Expectation(width=width, height=height, fps=plan.fps, duration=plan.duration,
                               still_allowed=still)
        for take in range(1, plan.takes + 1):
            record = records[plan.shot_id, take]
            if record.file:
                futures[plan.shot_id, take] = score_take.submit(folder / record.file, expected)
    progress.start("score", len(futures))
    for (shot_id, take), future in futures.items():
        metrics = future.result()
        records[shot_id, take] = records[shot_id, take].model_copy(update={
            "passed": metrics.passed, "hard_fails": metrics.hard_fails, "metrics": metrics.metrics})
        progress.advance("score", f"{shot_id} take {take}")
    shots = []
    for plan in plans:
        takes = [records[plan.shot_id, k] for k in range(1, plan.takes + 1)]
        scored = [t for t in takes if t.file]
        selection = select_best([futures[plan.shot_id, t.take].result() for t in scored],
                                numbers=[t.take for t in scored])
        for take, total in zip(scored, selection.totals):
            take.score = total
        chosen = scored[selection.index].take if selection.index is not None else None
        reason = selection.reason if scored else "every take failed to generate: " + "; ".join(
            f"take {t.take}: {t.error}" for t in takes)
        shots.append(ShotRecord(
            shot_id=plan.shot_id, provider=plan.provider, model=plan.model, duration=plan.duration,
            prompt=plan.prompts.prompt.text(), prompt_parts=plan.prompts.prompt, lint=plan.prompts.lint,
            takes=takes, chosen=chosen, reason=reason))
    return shots


def _upscale(plans: list[ShotPlan], shots: list[ShotRecord], folder: Path, width: int, height: int,
             fps: int, progress: RunProgress) -> list[Path]:
    progress.start("upscale", len(shots))
    futures = []
    for plan, shot in zip(plans, shots):
        take = folder / "takes" / Path(shot.takes[shot.chosen - 1].file).name
        dest = folder / "work" / f"{plan.shot_id}-{work_name(take, width, height, fps)}.mp4"
        futures.append((shot, take, dest, upscale_take.submit(take, width, height, fps, dest)))
    clips = []
    for shot, take, dest, future in futures:
        clip = Path(future.result())
        if not clip.is_file():
            clip = upscale_take.with_options(refresh_cache=True)(take, width, height, fps, dest)
        clip = place(clip, dest)  # a cache hit may point into another output folder
        shot.delivered = str(clip.relative_to(folder))
        clips.append(clip)
        progress.advance("upscale", shot.shot_id)
    return clips
