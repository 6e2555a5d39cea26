"""The `batch` flow: a prompt library (YAML or CSV of briefs, on the worker or in storage) is read
on a schedule, and every brief that is due and not produced yet becomes a video.

A library entry is one video of one shot: `id` and `brief`, optionally `due` (ISO date or time;
none means due now), `title`, `reference_image` (relative to the library), `duration`, `takes`,
`provider`, `model`. YAML may also give `defaults:` (storyboard defaults for every entry)
beside `briefs:`. An entry counts as produced once its run completes, by the digest of its
content, so an edited brief is produced again and a failed one is tried at the next run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blocks.platform_state import ProducedSet
from blocks.storage import StorageError, join_key
from flows.produce import RunOptions, produce
from flows.sensor import inbox_storage
from tasks.storyboard import StoryboardError, describe_error, parse_storyboard


class Brief(BaseModel):
    """One entry of a prompt library."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,60}$", description="Unique name of the entry.")
    brief: str = Field(min_length=1, description="What the shot shows.")
    due: datetime | date | None = Field(None, description="When it is due (UTC unless a zone is given); none: now.")
    title: str | None = Field(None, description="Video title; default the id.")
    reference_image: str | None = Field(None, description="Image beside the library, or a URI.")
    duration: float | None = Field(None, gt=0, le=60, description="Shot length in seconds.")
    takes: int | None = Field(None, ge=1, le=16, description="Takes generated.")
    provider: str | None = Field(None, description="Provider; default the library's defaults.")
    model: str | None = Field(None, description="Model at that provider.")

    def due_at(self) -> datetime | None:
        if self.due is None or isinstance(self.due, datetime):
            due = self.due
        else:
            due = datetime.combine(self.due, time())
        return due.replace(tzinfo=due.tzinfo or timezone.utc) if due else None

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def parse_library(text: str, name: str) -> tuple[dict[str, Any], list[Brief]]:
    """Defaults and entries of a library file's text; StoryboardError naming the entry and field."""
    if name.lower().endswith(".csv"):
        rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(io.StringIO(text))]
        defaults: dict[str, Any] = {}
    else:
        data = yaml.safe_load(text) or {}
        rows = data if isinstance(data, list) else data.get("briefs") if isinstance(data, dict) else None
        defaults = data.get("defaults") or {} if isinstance(data, dict) else {}
        if not isinstance(rows, list):
            raise StoryboardError(f"{name}: expected a list of briefs, or a mapping with 'briefs:'")
    briefs, ids = [], set()
    for index, row in enumerate(rows):
        try:
            entry = Brief.model_validate(row)
        except ValidationError as exc:
            raise StoryboardError(f"{name}: briefs[{index}].{describe_error(exc)}") from None
        if entry.id in ids:
            raise StoryboardError(f"{name}: briefs[{index}].id: '{entry.id}' is used twice; give each brief its own id")
        ids.add(entry.id)
        briefs.append(entry)
    return defaults, briefs


def due_briefs(briefs: list[Brief], done: set[tuple[str, str]], as_of: datetime) -> list[Brief]:
    """Entries due by `as_of` and not produced in this form yet, earliest due first."""
    due = [b for b in briefs if (b.id, b.digest()) not in done and (b.due_at() or as_of) <= as_of]
    return sorted(due, key=lambda b: b.due_at() or as_of)


def _run_name() -> str:
    return f"batch-{str(flow_run.parameters['library']).rsplit('/', 1)[-1]}"


@flow(name="batch", flow_run_name=_run_name, validate_parameters=False)
def batch(library: str = "examples/libraries/briefs.yaml", storage: str = "", out_dir: str = "out",
          budget_name: str | None = None, budget_policy: Literal["stop", "pause", "fit"] | None = None,
          limit: int = 20, deliver_to: str | None = None):
    """Produce the briefs of `library` that are due, up to `limit` of them.

    library: path of the YAML or CSV on the worker, or its key in `storage`.
    storage: storage block holding the library and its reference images; '' reads the worker's files.
    out_dir: output folder on the worker.
    budget_name / budget_policy: budget every video draws on, and what to do when over it.
    limit: most videos produced by one run; the rest wait for the next run.
    deliver_to: storage block that also receives the deliverables.
    """
    logger = get_run_logger()
    scheduled = flow_run.scheduled_start_time
    as_of = scheduled if scheduled is not None else datetime.now(timezone.utc)
    store = inbox_storage(storage) if storage else None
    try:
        if store is None:
            path = Path(library).resolve()
            text, library_id, base = path.read_text(), path.as_uri(), path.parent
        else:
            folder = Path(out_dir).resolve() / "libraries"
            text = store.get(library, folder / Path(library).name).read_text()
            library_id, base = store.uri(library), folder
        defaults, briefs = parse_library(text, Path(library).name)
    except (OSError, StorageError, StoryboardError) as exc:
        return Failed(name="InvalidInput", message=" ".join(str(exc).split()))
    record = ProducedSet(library_id)
    due = due_briefs(briefs, record.done(), as_of)
    logger.info(f"{library}: {len(briefs)} briefs, {len(due)} due and not produced; producing {min(len(due), limit)}")
    failures = []
    for entry in due[:limit]:
        state = _produce_brief(entry, defaults, base, store, library, out_dir, budget_name, budget_policy, deliver_to)
        if state.is_completed():
            record.add(entry.id, entry.digest(), str(state.state_details.flow_run_id or ""))
        else:
            failures.append(f"{entry.id}: {state.name}: {(state.message or '').splitlines()[0] if state.message else ''}")
    if failures:
        return Failed(name="BatchIncomplete", message=f"{len(failures)} of {min(len(due), limit)} briefs not "
                                                      f"produced (tried again next run): " + "; ".join(failures))
    return {"produced": [b.id for b in due[:limit]], "waiting": [b.id for b in due[limit:]]}


def _produce_brief(entry: Brief, defaults: dict, base: Path, store, library: str, out_dir: str,
                   budget_name, budget_policy, deliver_to):
    shot = {"id": "shot", "brief": entry.brief, **{k: v for k, v in (("duration", entry.duration),
            ("takes", entry.takes), ("provider", entry.provider), ("model", entry.model)) if v is not None}}
    reference = entry.reference_image
    if reference and store is not None and "://" not in reference:  # a key beside the library in storage
        key = join_key(library.rsplit("/", 1)[0] if "/" in library else "", reference)
        reference = str(store.get(key, base / "references" / Path(reference).name))
    if reference:
        shot["reference_image"] = reference
    try:
        board = parse_storyboard({"title": entry.title or entry.id, "defaults": defaults, "shots": [shot]}, base)
    except StoryboardError as exc:
        return Failed(name="InvalidInput", message=f"{entry.id}: {exc}")
    options = RunOptions(out_dir=out_dir, budget_name=budget_name, policy=budget_policy, storage=deliver_to)
    return produce(storyboard=board, options=options, return_state=True)
