"""Planning: what each shot will generate, at what size, and what it will cost, before any spend."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from blocks.media import cover_box
from blocks.providers import AspectRatio, GenerationRequest, MotionRegion, VideoProvider, frame_size
from tasks.prompts import ShotPrompts
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
    audio: bool = Field(False, description="Ask the model for sound.")
    quality_bar: float = Field(description="Minimum absolute quality a take needs.")
    extra_takes: int = Field(description="Most takes added when no take passes.")
    duration: float = Field(description="Shot length in seconds.")
    fps: int = Field(description="Frames per second.")
    aspect_ratio: AspectRatio = Field(description="Frame aspect ratio.")
    motion_amount: float = Field(description="Camera motion, 0 to 1.")
    reference_image: str | None = Field(description="Reference image path or URL.")
    continues_from: str | None = Field(None, description="Shot whose chosen take's last frame is the reference.")
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
        """The model of take `take` (from 1): takes cycle through the shot's models."""
        return self.choices[(take - 1) % len(self.choices)]

    def request(self, seed: int, reference: Path | None, choice: ModelChoice | None = None) -> GenerationRequest:
        choice = choice or self.choices[0]
        return GenerationRequest(
            prompt=self.prompts.prompt.text(), model=choice.model, seed=seed, duration=self.duration,
            fps=self.fps, aspect_ratio=self.aspect_ratio, motion_amount=self.motion_amount,
            reference_image=reference, motion_regions=self.motion_regions, resolution=choice.resolution,
            audio=self.audio)


def takes_for(storyboard: Storyboard, index: int, override: int | None) -> int:
    return override or storyboard.shots[index].takes or storyboard.defaults.takes


def plan_shot(storyboard: Storyboard, index: int, prompts: ShotPrompts) -> ShotPlan:
    """Resolve a shot's settings against the storyboard defaults."""
    shot, defaults = storyboard.shots[index], storyboard.defaults
    duration = storyboard.duration_of(index)
    choices, fallback = storyboard.models_of(index)
    w, h = (int(x) for x in defaults.aspect_ratio.split(":"))
    return ShotPlan(
        index=index, shot_id=storyboard.shot_ids()[index],
        choices=[ModelChoice(**vars(c)) for c in choices],
        fallback=ModelChoice(**vars(fallback)) if fallback else None,
        audio=shot.audio if shot.audio is not None else defaults.audio, quality_bar=defaults.quality_bar,
        extra_takes=defaults.extra_takes,
        duration=duration, fps=defaults.fps, aspect_ratio=defaults.aspect_ratio,
        motion_amount=defaults.motion_amount if shot.motion_amount is None else shot.motion_amount,
        reference_image=shot.reference_image,
        continues_from=storyboard.shot_ids()[index - 1] if shot.continues else None,
        motion_regions=tuple(MotionRegion(polygon=tuple(map(tuple, r.polygon)),
                                          vector=r.vector(duration, w / h))
                             for r in shot.motion_brush),
        transition=storyboard.transition_after(index) if index < len(storyboard.shots) - 1 else None,
        prompts=prompts)


def estimate_credits(plans: list[ShotPlan], providers: dict[str, VideoProvider]) -> float:
    """Credits the run would cost if every take were generated (cached takes cost nothing)."""
    total = 0.0
    for plan in plans:
        for take, seed in enumerate(plan.prompts.seeds, 1):
            choice = plan.choice_for(take)
            total += providers[choice.provider].estimate_credits(plan.request(seed, None, choice))
    return round(total, 4)


def providers_used(plans: list[ShotPlan]) -> list[str]:
    return sorted({c.provider for p in plans for c in p.choices + ([p.fallback] if p.fallback else [])})


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
