"""Provider super-resolution: a hosted model brings a finished clip up to a delivery resolution.

It is a paid step like a generation: a block that offers it prices it before anything is
spent, checks what its API would refuse before sending anything, and reports what the task
cost. Blocks know nothing about storyboards: a request is a clip, a model and a target size.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from blocks.providers import GenerationResult


class UpscaleRequest(BaseModel):
    """One clip to upscale with a provider's super-resolution model."""

    model_config = ConfigDict(frozen=True)

    source: Path = Field(description="The clip on local disk.")
    model: str = Field(description="The provider's upscaler model.")
    resolution: str = Field(description="Target by short side: '720p', '1080p', '1440p' or '4k'.")
    duration: float = Field(gt=0, description="Clip length in seconds (the price is per output second).")


@runtime_checkable
class SuperResolution(Protocol):
    """What a provider block that upscales offers, besides generating."""

    upscalers: ClassVar[tuple[str, ...]]

    def estimate_upscale_credits(self, model: str, resolution: str, duration: float) -> float:
        """Credits upscaling `duration` seconds to `resolution` costs, known before any spend."""

    def check_upscale(self, request: UpscaleRequest) -> None:
        """Raise GenerationError (not transient) for a request the API would refuse, sending nothing."""

    def upscale(self, request: UpscaleRequest, dest: Path) -> GenerationResult:
        """Upscale the clip into `dest` (an .mp4 path) and report what it cost."""
