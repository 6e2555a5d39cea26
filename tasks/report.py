"""The production report: report.json beside the deliverable, and the same facts in the Prefect UI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from pydantic import BaseModel, Field

from blocks.media import atomic_path
from tasks.prompts import LintIssue, StructuredPrompt
from tasks.storyboard import slug


class TakeRecord(BaseModel):
    """One take: where it is, whether it was generated or reused, what it cost and how it scored."""

    take: int = Field(description="Take number within the shot, from 1.")
    seed: int = Field(description="Seed it was generated with.")
    model: str = Field(description="Model that generated it.")
    provider: str = Field("", description="Provider of that model.")
    stage: str = Field("take", description="take; or draft (explored on the draft model) and final (the "
                                           "draft winner rendered on the shot's model at full length).")
    file: str | None = Field(None, description="Path of the take, relative to the project folder.")
    from_cache: bool = Field(False, description="True when an identical earlier generation was reused.")
    credits: float = Field(0.0, description="Credits the generation cost when it was made.")
    estimate: float = Field(0.0, description="Credits it was estimated at before it was sent.")
    charged: float = Field(0.0, description="Credits the ledger charged for this exact work over every run "
                                            "(0 for work reused from another storyboard's or a free provider).")
    key: str | None = Field(None, description="Content key of the work: its cache key and ledger key.")
    over_budget: bool = Field(False, description="Not sent: its price no longer fitted in the budget.")
    seconds: float = Field(0.0, description="Generation wall time when it was made.")
    passed: bool = Field(False, description="Passed technical QC.")
    hard_fails: list[str] = Field([], description="QC failures that exclude the take.")
    metrics: dict[str, float] = Field({}, description="Raw metric values.")
    score: float | None = Field(None, description="Weighted score relative to the shot's other takes.")
    quality: float | None = Field(None, description="Absolute quality 0–1, compared with the quality bar.")
    place: int | None = Field(None, description="Place in the fallback order of the takes ranked with it (a "
                                                "draft shot's drafts, or its final render): 1 = chosen; then the "
                                                "other contenders, the takes set aside by quality, failed QC last.")
    error: str | None = Field(None, description="Why generation failed, if it did.")
    note: str = Field("", description="Why the selector chose the take, or why it lost, in words.")


class UpscaleRecord(BaseModel):
    """The chosen take brought to the delivery size by a provider's super-resolution model."""

    provider: str = Field(description="Provider of the upscaler.")
    model: str = Field(description="The upscaler model.")
    file: str | None = Field(None, description="The upscaled clip, relative to the project folder.")
    from_cache: bool = Field(False, description="True when an identical earlier upscale was reused.")
    credits: float = Field(0.0, description="Credits the upscale cost when it was made.")
    estimate: float = Field(0.0, description="Credits it was estimated at before it was sent.")
    charged: float = Field(0.0, description="Credits the ledger charged for this exact work over every run.")
    key: str | None = Field(None, description="Content key of the work: its cache key and ledger key.")
    seconds: float = Field(0.0, description="Upscale wall time when it was made.")
    error: str | None = Field(None, description="Why it failed; the assembly then scaled the take itself.")


class ShotRecord(BaseModel):
    """One shot: its prompt, takes, the chosen take and why."""

    shot_id: str
    provider: str
    model: str
    duration: float
    prompt: str
    prompt_parts: StructuredPrompt
    lint: list[LintIssue]
    takes: list[TakeRecord]
    state: str = Field("ok", description="ok, or NoAcceptableTake when no take reached the quality bar.")
    chosen: int | None = Field(None, description="Chosen take number, None when no take passed.")
    reason: str = ""
    history: list[str] = Field([], description="What was done when takes missed the bar.")
    contact_sheet: str | None = Field(None, description="Image of every take's frames side by side.")
    grade: dict | None = Field(None, description="Colour correction applied to match the reference shot.")
    upscale: UpscaleRecord | None = Field(None, description="Provider upscale of the chosen take, if any.")

    @property
    def credits_spent(self) -> float:
        """Credits charged for the shot's takes (failed ones the provider billed included) and its
        upscale, over every run and resume, as the ledger has them."""
        return round(sum(t.charged for t in self.takes) + (self.upscale.charged if self.upscale else 0.0), 4)


class ProductionReport(BaseModel):
    """Everything a producer needs to know about a run."""

    title: str
    status: str = Field(description="complete, or why the run stopped.")
    final: str | None = None
    poster: str | None = None
    deliverables: list[str] = Field([], description="Files delivered in the project folder.")
    width: int
    height: int
    fps: int
    duration: float = Field(description="Planned duration of the edit in seconds.")
    estimate: float = Field(description="Credits the plan costs, estimated before the run.")
    estimate_to_pay: float = Field(0.0, description="Of the estimate, what was still to pay (earlier runs "
                                                    "had paid for the rest).")
    budget: float | None = Field(description="Limit of the budget the run drew on (None: no cap).")
    budget_name: str | None = Field(None, description="Ledger budget the run drew on.")
    plan_changes: list[str] = Field([], description="What the budget gate changed to fit the plan.")
    credits_spent: float = Field(description="Credits charged for this storyboard over all its runs and "
                                             "resumes (the ledger's entries).")
    credits_this_run: float = Field(0.0, description="Of those, what this run was charged.")
    credits_held: float = Field(0.0, description="Credits held for creates of unknown outcome: reserved on the "
                                                 "budget, not counted as spent until the provider's usage "
                                                 "record decides them (see `held`).")
    held: list[str] = Field([], description="Each create of unknown outcome still held: what, credits, why.")
    draft_saving: dict[str, float] | None = Field(None, description="Draft-then-final shots: credits spent "
                                                  "against rendering every take on the final model.")
    generated: int = Field(description="Takes generated by this run.")
    cached: int = Field(description="Takes reused from earlier identical generations.")
    timings: dict[str, float] = Field(description="Wall seconds per stage.")
    notices: list[str] = Field([], description="Learned scorers skipped (no weights here) or failed.")
    published: dict[str, str] = Field({}, description="Where the deliverables were uploaded (name -> URI).")
    shots: list[ShotRecord]


@task(name="write-report")
def write_report(report: ProductionReport, folder: Path) -> Path:
    """Write report.json atomically and publish the summary and take table as artifacts."""
    dest = folder / "report.json"
    with atomic_path(dest) as tmp:
        payload = report.model_dump(mode="json")
        for shot, record in zip(payload["shots"], report.shots):
            shot["credits_spent"] = record.credits_spent
        tmp.write_text(json.dumps(payload, indent=2))
    key = slug(report.title)
    for shot in report.shots:
        create_table_artifact(score_table(shot), key=slug(f"{key}-{shot.shot_id}-scores", 100),
                              description=f"{report.title} / {shot.shot_id}: {shot.reason}")
    create_table_artifact(cost_table(report), key=f"{key}-cost", description=(
        f"{report.title}: {report.credits_spent:g} credits spent on this storyboard, {report.credits_this_run:g} "
        f"by this run; estimate {report.estimate:g}"))
    create_markdown_artifact(summary_markdown(report), key=f"{key}-summary",
                             description=f"Production summary of '{report.title}'")
    return dest


def publish_media(report: ProductionReport, folder: Path, final_link: str | None) -> None:
    """Each shot's contact sheet as an image artifact, and a link to the final video.

    An image artifact is only a URL the browser fetches; the sheets live on the worker's disk,
    which the UI's browser cannot reach, so each is embedded as a data: URI (sheets measured
    40–250 kB for 2–8 takes; base64 adds a third). `final_link` is the published location when
    a storage block delivered the video (the publish task made its presigned link artifact),
    else None: the link is then the file:// URI on the machine the run wrote it to."""
    key = slug(report.title)
    for shot in report.shots:
        if shot.contact_sheet and (folder / shot.contact_sheet).is_file():
            jpeg = base64.b64encode((folder / shot.contact_sheet).read_bytes()).decode("ascii")
            chosen = f"take {shot.chosen} chosen" if shot.chosen else shot.state
            create_image_artifact(f"data:image/jpeg;base64,{jpeg}", key=slug(f"{key}-{shot.shot_id}-sheet", 100),
                                  description=f"{report.title} / {shot.shot_id}: every take's frames; {chosen}")
    if report.final and final_link is None:
        create_link_artifact((folder / report.final).as_uri(), link_text=report.final, key=f"{key}-final",
                             description=f"Finished video of '{report.title}' on the machine that ran it")


def cost_table(report: ProductionReport) -> list[dict]:
    """One row per shot and a total: estimated against charged credits, takes made and reused."""
    rows = [{"shot": s.shot_id, "model": s.model, "takes": len(s.takes),
             "generated": sum(bool(t.file) and not t.from_cache for t in s.takes),
             "cached": sum(t.from_cache for t in s.takes),
             "estimate": round(sum(t.estimate for t in s.takes) + (s.upscale.estimate if s.upscale else 0), 4),
             "charged": s.credits_spent} for s in report.shots]
    rows.append({"shot": "total", "model": "", "takes": sum(r["takes"] for r in rows),
                 "generated": sum(r["generated"] for r in rows), "cached": sum(r["cached"] for r in rows),
                 "estimate": round(sum(r["estimate"] for r in rows), 4), "charged": report.credits_spent})
    return rows


def settled_spend(shots: list[ShotRecord], ledger, draw) -> dict:
    """The report's spend fields from what the ledger charged: the shots with each take's and
    upscale's charge, the storyboard's and this run's credits, and the saving of draft-then-final
    against all-premium."""
    works = [t for s in shots for t in s.takes] + [s.upscale for s in shots if s.upscale]
    paid = ledger.paid_keys([w.key for w in works if w.key])

    def charged(work):
        return work.model_copy(update={"charged": paid.get(work.key, 0.0) if work.key else 0.0})
    shots = [s.model_copy(update={"takes": [charged(t) for t in s.takes],
                                  "upscale": charged(s.upscale) if s.upscale else None}) for s in shots]
    entries = [e for e in ledger.entries(project=draw.project) if e.status in ("committed", "expired")]
    saving = None
    drafted = [s for s in shots if any(t.stage == "final" for t in s.takes)]
    if drafted:
        premium = {s.shot_id: next(t.estimate for t in s.takes if t.stage == "final") for s in drafted}
        all_premium = sum(premium[s.shot_id] * sum(t.stage == "draft" for t in s.takes) for s in drafted)
        spent = sum(t.estimate for s in drafted for t in s.takes)
        saving = {"all_premium": round(all_premium, 4), "draft_then_final": round(spent, 4),
                  "saved_percent": round(100 * (1 - spent / all_premium), 1) if all_premium else 0.0}
    held = [e for e in ledger.entries(project=draw.project) if e.status == "held"]
    return {"shots": shots, "credits_spent": round(sum(e.credits for e in entries), 4),
            "credits_this_run": round(sum(e.credits for e in entries if e.run_id == draw.run_id), 4),
            "credits_held": round(sum(e.credits for e in held), 4),
            "held": [f"{e.label}: {e.credits:g} credits held, {e.note}" for e in held], "draft_saving": saving}


def publish_history(ledger, budget: str, rows: int = 200) -> list[dict]:
    """The budget's latest entries as a table artifact (and the rows, for the CLI)."""
    table = history_rows(ledger, budget, rows)
    status = ledger.status(budget)
    create_table_artifact(table, key=slug(f"budget-{budget}-history", 100), description=(
        f"budget {budget}: {status.spent:g} spent, {status.reserved:g} reserved"
        + (f" of {status.limit:g}" if status.limit is not None else " (no cap)")))
    return table


def history_rows(ledger, budget: str, rows: int = 200) -> list[dict]:
    from datetime import datetime, timezone

    def when(t):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else ""
    return [{"when": when(e.created_at), "settled": when(e.settled_at), "status": e.status, "credits": e.credits,
             "estimate": e.estimate, "what": e.label, "project": e.project, "run": e.run_id[:8],
             "note": e.note} for e in ledger.entries(budget, limit=rows)]


def score_table(shot: ShotRecord) -> list[dict]:
    """One row per take: the choice, its scores, each metric and why a take was excluded."""
    metric_names = sorted({name for take in shot.takes for name in take.metrics})
    return [{"take": t.take, "model": t.model, "chosen": "yes" if t.take == shot.chosen else "",
             "place": t.place, "quality": _rounded(t.quality), "rank score": _rounded(t.score), "cached": t.from_cache,
             "stage": t.stage, "estimate": t.estimate, "charged": t.charged,
             **{name: _rounded(t.metrics.get(name)) for name in metric_names},
             "excluded because": "; ".join(t.hard_fails) or t.error or "", "why": t.note} for t in shot.takes]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary_markdown(report: ProductionReport) -> str:
    lines = [f"# {report.title}", "",
             f"**{report.status}** · {report.width}x{report.height} @ {report.fps} fps · "
             f"{report.duration:.2f} s · {report.generated} takes generated, {report.cached} from cache · "
             f"{report.credits_spent:g} credits spent on this storyboard, {report.credits_this_run:g} by this run "
             f"(estimate {report.estimate:g}"
             + (f", budget {report.budget_name} {report.budget:g})" if report.budget is not None else ")"), "",
             "| shot | state | chosen | why | credits | contact sheet |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.shot_id} | {s.state} | {s.chosen or '—'} | {s.reason} | {s.credits_spent:g} "
              f"| {s.contact_sheet or ''} |" for s in report.shots]
    lines += [f"- {s.shot_id}: {step}" for s in report.shots for step in s.history]
    lines += [f"- {s.shot_id}: " + (f"upscale by {s.upscale.provider}/{s.upscale.model} failed, scaled in the "
                                     f"assembly instead ({s.upscale.error})" if s.upscale.error else
                                     f"upscaled by {s.upscale.provider}/{s.upscale.model} "
                                     f"({'cached' if s.upscale.from_cache else f'{s.upscale.credits:g} credits'})")
              for s in report.shots if s.upscale]
    lines += [f"- budget gate: {change}" for change in report.plan_changes]
    if report.draft_saving:
        saving = report.draft_saving
        lines += [f"- draft-then-final: {saving['draft_then_final']:g} credits against {saving['all_premium']:g} "
                  f"all-premium ({saving['saved_percent']:g} % saved)"]
    if report.final:
        lines += ["", f"Final video: `{report.final}`"]
    return "\n".join(lines)
