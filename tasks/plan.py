"""Planning: what each shot will generate, at what size, and what it will cost, before any spend."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from blocks.media import cover_box
from blocks.providers import AspectRatio, GenerationRequest, MotionRegion, frame_size
from tasks.prompts import ShotPrompts, expand_prompt
from tasks.storyboard import DELIVERY_SHORT_SIDE, Storyboard, Transition


class ModelChoice(BaseModel):
    """A model a shot's takes use, at the resolution they are generated at."""

    model_config = ConfigDict(frozen=True)

    provider: str = Field(description="Provider name.")
    model: str = Field(description="Model at that provider.")
    resolution: str | None = Field(None, description="Native generation resolution, None for the model's own.")

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


class ShotPlan(BaseModel):
    """Everything needed to generate a shot's takes, resolved from the storyboard's defaults."""

    index: int = Field(description="Position in the storyboard, from 0.")
    shot_id: str = Field(description="Shot name used in files and run names.")
    choices: list[ModelChoice] = Field(description="Models the takes cycle through (usually one).")
    fallback: ModelChoice | None = Field(description="Stronger model tried when no take passes.")
    draft: ModelChoice | None = Field(None, description="Draft-then-final: the model takes are explored on; "
                                      "the winner is then rendered on `choices[0]` at full length.")
    draft_duration: float | None = Field(None, description="Length of the draft takes in seconds.")
    audio: bool = Field(False, description="Ask the model for sound.")
    quality_bar: float = Field(description="Minimum absolute quality a take needs.")
    extra_takes: int = Field(description="Most takes added when no take passes.")
    duration: float = Field(description="Shot length in seconds.")
    fps: int = Field(description="Frames per second.")
    aspect_ratio: AspectRatio = Field(description="Frame aspect ratio.")
    motion_amount: float = Field(description="Camera motion, 0 to 1.")
    reference_image: str | None = Field(description="Reference image path or URL.")
    continues_from: str | None = Field(None, description="Shot whose chosen take's last frame is the reference.")
    motion_reference: str | None = Field(None, description="Motion reference video: path, https URL or s3:// URI.")
    motion_reference_file: Path | None = Field(None, description="Local copy of a remote motion reference, "
                                               "once the run has fetched it.")
    motion_regions: tuple[MotionRegion, ...] = Field(description="Motion-brush regions as vectors.")
    transition: Transition | None = Field(description="Join to the next shot (None for the last).")
    prompts: ShotPrompts = Field(description="Expanded prompt, lint report and take seeds.")

    @property
    def takes(self) -> int:
        return len(self.prompts.seeds)

    @property
    def provider(self) -> str:
        return self.choices[0].provider

    @property
    def model(self) -> str:
        return self.choices[0].model

    def choice_for(self, take: int) -> ModelChoice:
        """The model of take `take` (from 1): the draft model when drafting, else the shot's models
        in turn."""
        return self.draft or self.choices[(take - 1) % len(self.choices)]

    def duration_for(self, choice: ModelChoice) -> float:
        """Length of a take on `choice`: drafts may be shorter than the shot."""
        return self.draft_duration or self.duration if self.draft and choice == self.draft else self.duration

    def request(self, seed: int, reference: Path | None, choice: ModelChoice | None = None,
                final: bool = False) -> GenerationRequest:
        """The request for a take on `choice`; `final` is the full-length render of a draft winner."""
        choice = choice or self.choice_for(1)
        duration = self.duration if final else self.duration_for(choice)
        return GenerationRequest(
            prompt=self.prompts.prompt.text(), model=choice.model, seed=seed, duration=duration,
            fps=self.fps, aspect_ratio=self.aspect_ratio, motion_amount=self.motion_amount,
            reference_image=reference, motion_regions=self.motion_regions, resolution=choice.resolution,
            audio=self.audio, **self.motion_fields())

    def motion_fields(self) -> dict[str, object]:
        """The request's motion reference: a local file (remote ones once fetched) and its source."""
        uri = self.motion_reference
        if not uri:
            return {}
        remote = uri.startswith(("https://", "http://", "s3://"))
        return {"motion_reference": self.motion_reference_file or (None if remote else Path(uri)),
                "motion_reference_url": uri if remote else None}


def takes_for(storyboard: Storyboard, index: int, override: int | None) -> int:
    return override or storyboard.shots[index].takes or storyboard.defaults.takes


def plan_shot(storyboard: Storyboard, index: int, prompts: ShotPrompts) -> ShotPlan:
    """Resolve a shot's settings against the storyboard defaults."""
    shot, defaults = storyboard.shots[index], storyboard.defaults
    duration = storyboard.duration_of(index)
    choices, fallback = storyboard.models_of(index)
    draft = storyboard.draft_of(index)
    w, h = (int(x) for x in defaults.aspect_ratio.split(":"))
    return ShotPlan(
        index=index, shot_id=storyboard.shot_ids()[index],
        choices=[ModelChoice(**vars(c)) for c in choices],
        fallback=ModelChoice(**vars(fallback)) if fallback else None,
        draft=ModelChoice(**vars(draft[0])) if draft else None, draft_duration=draft[1] if draft else None,
        audio=shot.audio if shot.audio is not None else defaults.audio, quality_bar=defaults.quality_bar,
        extra_takes=defaults.extra_takes,
        duration=duration, fps=defaults.fps, aspect_ratio=defaults.aspect_ratio,
        motion_amount=defaults.motion_amount if shot.motion_amount is None else shot.motion_amount,
        reference_image=shot.reference_image, motion_reference=shot.motion_reference,
        continues_from=storyboard.shot_ids()[index - 1] if shot.continues else None,
        motion_regions=tuple(MotionRegion(polygon=tuple(map(tuple, r.polygon)),
                                          vector=r.vector(duration, w / h))
                             for r in shot.motion_brush),
        transition=storyboard.transition_after(index) if index < len(storyboard.shots) - 1 else None,
        prompts=prompts)


def providers_used(plans: list[ShotPlan]) -> list[str]:
    return sorted({c.provider for p in plans
                   for c in p.choices + [m for m in (p.fallback, p.draft) if m is not None]})


def plan_storyboard(storyboard: Storyboard, takes: int | None, expand=None) -> list[ShotPlan]:
    """Expand and plan every shot; the CLI and the flow share it (the flow passes the
    `expand_prompt` task so each expansion shows as a task run)."""
    expand = expand or expand_prompt.fn
    return [plan_shot(storyboard, i, expand(shot, shot_id, storyboard.title, takes_for(storyboard, i, takes)))
            for i, (shot, shot_id) in enumerate(zip(storyboard.shots, storyboard.shot_ids()))]


def delivery_size(aspect_ratio: AspectRatio, delivery: str) -> tuple[int, int]:
    """Width and height of the deliverable: the delivery resolution names the short side."""
    return frame_size(aspect_ratio, DELIVERY_SHORT_SIDE[delivery])


def frame_regions(regions: tuple[MotionRegion, ...], image_size: tuple[int, int] | None,
                  aspect_ratio: AspectRatio) -> tuple[MotionRegion, ...]:
    """Brush polygons moved from reference-image fractions to frame fractions.

    Providers fill the frame with the reference scaled to cover it and centre-cropped, so a
    point's frame position follows from the crop; without a reference the two are the same.
    """
    if not image_size:
        return regions
    width, height = image_size
    w, h = (int(x) for x in aspect_ratio.split(":"))
    x0, y0, crop_w, crop_h = cover_box(width, height, w / h)
    return tuple(region.model_copy(update={"polygon": tuple(
        ((x * width - x0) / crop_w, (y * height - y0) / crop_h) for x, y in region.polygon)})
        for region in regions)
