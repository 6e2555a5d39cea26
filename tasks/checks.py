"""The checks a storyboard passes after it parses and before anything is spent, shared by
`takeflow validate`, `takeflow produce` and the produce flow (so deployment runs get them too):
the run's overrides, each prompt against its models' length limits, dip colours and fonts
ffmpeg must draw with, and every remote input fetched (bounded, with timeouts) and verified.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blocks.catalogue import load_catalogue
from tasks.inputs import InputError, Kind, check_file, download, fetch_from_storage
from tasks.plan import ShotPlan, plan_storyboard
from tasks.storyboard import Real, Storyboard, StoryboardError, Whole, one_line


class Overrides(BaseModel):
    """What a run may override: the same limits as the storyboard's own fields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    takes: Whole | None = Field(None, ge=1, le=16, description="Takes per shot.")
    budget: Real | None = Field(None, ge=0, description="Credit budget for the run.")


def check_overrides(takes: object = None, budget: object = None, prefix: str = "--") -> Overrides:
    """The run's overrides, or StoryboardError naming the option (`--takes`, `options.takes`)."""
    try:
        return Overrides(takes=takes, budget=budget)
    except ValidationError as exc:
        error = exc.errors()[0]
        field, value = str(error["loc"][0]), error.get("input")
        hint = {"takes": "give a whole number from 1 to 16", "budget": "give a number of credits, 0 or more"}
        raise StoryboardError(one_line(f"{prefix}{field}: '{value}' is not allowed; {hint[field]}")) from None




def check_prompts(storyboard: Storyboard, plans: list[ShotPlan]) -> None:
    """Each shot's prompt within the length limit of every model its takes may use."""
    catalogue = load_catalogue()
    for plan in plans:
        text = plan.prompts.prompt.text()
        length = len(text.encode("utf-16-le")) // 2
        for choice in plan.choices + ([plan.fallback] if plan.fallback else []):
            limit = catalogue.model(choice.provider, choice.model).max_prompt
            if limit and length > limit:
                shot = storyboard.shots[plan.index]
                field = "brief" if shot.brief else "subject"
                raise StoryboardError(f"shots[{plan.index}].{field}: the prompt is {length} characters; "
                                      f"{choice.provider}/{choice.model} takes at most {limit}; shorten it")


def check_motion_sources(plans: list[ShotPlan]) -> None:
    """A provider that fetches the motion reference itself (Kling) needs a URL it can reach."""
    catalogue = load_catalogue()
    for plan in plans:
        for choice in plan.choices + ([plan.fallback] if plan.fallback else []):
            entry = catalogue.model(choice.provider, choice.model)
            if entry.motion_reference == "required" and plan.motion_reference \
                    and not plan.motion_reference.startswith(("https://", "http://")):
                raise StoryboardError(
                    f"shots[{plan.index}].motion_reference: {choice.provider}/{choice.model} fetches the video "
                    "itself, so give an https URL it can reach (a presigned S3 URL works), not a file or s3:// URI")


def check_drawing(storyboard: Storyboard) -> None:
    """Dip colours ffmpeg knows, and a font for titles (captions check their own)."""
    from tasks.assemble import _dip_levels
    from tasks.overlays import caption_font_problem

    joins = [("defaults.transition", storyboard.defaults.transition)] + [
        (f"shots[{i}].transition", shot.transition) for i, shot in enumerate(storyboard.shots) if shot.transition]
    for where, join in joins:
        if join.kind == "dip" and join.color.lower() not in ("white", "black"):
            try:
                _dip_levels(0, join.color, "yuv420p")
            except ValueError:
                raise StoryboardError(f"{where}.color: ffmpeg knows no colour '{join.color}'; give a name "
                                      "such as white, black, navy or a hex colour such as '#ff8800'") from None
    if storyboard.titles:
        problem = caption_font_problem()
        if problem:
            raise StoryboardError(f"titles: {problem.replace('caption text', 'titles')}")


def remote_inputs(storyboard: Storyboard) -> list[tuple[str, str, Kind]]:
    """(field, URI, kind) of every input that is not a local file."""
    found: list[tuple[str, str | None, Kind]] = [
        (f"shots[{i}].reference_image", shot.reference_image, "image") for i, shot in enumerate(storyboard.shots)]
    found += [(f"shots[{i}].motion_reference", shot.motion_reference, "video")
              for i, shot in enumerate(storyboard.shots)]
    if storyboard.sound:
        found += [("sound.music", storyboard.sound.music, "audio"),
                  ("sound.voice_over", storyboard.sound.voice_over, "audio")]
    found.append(("captions", storyboard.captions, "captions"))
    return [(field, uri, kind) for field, uri, kind in found
            if uri and uri.startswith(("https://", "http://", "s3://"))]


def _check_motion_video(storyboard: Storyboard, field: str, path: Path) -> None:
    """A remote motion reference's shot must say how long it is (Kling makes clips as long as the
    reference, and the plan, made before anything is fetched, needs the length), and its shape must
    be the storyboard's: Kling's clip takes the reference's aspect ratio."""
    from blocks.media import probe
    from tasks.storyboard import MOTION_TOLERANCE

    seconds = check_file(path, "video")
    shot = storyboard.shots[int(field.split("[")[1].split("]")[0])]
    if shot.duration is None or abs(shot.duration - seconds) > MOTION_TOLERANCE:
        where = field.replace("motion_reference", "duration")
        raise StoryboardError(f"{where}: the motion reference lasts {seconds:.2f} s; set duration: "
                              f"{seconds:.2f} (the shot lasts as long as its motion reference)")
    info, wanted = probe(path), storyboard.defaults.aspect_ratio
    width, height = (int(x) for x in wanted.split(":"))
    if abs(math.log(info.width / info.height) - math.log(width / height)) > 0.1:
        raise StoryboardError(f"{field}: the video is {info.width}x{info.height}, not {wanted} like the "
                              "storyboard (defaults.aspect_ratio); the clip takes the reference's shape, so crop it")


def check_remote_inputs(storyboard: Storyboard, storage=None, storage_option: str = "--storage BLOCK") -> None:
    """Fetch every remote input once (capped, with timeouts) and verify it, naming the field."""
    from tasks.srt import SubtitleError, fit_to_edit, read_srt

    inputs = remote_inputs(storyboard)
    for field, uri, _ in inputs:
        if uri.startswith("s3://") and storage is None:
            raise StoryboardError(f"{field}: {uri} is on S3; pass {storage_option}, a storage block that "
                                  "can read it")
    if not inputs:
        return
    with tempfile.TemporaryDirectory(prefix="takeflow-check-") as tmp:
        for n, (field, uri, kind) in enumerate(inputs):
            try:
                path = (fetch_from_storage(storage, uri, Path(tmp), f"input{n}", kind) if uri.startswith("s3://")
                        else download(uri, Path(tmp), f"input{n}", kind))
                if kind == "captions":
                    fit_to_edit(read_srt(path, Path(uri).name), storyboard.total_duration(), Path(uri).name)
                if kind == "video":
                    _check_motion_video(storyboard, field, path)
            except (InputError, SubtitleError) as exc:
                raise StoryboardError(f"{field}: {exc}") from None


def check_run(storyboard: Storyboard, takes: int | None = None, storage=None,
              storage_option: str = "--storage BLOCK") -> list[ShotPlan]:
    """Everything a run needs that parsing the storyboard cannot see; returns the plans."""
    plans = plan_storyboard(storyboard, takes)
    check_prompts(storyboard, plans)
    check_motion_sources(plans)
    check_drawing(storyboard)
    check_remote_inputs(storyboard, storage, storage_option)
    return plans


def accept_run(storyboard: Storyboard | dict, takes: object, budget: object, inputs_dir: str | None,
               storage=None) -> tuple[Storyboard, list[ShotPlan]]:
    """A run's parameters as a deployment hands them in (plain data), checked like the CLI's.

    Relative input paths resolve against `inputs_dir`, else the folder the worker runs in; a run
    submitted with `run_parameters` (deployments/serve.py) carries absolute paths already.
    """
    import os

    from tasks.storyboard import parse_storyboard

    overrides = check_overrides(takes, budget, prefix="options.")
    base = inputs_dir or os.getcwd()
    try:
        board = parse_storyboard(storyboard, base)
    except StoryboardError as exc:
        hint = ("" if inputs_dir or "no such file" not in str(exc) else
                f" (relative paths are read from {base}, where this run's worker runs; give absolute "
                "paths, https URLs or s3:// URIs, or set options.inputs_dir)")
        raise StoryboardError(f"storyboard.{exc}{hint}") from None
    try:
        return board, check_run(board, overrides.takes, storage, "options.storage")
    except StoryboardError as exc:
        raise StoryboardError(f"storyboard.{exc}") from None
