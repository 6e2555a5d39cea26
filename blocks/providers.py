"""The provider interface: what every video generator (previz or a paid API) takes and returns.

Blocks know nothing about storyboards: a request is plain generation parameters, in the
normalised units every provider adapter converts from.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field

AspectRatio = Literal["16:9", "9:16", "1:1"]


def frame_size(aspect_ratio: AspectRatio, short_side: int) -> tuple[int, int]:
    """Even width and height for an aspect ratio whose shorter side is `short_side` pixels."""
    w, h = (int(x) for x in aspect_ratio.split(":"))
    width, height = (round(short_side * w / h), short_side) if w >= h else (short_side, round(short_side * h / w))
    return width - width % 2, height - height % 2


class MotionRegion(BaseModel):
    """A motion-brush region: a polygon whose pixels travel along a vector during the clip."""

    model_config = ConfigDict(frozen=True)

    polygon: tuple[tuple[float, float], ...] = Field(
        description="Vertices as (x, y) fractions of the frame, origin top-left, y down.")
    vector: tuple[float, float] = Field(
        description="Total displacement over the clip as (dx, dy) fractions of frame width and "
                    "height, y down.")


class GenerationRequest(BaseModel):
    """One take to generate: the normalised parameters every provider adapter understands."""

    model_config = ConfigDict(frozen=True)

    prompt: str = Field(description="The full structured prompt.")
    model: str = Field(description="The provider's model name.")
    seed: int = Field(ge=0, description="Seed; the same request and seed give the same take.")
    duration: float = Field(gt=0, description="Clip length in seconds.")
    fps: int = Field(gt=0, description="Frames per second.")
    aspect_ratio: AspectRatio = Field(description="Frame aspect ratio.")
    motion_amount: float = Field(0.5, ge=0, le=1, description="How much motion, 0 (still) to 1.")
    reference_image: Path | None = Field(
        None, description="Local reference image for image-to-video; remote ones are fetched first.")
    motion_regions: tuple[MotionRegion, ...] = Field(
        (), description="Motion-brush regions, in reference-image fractions.")
    resolution: str | None = Field(
        None, description="Generation resolution by short side ('720p', '1080p', '1440p', '4k'); "
                          "None for the model's default.")
    audio: bool = Field(False, description="Ask the model for sound, where it can make some.")
    motion_reference: Path | None = Field(
        None, description="Local motion reference video (remote ones are fetched first): motion control "
                          "follows its motion, previz its timing and camera motion.")
    motion_reference_url: str | None = Field(
        None, description="Where the motion reference came from (https URL or s3:// URI; None for a "
                          "local file): providers that fetch it themselves, as Kling does, need an https one.")


class GenerationResult(BaseModel):
    """A generated take on local disk, with what it cost."""

    path: Path = Field(description="The MP4 on local disk.")
    provider: str = Field(description="Provider block type that made it.")
    model: str = Field(description="Model that made it.")
    credits: float = Field(ge=0, description="Credits charged for it.")
    seconds: float = Field(ge=0, description="Wall time the generation took.")


class GenerationError(RuntimeError):
    """A generation failed; `transient` says whether trying again may succeed."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient

    def __reduce__(self):  # results and retries pickle exceptions; keep the flag
        return type(self), (str(self), self.transient)


class VideoProvider(Block):
    """Base for video generation blocks: estimate what a take costs, then generate it."""

    models: ClassVar[tuple[str, ...]] = ()
    provider_name: ClassVar[str] = ""  # the storyboard's name for it; also its concurrency limit's

    max_concurrency: int = Field(
        4, ge=1, le=100,
        description="Most takes in flight at once at this provider; enforced by the Prefect global "
                    "concurrency limit 'tag:provider-<name>', which runs create or update.")

    @abstractmethod
    def estimate_credits(self, request: GenerationRequest) -> float:
        """Credits this request will cost, known before anything is spent."""

    @abstractmethod
    def generate(self, request: GenerationRequest, dest: Path) -> GenerationResult:
        """Generate the take into `dest` (an .mp4 path) and report what it cost."""

    @abstractmethod
    def render_size(self, request: GenerationRequest) -> tuple[int, int]:
        """Width and height of the clips this provider returns for a request."""

    def render_fps(self, request: GenerationRequest) -> float:
        """Frame rate of the clips this provider returns (assembly conforms them to the edit's)."""
        return request.fps

    def preflight(self) -> None:
        """Raise GenerationError when the provider cannot take work at all (no key, retired)."""

    def cache_identity(self) -> dict:
        """Configuration that changes the output, for cache keys (secrets dump masked)."""
        settings = self.model_dump(mode="json", exclude=set(self.cache_neutral))
        return {"block": self.get_block_type_slug(), **settings}

    # settings that change how, not what, a provider generates: they stay out of cache keys
    cache_neutral: ClassVar[tuple[str, ...]] = ("max_concurrency",)
