"""The storyboard: what a creator hands takeflow, validated before anything is spent.

A storyboard is YAML or JSON. Relative input paths are resolved against the storyboard file's
folder (see tasks/inputs). Every problem is reported as one line naming the field and the fix;
numbers must be finite and booleans are not numbers.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      PrivateAttr, field_validator, model_validator)

from blocks.catalogue import load_catalogue
from blocks.providers import AspectRatio
from blocks.registry import PROVIDERS
# leaf helpers only (they import nothing from the pipeline): tests/test_layering.py keeps it so
from tasks.routing import AUTO, Choice, Needs, check_choice, problems, route
from tasks.inputs import (MAX_BYTES, REMOTE, InputError, Kind, check_file, locate, read_storyboard_data,
                          regular_file)
from tasks.srt import SubtitleError, caption_font_problem, fit_to_edit, read_srt

Delivery = Literal["720p", "1080p", "1440p", "4k"]
DELIVERY_SHORT_SIDE = {"720p": 720, "1080p": 1080, "1440p": 1440, "4k": 2160}
DIRECTIONS = {"right": 0, "up-right": 45, "up": 90, "up-left": 135, "left": 180,
              "down-left": 225, "down": 270, "down-right": 315}
SPEEDS = {"slow": 0.04, "medium": 0.08, "fast": 0.16}
# Brush regions closer than this (fraction of the frame) blend into muddy motion.
BRUSH_MIN_GAP = 0.01


class StoryboardError(ValueError):
    """A storyboard cannot be used; the message is one line naming the field and the fix."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"should be a number, not {str(value).lower()} (a yes/no value)")
    return value


Real = Annotated[float, BeforeValidator(_not_bool)]
Whole = Annotated[int, BeforeValidator(_not_bool)]
MOTION_TOLERANCE = 0.5  # seconds a shot's duration may differ from its motion reference's
MAX_TEXT = 4000  # longer than any provider's prompt limit; the exact limit is checked per model
MIN_FRAMES = 12  # fewer frames than this cannot be scored for motion (half a second at 24 fps)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)


class Transition(_Strict):
    """How a shot joins the next one."""

    kind: Literal["cut", "crossfade", "fade_black", "dip"] = Field(
        "cut", description="cut, crossfade, fade_black (fade through black) or dip (to a colour).")
    duration: Real = Field(0.5, gt=0, le=5, description="Length of a crossfade, fade or dip in seconds.")
    color: str = Field("white", pattern=r"^(#[0-9a-fA-F]{6}|[a-z]+)$",
                       description="Colour of a dip: a name such as white, or #rrggbb.")

    @property
    def overlap(self) -> float:
        """Seconds the two shots overlap: every join but a cut blends them."""
        return 0.0 if self.kind == "cut" else self.duration

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class BrushRegion(_Strict):
    """A motion-brush region painted on the reference image (or on the frame without one)."""

    polygon: list[tuple[Real, Real]] = Field(
        min_length=3, max_length=64, description="Vertices as [x, y] fractions of the image, origin top-left.")
    direction: Real | Literal[tuple(DIRECTIONS)] = Field(  # type: ignore[valid-type]
        description="Where the region moves: left, right, up, down, up-left, … or degrees "
                    "(0 = right, 90 = up).")
    speed: Real | Literal["slow", "medium", "fast"] = Field(
        "medium", description="slow, medium, fast, or fraction of the frame width per second.")

    @field_validator("polygon")
    @classmethod
    def _inside_image(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if any(not (0 <= c <= 1) for point in polygon for c in point):
            raise ValueError("every vertex must lie in 0..1 (fractions of the image width and height)")
        if _polygon_area(polygon) < 1e-4:
            raise ValueError("the polygon has no area; give at least three vertices that are not in a line")
        return polygon

    @field_validator("speed")
    @classmethod
    def _positive_speed(cls, speed: float | str) -> float | str:
        if isinstance(speed, float) and not 0 < speed <= 1:
            raise ValueError("a numeric speed must be in (0, 1] frame widths per second")
        return speed

    def vector(self, duration: float, aspect: float) -> tuple[float, float]:
        """Total displacement over `duration` as (dx, dy) fractions of frame width/height, y down."""
        degrees = DIRECTIONS[self.direction] if isinstance(self.direction, str) else self.direction
        speed = SPEEDS[self.speed] if isinstance(self.speed, str) else self.speed
        distance = speed * duration
        radians = math.radians(degrees)
        return (round(distance * math.cos(radians), 6),
                round(-distance * math.sin(radians) * aspect, 6))


class Sound(_Strict):
    """What the edit sounds like: takes' own audio, a music bed, a voice-over, one loudness."""

    music: str | None = Field(None, description="Music bed: audio file path, https URL or s3:// URI.")
    music_gain_db: Real = Field(-6.0, ge=-40, le=6, description="Music level under takes and voice, in dB.")
    music_fit: Literal["loop", "pad"] = Field("loop", description="Music shorter than the edit: loop it or "
                                              "pad with silence.")
    voice_over: str | None = Field(None, description="Voice-over: audio file path, https URL or s3:// URI.")
    voice_over_start: Real = Field(0.0, ge=0, description="Second of the edit where the voice-over starts.")
    fade_in: Real = Field(0.5, ge=0, le=10, description="Fade-in of the whole mix, seconds.")
    fade_out: Real = Field(1.0, ge=0, le=10, description="Fade-out of the whole mix, seconds.")
    loudness: Real = Field(-14.0, ge=-40, le=-5, description="Target loudness (EBU R128, LUFS); -14 suits "
                            "social platforms, -23 broadcast.")
    keep_take_audio: bool = Field(True, description="Keep the sound of takes whose model made some.")

    @field_validator("music", "voice_over")
    @classmethod
    def _readable_audio(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve_input(value, info, "audio")


class TitleCard(_Strict):
    """Text laid over the edit for a while."""

    text: str = Field(min_length=1, max_length=200, description="The words shown.")
    start: Real = Field(0.0, ge=0, description="Second of the edit where it appears.")
    duration: Real = Field(3.0, gt=0, description="Seconds it stays.")
    position: Literal["top", "center", "bottom"] = Field("bottom", description="Where on the frame.")

    @field_validator("text")
    @classmethod
    def _printable(cls, text: str) -> str:
        return _plain_text(text)


class Draft(_Strict):
    """Draft-then-final: explore the takes on a cheap model or at a shorter length, then render only
    the winner on the shot's own model at full length, with the same prompt, seed and reference."""

    model: str | None = Field(None, description="Draft model: a model of the shot's provider or "
                              "'provider/model'; default the shot's own model.")
    duration: Real | None = Field(None, gt=0, le=60, description="Draft length in seconds; default the shot's.")


class Defaults(_Strict):
    """Settings every shot inherits unless it overrides them."""

    provider: str = Field("previz", description="Provider that generates takes (previz renders locally, free; "
                          "runway, kling, veo, sora, seedance, ltx call their APIs).")
    model: str = Field("motion-preview", description="Model name at that provider (see `takeflow models`), "
                       "or 'auto' for the cheapest model that meets each shot's needs.")
    providers: list[str] | None = Field(None, description="Providers 'auto' may choose from; default: every "
                                        "hosted provider in the catalogue.")
    resolution: Literal["480p", "720p", "1080p", "1440p", "4k"] | None = Field(
        None, description="Native generation resolution; default each model's own. Leave it out to generate "
                          "at the model's size and upscale to `delivery`.")
    audio: bool = Field(False, description="Ask models for sound (only models that make sound qualify).")
    aspect_ratio: AspectRatio = Field("16:9", description="16:9 landscape, 9:16 vertical or 1:1 square.")
    duration: Real = Field(5.0, gt=0, le=60, description="Shot length in seconds.")
    fps: Whole = Field(24, ge=1, le=120, description="Frames per second of takes and delivery.")
    takes: Whole = Field(3, ge=1, le=16, description="Takes (variations) generated per shot.")
    delivery: Delivery = Field("1080p", description="Delivery resolution: 720p, 1080p, 1440p or 4k.")
    upscaler: str = Field("local", description="How takes reach the delivery size: local (Lanczos and "
                          "sharpening in the assembly, free) or a provider's super-resolution model, priced "
                          "like a take, e.g. runway/magnific_video_upscaler_creative.")
    budget: Real | None = Field(None, ge=0, description="Credits this storyboard may "
                                 "spend over all its runs (ledger budget project-<title>); none means no cap.")
    budget_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Named ledger "
                                    "budget the run draws on, shared by every run naming it (takeflow budget "
                                    "create NAME --limit CREDITS); wins over `budget`.")
    budget_policy: Literal["stop", "pause", "fit"] = Field(
        "stop", description="When the estimate is over what the budget has left: stop before spending, pause "
                            "for a decision in the Prefect UI, or fit the plan (fewer takes, cheaper model).")
    draft: Draft | None = Field(None, description="Draft-then-final for every shot (see Draft).")
    motion_amount: Real = Field(0.5, ge=0, le=1, description="Camera motion, 0 still to 1 strong.")
    transition: Transition = Field(Transition(), description="Default join between shots.")
    quality_bar: Real = Field(0.5, ge=0, le=1, description="Minimum absolute quality (0–1) a take needs "
                               "to be used; below it the shot gets more takes.")
    extra_takes: Whole = Field(3, ge=0, le=16, description="Most takes added to a shot whose takes all "
                             "miss the quality bar, before trying its fallback model.")
    delivery_format: Literal["h264", "prores", "hevc10"] = Field(
        "h264", description="final.mp4 as H.264; or final.mov as ProRes 422 HQ; or 10-bit HEVC final.mp4.")
    colour_match: Literal["off", "previous", "first"] = Field(
        "off", description="Grade shots to match the previous shot or the first one, so cuts do not jump.")
    vertical_reframe: bool = Field(False, description="Also deliver a 9:16 centre reframe of a 16:9 edit.")


class Shot(_Strict):
    """One shot: a free-text brief and/or structured prompt fields, plus optional references."""

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$",
                           description="Short name used in file and run names (default shot-01, …).")
    brief: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="Free-text description of the shot.")
    subject: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="Who or what the shot is about.")
    action: str | None = Field(None, max_length=MAX_TEXT, description="What the subject does and how it moves.")
    environment: str | None = Field(None, max_length=MAX_TEXT, description="Where it happens.")
    camera: str | None = Field(None, max_length=MAX_TEXT, description="Camera instruction, e.g. 'slow dolly in at eye level'.")
    lighting: str | None = Field(None, max_length=MAX_TEXT, description="Mood and lighting, e.g. 'warm golden-hour backlight'.")
    reference_image: str | None = Field(None, description="Image file path, https URL or s3:// URI for "
                                        "image-to-video.")
    motion_reference: str | None = Field(
        None, description="Motion reference video (MP4/MOV of 3-30 s, at most 100 MB): file path, https URL "
                          "or s3:// URI. Kling motion control moves the reference image's character the "
                          "way it moves, previz previews its timing and camera motion; the shot lasts as "
                          "long as it.")
    continues: bool = Field(False, description="Continue the previous shot: its chosen take's last frame "
                            "becomes this shot's reference image.")
    motion_brush: list[BrushRegion] = Field([], description="Regions that move on their own vectors.")
    duration: Real | None = Field(None, gt=0, le=60, description="Overrides defaults.duration.")
    provider: str | None = Field(None, description="Overrides defaults.provider.")
    model: str | None = Field(None, description="Overrides defaults.model.")
    fallback_model: str | None = Field(None, description="Stronger model tried when no take passes, after "
                                       "the extra takes: a model of the shot's provider, or 'provider/model'.")
    models: list[str] | None = Field(None, min_length=1, description="Spread the takes over several models "
                                     "('provider/model' each, e.g. runway/gen4.5); overrides provider and model.")
    resolution: Literal["480p", "720p", "1080p", "1440p", "4k"] | None = Field(
        None, description="Overrides defaults.resolution.")
    audio: bool | None = Field(None, description="Overrides defaults.audio.")
    takes: Whole | None = Field(None, ge=1, le=16, description="Overrides defaults.takes.")
    motion_amount: Real | None = Field(None, ge=0, le=1, description="Overrides defaults.motion_amount.")
    transition: Transition | None = Field(None, description="Join to the next shot; overrides defaults.transition.")
    draft: Draft | None = Field(None, description="Draft-then-final for this shot; overrides defaults.draft.")
    _motion_seconds: float | None = PrivateAttr(None)  # a local motion reference's length

    @field_validator("brief", "subject", "action", "environment", "camera", "lighting")
    @classmethod
    def _printable(cls, text: str | None) -> str | None:
        return _plain_text(text)

    @model_validator(mode="after")
    def _has_content(self) -> "Shot":
        if not self.brief and not self.subject:
            raise ValueError("needs a brief, or structured fields starting with subject")
        if self.continues and self.reference_image:
            raise ValueError("a shot that continues the previous one takes its last frame as reference; "
                             "remove reference_image or continues")
        if self.motion_reference and self.motion_brush:
            raise ValueError("a motion reference drives the whole shot's motion; remove motion_brush or "
                             "motion_reference")
        if self.motion_reference and not self.motion_reference.startswith(REMOTE):
            # motion control makes clips as long as the reference, so the shot is that long
            seconds = round(check_file(Path(self.motion_reference), "video"), 2)
            if self.duration is not None and abs(self.duration - seconds) > MOTION_TOLERANCE:
                raise ValueError(f"duration is {self.duration:g} s but motion_reference lasts {seconds:g} s; "
                                 "remove duration (the shot lasts as long as its motion reference) or trim "
                                 "the reference")
            self._motion_seconds = seconds
        return self

    @field_validator("motion_reference")
    @classmethod
    def _readable_video(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve_input(value, info, "video")

    @field_validator("reference_image")
    @classmethod
    def _readable_image(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve_input(value, info, "image")

    @field_validator("motion_brush")
    @classmethod
    def _regions_apart(cls, regions: list[BrushRegion]) -> list[BrushRegion]:
        for i, j in _touching_pairs(regions):
            raise ValueError(f"regions {i} and {j} overlap or touch; leave a gap of at least "
                             f"{BRUSH_MIN_GAP:.0%} of the frame between brushed regions")
        return regions


class Storyboard(_Strict):
    """A titled list of shots to turn into one finished video."""

    title: str = Field(min_length=1, max_length=120, description="Project title; names the output folder.")
    defaults: Defaults = Field(Defaults(), description="Settings every shot inherits.")
    shots: list[Shot] = Field(min_length=1, max_length=200, description="The shots, in order.")
    sound: Sound | None = Field(None, description="Music, voice-over and loudness of the edit.")
    titles: list[TitleCard] = Field([], description="Titles over the edit.")
    captions: str | None = Field(None, description="Subtitle file (.srt): path, https URL or s3:// URI; its "
                                 "cues are drawn over the edit as captions.")

    @field_validator("title")
    @classmethod
    def _printable(cls, text: str) -> str:
        return _plain_text(text)

    @field_validator("captions")
    @classmethod
    def _caption_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve_input(value, info, "captions")

    @model_validator(mode="after")
    def _check_sequence(self) -> "Storyboard":
        for index in range(len(self.shots)):
            self.models_of(index)
            self.draft_of(index)
        if self.shots[0].continues:
            raise ValueError("shots[0].continues: the first shot has no previous shot to continue; remove it")
        ids = self.shot_ids()
        for index, shot_id in enumerate(ids):
            if ids.index(shot_id) != index:
                raise ValueError(f"shots[{index}].id: '{shot_id}' is used twice; give every shot its own id")
        fps = self.defaults.fps
        for index in range(len(self.shots)):
            if self.duration_of(index) * fps < MIN_FRAMES:
                field = f"shots[{index}].duration" if self.shots[index].duration else "defaults.duration"
                raise ValueError(f"{field}: {self.duration_of(index):g} s at {fps} fps is "
                                 f"{self.duration_of(index) * fps:.0f} frames, too few to judge its motion; "
                                 f"make the shot at least {MIN_FRAMES / fps:g} s long or raise defaults.fps")
        total = self.total_duration()
        for index, title in enumerate(self.titles):
            if title.start + title.duration > total + 1e-6:
                raise ValueError(f"titles[{index}]: ends at {title.start + title.duration:g} s, after the "
                                 f"edit's {total:g} s; start it earlier or shorten it")
        if self.captions:
            _check_captions(self.captions, total)
        check_upscaler(self)
        if self.defaults.vertical_reframe and self.defaults.aspect_ratio != "16:9":
            raise ValueError("defaults.vertical_reframe: only a 16:9 edit is reframed to 9:16; remove it")
        fades = [0.0] + [self.transition_after(i).overlap for i in range(len(self.shots) - 1)] + [0.0]
        for index in range(len(self.shots)):
            if fades[index] + fades[index + 1] >= self.duration_of(index):
                raise ValueError(f"shots[{max(0, index - (fades[index + 1] == 0))}].transition: transitions "
                                 f"into and out of shots[{index}] need a shot longer than "
                                 f"{fades[index] + fades[index + 1]:g} s; shorten the transition")
        return self

    @property
    def project_slug(self) -> str:
        """The title as a folder and run name: 'Harbour Morning' -> 'harbour-morning'."""
        return slug(self.title)

    def shot_ids(self) -> list[str]:
        return [shot.id or f"shot-{n:02d}" for n, shot in enumerate(self.shots, 1)]

    def models_of(self, index: int) -> tuple[list[Choice], Choice | None]:
        """The checked models a shot's takes use (auto routed), and its fallback model."""
        shot = self.shots[index]
        provider = shot.provider or self.defaults.provider
        specs = [("models", spec) for spec in shot.models] if shot.models else \
            [("model", f"{provider}/{shot.model or self.defaults.model}")]
        if shot.fallback_model:
            spec = shot.fallback_model if "/" in shot.fallback_model else f"{provider}/{shot.fallback_model}"
            specs.append(("fallback_model", spec))
        choices = [_check_model(self, index, field, spec) for field, spec in specs]
        return (choices[:-1], choices[-1]) if shot.fallback_model else (choices, None)

    def draft_of(self, index: int) -> tuple[Choice, float] | None:
        """The checked draft model and length of a shot that drafts first, else None."""
        draft = self.shots[index].draft or self.defaults.draft
        if draft is None:
            return None
        final = self.models_of(index)[0][0]
        where = f"shots[{index}].draft" if self.shots[index].draft else "defaults.draft"
        seconds = draft.duration or self.duration_of(index)
        if seconds > self.duration_of(index):
            raise ValueError(f"{where}.duration: {seconds:g} s is longer than the shot ({self.duration_of(index):g} s); "
                             "a draft is as long as the shot or shorter")
        provider, _, model = (draft.model or f"{final.provider}/{final.model}").rpartition("/")
        provider = provider or final.provider
        if provider not in PROVIDERS:
            raise ValueError(f"{where}.model: unknown provider '{provider}'; available: {', '.join(sorted(PROVIDERS))}")
        try:
            entry = load_catalogue().model(provider, model)
        except KeyError as exc:
            raise ValueError(f"{where}.model: {exc.args[0]}") from None
        found = problems(entry, replace(shot_needs(self, index), duration=seconds, resolution=None))
        if found:
            raise ValueError(f"{where}: {found[0]}")
        return Choice(provider, model, None), seconds

    def duration_of(self, index: int) -> float:
        shot = self.shots[index]
        return shot.duration or shot._motion_seconds or self.defaults.duration

    def transition_after(self, index: int) -> Transition:
        return self.shots[index].transition or self.defaults.transition

    def total_duration(self) -> float:
        overlaps = sum(self.transition_after(i).overlap for i in range(len(self.shots) - 1))
        return sum(self.duration_of(i) for i in range(len(self.shots))) - overlaps


def _plain_text(text: str | None) -> str | None:
    """Text that prompts, titles and terminals can take: no control characters (tabs and line
    breaks are fine)."""
    if text is not None and not text.replace("\n", "").replace("\t", "").isprintable():
        bad = next(c for c in text if not c.isprintable() and c not in "\n\t")
        raise ValueError(f"has a control character ({bad.encode('unicode_escape').decode()}); remove it")
    return text


WANTED_INPUT = {"image": "a PNG, JPEG or WebP file path, https URL or s3:// URI",
                "audio": "an audio file path, https URL or s3:// URI", "captions": "an .srt file",
                "video": "an MP4 or MOV of 3-30 s: file path, https URL or s3:// URI"}


def _resolve_input(value: str | None, info: ValidationInfo, kind: Kind) -> str | None:
    """A local input as an absolute path checked to be usable (bounded, never blocking), or a
    URI; remote inputs are fetched and checked by tasks.checks before anything is spent."""
    if value is None:
        return None
    if not value.isprintable():
        raise ValueError("has control characters; give a plain path or URL")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme and not value.startswith(REMOTE):
        raise ValueError(f"{scheme.group(1)}:// is not supported; give {WANTED_INPUT[kind]}")
    located = locate(value, str((info.context or {}).get("base_dir", ".")))
    if not located.startswith(REMOTE):
        try:
            if kind == "captions":  # parsed and fitted to the edit by _check_captions
                regular_file(Path(located), MAX_BYTES["captions"])
            else:
                check_file(Path(located), kind)
        except InputError as exc:
            raise ValueError(f"{exc}; give {WANTED_INPUT[kind]}") from None
    return located


def _check_captions(uri: str, total: float) -> None:
    """A local subtitle file must parse and fit the edit, and ffmpeg must have a font to draw it
    with; remote ones are read when the run starts, still before anything is spent."""
    problem = caption_font_problem()
    if problem:
        raise ValueError(f"captions: {problem}")
    if not uri.startswith(REMOTE):
        try:
            fit_to_edit(read_srt(uri), total, Path(uri).name)
        except SubtitleError as exc:
            raise ValueError(f"captions: {exc}") from None


def slug(text: str, limit: int = 60) -> str:
    """Lowercase letters, digits and single dashes: safe in paths, run names and artifact keys."""
    words = "".join(c if c.isalnum() else "-" for c in text.lower()).split("-")
    return "-".join(w for w in words if w)[:limit].strip("-") or "project"


def shot_needs(storyboard: Storyboard, index: int) -> Needs:
    """What shot `index` asks of a model."""
    shot, defaults = storyboard.shots[index], storyboard.defaults
    return Needs(duration=storyboard.duration_of(index), aspect_ratio=defaults.aspect_ratio,
                 image=bool(shot.reference_image or shot.continues), brush=bool(shot.motion_brush),
                 audio=shot.audio if shot.audio is not None else defaults.audio,
                 resolution=shot.resolution or defaults.resolution, motion=bool(shot.motion_reference))


def resolve(storyboard: Storyboard, index: int, provider: str, model: str) -> Choice:
    """A shot's (provider, model) as a checked Choice; `auto` is routed. Raises ValueError."""
    needs = shot_needs(storyboard, index)
    if model == AUTO:
        shot_provider = storyboard.shots[index].provider
        allowed = [shot_provider] if shot_provider and shot_provider != AUTO else storyboard.defaults.providers
        return route(needs, allowed)
    return check_choice(provider, model, needs)


def check_upscaler(storyboard: Storyboard) -> None:
    """Refuse an upscaler the catalogue does not have, a delivery size it cannot reach, or shots
    longer than it takes: ValueError naming the field and the fix, before anything is spent."""
    spec, delivery, catalogue = storyboard.defaults.upscaler, storyboard.defaults.delivery, load_catalogue()
    if spec == "local":
        return
    try:
        entry = catalogue.upscaler(*spec.partition("/")[::2])
    except KeyError:
        names = ", ".join(f"{u.provider}/{u.model}" for u in catalogue.upscalers)
        raise ValueError(f"defaults.upscaler: '{spec}' is not an upscaler in the catalogue; use local"
                         + (f" or one of: {names}" if names else "")) from None
    try:
        entry.target(delivery)
    except KeyError as exc:
        raise ValueError(f"defaults.upscaler: {exc.args[0]}; use local for {delivery}") from None
    for index in range(len(storyboard.shots)):
        seconds = storyboard.duration_of(index)
        if entry.max_duration is not None and seconds > entry.max_duration:
            raise ValueError(f"shots[{index}].duration: {spec} upscales clips of at most "
                             f"{entry.max_duration:g} s, not {seconds:g} s; shorten the shot or set "
                             "defaults.upscaler: local")


def _check_model(storyboard: Storyboard, index: int, field: str, spec: str) -> Choice:
    where = f"shots[{index}]"
    provider, _, model = spec.rpartition("/")
    provider = provider or storyboard.shots[index].provider or storyboard.defaults.provider
    if model != AUTO and provider not in PROVIDERS:
        field = field if field != "model" else "provider"
        raise ValueError(f"{where}.{field}: unknown provider '{provider}'; available: {', '.join(sorted(PROVIDERS))}")
    try:
        return resolve(storyboard, index, provider, model)
    except ValueError as exc:
        raise ValueError(f"{where}.{field}: {exc}") from None


def _polygon_area(polygon: list[tuple[float, float]]) -> float:
    xs, ys = zip(*polygon)
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2


def _touching_pairs(regions: list[BrushRegion], grid: int = 400) -> list[tuple[int, int]]:
    """Pairs of regions that overlap or lie closer than BRUSH_MIN_GAP, found by rasterising."""
    gap = max(1, round(BRUSH_MIN_GAP * grid))
    kernel = np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)
    masks = []
    for region in regions:
        mask = np.zeros((grid, grid), np.uint8)
        cv2.fillPoly(mask, [np.round(np.array(region.polygon) * (grid - 1)).astype(np.int32)], 1)
        masks.append(mask)
    grown = [cv2.dilate(mask, kernel) for mask in masks]
    return [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))
            if np.any(grown[i] & masks[j])]


# ---- loading and one-line errors -------------------------------------------------------------

_SECTIONS = {"storyboard": Storyboard, "defaults": Defaults, "shots[n]": Shot, "motion_brush[n]": BrushRegion,
             "transition": Transition, "sound": Sound, "titles[n]": TitleCard, "draft": Draft}
_FIELD_NAMES = sorted({name for model in _SECTIONS.values() for name in model.model_fields})
# What a field's pattern means, said as the fix rather than as the regex.
PATTERN_HINTS = {"id": "use 1-40 letters, digits, '-' or '_', e.g. harbour-wide",
                 "color": "give a colour name such as white or a hex colour such as '#ff8800' (quoted)",
                 "budget_name": "use lowercase letters, digits and '-', e.g. team-monthly"}
WHOLE_FIELDS = {"fps", "takes", "extra_takes"}
# An unquoted 16:9 is a YAML 1.1 base-60 number: 16 * 60 + 9 = 969.
SEXAGESIMAL = {16 * 60 + 9: "16:9", 9 * 60 + 16: "9:16", 60 + 1: "1:1"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, limit: int = 400) -> str:
    """`text` safe to print on a terminal: control characters escaped, on one line, bounded."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text.replace("\n", " "))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _is_branch(part: str) -> bool:
    """A union's branch name in an error location (e.g. 'float', "literal['left']"), not a field."""
    return part.startswith(("function-", "literal[", "float", "str", "int", "tuple[", "list["))


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _is_branch(str(part)):
            text += f".{part}" if text else str(part)
    return text or "storyboard"


def _message(first: dict[str, Any], where: str) -> str:
    kind, value = first["type"], first.get("input")
    message = first["msg"].removeprefix("Value error, ").removeprefix("Input ")
    field = next((str(p) for p in reversed(first["loc"]) if isinstance(p, str) and not _is_branch(p)), "")
    if kind == "extra_forbidden":
        parent = next((str(p) for p in reversed(first["loc"][:-1]) if isinstance(p, str)), "storyboard")
        homes = [name for name, model in _SECTIONS.items() if field in model.model_fields
                 and not name.startswith(parent)]
        if homes:  # a real field in the wrong place, e.g. `music` at the top instead of under `sound`
            return f"unknown field here; '{field}' belongs under {' or '.join(homes)}; move it there"
        close = difflib.get_close_matches(field, _FIELD_NAMES, n=1)
        return "unknown field; " + (f"did you mean '{close[0]}'?" if close else "remove it")
    if kind == "missing":
        return "is required; add it"
    if kind == "too_short" and where.endswith("shots"):
        return "the storyboard has no shots; add at least one shot with a brief"
    if kind == "string_too_short":
        return "is empty (or only spaces); write it out or remove the field"
    if kind == "string_too_long":
        limit = first.get("ctx", {}).get("max_length")
        return f"is {len(value)} characters, over the {limit} allowed; shorten it"
    if kind in ("too_long", "too_short"):
        bound = first.get("ctx", {}).get("max_length" if kind == "too_long" else "min_length")
        return (f"has {first.get('ctx', {}).get('actual_length', len(value))} items; give "
                f"{'at most' if kind == 'too_long' else 'at least'} {bound}")
    if kind == "model_type":
        return "should be a mapping of fields (key: value)"
    if kind == "finite_number":
        return f"is {value}, not a finite number; give a {'whole ' * (field in WHOLE_FIELDS)}number such as " \
               f"{'3' if field in WHOLE_FIELDS else '1.5'}"
    if field == "color" and value is None:
        return "is empty; YAML reads an unquoted #rrggbb as a comment: quote it, e.g. color: '#ff8800'"
    if field == "direction" and kind in ("float_parsing", "literal_error"):
        return f"'{value}' is not a direction; give degrees (0 = right, 90 = up) or one of {', '.join(DIRECTIONS)}"
    if kind == "string_pattern_mismatch":
        return f"'{value}' is not allowed; {PATTERN_HINTS.get(field, 'see the field description')}"
    if field == "aspect_ratio" and value in SEXAGESIMAL:
        return (f"YAML reads an unquoted {SEXAGESIMAL[value]} as the number {value}; "
                f"quote it: aspect_ratio: \"{SEXAGESIMAL[value]}\"")
    if isinstance(value, bool) and kind.startswith(("float", "int")):
        return f"should be a number, not {str(value).lower()}"
    return message


def describe_error(error: ValidationError) -> str:
    """One line for the first problem: where it is, what is wrong, what to do."""
    errors = error.errors()
    # A union (e.g. direction: degrees or a word) reports each branch; a finite-number
    # complaint is the real reason when there is one.
    first = next((e for e in errors if e["type"] == "finite_number"), errors[0])
    where = _location(first["loc"])
    message = _message(first, where)
    more = len({_location(e["loc"]) for e in errors} - {where})
    # Storyboard-wide checks name their own field (e.g. "shots[2].transition: …").
    names_field = re.match(r"^(shots|titles|captions|defaults|sound)\b", message)
    prefix = "" if not first["loc"] and names_field else f"{where}: "
    return one_line(f"{prefix}{message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))


def parse_storyboard(data: Any, base_dir: Path | str = ".") -> Storyboard:
    """Validate storyboard data; raise StoryboardError with a one-line message."""
    if isinstance(data, Storyboard):
        return data
    if not isinstance(data, dict):
        raise StoryboardError("storyboard: the top level must be a mapping with title, defaults and shots")
    try:
        return Storyboard.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise StoryboardError(describe_error(exc)) from None
    except (ValueError, ArithmeticError, RecursionError) as exc:  # a check that is not pydantic's
        raise StoryboardError(one_line(f"storyboard: {exc}")) from None


def load_storyboard(path: str | Path, base_dir: str | None = None) -> Storyboard:
    """Read a YAML or JSON storyboard file; raise StoryboardError with a one-line message.

    Relative inputs resolve against `base_dir` (default: the file's folder; an s3:// prefix for
    a storyboard that was downloaded from S3).
    """
    path = Path(path)
    try:
        data = read_storyboard_data(path)
    except InputError as exc:
        message = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")
        raise StoryboardError(one_line(f"{path.name}: {message}")) from None
    try:
        return parse_storyboard(data, base_dir or path.parent)
    except StoryboardError as exc:
        raise StoryboardError(f"{path.name}: {exc}") from None
