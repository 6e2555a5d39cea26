"""Events the produce flow emits, so users can build Prefect automations on them (e.g. a
notification when a run ends BudgetExceeded).

Each event's resource is the thing it is about (a take by its content key, a shot, a video, a
budget); Prefect attaches the flow run, flow and deployment as related resources itself. Payloads
carry numbers, names and file locations; never a secret, a prompt's reference image or a
provider response.
"""

from __future__ import annotations

from prefect.events import emit_event

from tasks.report import ProductionReport, ShotRecord, TakeRecord

TAKE_GENERATED = "takeflow.take.generated"
SHOT_SELECTED = "takeflow.shot.selected"
SHOT_NO_ACCEPTABLE_TAKE = "takeflow.shot.no-acceptable-take"
VIDEO_PUBLISHED = "takeflow.video.published"
BUDGET_EXCEEDED = "takeflow.budget.exceeded"


def _shot_resource(project: str, shot_id: str) -> dict[str, str]:
    return {"prefect.resource.id": f"takeflow.shot.{project}.{shot_id}", "prefect.resource.name": shot_id,
            "takeflow.project": project}


def take_generated(project: str, shot_id: str, take: TakeRecord) -> None:
    """A take has a file: generated now or reused from the cache (`from_cache` says which)."""
    emit_event(TAKE_GENERATED, resource={
        "prefect.resource.id": f"takeflow.take.{take.key or f'{project}.{shot_id}.{take.take}'}",
        "prefect.resource.name": f"{shot_id} take {take.take}", "takeflow.project": project,
        "takeflow.shot": shot_id, "takeflow.provider": take.provider, "takeflow.model": take.model},
        related=[{**_shot_resource(project, shot_id), "prefect.resource.role": "shot"}],
        payload={"take": take.take, "seed": take.seed, "stage": take.stage, "file": take.file,
                 "from_cache": take.from_cache, "credits": take.credits, "estimate": take.estimate,
                 "seconds": take.seconds})


def shot_decided(project: str, shot: ShotRecord) -> None:
    """The shot's final choice: `takeflow.shot.selected` names the take, or no-acceptable-take says why."""
    scored = [{"take": t.take, "quality": t.quality, "passed": t.passed} for t in shot.takes]
    if shot.chosen is None:
        emit_event(SHOT_NO_ACCEPTABLE_TAKE, resource=_shot_resource(project, shot.shot_id),
                   payload={"reason": shot.reason, "takes": scored, "history": shot.history})
        return
    chosen = next(t for t in shot.takes if t.take == shot.chosen)
    emit_event(SHOT_SELECTED, resource=_shot_resource(project, shot.shot_id),
               related=[{"prefect.resource.id": f"takeflow.take.{chosen.key}", "prefect.resource.role": "take",
                         "prefect.resource.name": f"{shot.shot_id} take {chosen.take}"}] if chosen.key else None,
               payload={"take": chosen.take, "model": chosen.model, "provider": chosen.provider,
                        "quality": chosen.quality, "file": chosen.file, "reason": shot.reason, "takes": scored})


def video_published(project: str, report: ProductionReport, location: str) -> None:
    """The edit is delivered; `location` is its published URI, or its file:// URI on this machine."""
    emit_event(VIDEO_PUBLISHED, resource={
        "prefect.resource.id": f"takeflow.video.{project}", "prefect.resource.name": report.title,
        "takeflow.project": project},
        payload={"location": location, "final": report.final, "duration": report.duration,
                 "width": report.width, "height": report.height, "credits_spent": report.credits_spent,
                 "credits_this_run": report.credits_this_run, "status": report.status})


def budget_exceeded(project: str, budget: str, message: str, spent: float | None = None,
                    limit: float | None = None) -> None:
    """The run stopped at its budget: refused at the gate, or stopped submitting mid-run."""
    emit_event(BUDGET_EXCEEDED, resource={
        "prefect.resource.id": f"takeflow.budget.{budget}", "prefect.resource.name": budget},
        related=[{"prefect.resource.id": f"takeflow.project.{project}", "prefect.resource.role": "project",
                  "prefect.resource.name": project}],
        payload={"project": project, "message": message, "spent": spent, "limit": limit})
